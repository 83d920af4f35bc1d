// gaio's BenchmarkEcho128B: one connection, 128-byte ping-pong (one message in flight).
import { measure } from '../lib/common.mjs'

const SIZE = 128

export default {
  id: 'echo-128b',
  title: (mode) => `one connection, 128-byte ping-pong for ${mode.echoMs} ms`,
  systems: ['gaio', 'gaio-inline', 'node-net', 'node-net-tuned', 'rust-engine'],
  metrics: [{ metric: 'round trips/s', unit: '1/s', better: 'higher' }],
  async run(system, mode) {
    const { roundTrips, seconds } = await measure(system, 'echo', { size: SIZE, ms: mode.echoMs })
    return { 'round trips/s': roundTrips / seconds }
  },
}
