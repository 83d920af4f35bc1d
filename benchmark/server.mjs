// A server in a process of its own, for the workloads whose clients live
// elsewhere (chat, idle-mem, http): node --expose-gc benchmark/server.mjs SYSTEM PROTO
// Prints {"port"} once listening, then answers one JSON line per stdin line:
//   stats -> { cpuUs, bytes, conns, accepts, ns }   (process CPU time, bytes received, open and
//            accepted connections, clock)
//   mem   -> { rss }                       (resident bytes after a full GC)
// and exits when stdin closes.
import { createInterface } from 'node:readline'
import { SYSTEMS } from './systems/index.mjs'

const [system, proto] = process.argv.slice(2)
if (!SYSTEMS[system] || !['echo', 'http'].includes(proto)) {
  console.error('usage: node --expose-gc benchmark/server.mjs SYSTEM echo|http')
  process.exit(2)
}
const counters = { bytes: 0, conns: 0, accepts: 0 }
const port = await SYSTEMS[system]().serve(proto, counters)
const say = (value) => process.stdout.write(`${JSON.stringify(value)}\n`)

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line === 'stats') {
      const cpu = process.cpuUsage()
      say({ cpuUs: cpu.user + cpu.system, bytes: counters.bytes, conns: counters.conns, accepts: counters.accepts, ns: Number(process.hrtime.bigint()) })
    } else if (line === 'mem') {
      // Twice: the first collection can leave garbage that finalizers make.
      globalThis.gc?.()
      globalThis.gc?.()
      setImmediate(() => say({ rss: process.memoryUsage().rss, gc: Boolean(globalThis.gc) }))
    } else say({ error: `unknown command ${line}` })
  })
  .on('close', () => process.exit(0))
say({ port })
