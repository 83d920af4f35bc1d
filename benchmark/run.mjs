// The main job: this library against node:net in the same run, alternating.
// Quick by default; --full for more runs and sizes. Client and server share
// the machine's cores: each system is both client and server in this process,
// as in gaio's own tests, so the client cost is part of every figure.
import net from 'node:net'
import { createRequire } from 'node:module'
import { mkdirSync, writeFileSync } from 'node:fs'

const require = createRequire(import.meta.url)
const { Watcher, OpType } = require('../index.js')

const full = process.argv.includes('--full')
const RUNS = full ? 7 : 3
const MESSAGE = 1024
// Both systems open connections the same way: at most this many connects in
// flight, the next one started as one completes. (All at once overflows any
// listen backlog and measures the kernel's one-second SYN retransmit.)
const CONNECTING = 1024

/** gaio: a listener, `conns` connects, each writes MESSAGE bytes and reads them back. */
async function gaioEcho(conns, size) {
  const w = new Watcher()
  const ln = w.listen({ host: '127.0.0.1', port: 0 })
  const payload = Buffer.alloc(size, 7)
  const start = process.hrtime.bigint()
  for (let i = 0; i < Math.min(conns, 512); i++) w.accept('server', ln)
  let started = Math.min(conns, CONNECTING)
  for (let i = 0; i < started; i++) w.connect({ got: 0 }, { host: '127.0.0.1', port: ln.port })
  let accepted = 0
  let finished = 0
  while (finished < conns) {
    for (const r of await w.waitIO()) {
      if (r.error?.code === 'EOF' && r.context === 'server') {
        w.free(r.conn)
        continue
      }
      if (r.error) throw new Error(`${OpType[r.operation]}: ${r.error.code}`)
      switch (r.operation) {
        case OpType.Accept:
          if (++accepted + 512 <= conns) w.accept('server', ln)
          w.read('server', r.conn)
          break
        case OpType.Connect:
          if (started < conns && ++started) w.connect({ got: 0 }, { host: '127.0.0.1', port: ln.port })
          w.write(r.context, r.conn, payload)
          w.read(r.context, r.conn)
          break
        case OpType.Read:
          if (r.context === 'server') {
            w.write('server', r.conn, r.buffer)
            w.read('server', r.conn)
          } else {
            for (const byte of r.buffer) if (byte !== 7) throw new Error('corrupt echo')
            r.context.got += r.size
            if (r.context.got === size) finished++
            else w.read(r.context, r.conn)
          }
          break
      }
    }
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  w.close()
  return seconds
}

/** node:net written the way a Node user would. */
function netEcho(conns, size) {
  return new Promise((resolve, reject) => {
    const sockets = []
    const server = net.createServer((s) => {
      sockets.push(s)
      s.on('data', (d) => s.write(d))
      s.on('error', () => {})
    })
    // The same backlog the watcher's listen uses, so neither loses SYNs the other keeps.
    server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
      const { port } = server.address()
      const payload = Buffer.alloc(size, 7)
      const start = process.hrtime.bigint()
      let finished = 0
      let started = 0
      const open = () => {
        started++
        let got = 0
        const c = net.connect(port, '127.0.0.1', () => {
          if (started < conns) open()
          c.write(payload)
        })
        sockets.push(c)
        c.on('error', reject)
        c.on('data', (d) => {
          for (const byte of d) if (byte !== 7) reject(new Error('corrupt echo'))
          got += d.length
          if (got === size && ++finished === conns) {
            const seconds = Number(process.hrtime.bigint() - start) / 1e9
            for (const s of sockets) s.destroy()
            server.close(() => resolve(seconds))
          }
        })
      }
      for (let i = 0; i < Math.min(conns, CONNECTING); i++) open()
    })
  })
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const workloads = [
  { id: 'c8k', conns: 8192, size: MESSAGE },
  { id: 'tiny', conns: 4096, size: 16 },
]
const results = []
for (const { id, conns, size } of workloads) {
  const runs = { gaio: [], 'node-net': [] }
  for (let i = 0; i < RUNS; i++) {
    runs.gaio.push(await gaioEcho(conns, size))
    runs['node-net'].push(await netEcho(conns, size))
  }
  const base = median(runs['node-net'])
  console.log(`\n${id}: ${conns} connections x ${size} B, first connect to last byte back (s), ${RUNS} runs`)
  console.log('system      median    min      max      vs node:net')
  for (const [system, xs] of Object.entries(runs)) {
    const m = median(xs)
    console.log(`${system.padEnd(10)} ${m.toFixed(3).padStart(7)}  ${Math.min(...xs).toFixed(3).padStart(7)}  ${Math.max(...xs).toFixed(3).padStart(7)}   ${(m / base).toFixed(2)}x`)
    results.push({ workload: id, system, metric: 'seconds', unit: 's', median: m, runs: xs })
  }
}
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(new URL('./results/latest.json', import.meta.url), JSON.stringify(results, null, 2))
console.log('\nwrote benchmark/results/latest.json')
