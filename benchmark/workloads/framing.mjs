// Length-prefixed framing: 100 connections each write batches of 24 frames
// (4 to 8195 payload bytes, so frames straddle reads) in one write; the
// server keeps an unfinished frame's bytes across reads (a copy, part of the
// workload: gaio's swap views cannot be kept) and answers each frame with its
// length and last 4 bytes, which the client checks. Server in its own process.
import { CEILING, ECHO_SYSTEMS, child, withServer } from '../lib/common.mjs'

const CONNS = 100

export default {
  id: 'framing',
  title: (mode) => `${CONNS} connections writing length-prefixed frames in batches of 24 for ${mode.chatMs / 1000} s; server in its own process, one Rust client`,
  systems: ECHO_SYSTEMS,
  needs: ['rust-engine'],
  metrics: [
    { metric: 'frames/s', unit: 'frame/s', better: 'higher' },
    { metric: 'frames/cpu-s', unit: 'frame/cpu-s', better: 'higher' },
  ],
  run: (system, mode) =>
    withServer(system, 'frame', async (server) => {
      const a = await server.ask('stats')
      const client = child(CEILING, ['frames', '--port', server.port, '--conns', CONNS, '--ms', mode.chatMs].map(String), { label: 'frames client' })
      const { frames, bytes, seconds } = await client.next(60_000).finally(() => client.end())
      const b = await server.ask('stats')
      if (b.bytes - a.bytes !== bytes) throw new Error(`the client wrote ${bytes} bytes; the server received ${b.bytes - a.bytes}`)
      return { 'frames/s': frames / seconds, 'frames/cpu-s': frames / ((b.cpuUs - a.cpuUs) / 1e6) }
    }),
}
