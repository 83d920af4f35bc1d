// gaio issue 1: memory per idle connection. The server process accepts
// connections from client processes (the Rust ceiling's hold mode) and keeps
// a read submitted on each. The figure is a slope: resident bytes at HIGH
// connections minus at LOW, over HIGH - LOW, each read after full GCs, after a
// warm-up at HIGH (opened and closed), so one-off costs (compiled code, pools,
// the young generation's growth, descriptor tables) cancel out. Beside it,
// the same slope of V8's heap in use, of external memory, and of the resident
// bytes outside V8's heap (native: RSS minus the heap's resident pages; the
// engine, addon, libuv, malloc). Kernel
// socket buffers are not in any of them (the same for every system).
import { CEILING, ECHO_SYSTEMS, child, drained, pace, withServer } from '../lib/common.mjs'

const LOW = 2000
const HIGH = 10_000

/** Opens `conns` more connections from a new hold client; resolves when the server holds `total`. */
async function hold(server, conns, total) {
  // The count before the client starts (see pace()).
  const base = (await server.ask('stats')).accepts
  const holder = child(CEILING, ['hold', '--port', String(server.port), '--conns', String(conns)], { label: 'idle client' })
  try {
    await pace(server, holder, base, (s) => s.conns === total)
    return holder
  } catch (e) {
    await holder.kill()
    throw e
  }
}

export default {
  id: 'idle-mem',
  title: () => `server process holds idle connections (a read submitted on each); bytes per connection = slope between ${LOW} and ${HIGH}, after full GCs and a warm-up at ${HIGH}`,
  systems: ECHO_SYSTEMS,
  needs: ['rust-engine'],
  metrics: [
    { metric: 'RSS slope', unit: 'B/conn', better: 'lower' },
    { metric: 'V8 heap used', unit: 'B/conn', better: 'lower' },
    { metric: 'external', unit: 'B/conn', better: 'lower' },
    { metric: 'native', unit: 'B/conn', better: 'lower' },
  ],
  targets: [{ metric: 'RSS slope', at_most: 400 }],
  run: (system) =>
    withServer(system, 'echo', async (server) => {
      await (await hold(server, HIGH, HIGH)).end()
      await drained(server)
      const low = await hold(server, LOW, LOW)
      const a = await server.ask('mem')
      const high = await hold(server, HIGH - LOW, HIGH)
      const b = await server.ask('mem')
      await Promise.all([low.end(), high.end()])
      const per = (f) => (f(b) - f(a)) / (HIGH - LOW)
      // The Rust server has no V8 heap: its fields are absent, so zero.
      return {
        'RSS slope': per((m) => m.rss),
        'V8 heap used': per((m) => m.heapUsed ?? 0),
        external: per((m) => m.external ?? 0),
        native: per((m) => m.rss - (m.heapResident ?? 0)),
      }
    }),
}
