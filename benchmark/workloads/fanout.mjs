// Workloads about writes the server starts (server in its own process, Rust
// clients; the Node systems only: the Rust server has no broadcast or push).
//   broadcast:   10,000 connections; the server writes one 64-byte message
//                to every one of them (Node: one Buffer for all; gaio in
//                thread mode copies each write), 5 times; every byte checked.
//   slow-reader: one connection whose reader reads nothing while the server
//                writes 32 MiB in fresh 64 KiB chunks: the resident memory
//                the unread data holds (gaio queues every write; node-net
//                ignores write()'s answer; node-net-fast waits for 'drain'),
//                then the seconds to deliver it all once the reader reads.
import { CEILING, child, now, pace, withServer } from '../lib/common.mjs'

const SYSTEMS = ['gaio', 'gaio-inline', 'node-net', 'node-net-fast']
const FANOUT_CONNS = 10_000
const MESSAGE = 64
const ROUNDS = 5
const PUSH = 32 << 20

export const broadcast = {
  id: 'broadcast',
  title: () => `${FANOUT_CONNS} connections, the server writes one ${MESSAGE}-byte message to each, ${ROUNDS} times; server in its own process, one Rust client`,
  systems: SYSTEMS,
  needs: ['rust-engine'],
  metrics: [
    { metric: 's per broadcast', unit: 's', better: 'lower' },
    { metric: 'server cpu-s per broadcast', unit: 'cpu-s', better: 'lower' },
  ],
  run: (system) =>
    withServer(system, 'fanout', async (server) => {
      const client = child(CEILING, ['hold', '--port', server.port, '--conns', FANOUT_CONNS, '--expect', MESSAGE].map(String), { label: 'broadcast client' })
      try {
        await pace(server, client, 0, (s) => s.conns === FANOUT_CONNS)
        await client.next(60_000) // { connected }
        const a = await server.ask('stats')
        const t0 = now()
        for (let round = 1; round <= ROUNDS; round++) {
          await server.ask(`broadcast ${MESSAGE}`)
          const r = await client.next(60_000)
          if (r.round !== round) throw new Error(`the client reported ${JSON.stringify(r)}, expected round ${round}`)
        }
        const seconds = now() - t0
        const b = await server.ask('stats')
        return { 's per broadcast': seconds / ROUNDS, 'server cpu-s per broadcast': (b.cpuUs - a.cpuUs) / 1e6 / ROUNDS }
      } finally {
        await client.end()
      }
    }),
}

export const slowReader = {
  id: 'slow-reader',
  title: () => `one connection, the server writes ${PUSH >> 20} MiB in 64 KiB chunks while the client reads nothing; resident memory held, then seconds to deliver`,
  systems: SYSTEMS,
  needs: ['rust-engine'],
  metrics: [
    { metric: 'MiB held', unit: 'MiB', better: 'lower' },
    { metric: 's to deliver', unit: 's', better: 'lower' },
  ],
  run: (system) =>
    withServer(system, 'push', async (server) => {
      const client = child(CEILING, ['sink', '--port', server.port, '--bytes', PUSH].map(String), { label: 'slow reader' })
      try {
        await pace(server, client, 0, (s) => s.conns === 1)
        const before = await server.ask('mem')
        await server.ask(`push ${PUSH}`)
        // What the writes hold once the kernel's buffers are full (they fill at once on loopback).
        const held = await server.ask('mem')
        client.proc.stdin.write('read\n')
        const { seconds } = await client.next(60_000)
        return { 'MiB held': (held.rss - before.rss) / 2 ** 20, 's to deliver': seconds }
      } finally {
        await client.end()
      }
    }),
}
