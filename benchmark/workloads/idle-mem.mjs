// gaio issue 1: memory per idle connection. The server process accepts 10,000
// connections from a client process (the Rust ceiling's hold mode) and keeps a
// read submitted on each; RSS after a full GC, minus RSS before, divided by
// 10,000. A warm-up of 1000 connections opened and closed first keeps one-off
// costs (compiled code, first pools) out of the figure.
import { CEILING, child, sleep, startServer } from '../lib/common.mjs'

const CONNS = 10_000
const WARM = 1000

/**
 * Opens `conns` connections from a hold client and waits until the server
 * holds them all. The client learns the server's accept count as it goes, so
 * at most CONNECTING connections are started and not yet accepted.
 */
async function hold(server, conns) {
  const holder = child(CEILING, ['hold', '--port', String(server.port), '--conns', String(conns)], { label: 'idle client' })
  try {
    const base = (await server.ask('stats')).accepts
    const deadline = Date.now() + 60_000
    for (;;) {
      const { conns: held, accepts } = await server.ask('stats')
      if (held === conns) break
      if (Date.now() > deadline) throw new Error(`the server holds ${held} of ${conns} connections`)
      holder.proc.stdin.write(`accepted ${accepts - base}\n`)
      await sleep(5)
    }
    return holder
  } catch (e) {
    await holder.kill()
    throw e
  }
}

async function drained(server) {
  const deadline = Date.now() + 30_000
  while ((await server.ask('stats')).conns !== 0) {
    if (Date.now() > deadline) throw new Error('the server did not see the warm-up connections close')
    await sleep(20)
  }
}

export default {
  id: 'idle-mem',
  title: () => `server process holds ${CONNS} idle connections (a read submitted on each); client in another process; RSS delta after GC per connection`,
  // node-net-tuned's server side differs from node-net only by TCP_NODELAY.
  systems: ['gaio', 'gaio-inline', 'node-net', 'rust-engine'],
  needs: ['rust-engine'],
  metrics: [{ metric: 'bytes/conn', unit: 'B', better: 'lower' }],
  async run(system) {
    const server = await startServer(system, 'echo')
    try {
      await (await hold(server, WARM)).end()
      await drained(server)
      const before = await server.ask('mem')
      const holder = await hold(server, CONNS)
      const after = await server.ask('mem')
      await holder.end()
      return { 'bytes/conn': (after.rss - before.rss) / CONNS }
    } finally {
      await server.end()
    }
  },
}
