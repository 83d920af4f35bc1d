// gaio's BenchmarkEcho64K and BenchmarkEcho128B: one connection, a message
// out and back (every byte checked), one in flight, repeated for a fixed time.
// In-process (client and server in one process of the system) and, for the
// 128-byte ping-pong, server-only (one Rust client for every system).
import { CEILING, ECHO_SYSTEMS, child, measure, withServer } from '../lib/common.mjs'

export const echo64k = {
  id: 'echo-64k',
  title: (mode) => `one connection, 64 KiB out and back, repeated for ${mode.echoMs} ms; MB/s = 10^6 bytes echoed per second; IN-PROCESS`,
  systems: ECHO_SYSTEMS,
  metrics: [{ metric: 'MB/s', unit: 'MB/s', better: 'higher' }],
  targets: [{ metric: 'MB/s', ratio: 1.3 }],
  async run(system, mode) {
    const size = 64 * 1024
    const { roundTrips, seconds } = await measure(system, 'echo', { size, ms: mode.echoMs })
    return { 'MB/s': (roundTrips * size) / seconds / 1e6 }
  },
}

export const echo128b = {
  id: 'echo-128b',
  title: (mode) => `one connection, 128-byte ping-pong for ${mode.echoMs} ms; IN-PROCESS`,
  systems: ECHO_SYSTEMS,
  metrics: [{ metric: 'round trips/s', unit: '1/s', better: 'higher' }],
  targets: [{ metric: 'round trips/s', ratio: 1.0 }],
  async run(system, mode) {
    const { roundTrips, seconds } = await measure(system, 'echo', { size: 128, ms: mode.echoMs })
    return { 'round trips/s': roundTrips / seconds }
  },
}

export const echo128bServer = {
  id: 'echo-128b-server',
  title: (mode) => `one connection, 128-byte ping-pong for ${mode.echoMs} ms; SERVER-ONLY: one Rust client process for all`,
  systems: ECHO_SYSTEMS,
  needs: ['rust-engine'],
  metrics: [
    { metric: 'round trips/s', unit: '1/s', better: 'higher' },
    { metric: 'round trips/cpu-s', unit: '1/cpu-s', better: 'higher' },
  ],
  run: (system, mode) =>
    withServer(system, 'echo', async (server) => {
      const a = await server.ask('stats')
      const client = child(CEILING, ['echo-client', '--port', String(server.port), '--size', '128', '--ms', String(mode.echoMs)], { label: 'echo client' })
      const { roundTrips, seconds } = await client.next(60_000).finally(() => client.end())
      const b = await server.ask('stats')
      if (b.bytes - a.bytes !== roundTrips * 128) throw new Error(`the server received ${b.bytes - a.bytes} bytes for ${roundTrips} round trips`)
      return { 'round trips/s': roundTrips / seconds, 'round trips/cpu-s': roundTrips / ((b.cpuUs - a.cpuUs) / 1e6) }
    }),
}
