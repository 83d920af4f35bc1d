// Platform behaviour: IPv6, Unix sockets, several watchers, CPU pinning,
// worker threads, process lifetime, and small buffers under GC.
import test from 'ava'
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync, mkdtempSync } from 'node:fs'
import { createServer, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { Conn, GaioError, OpType, Watcher, type OpResult } from '../index'
import { collectUntil, collectGarbage, echoOnAll, echoServer, gaioPair, isReadInto, netClient, pattern, receiveBytes, scaled, sleep, within } from './helpers'

const root = join(__dirname, '..')
const indexJs = join(root, 'index.js')

/** Thread ids of this process whose name is gaio-poller. */
function pollerThreads(): string[] {
  return readdirSync('/proc/self/task').filter((tid) => {
    try {
      return readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'gaio-poller'
    } catch {
      return false // the thread exited meanwhile
    }
  })
}

async function pollerCountBecomes(n: number, ms: number): Promise<number> {
  const until = Date.now() + scaled(ms)
  let count = pollerThreads().length
  while (count !== n && Date.now() < until) {
    await sleep(20)
    count = pollerThreads().length
  }
  return count
}

/** A ping-pong on a gaio client connection: writes `data`, reads it all back. */
async function gaioRoundTrip(w: Watcher, conn: Conn, data: Buffer): Promise<Buffer> {
  const back = new Uint8Array(data.length)
  w.write('out', conn, data)
  w.readFull('in', conn, back)
  const results = await collectUntil(w, (rs) => rs.length >= 2, 5000, 'round trip')
  for (const res of results) if (res.error) throw res.error
  return Buffer.from(back)
}

test('IPv6: listen and connect on ::1', async (t) => {
  // Whether the machine has ::1 at all, as node:net sees it.
  const probe = createServer()
  const v6 = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false))
    probe.listen(0, '::1', () => resolve(true))
  })
  probe.close()

  const w = new Watcher()
  t.teardown(() => w.close())
  if (!v6) {
    // No IPv6 loopback here: listening must fail clearly, not crash or hang.
    const e = t.throws(() => w.listen({ host: '::1', port: 0 }), { instanceOf: GaioError })
    t.regex(e!.code, /^(EADDRNOTAVAIL|EAFNOSUPPORT)$/)
    return
  }
  const ln = w.listen({ host: '::1', port: 0 })
  t.is(ln.address, '::1')
  t.true(ln.port > 0)
  const server = new Watcher()
  t.teardown(() => server.close())
  // The echo runs on a second watcher; this one connects over IPv6.
  const sln = server.listen({ host: '::1', port: 0 })
  const loop = echoServer(server, sln)
  w.connect('c6', { host: '::1', port: sln.port })
  const [connected] = await collectUntil(w, (rs) => rs.length >= 1, 5000, 'IPv6 connect')
  t.is(connected.error, null)
  t.is(connected.operation, OpType.Connect)
  const data = pattern(6, 10_000)
  t.deepEqual(await gaioRoundTrip(w, connected.conn as Conn, data), data)

  // A node:net client reaches the watcher's own IPv6 listener too.
  w.accept('a6', ln)
  const client = await netClient(ln.port, '::1')
  t.teardown(() => client.destroy())
  t.is(client.remoteFamily, 'IPv6')
  const [accepted] = await collectUntil(w, (rs) => rs.length >= 1, 5000, 'IPv6 accept')
  t.is(accepted.error, null)
  const echoed = receiveBytes(client, 5)
  w.write(null, accepted.conn as Conn, Buffer.from('six!!'))
  t.is(String(await within(3000, 'to the node client', echoed)), 'six!!')
  server.close()
  await loop
})

test('Unix domain sockets: listen({ path }) and connect({ path }) with an echo', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gaio-unix-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'echo.sock')
  const server = new Watcher()
  const ln = server.listen({ path })
  t.is(ln.address, path)
  t.is(ln.port, 0)
  t.true(existsSync(path))
  const loop = echoServer(server, ln)
  t.teardown(() => server.close())

  const w = new Watcher()
  t.teardown(() => w.close())
  w.connect('u', { path })
  const [connected] = await collectUntil(w, (rs) => rs.length >= 1, 5000, 'unix connect')
  t.is(connected.error, null)
  const conn = connected.conn as Conn
  for (const size of [1, 4096, 300_000]) {
    const data = pattern(size, size)
    t.deepEqual(await gaioRoundTrip(w, conn, data), data, `${size} bytes`)
  }

  // node:net speaks to the same socket file.
  const client = await new Promise<Socket>((resolve, reject) => {
    const c: Socket = new Socket().connect(path, () => resolve(c))
    c.once('error', reject)
  })
  t.teardown(() => client.destroy())
  const echoed = receiveBytes(client, 11)
  client.write('hello, unix')
  t.is(String(await within(3000, 'node client echo', echoed)), 'hello, unix')

  // A path nobody listens on: a result with the errno, not a throw.
  w.connect('nobody', { path: join(dir, 'nobody.sock') })
  const [failed] = await collectUntil(w, (rs) => rs.length >= 1, 5000, 'connect to a missing path')
  t.is(failed.error?.code, 'ENOENT')
  server.close()
  await loop
  await within(3000, 'socket file removed', (async () => { while (existsSync(path)) await sleep(10) })())
})

test('a freed Unix listener removes its socket file, so the path can be listened on again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gaio-unix-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'again.sock')
  const w = new Watcher()
  t.teardown(() => w.close())
  w.free(w.listen({ path }))
  await within(3000, 'socket file removed', (async () => { while (existsSync(path)) await sleep(10) })())
  const again = w.listen({ path })
  t.true(existsSync(path))
  t.is(again.address, path)
})

test('four watchers side by side: connections delegated round-robin, each watcher echoing its own', async (t) => {
  const watchers = Array.from({ length: 4 }, () => new Watcher())
  t.teardown(() => watchers.forEach((w) => w.close()))
  const owner = new Map<Socket, number>()
  const served = [0, 0, 0, 0]
  let next = 0
  // gaio convention 5: distribute connections across watchers with your own strategy.
  const server = createServer({ pauseOnConnect: true }, (socket) => {
    const i = next++ % watchers.length
    owner.set(socket, i)
    watchers[i].read(null, socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const loops = watchers.map((w, i) =>
    (async () => {
      for await (const results of w) {
        for (const res of results) {
          if (res.error) {
            w.free(res.conn)
            continue
          }
          t.is(owner.get(res.conn as Socket), i, 'each result comes from the watcher the socket was handed to')
          // After close() resubmitting is fine: those requests come back with ERR_WATCHER_CLOSED.
          if (res.operation === OpType.Read) w.write(null, res.conn, res.buffer!.subarray(0, res.size))
          else if (res.operation === OpType.Write) {
            served[i] += res.size
            w.read(null, res.conn)
          }
        }
      }
    })(),
  )

  const port = (server.address() as { port: number }).port
  const clients = await Promise.all(Array.from({ length: 16 }, () => netClient(port)))
  t.teardown(() => clients.forEach((c) => c.destroy()))
  await echoOnAll(clients, 4, (i) => 1000 + i * 100)
  t.is(owner.size, 16)
  for (const [i, bytes] of served.entries()) t.true(bytes > 0, `watcher ${i} echoed (${bytes} bytes)`)
  watchers.forEach((w) => w.close())
  await within(3000, 'watcher loops end', Promise.all(loops))
})

test('four watchers side by side: reusePort listeners on one port share the connections', async (t) => {
  const watchers = Array.from({ length: 4 }, () => new Watcher())
  t.teardown(() => watchers.forEach((w) => w.close()))
  const first = watchers[0].listen({ host: '127.0.0.1', port: 0, reusePort: true })
  const listeners = [first, ...watchers.slice(1).map((w) => w.listen({ host: '127.0.0.1', port: first.port, reusePort: true }))]
  for (const ln of listeners) t.is(ln.port, first.port)
  const stats = watchers.map(() => ({ accepted: 0, bytes: 0, freed: 0 }))
  const loops = watchers.map((w, i) => echoServer(w, listeners[i], { accepts: 8 }, stats[i]))

  const clients = await Promise.all(Array.from({ length: 64 }, () => netClient(first.port)))
  t.teardown(() => clients.forEach((c) => c.destroy()))
  await echoOnAll(clients, 1, () => 500)
  t.is(stats.reduce((n, s) => n + s.accepted, 0), 64)
  // The kernel hashes connections over the four listeners: each gets some
  // (the chance that one of four gets none of 64 is about 4e-8).
  for (const [i, s] of stats.entries()) t.true(s.accepted > 0, `watcher ${i} accepted ${s.accepted}`)
  watchers.forEach((w) => w.close())
  await Promise.all(loops)
})

test.serial('the cpu option pins the poller thread; impossible CPUs throw', async (t) => {
  const before = new Set(pollerThreads())
  const w = new Watcher({ cpu: 0 })
  t.teardown(() => w.close())
  const mine = pollerThreads().filter((tid) => !before.has(tid))
  t.is(mine.length, 1, 'one new gaio-poller thread')
  const status = readFileSync(`/proc/self/task/${mine[0]}/status`, 'utf8')
  t.regex(status, /^Cpus_allowed_list:\s*0\s*$/m, 'pinned to CPU 0')
  // And it works.
  const { client, server } = await gaioPair(w)
  w.read('r', server)
  const data = Buffer.from('pinned')
  w.write('w', client, data)
  const results = await collectUntil(w, (rs) => rs.some((r) => r.operation === OpType.Read), 3000, 'pinned echo')
  const read = results.find((r) => r.operation === OpType.Read)!
  t.is(Buffer.from(read.buffer!).toString(), 'pinned')

  t.throws(() => new Watcher({ cpu: 100000 }), { instanceOf: RangeError })
  t.throws(() => new Watcher({ cpu: -1 }), { instanceOf: RangeError })
  t.throws(() => new Watcher({ cpu: 1.5 }), { instanceOf: RangeError })
  t.throws(() => new Watcher({ cpu: '0' as unknown as number }), { instanceOf: TypeError })
  // In range for the facade but no such CPU here (CPU_SETSIZE is 1024; this machine has a few).
  for (const cpu of [1000, 5000]) {
    const e = t.throws(() => new Watcher({ cpu }), { instanceOf: RangeError })
    t.is((e as NodeJS.ErrnoException).code, 'ERR_OUT_OF_RANGE', `cpu ${cpu}: ${e?.message}`)
    t.regex(e!.message, /"options\.cpu"/, 'the message names the option')
  }
  w.close()
  t.is(await pollerCountBecomes(before.size, 3000), before.size, 'no poller thread left behind, failed starts included')
})

const workerEcho = `
const { parentPort, workerData } = require('node:worker_threads')
const { Watcher, OpType } = require(workerData.index)
const net = require('node:net')
const w = new Watcher({ mode: workerData.mode })
const ln = w.listen({ host: '127.0.0.1', port: 0 })
w.accept('accept', ln)
const client = net.connect(ln.port, '127.0.0.1', () => client.write('from the worker'))
let echoed = ''
client.on('data', (d) => {
  echoed += d
  if (echoed.length >= 15) {
    client.destroy()
    w.close()
    parentPort.postMessage({ echoed })
  }
})
;(async () => {
  for await (const results of w) {
    for (const res of results) {
      if (res.error) continue
      if (res.operation === OpType.Accept) w.read(null, res.conn)
      else if (res.operation === OpType.Read) w.write(null, res.conn, res.buffer)
    }
  }
})()
`

// Each driving mode: a poller thread, or inline on the JS thread's own event loop.
const modes = ['thread', 'inline'] as const
/** Poller threads the mode adds per watcher. */
const threadsOf = (mode: (typeof modes)[number]) => (mode === 'thread' ? 1 : 0)

for (const mode of modes) test.serial(`worker_threads [${mode}]: a watcher created and used inside a worker`, async (t) => {
  const before = pollerThreads().length
  const worker = new Worker(workerEcho, { eval: true, workerData: { index: indexJs, mode }, execArgv: [] })
  const errors: Error[] = []
  worker.on('error', (e) => errors.push(e))
  // Listen for the exit at once: Node may emit it in the same turn as the last message.
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve))
  const message = await within(10_000, 'worker echo', new Promise<{ echoed: string }>((resolve) => worker.once('message', resolve)))
  t.is(message.echoed, 'from the worker')
  const code = await within(5000, 'worker exits by itself', exited)
  t.is(code, 0)
  t.deepEqual(errors, [])
  t.is(await pollerCountBecomes(before, 3000), before, 'its poller thread stopped')
})

const workerInFlight = `
const { parentPort, workerData } = require('node:worker_threads')
const { Watcher, OpType } = require(workerData.index)
const w = new Watcher({ mode: workerData.mode })
// Reads in flight on a connection to the main thread's server, never answered.
w.connect('c', { host: '127.0.0.1', port: workerData.port })
w.waitIO().then((results) => {
  const conn = results[0].conn
  for (let i = 0; i < 4; i++) w.read(i, conn, new Uint8Array(16))
  w.read('swap', conn)
  w.waitIO() // parked, never settles
  parentPort.postMessage('reading')
})
`

for (const mode of modes) test.serial(`worker_threads [${mode}]: terminating a worker with reads in flight stops its poller and leaves the main thread healthy`, async (t) => {
  const peers: Socket[] = []
  const server = createServer((s) => peers.push(s))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    peers.forEach((s) => s.destroy())
    server.close()
  })
  const port = (server.address() as { port: number }).port
  const before = pollerThreads().length

  const worker = new Worker(workerInFlight, { eval: true, workerData: { index: indexJs, port, mode }, execArgv: [] })
  const errors: Error[] = []
  worker.on('error', (e) => errors.push(e))
  await within(10_000, 'worker reading', new Promise((resolve) => worker.once('message', resolve)))
  t.is(pollerThreads().length, before + threadsOf(mode), "the worker's poller thread runs (if it has one)")
  t.is(peers.length, 1)
  const peerEnded = new Promise<void>((resolve) => {
    peers[0].once('end', resolve)
    peers[0].once('close', resolve)
  })

  const code = await within(5000, 'terminate', worker.terminate())
  t.is(code, 1)
  t.deepEqual(errors, [])
  t.is(await pollerCountBecomes(before, 3000), before, 'the poller thread stopped with the worker')
  await within(3000, 'the peer sees the connection closed', peerEnded)

  // The main thread carries on: a watcher here still works.
  const w = new Watcher()
  t.teardown(() => w.close())
  const { client, server: s } = await gaioPair(w)
  t.deepEqual(await (async () => {
    w.read('r', s)
    w.write('w', client, Buffer.from('alive'))
    const rs = await collectUntil(w, (r) => r.some((x) => x.operation === OpType.Read), 3000, 'main echo')
    return Buffer.from(rs.find((x) => x.operation === OpType.Read)!.buffer!).toString()
  })(), 'alive')
})

/** Runs a script in a fresh node; resolves with its exit code and output, or rejects after `ms`. */
function runChild(code: string, ms: number, mode: string): Promise<{ code: number | null; signal: string | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', code], { env: { ...process.env, GAIO_INDEX: indexJs, GAIO_MODE: mode }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`the child did not exit within ${scaled(ms)} ms; output: ${out}`))
    }, scaled(ms))
    child.once('close', (code, signal) => { // 'close', not 'exit': all of its output has been read
      clearTimeout(timer)
      resolve({ code, signal, out })
    })
  })
}

for (const mode of modes) test(`[${mode}] the process exits by itself after close()`, async (t) => {
  const script = `
    const { Watcher, OpType } = require(process.env.GAIO_INDEX)
    const net = require('node:net')
    const w = new Watcher({ mode: process.env.GAIO_MODE })
    const ln = w.listen({ host: '127.0.0.1', port: 0 })
    w.accept(null, ln)
    const client = net.connect(ln.port, '127.0.0.1', () => client.write('ping'))
    client.on('data', (d) => {
      console.log('echoed ' + d)
      client.destroy()
      w.read(null, conn) // still pending when close() runs
      w.close()
    })
    let conn
    ;(async () => {
      for await (const results of w) {
        for (const res of results) {
          if (res.operation === OpType.Accept) { conn = res.conn; w.read(null, conn) }
          else if (res.operation === OpType.Read && !res.error) w.write(null, res.conn, res.buffer)
        }
      }
      console.log('loop ended')
    })()
  `
  const { code, out } = await runChild(script, 5000, mode)
  t.is(code, 0, out)
  t.regex(out, /echoed ping/)
  t.regex(out, /loop ended/)
})

for (const mode of modes) test(`[${mode}] a watcher with nothing outstanding does not keep the process alive`, async (t) => {
  // Never closed: one with no requests ever, one whose requests all completed and were delivered.
  const script = `
    const { Watcher, OpType } = require(process.env.GAIO_INDEX)
    const idle = new Watcher({ mode: process.env.GAIO_MODE })
    const w = new Watcher({ mode: process.env.GAIO_MODE })
    const ln = w.listen({ host: '127.0.0.1', port: 0 })
    w.accept('a', ln)
    w.connect('c', { host: '127.0.0.1', port: ln.port })
    ;(async () => {
      let n = 0
      while (n < 2) n += (await w.waitIO()).length
      console.log('connected, nothing outstanding')
      globalThis.keep = [idle, w, ln]
    })()
  `
  const { code, out } = await runChild(script, 5000, mode)
  t.is(code, 0, out)
  t.regex(out, /connected, nothing outstanding/)
})

for (const mode of modes) test(`[${mode}] a pending waitIO() with a request outstanding keeps the process alive until it completes`, async (t) => {
  // The counterpart: a read in flight holds the process open until its data arrives 300 ms later.
  const script = `
    const { Watcher } = require(process.env.GAIO_INDEX)
    const net = require('node:net')
    // Nothing here holds the event loop: the server closes, its socket and timer are unreferenced.
    const server = net.createServer((s) => { s.unref(); server.close(); setTimeout(() => s.end('late'), 300).unref() })
    server.listen(0, '127.0.0.1', () => {
      const w = new Watcher({ mode: process.env.GAIO_MODE })
      w.connect('c', { host: '127.0.0.1', port: server.address().port })
      w.waitIO().then(([res]) => {
        w.read('r', res.conn)
        return w.waitIO()
      }).then(([res]) => console.log('read ' + Buffer.from(res.buffer)))
    })
  `
  const { code, out } = await runChild(script, 5000, mode)
  t.is(code, 0, out)
  t.regex(out, /read late/)
})

/** globalThis.gc: a scavenge moves young objects (where small typed arrays keep their bytes); a full collection compacts. */
function gc(type: 'minor' | 'major' = 'major'): void {
  const collect = (globalThis as { gc?: (options?: { type: string }) => void }).gc
  if (!collect) throw new Error('run node with --expose-gc')
  collect({ type })
}

test('tiny Uint8Array buffers stay correct for reads and writes under forced GC', async (t) => {
  t.is(typeof (globalThis as { gc?: unknown }).gc, 'function', 'ava runs node with --expose-gc')
  const w = new Watcher()
  t.teardown(() => w.close())
  const { client, server } = await gaioPair(w)
  let checked = 0
  let expectedChecks = 0
  for (let round = 0; round < 150; round++) {
    // A batch of three-byte reads and writes; only the requests hold the buffers.
    const n = 1 + (round % 8)
    expectedChecks += n
    const expected: number[][] = []
    for (let i = 0; i < n; i++) {
      const bytes = [round & 0xff, i, (round * 7 + i) & 0xff]
      expected.push(bytes)
      w.readFull({ i }, server, new Uint8Array(3))
      gc('minor')
      w.write(null, client, Uint8Array.from(bytes))
      gc('minor')
    }
    // Garbage so the young generation moves things around, then collections
    // while the requests are with the engine.
    for (let k = 0; k < 200; k++) new Uint8Array(3 + (k % 5))
    gc(round % 10 === 0 ? 'major' : 'minor')
    await new Promise((resolve) => setImmediate(resolve))
    gc('minor')
    const reads = (await collectUntil(w, (rs) => rs.filter((r) => r.operation === OpType.Read).length === n, 5000, 'tiny reads')).filter(
      (r) => r.operation === OpType.Read,
    )
    for (const res of reads) {
      t.is(res.error, null)
      t.is(res.size, 3)
      t.true(res.buffer instanceof Uint8Array && res.buffer.length === 3)
      t.deepEqual([...res.buffer!], expected[(res.context as { i: number }).i], `round ${round}`)
      checked++
    }
  }
  await collectGarbage(2)
  t.is(checked, expectedChecks)
})

test('tiny buffers as plain reads (not readFull) with a DataView and an odd offset, under GC', async (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  const { client, server } = await gaioPair(w)
  for (let round = 0; round < 100; round++) {
    const backing = new Uint8Array(7)
    const view = new DataView(backing.buffer, 3, 3) // bytes 3..5 of a small array
    w.read('r', server, view)
    gc('minor')
    w.write('w', client, new Uint8Array([round, 0xfe, round ^ 0x55]))
    gc(round % 10 === 0 ? 'major' : 'minor')
    let read: OpResult | undefined
    await collectUntil(
      w,
      (rs) => {
        for (const r of rs.splice(0)) if (r.operation === OpType.Read) read = r
        return read !== undefined
      },
      3000,
      'read',
    )
    // A plain read returns what is there: on loopback the three bytes arrive together.
    t.is(read!.error, null)
    t.is(read!.size, 3)
    t.true(isReadInto(read!, view), 'the result is a view of the memory given')
    t.deepEqual([...backing], [0, 0, 0, round, 0xfe, round ^ 0x55, 0], `round ${round}: only the view's bytes were written`)
  }
})
