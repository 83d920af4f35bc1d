// The seed's claim of amortized context switches for frequent tiny messages:
// 1000 connections each ping-pong 64-byte messages (one in flight per
// connection) for a fixed time. The server runs in a process of its own so
// its CPU time is measurable; the client is the same for every system (the
// Rust ceiling's chat-client, which checks every echo's content and order).
import { CEILING, child, sleep, startServer } from '../lib/common.mjs'

const CONNS = 1000
const SIZE = 64

export default {
  id: 'chat',
  title: (mode) =>
    `${CONNS} connections ping-ponging ${SIZE}-byte messages, ${mode.chatMs / 1000} s after ${mode.chatWarmMs / 1000} s warm-up; server in its own process, one Rust client process for all`,
  systems: ['gaio', 'gaio-inline', 'node-net', 'node-net-tuned', 'rust-engine'],
  needs: ['rust-engine'],
  metrics: [
    { metric: 'msgs/s', unit: 'msg/s', better: 'higher' },
    { metric: 'msgs/cpu-s', unit: 'msg/cpu-s', better: 'higher' },
  ],
  async run(system, mode) {
    const server = await startServer(system, 'echo')
    const client = child(CEILING, ['chat-client', '--port', String(server.port), '--conns', String(CONNS), '--size', String(SIZE)], { label: 'chat client' })
    try {
      await client.next(60_000) // every connection is up
      await sleep(mode.chatWarmMs)
      const a = await server.ask('stats')
      await sleep(mode.chatMs)
      const b = await server.ask('stats')
      client.proc.stdin.end()
      const sent = await client.next() // { roundTrips, bytes }: what the client checked
      const messages = (b.bytes - a.bytes) / SIZE
      if (!(messages > 0)) throw new Error('no messages in the window')
      if (sent.roundTrips < messages - CONNS) throw new Error(`the server echoed ${messages} messages in the window but the client checked only ${sent.roundTrips}`)
      if (b.conns !== CONNS) throw new Error(`the server holds ${b.conns} connections, not ${CONNS}`)
      return {
        'msgs/s': messages / ((b.ns - a.ns) / 1e9),
        'msgs/cpu-s': messages / ((b.cpuUs - a.cpuUs) / 1e6),
      }
    } finally {
      await client.end()
      await server.end()
    }
  },
}
