// gaio's BenchmarkEcho64K: one connection; the client writes 64 KiB, the server
// echoes it, the client reads all of it back (checking every byte); repeat.
import { measure } from '../lib/common.mjs'

const SIZE = 64 * 1024

export default {
  id: 'echo-64k',
  title: (mode) => `one connection, 64 KiB out and back, repeated for ${mode.echoMs} ms; MB/s = 10^6 bytes echoed per second`,
  systems: ['gaio', 'gaio-inline', 'node-net', 'node-net-tuned', 'rust-engine'],
  metrics: [{ metric: 'MB/s', unit: 'MB/s', better: 'higher' }],
  async run(system, mode) {
    const { roundTrips, seconds } = await measure(system, 'echo', { size: SIZE, ms: mode.echoMs })
    return { 'MB/s': (roundTrips * SIZE) / seconds / 1e6 }
  },
}
