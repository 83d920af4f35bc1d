// Latency under load, open loop: the ceiling's latency client sends at a fixed
// offered rate whatever the replies do, and times each reply from the moment
// its message was scheduled (so a stalled server is charged for everything that
// queued behind the stall). Percentiles of the replies to messages scheduled
// in the window after a warm-up; every echo and every HTTP response is checked.
//   chat-latency: 1000 connections, 64-byte echo messages.
//   http-latency: 100 keep-alive connections, GET "hello" (pipelined when a
//                 request's reply is late, as an open-loop client must).
import { CEILING, ECHO_SYSTEMS, HTTP_SYSTEMS, child, withServer } from '../lib/common.mjs'

const QUANTILES = [
  ['p50', 'p50'],
  ['p99', 'p99'],
  ['p999', 'p99.9'],
]

function latencyWorkload(id, proto, conns, systems) {
  return {
    id,
    title: (mode) =>
      `open loop, ${conns} connections, ${proto === 'http' ? 'GET "hello"' : '64-byte echo'} at ${mode.latencyRates.join(' and ')} msgs/s offered; ${mode.latencyMs / 1000} s window after ${mode.latencyWarmMs / 1000} s; server in its own process, one Rust client`,
    systems,
    needs: ['rust-engine'],
    metrics: (mode) => mode.latencyRates.flatMap((rate) => QUANTILES.map(([, q]) => ({ metric: `${q} @${rate / 1000}k/s`, unit: 'ms', better: 'lower' }))),
    run: (system, mode) =>
      withServer(system, proto, async (server) => {
        const out = {}
        for (const rate of mode.latencyRates) {
          const args = ['latency', '--port', server.port, '--proto', proto, '--conns', conns, '--rate', rate, '--warm-ms', mode.latencyWarmMs, '--ms', mode.latencyMs, '--size', 64]
          const client = child(CEILING, args.map(String), { label: `${id} client` })
          const r = await client.next(120_000).finally(() => client.end())
          for (const [key, q] of QUANTILES) out[`${q} @${rate / 1000}k/s`] = r[key] / 1000
        }
        return out
      }),
  }
}

export const chatLatency = latencyWorkload('chat-latency', 'echo', 1000, ECHO_SYSTEMS)
export const httpLatency = latencyWorkload('http-latency', 'http', 100, HTTP_SYSTEMS)
