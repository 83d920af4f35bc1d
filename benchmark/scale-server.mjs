// The scale workload's server: N echo servers on one port, in a process of
// its own: node benchmark/scale-server.mjs SYSTEM N
//   gaio         N thread-mode watchers, each with a reusePort listener, driven by one JS thread
//   gaio-inline  N worker_threads, each with an inline watcher on a reusePort listener
//   node-net, node-net-fast   a cluster of N workers (Node 20 has no reusePort; the
//                primary hands out connections, as a Node program scales)
// Every server listens on all IPv4 addresses (so clients spread over 127.0.0.x;
// other interfaces too, for the length of the run).
// Prints {"port"}; answers `stats` with the sums of every server's counters
// and the CPU time of the whole (the primary's and every cluster worker's);
// exits when stdin closes.
import cluster from 'node:cluster'
import { createInterface } from 'node:readline'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import { SYSTEMS } from './systems/index.mjs'

const ANY = '0.0.0.0'

/**
 * One server in a worker (thread or process): it serves echo on `port` (0: a
 * free one), then says its port through `send` and answers each 'stats'
 * message from `channel` with its counters and its process's CPU time.
 */
async function unit(system, port, channel, send) {
  const counters = { bytes: 0, conns: 0, accepts: 0 }
  const bound = await SYSTEMS[system]().serve('echo', counters, { host: ANY, port, reusePort: true })
  channel.on('message', () => {
    const cpu = process.cpuUsage()
    send({ ...counters, cpuUs: cpu.user + cpu.system })
  })
  send({ port: bound })
}

if (cluster.isWorker) {
  await unit(process.env.SCALE_SYSTEM, 0, process, (m) => process.send(m))
} else if (!isMainThread) {
  await unit(workerData.system, workerData.port, parentPort, (m) => parentPort.postMessage(m))
} else {
  const [system, count] = [process.argv[2], Number(process.argv[3])]
  if (!['gaio', 'gaio-inline', 'node-net', 'node-net-fast'].includes(system) || !(count >= 1 && count <= 254)) {
    console.error('usage: node benchmark/scale-server.mjs gaio|gaio-inline|node-net|node-net-fast N')
    process.exit(2)
  }
  const say = (value) => process.stdout.write(`${JSON.stringify(value)}\n`)
  /** Asks every server for its counters; cluster workers also report their own CPU time. */
  let stats
  let port = 0
  if (system === 'gaio') {
    const all = []
    for (let i = 0; i < count; i++) {
      const counters = { bytes: 0, conns: 0, accepts: 0 }
      port = await SYSTEMS.gaio().serve('echo', counters, { host: ANY, port, reusePort: true })
      all.push(counters)
    }
    stats = async () => all.map((c) => ({ ...c, cpuUs: 0 }))
  } else {
    const channels = []
    for (let i = 0; i < count; i++) {
      const channel = system === 'gaio-inline' ? new Worker(fileURLToPath(import.meta.url), { workerData: { system, port } }) : cluster.fork({ SCALE_SYSTEM: system })
      const ready = await new Promise((resolve, reject) => {
        channel.once('message', resolve)
        channel.once('error', reject)
        channel.once('exit', (code) => reject(new Error(`server ${i} exited (${code})`)))
      })
      port = ready.port
      // A server that dies later would leave a stats request unanswered: fail at once, saying so.
      channel.once('exit', (code) => {
        console.error(`${system} server ${i} exited (${code})`)
        process.exit(1)
      })
      channels.push(channel)
    }
    // One request at a time per channel (the lines are handled in turn), so the next message is its answer.
    const ask = (channel) => new Promise((resolve) => {
      channel.once('message', resolve)
      channel.postMessage ? channel.postMessage('stats') : channel.send('stats')
    })
    // Worker threads' CPU is this process's; cluster workers report their own.
    stats = async () => (await Promise.all(channels.map(ask))).map((s) => (system === 'gaio-inline' ? { ...s, cpuUs: 0 } : s))
  }
  const answer = async (line) => {
    if (line !== 'stats') return say({ error: `unknown command ${line}` })
    const parts = await stats()
    const cpu = process.cpuUsage()
    const sum = (key) => parts.reduce((total, s) => total + s[key], 0)
    say({ cpuUs: cpu.user + cpu.system + sum('cpuUs'), bytes: sum('bytes'), conns: sum('conns'), accepts: sum('accepts'), ns: Number(process.hrtime.bigint()), perServer: parts.map((s) => s.conns) })
  }
  let turn = Promise.resolve()
  createInterface({ input: process.stdin })
    .on('line', (line) => (turn = turn.then(() => answer(line))))
    .on('close', () => process.exit(0))
  say({ port })
}
