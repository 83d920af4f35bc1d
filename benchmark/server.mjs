// A server in a process of its own, for the workloads whose clients live
// elsewhere (chat, idle-mem, http): node --expose-gc benchmark/server.mjs SYSTEM PROTO
// Prints {"port"} once listening, then answers one JSON line per stdin line:
//   stats -> { cpuUs, bytes, conns, accepts, ns }   (process CPU time, bytes received, open and
//            accepted connections, clock)
//   mem   -> { rss, heapUsed, heapResident, external }   (bytes, after full GCs)
//   broadcast N -> { conns }   (proto fanout: one N-byte message written to every connection)
//   push N      -> { conns }   (proto push: N bytes written to every connection in fresh chunks)
// and exits when stdin closes.
import { createInterface } from 'node:readline'
import v8 from 'node:v8'
import { payload } from './lib/common.mjs'
import { SYSTEMS } from './systems/index.mjs'

const [system, proto] = process.argv.slice(2)
if (!SYSTEMS[system] || !['echo', 'http', 'frame', 'fanout', 'push'].includes(proto)) {
  console.error('usage: node --expose-gc benchmark/server.mjs SYSTEM echo|http|frame|fanout|push')
  process.exit(2)
}
const counters = { bytes: 0, conns: 0, accepts: 0, broadcast: null, push: null }
const port = await SYSTEMS[system]().serve(proto, counters)
const say = (value) => process.stdout.write(`${JSON.stringify(value)}\n`)

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line === 'stats') {
      const cpu = process.cpuUsage()
      say({ cpuUs: cpu.user + cpu.system, bytes: counters.bytes, conns: counters.conns, accepts: counters.accepts, ns: Number(process.hrtime.bigint()) })
    } else if (line.startsWith('broadcast ')) {
      // One Buffer for every connection, as a Node program would write it.
      counters.broadcast(payload(0, Number(line.split(' ')[1])))
      say({ conns: counters.conns })
    } else if (line.startsWith('push ')) {
      counters.push(Number(line.split(' ')[1]))
      say({ conns: counters.conns })
    } else if (line === 'mem') {
      // Twice: the first collection can leave garbage that finalizers make.
      globalThis.gc?.()
      globalThis.gc?.()
      setImmediate(() => {
        const { rss, heapUsed, external } = process.memoryUsage()
        // The heap's resident pages (heapTotal counts committed pages never touched, which RSS does not).
        const heapResident = v8.getHeapStatistics().total_physical_size
        say({ rss, heapUsed, heapResident, external, gc: Boolean(globalThis.gc) })
      })
    } else say({ error: `unknown command ${line}` })
  })
  .on('close', () => process.exit(0))
say({ port })
