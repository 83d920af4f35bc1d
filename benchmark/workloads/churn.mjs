// Connection churn: 50 loops, each connect, echo 64 bytes (checked), close,
// again, for a fixed time; the server in its own process. Teardown is
// included: the server's CPU is counted until it has seen every close.
import { CEILING, ECHO_SYSTEMS, child, drained, withServer } from '../lib/common.mjs'

const LOOPS = 50
const SIZE = 64

export default {
  id: 'churn',
  title: (mode) => `${LOOPS} loops of connect, ${SIZE}-byte echo, close, for ${mode.churnMs / 1000} s; server in its own process, one Rust client`,
  systems: ECHO_SYSTEMS,
  needs: ['rust-engine'],
  metrics: [
    { metric: 'conns/s', unit: 'conn/s', better: 'higher' },
    { metric: 'conns/cpu-s', unit: 'conn/cpu-s', better: 'higher' },
  ],
  run: (system, mode) =>
    withServer(system, 'echo', async (server) => {
      const a = await server.ask('stats')
      const client = child(CEILING, ['churn', '--port', server.port, '--conns', LOOPS, '--ms', mode.churnMs, '--size', SIZE].map(String), { label: 'churn client' })
      const { conns, seconds } = await client.next(60_000).finally(() => client.end())
      await drained(server)
      const b = await server.ask('stats')
      if (b.accepts - a.accepts !== conns || b.bytes - a.bytes !== conns * SIZE) {
        throw new Error(`the client finished ${conns} connections; the server accepted ${b.accepts - a.accepts} and received ${b.bytes - a.bytes} bytes`)
      }
      return { 'conns/s': conns / seconds, 'conns/cpu-s': conns / ((b.cpuUs - a.cpuUs) / 1e6) }
    }),
}
