// Syscalls per round trip on the server side of a 128-byte ping-pong, by
// call, under `strace -f -c`: the cost of the crossings between threads
// that a wall-clock number hides. The client is node:net in another process.
//   node benchmark/syscalls.mjs [SYSTEM ...] [--trips N]
// Needs strace. Prints one table row per system.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const tripsAt = args.indexOf('--trips')
const trips = tripsAt >= 0 ? Number(args.splice(tripsAt, 2)[1]) : 20000
const systems = args.length ? args : ['gaio', 'gaio-inline', 'node-net']
if (spawnSync('strace', ['-V']).status !== 0) throw new Error('strace is needed')

async function measure(system) {
  const dir = mkdtempSync(join(tmpdir(), 'gaio-strace-'))
  const out = join(dir, 'counts')
  const server = spawn('strace', ['-f', '-c', '-o', out, process.execPath, join(here, 'server.mjs'), system, 'echo'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const { port } = JSON.parse(await new Promise((resolve) => createInterface({ input: server.stdout }).once('line', resolve)))
  const socket = connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  await new Promise((resolve) => socket.once('connect', resolve))
  const message = Buffer.alloc(128, 1)
  let got = 0
  let done = 0
  await new Promise((resolve) => {
    socket.on('data', (d) => {
      got += d.length
      while (got >= message.length) {
        got -= message.length
        if (++done === trips) return resolve()
        socket.write(message)
      }
    })
    socket.write(message)
  })
  socket.destroy()
  server.stdin.end()
  await new Promise((resolve) => server.once('exit', resolve))
  const counts = {}
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/.exec(line)
    if (m && m[2] !== 'total') counts[m[2]] = Number(m[1])
  }
  rmSync(dir, { recursive: true, force: true })
  return counts
}

const groups = {
  'epoll waits': ['epoll_wait', 'epoll_pwait', 'epoll_pwait2'],
  'write (socket or eventfd)': ['write'],
  reads: ['read', 'recvfrom', 'recvmsg'],
  sends: ['sendmsg', 'sendto', 'writev'],
  futex: ['futex'],
}
console.log(`| system | syscalls per round trip | ${Object.keys(groups).join(' | ')} |`)
console.log(`|---|---|${Object.keys(groups).map(() => '---').join('|')}|`)
for (const system of systems) {
  const counts = await measure(system)
  const per = (names) => (names.reduce((sum, n) => sum + (counts[n] ?? 0), 0) / trips).toFixed(1)
  const total = Object.values(counts).reduce((a, b) => a + b, 0) / trips
  console.log(`| ${system} | ${total.toFixed(1)} | ${Object.values(groups).map(per).join(' | ')} |`)
}
