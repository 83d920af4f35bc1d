// Faults from peers and the OS, and misuse under load: each test ends with
// every submitted request completed exactly once (with its error code), no
// descriptor left open, and the process still healthy. The tests count
// /proc/self/fd, so they run one at a time.
import test, { type ExecutionContext } from 'ava'
import { readdirSync, readFileSync } from 'node:fs'
import { createServer, connect as netConnect, Socket } from 'node:net'
import { Worker } from 'node:worker_threads'
import { Conn, GaioError, OpType, Watcher, type OpResult } from '../index'
import { collectUntil, gaioPair, indexJs, isReadInto, netServer, pattern, receiveBytes, receiveUntilEnd, REFUSED_PORT, scaled, sleep, spawnOutOfDescriptors, within } from './helpers'
import { drainClosed, fdsSettle, fdSummary, Ledger, openFds, Poller, rng } from './reliability'

const HOST = '127.0.0.1'
const MiB = 1 << 20
const MODES = ['thread', 'inline'] as const

/** A descriptor count to come back to, taken once Node has opened what it opens lazily. */
async function baseline(): Promise<number> {
  return fdsSettle(0, 0)
}

async function expectFdsBack(t: ExecutionContext, base: number, what: string): Promise<void> {
  const now = await fdsSettle(base, 5000)
  t.true(now <= base, `${what}: ${now} descriptors open, ${base} before (${fdSummary()})`)
}

/** How many gaio-poller threads this process has. */
function pollerThreads(): number {
  return readdirSync('/proc/self/task').filter((tid) => {
    try {
      return readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'gaio-poller'
    } catch {
      return false // exited meanwhile
    }
  }).length
}

async function connectTo(w: Watcher, port: number): Promise<Conn> {
  const context = {}
  w.connect(context, { host: HOST, port })
  const [res] = await collectUntil(w, (rs) => rs.some((r) => r.context === context), 5000, 'connect')
  if (res.error) throw res.error
  return res.conn as Conn
}

/**
 * Takes results into `ledger` until nothing it holds is outstanding. The
 * Poller is the test's one way of waiting, so no two waitIO() calls overlap.
 */
async function settleAll(p: Poller, ledger: Ledger, ms: number, what: string, onResult?: (res: OpResult) => void): Promise<void> {
  const until = Date.now() + scaled(ms)
  while (ledger.outstanding > 0) {
    const left = until - Date.now()
    const batch = left > 0 ? await p.next(left) : null
    if (batch === null) throw new Error(`${what}: ${ledger.outstanding} requests still pending after ${ms} ms`)
    for (const res of batch) {
      ledger.settle(res)
      onResult?.(res)
    }
  }
}

/** Results until `ms` pass without any. */
async function quiet(p: Poller, ms: number): Promise<OpResult[]> {
  const all: OpResult[] = []
  for (let batch; (batch = await p.next(ms)) !== null; ) all.push(...batch)
  return all
}

/** Node's server-side socket for the next connection to `sockets`' server. */
async function nthSocket(sockets: Socket[], n: number): Promise<Socket> {
  await within(3000, 'server-side socket', (async () => {
    while (sockets.length <= n) await sleep(5)
  })())
  return sockets[n]
}

// Warm-up: Node opens some descriptors lazily (the first server, the first worker...).
test.before(async () => {
  const w = new Watcher()
  const { client, server } = await gaioPair(w)
  w.write(null, client, Buffer.from('x'))
  w.read(null, server)
  await collectUntil(w, (rs) => rs.length >= 2, 3000, 'warm-up')
  w.close()
  const s = await netServer()
  const c = await new Promise<Socket>((resolve) => {
    const sock: Socket = netConnect(s.port, HOST, () => resolve(sock))
  })
  c.destroy()
  await s.close()
  const worker = new Worker('', { eval: true })
  await new Promise((resolve) => worker.once('exit', resolve))
})

for (const mode of MODES) {
  test.serial(`[${mode}] peer resets mid-write: the write in progress and every one queued behind it fail once; the pending read fails; nothing leaks`, async (t) => {
    t.timeout(scaled(20_000))
    const base = await baseline()
    const peer = await netServer() // never reads
    t.teardown(() => peer.close())
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    const conn = await connectTo(w, peer.port)
    const ledger = new Ledger<string>()
    const chunks = Array.from({ length: 8 }, (_, i) => pattern(i, 4 * MiB))
    chunks.forEach((chunk, i) => w.write(ledger.add(`write ${i}`), conn, chunk))
    w.read(ledger.add('read'), conn)
    // Let the socket buffers fill: some writes complete, the rest wait.
    const p = new Poller(w)
    const early = await quiet(p, 300)
    early.forEach((r) => ledger.settle(r))
    t.true(ledger.outstanding > 1, `${ledger.outstanding} requests still pending before the reset`)
    ;(await nthSocket(peer.sockets, 0)).resetAndDestroy()
    await settleAll(p, ledger, 5000, 'after the reset')
    t.deepEqual(ledger.problems, [])

    const writes = chunks.map((chunk, i) => ({ res: ledger.results.get(`write ${i}`)!, len: chunk.length }))
    const firstFailure = writes.findIndex((x) => x.res.error)
    t.true(firstFailure >= 0, 'a write failed')
    for (const [i, { res, len }] of writes.entries()) {
      t.is(res.operation, OpType.Write)
      t.is(res.conn, conn)
      if (i < firstFailure) {
        t.is(res.size, len, `write ${i} completed whole`)
      } else {
        t.true(['ECONNRESET', 'EPIPE'].includes(res.error?.code ?? 'none'), `write ${i}: ${res.error?.code ?? 'ok'} (writes complete in order: none succeeds after one failed)`)
        t.true(res.size >= 0 && res.size < len, `write ${i}: ${res.size} bytes`)
        if (i > firstFailure) t.is(res.size, 0, `write ${i} never started`)
      }
    }
    const read = ledger.results.get('read')!
    t.true(['ECONNRESET', 'EOF'].includes(read.error?.code ?? 'none'), `read: ${read.error?.code ?? 'ok'}`)
    t.is(read.size, 0)
    t.log(`writes: ${writes.map((x) => x.res.error?.code ?? 'ok').join(' ')}; read: ${read.error?.code}`)

    // Later requests on the reset connection fail at once, never hang.
    w.write(ledger.add('write after'), conn, Buffer.from('x'))
    w.read(ledger.add('read after'), conn)
    await settleAll(p, ledger, 3000, 'requests after the reset')
    for (const name of ['write after', 'read after']) {
      const code = ledger.results.get(name)!.error?.code
      t.true(['ECONNRESET', 'EPIPE', 'EOF'].includes(code ?? 'none'), `${name}: ${code ?? 'ok'}`)
    }
    w.free(conn)
    w.close()
    await peer.close()
    await expectFdsBack(t, base, 'after the reset')
  })

  test.serial(`[${mode}] peer resets mid-read: a readFull keeps the bytes that came before the reset; the reads behind it fail once`, async (t) => {
    t.timeout(scaled(20_000))
    const base = await baseline()
    const peer = await netServer()
    t.teardown(() => peer.close())
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    const conn = await connectTo(w, peer.port)
    const ledger = new Ledger<string>()
    const full = new Uint8Array(64 * 1024)
    const own = new Uint8Array(100)
    w.readFull(ledger.add('readFull'), conn, full)
    w.read(ledger.add('swap read'), conn)
    w.read(ledger.add('own read'), conn, own)
    w.readTimeout(ledger.add('read with deadline'), conn, null, Date.now() + 60_000)
    const p = new Poller(w)
    const socket = await nthSocket(peer.sockets, 0)
    const sent = pattern(7, 1000)
    await new Promise<void>((resolve) => socket.write(sent, () => resolve()))
    await sleep(50) // the readFull has the 1000 bytes and wants more
    t.is(ledger.outstanding, 4)
    socket.resetAndDestroy()
    await settleAll(p, ledger, 5000, 'after the reset')
    t.deepEqual(ledger.problems, [])

    const rf = ledger.results.get('readFull')!
    t.true(['ECONNRESET', 'EOF'].includes(rf.error?.code ?? 'none'), `readFull: ${rf.error?.code ?? 'ok'}`)
    t.true(rf.size <= sent.length, `readFull: ${rf.size} bytes`)
    t.true(isReadInto(rf, full))
    t.true(Buffer.from(full.subarray(0, rf.size)).equals(sent.subarray(0, rf.size)), 'the bytes before the reset are intact')
    t.log(`readFull: ${rf.error?.code} with ${rf.size} of ${sent.length} bytes`)
    for (const name of ['swap read', 'own read', 'read with deadline']) {
      const res = ledger.results.get(name)!
      t.true(['ECONNRESET', 'EOF'].includes(res.error?.code ?? 'none'), `${name}: ${res.error?.code ?? 'ok'}`)
      t.is(res.size, 0, name)
    }
    w.free(conn)
    w.close()
    await peer.close()
    await expectFdsBack(t, base, 'after the reset')
  })

  test.serial(`[${mode}] peer half-closes (FIN) while writes are pending: reads see EOF, the writes all complete, every byte arrives`, async (t) => {
    t.timeout(scaled(20_000))
    const base = await baseline()
    const sockets: Socket[] = []
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => sockets.push(s))
    t.teardown(() => {
      sockets.forEach((s) => s.destroy())
      server.close()
    })
    await new Promise<void>((resolve) => server.listen(0, HOST, resolve))
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    const conn = await connectTo(w, (server.address() as { port: number }).port)
    const peer = await nthSocket(sockets, 0)
    const ledger = new Ledger<string>()
    const chunks = Array.from({ length: 8 }, (_, i) => pattern(100 + i, MiB))
    chunks.forEach((chunk, i) => w.write(ledger.add(`write ${i}`), conn, chunk))
    w.read(ledger.add('read'), conn)
    await sleep(50)
    peer.end() // FIN before reading a byte
    const p = new Poller(w)
    while (!ledger.results.has('read')) {
      const batch = await p.next(5000)
      if (!batch) throw new Error('no EOF within 5 s')
      batch.forEach((r) => ledger.settle(r))
    }
    const read = ledger.results.get('read')!
    t.is(read.error?.code, 'EOF')
    t.true(ledger.outstanding > 0, 'writes were still pending at the FIN')
    // Half-closed is not closed: once the peer reads, every write completes.
    const received = receiveUntilEnd(peer)
    peer.resume()
    await settleAll(p, ledger, 10_000, 'writes after the FIN')
    w.write(ledger.add('write after EOF'), conn, Buffer.from('tail'))
    w.read(ledger.add('read after EOF'), conn)
    await settleAll(p, ledger, 3000, 'after EOF')
    t.deepEqual(ledger.problems, [])
    for (const [i, chunk] of chunks.entries()) {
      const res = ledger.results.get(`write ${i}`)!
      t.is(res.error, null, `write ${i}`)
      t.is(res.size, chunk.length)
    }
    t.is(ledger.results.get('write after EOF')!.error, null)
    t.is(ledger.results.get('read after EOF')!.error?.code, 'EOF', 'EOF stays')
    w.free(conn) // our FIN: the peer's stream ends
    const bytes = await within(10_000, 'the peer reads to the end', received)
    t.true(bytes.equals(Buffer.concat([...chunks, Buffer.from('tail')])), `the peer got ${bytes.length} bytes, intact and in order`)
    w.close()
    peer.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await expectFdsBack(t, base, 'after the half-close')
  })

  test.serial(`[${mode}] peer never reads: queued writeTimeouts all end with ERR_DEADLINE or whole; the peer gets exactly the bytes reported`, async (t) => {
    t.timeout(scaled(20_000))
    const base = await baseline()
    const peer = await netServer() // paused
    t.teardown(() => peer.close())
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    const conn = await connectTo(w, peer.port)
    const ledger = new Ledger<string>()
    const chunks = Array.from({ length: 8 }, (_, i) => pattern(200 + i, 2 * MiB))
    const p = new Poller(w)
    const started = Date.now()
    chunks.forEach((chunk, i) => w.writeTimeout(ledger.add(`write ${i}`), conn, chunk, started + 300 + 50 * i))
    const last = pattern(300, MiB)
    await settleAll(p, ledger, 5000, 'writeTimeouts')
    t.true(Date.now() - started >= 280, 'not before the first deadline')
    // One without a deadline waits for ever; free() ends it.
    w.write(ledger.add('no deadline'), conn, last)
    await sleep(100)
    t.is(ledger.outstanding, 1)
    w.free(conn)
    await settleAll(p, ledger, 3000, 'free')
    t.deepEqual(ledger.problems, [])
    let timedOut = false
    const expected: Buffer[] = []
    for (const [i, chunk] of chunks.entries()) {
      const res = ledger.results.get(`write ${i}`)!
      if (res.error) {
        timedOut = true
        t.is(res.error.code, 'ERR_DEADLINE', `write ${i}`)
        t.true(res.size < chunk.length)
      } else {
        t.false(timedOut, `write ${i} completed after an earlier one timed out, though the peer never read`)
        t.is(res.size, chunk.length)
      }
      expected.push(chunk.subarray(0, res.size))
    }
    t.true(timedOut, 'the peer that never reads made writes time out')
    const tail = ledger.results.get('no deadline')!
    t.is(tail.error?.code, 'ERR_CONN_CLOSED')
    expected.push(last.subarray(0, tail.size))
    // Now the peer reads everything the kernel holds for it: exactly what was reported.
    const socket = await nthSocket(peer.sockets, 0)
    const received = receiveUntilEnd(socket)
    socket.resume()
    const bytes = await within(10_000, 'the peer drains', received)
    const want = Buffer.concat(expected)
    t.is(bytes.length, want.length, 'bytes received = sum of the sizes reported')
    t.true(bytes.equals(want), 'and they are the reported prefixes, in order')
    t.log(`sizes: ${chunks.map((_, i) => ledger.results.get(`write ${i}`)!.size).join(', ')}, then ${tail.size}`)
    w.close()
    await peer.close()
    await expectFdsBack(t, base, 'after the timeouts')
  })

  test.serial(`[${mode}] connect refused, 1000 at once: each completes once with ECONNREFUSED; the failed sockets are closed without free()`, async (t) => {
    t.timeout(scaled(30_000))
    const base = await baseline()
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    const ledger = new Ledger<number>()
    for (let i = 0; i < 1000; i++) w.connect(ledger.add(i), { host: i % 2 ? HOST : 'localhost', port: REFUSED_PORT })
    const p = new Poller(w)
    const conns = new Set<unknown>()
    const codes = new Map<string, number>()
    await settleAll(p, ledger, 20_000, 'refused connects', (res) => {
      conns.add(res.conn)
      const code = res.error?.code ?? 'ok'
      codes.set(code, (codes.get(code) ?? 0) + 1)
    })
    t.deepEqual(ledger.problems, [])
    t.deepEqual([...codes], [['ECONNREFUSED', 1000]])
    t.is(conns.size, 1000, 'each result has a Conn of its own')
    // The watcher's own: its poll, the waker's eventfd, and the registry's duplicate of the poll.
    await expectFdsBack(t, base + 3, 'refused sockets (the watcher still open)')
    // A refused Conn is closed: requests on it complete with ERR_CONN_CLOSED.
    const refused = [...conns][0] as Conn
    w.read(ledger.add(-1), refused)
    w.write(ledger.add(-2), refused, Buffer.from('x'))
    await settleAll(p, ledger, 3000, 'requests on a refused Conn')
    t.is(ledger.results.get(-1)!.error?.code, 'ERR_CONN_CLOSED')
    t.is(ledger.results.get(-2)!.error?.code, 'ERR_CONN_CLOSED')
    w.close()
    await expectFdsBack(t, base, 'after close')
  })

  test.serial(`[${mode}] accept under descriptor exhaustion: a child with ulimit -n 256 gets EMFILE, frees descriptors, and serves every client`, async (t) => {
    t.timeout(scaled(30_000))
    const clients = 16
    const child = spawnOutOfDescriptors(mode, `
      const clients = Number(process.env.CLIENTS)
      let emfile = 0, accepted = 0, echoed = 0, completions = 0, outstanding = 4
      for (let i = 0; i < 4; i++) w.accept('accept', ln)
      console.log(JSON.stringify({ port: ln.port, fillers: fillers.length }))
      ;(async () => {
        for await (const results of w) {
          for (const res of results) {
            completions++
            if (res.operation === OpType.Accept) {
              if (res.error?.code === 'ERR_WATCHER_CLOSED') continue
              if (res.error) {
                if (res.error.code !== 'EMFILE' && res.error.code !== 'ENFILE') throw res.error
                emfile++
                // Recover: release descriptors, then try again.
                while (fillers.length) fs.closeSync(fillers.pop())
              } else {
                accepted++
                w.read('read', res.conn)
              }
              w.accept('accept', ln)
            } else if (res.operation === OpType.Read) {
              if (res.error) w.free(res.conn)
              else w.write('write', res.conn, res.buffer)
            } else if (res.operation === OpType.Write) {
              if (res.error?.code === 'ERR_WATCHER_CLOSED') continue
              if (res.error) throw res.error
              if (++echoed === clients) {
                console.log(JSON.stringify({ emfile, accepted, echoed }))
                w.close()
              } else w.read('read', res.conn)
            }
          }
        }
      })().catch((e) => { console.error(e); process.exit(3) })
    `, { CLIENTS: String(clients) })
    t.teardown(() => {
      child.kill('SIGKILL')
    })
    let out = ''
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve))
    const first = await within(10_000, 'the child listening', new Promise<{ port: number; fillers: number }>((resolve) => {
      child.stdout.on('data', (d) => {
        out += d
        const line = out.split('\n')[0]
        if (out.includes('\n')) resolve(JSON.parse(line))
      })
    })).catch((e) => {
      child.kill('SIGKILL')
      throw new Error(`${e.message}; stderr: ${err}`)
    })
    t.true(first.fillers > 100, `the child filled ${first.fillers} descriptors`)
    const sockets = await Promise.all(
      Array.from({ length: clients }, () => new Promise<Socket>((resolve, reject) => {
        const s: Socket = netConnect(first.port, HOST, () => resolve(s))
        s.once('error', reject)
      })),
    )
    const echoes = sockets.map((s, i) => {
      const msg = Buffer.from(`client ${i} `.padEnd(32, '.'))
      const back = receiveBytes(s, msg.length)
      s.write(msg)
      return back.then((b) => b.equals(msg))
    })
    try {
      t.deepEqual(await within(15_000, 'every client echoed', Promise.all(echoes)), Array(clients).fill(true))
      const code = await within(10_000, 'the child exits', exited)
      t.is(code, 0, `child stderr: ${err}`)
    } finally {
      sockets.forEach((s) => s.destroy())
      child.kill('SIGKILL')
    }
    const stats = JSON.parse(out.trim().split('\n')[1]) as { emfile: number; accepted: number; echoed: number }
    t.true(stats.emfile >= 1, 'an accept failed with EMFILE')
    t.is(stats.accepted, clients)
    t.is(stats.echoed, clients)
    t.log(`child: ${first.fillers} fillers, ${stats.emfile} EMFILE, ${stats.accepted} accepted`)
  })

  test.serial(`[${mode}] close() with 10,000 requests in flight: each completes exactly once, the rest with ERR_WATCHER_CLOSED; every descriptor closed`, async (t) => {
    t.timeout(scaled(30_000))
    const base = await baseline()
    const blocker = await netServer() // never reads: writes to it block
    t.teardown(() => blocker.close())
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    const ln = w.listen({ host: HOST, port: 0 })
    const idle = w.listen({ host: HOST, port: 0 }) // nobody connects: accepts wait
    const conns: Conn[] = []
    for (let i = 0; i < 8; i++) {
      const p = await gaioPair(w)
      conns.push(p.client, p.server)
      w.free(p.listener)
    }
    const blocked: Conn[] = []
    for (let i = 0; i < 4; i++) blocked.push(await connectTo(w, blocker.port))

    interface Ctx {
      i: number
      phase: 1 | 2 | 3
    }
    const ledger = new Ledger<Ctx>()
    const chunk = Buffer.alloc(64 * 1024, 1)
    const submit = (i: number, phase: 1 | 2 | 3) => {
      const ctx = ledger.add({ i, phase })
      const conn = conns[i % conns.length]
      switch (i % 8) {
        case 0: return w.read(ctx, conn)
        case 1: return w.read(ctx, conn, new Uint8Array(16))
        case 2: return w.readFull(ctx, conn, new Uint8Array(64), Date.now() + 60_000)
        case 3: return w.readTimeout(ctx, conn, null, Date.now() + 60_000)
        case 4: return w.write(ctx, blocked[i % blocked.length], chunk)
        case 5: return w.writeTimeout(ctx, blocked[i % blocked.length], chunk, Date.now() + 60_000)
        case 6: return w.accept(ctx, idle)
        case 7: return i % 16 === 7 ? w.connect(ctx, { host: HOST, port: ln.port }) : w.accept(ctx, idle)
      }
    }
    // Phase 1 reaches the engine; phase 2 is still queued in JS when close() runs.
    for (let i = 0; i < 6000; i++) submit(i, 1)
    const poller = new Poller(w)
    const early: OpResult[] = []
    for (let until = Date.now() + 300; Date.now() < until; ) early.push(...((await poller.next(until - Date.now())) ?? []))
    // Until a wait finds nothing: that waitIO() stays pending, and close() must settle it.
    for (let batch; (batch = await poller.next(50)) !== null; ) early.push(...batch)
    t.true(poller.waiting, 'a waitIO() is in progress when close() runs')
    for (let i = 6000; i < 10_000; i++) submit(i, 2)
    const fdsBefore = openFds()
    const closing = Date.now()
    w.close()
    const closeMs = Date.now() - closing
    for (let i = 10_000; i < 10_500; i++) submit(i, 3)
    t.is(t.throws(() => w.listen({ port: 0 }), { instanceOf: GaioError })?.code, 'ERR_WATCHER_CLOSED')

    const results = [...early]
    for (;;) {
      let batch: OpResult[] | null
      try {
        batch = await poller.next(5000)
      } catch (e) {
        t.is((e as GaioError).code, 'ERR_WATCHER_CLOSED')
        break
      }
      if (batch === null) throw new Error('waitIO() neither resolved nor rejected after close()')
      results.push(...batch)
    }
    for (const res of results) ledger.settle(res)
    t.deepEqual(ledger.problems.slice(0, 5), [])
    t.is(ledger.outstanding, 0, 'every request completed')
    const byOutcome = new Map<string, number>()
    for (const [ctx, res] of ledger.results) {
      const code = res.error?.code ?? 'ok'
      byOutcome.set(`${ctx.phase}:${code}`, (byOutcome.get(`${ctx.phase}:${code}`) ?? 0) + 1)
      if (ctx.phase > 1 && code !== 'ERR_WATCHER_CLOSED') t.fail(`request ${ctx.i} of phase ${ctx.phase}: ${code}`)
      // Before close, some writes fit in the socket buffers and the connects complete; nothing else can succeed.
      if (ctx.phase === 1 && code === 'ok' && ![4, 5, 7].includes(ctx.i % 8)) t.fail(`request ${ctx.i}: completed without cause`)
      if (ctx.phase === 1 && !['ok', 'ERR_WATCHER_CLOSED'].includes(code)) t.fail(`request ${ctx.i}: ${code}`)
    }
    t.is(ledger.results.size, 10_500)
    t.log(`close() took ${closeMs} ms with ${fdsBefore - base} descriptors open; outcomes: ${[...byOutcome].map(([k, n]) => `${k} ${n}`).join(', ')}`)
    t.true(closeMs < scaled(5000), `close() took ${closeMs} ms`)
    await blocker.close()
    await expectFdsBack(t, base, 'after close')
  })

  test.serial(`[${mode}] free() during in-flight writes on 24 connections: each write completes once; each peer gets exactly the bytes reported`, async (t) => {
    t.timeout(scaled(30_000))
    const base = await baseline()
    const seed = Number(process.env.GAIO_SEED ?? Math.floor(Math.random() * 2 ** 31))
    t.log(`seed ${seed} (GAIO_SEED reproduces the choices)`)
    const r = rng(seed)
    // The peer reads everything, half of the connections from the start and
    // half only once every free() is done (so that writes wait on them); the
    // first 4 bytes on each connection name it.
    const streams = new Map<number, Promise<Buffer>>()
    const later: Socket[] = []
    const server = createServer({ pauseOnConnect: true }, (s) => {
      const all = receiveUntilEnd(s)
      s.on('error', () => {})
      if (r.chance(0.5)) s.resume()
      else later.push(s)
      streams.set(streams.size, all)
      sockets.push(s)
    })
    const sockets: Socket[] = []
    t.teardown(() => {
      sockets.forEach((s) => s.destroy())
      server.close()
    })
    await new Promise<void>((resolve) => server.listen(0, HOST, resolve))
    const port = (server.address() as { port: number }).port
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    const n = 24
    // Up to 16 MiB per connection, more than the socket buffers hold: free() cuts writes in both modes.
    const pool = Array.from({ length: 8 }, (_, k) => pattern(1000 + k, 1 << 20))
    const conns: Conn[] = []
    for (let i = 0; i < n; i++) conns.push(await connectTo(w, port))
    // A connect completes at the handshake; Node accepts a little later. Every stream must be watched.
    await nthSocket(sockets, n - 1)
    interface Ctx {
      conn: number
      k: number
      tx: Buffer
      afterFree: boolean
    }
    const ledger = new Ledger<Ctx>()
    const sent: Ctx[][] = conns.map(() => [])
    const write = (i: number, tx: Buffer, afterFree = false) => {
      const ctx = ledger.add({ conn: i, k: sent[i].length, tx, afterFree })
      sent[i].push(ctx)
      w.write(ctx, conns[i], tx)
    }
    const frees: Promise<void>[] = []
    for (let i = 0; i < n; i++) {
      const header = Buffer.alloc(4)
      header.writeUInt32BE(i)
      write(i, header)
      const count = r.int(1, 16)
      for (let k = 0; k < count; k++) {
        const from = r.int(0, 1000)
        write(i, r.pick(pool).subarray(from, from + r.int(1, (1 << 20) - 1000)))
      }
      // Freed in the same tick as the writes (before they reach the engine), soon after, or a while later.
      const when = r.pick([0, 0, 1, 5, 20, 50])
      const free = () => {
        w.free(conns[i])
        if (r.chance(0.5)) write(i, Buffer.from('after free'), true)
      }
      if (when === 0) free()
      else frees.push(sleep(when).then(free))
    }
    const p = new Poller(w)
    await Promise.all(frees)
    later.forEach((s) => s.resume())
    await settleAll(p, ledger, 20_000, 'writes')
    await settleAll(p, ledger, 5000, 'writes after the last free()')
    t.deepEqual(ledger.problems, [])
    let whole = 0
    let cut = 0
    for (const [i, list] of sent.entries()) {
      let closed = false
      const expected: Buffer[] = []
      for (const ctx of list) {
        const res = ledger.results.get(ctx)!
        if (ctx.afterFree) {
          t.is(res.error?.code, 'ERR_CONN_CLOSED', 'a write after free()')
          t.is(res.size, 0)
          continue
        }
        if (res.error) {
          t.is(res.error.code, 'ERR_CONN_CLOSED', `connection ${i} write ${ctx.k}`)
          t.true(res.size < ctx.tx.length)
          if (closed) t.is(res.size, 0, `connection ${i} write ${ctx.k}: only the first cut write is partial`)
          closed = true
          cut++
        } else {
          t.false(closed, `connection ${i} write ${ctx.k} succeeded after an earlier one was cut`)
          t.is(res.size, ctx.tx.length)
          whole++
        }
        expected.push(ctx.tx.subarray(0, res.size))
      }
      ;(sent[i] as unknown as { expected: Buffer }).expected = Buffer.concat(expected)
    }
    // Each peer's stream: exactly the reported bytes, in order (a stream that lost its header got nothing at all).
    const got = await within(10_000, 'peers read to the end', Promise.all(streams.values()))
    const byConn = new Map<number, Buffer>()
    for (const bytes of got) if (bytes.length >= 4) byConn.set(bytes.readUInt32BE(0), bytes)
    for (const [i, list] of sent.entries()) {
      const expected = (list as unknown as { expected: Buffer }).expected
      const bytes = byConn.get(i) ?? Buffer.alloc(0)
      if (bytes.length !== expected.length) {
        const detail = list.map((ctx) => `${ctx.tx.length}:${ledger.results.get(ctx)!.error?.code ?? 'ok'}:${ledger.results.get(ctx)!.size}`).join(' ')
        t.log(`connection ${i}: writes ${detail}; streams: ${got.map((b) => `${b.length >= 4 ? b.readUInt32BE(0) : '-'}/${b.length}`).join(' ')}`)
      }
      t.is(bytes.length, expected.length, `connection ${i}: bytes received = sum of the sizes reported`)
      if (bytes.length === expected.length) t.true(bytes.equals(expected), `connection ${i}: the bytes are intact`)
    }
    t.log(`${whole} writes whole, ${cut} cut by free()`)
    w.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await expectFdsBack(t, base, 'after free and close')
  })
}

const workerScript = `
const { parentPort, workerData } = require('node:worker_threads')
const { Watcher } = require(workerData.index)
const w = new Watcher({ mode: workerData.mode })
const ln = w.listen({ host: '127.0.0.1', port: 0 })
const idle = w.listen({ host: '127.0.0.1', port: 0 })
const pairs = 100, blocked = 20
for (let i = 0; i < pairs; i++) { w.accept('a', ln); w.connect('c', { host: '127.0.0.1', port: ln.port }) }
for (let i = 0; i < 50; i++) w.accept('idle', idle)
for (let i = 0; i < blocked; i++) w.connect('blocked', { host: '127.0.0.1', port: workerData.port })
let conns = 0, requests = 0, told = false
;(async () => {
  for await (const results of w) {
    for (const res of results) {
      if (res.error) continue
      if (res.context === 'a' || res.context === 'c') {
        conns++
        for (let k = 0; k < 10; k++) { w.read(k, res.conn, k % 2 ? new Uint8Array(8) : null); requests++ }
        w.readFull('full', res.conn, new Uint8Array(1000)); requests++
      } else if (res.context === 'blocked') {
        conns++
        for (let k = 0; k < 8; k++) { w.write(k, res.conn, Buffer.alloc(1 << 20, k)); requests++ }
      }
    }
    if (conns === 2 * pairs + blocked && !told) {
      told = true
      setTimeout(() => parentPort.postMessage({ conns, requests }), 100)
    }
  }
})()
`

for (const mode of MODES) {
  test.serial(`[${mode}] a worker terminated with thousands of requests in flight: its descriptors close, its poller stops, the main thread carries on`, async (t) => {
    t.timeout(scaled(30_000))
    const base = await baseline()
    const pollersBefore = pollerThreads()
    const peer = await netServer() // never reads
    t.teardown(() => peer.close())
    const worker = new Worker(workerScript, { eval: true, workerData: { index: indexJs, port: peer.port, mode }, execArgv: [] })
    t.teardown(() => worker.terminate())
    const errors: Error[] = []
    worker.on('error', (e) => errors.push(e))
    const { conns, requests } = await within(15_000, 'the worker busy', new Promise<{ conns: number; requests: number }>((resolve) => worker.once('message', resolve)))
    const during = openFds()
    t.true(during - base >= conns, `${during - base} more descriptors with the worker's ${conns} connections`)
    t.is(pollerThreads(), pollersBefore + (mode === 'thread' ? 1 : 0), "the worker's poller thread runs")
    t.is(await within(5000, 'terminate', worker.terminate()), 1)
    t.deepEqual(errors, [])
    await peer.close()
    await expectFdsBack(t, base, 'after the worker ended')
    t.is(pollerThreads(), pollersBefore, 'no poller thread left')
    t.log(`${conns} connections, ${requests} requests in flight; ${during - base} descriptors released`)

    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    const { client, server } = await gaioPair(w)
    w.write('w', client, Buffer.from('alive'))
    w.readFull('r', server, new Uint8Array(5))
    const rs = await collectUntil(w, (x) => x.length >= 2, 3000, 'main thread echo')
    t.is(Buffer.from(rs.find((x) => x.context === 'r')!.buffer!).toString(), 'alive')
    w.close()
  })

  test.serial(`[${mode}] a delegated net.Socket used again: Node's copy is inert, another watcher refuses it, after free() and close() requests complete with errors`, async (t) => {
    t.timeout(scaled(20_000))
    const base = await baseline()
    const peers: Socket[] = []
    const server = createServer((s) => {
      peers.push(s)
      s.on('error', () => {})
    })
    t.teardown(() => {
      peers.forEach((s) => s.destroy())
      server.close()
    })
    await new Promise<void>((resolve) => server.listen(0, HOST, resolve))
    const port = (server.address() as { port: number }).port
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    const other = new Watcher({ mode })
    t.teardown(() => other.close())
    const ledger = new Ledger<string>()
    const socket = await new Promise<Socket>((resolve) => {
      const s: Socket = netConnect(port, HOST, () => {
        w.write(ledger.add('first'), s, Buffer.from('one'))
        resolve(s)
      })
    })
    const p = new Poller(w)
    const peer = await nthSocket(peers, 0)
    const events: string[] = []
    peer.on('end', () => events.push('end'))
    peer.on('close', () => events.push('close'))
    t.is(String(await receiveBytes(peer, 3)), 'one')
    t.true(socket.destroyed)

    // Everything Node offers on its (destroyed) copy is inert.
    t.notThrows(() => {
      socket.setNoDelay(false)
      socket.setKeepAlive(false)
      socket.setTimeout(5)
      socket.pause()
      socket.resume()
      socket.end()
      socket.destroy()
      socket.on('data', () => events.push('data on the old copy'))
    })
    socket.write('through node', () => {})
    // Another watcher cannot take it, and says whose it is.
    t.throws(() => other.read('x', socket), { instanceOf: TypeError, message: /belongs to another watcher/ })
    t.throws(() => other.write('x', socket, Buffer.from('x')), { instanceOf: TypeError, message: /belongs to another watcher/ })
    t.throws(() => other.free(socket), { instanceOf: TypeError, message: /belongs to another watcher/ })
    await sleep(50)

    // The watcher still owns the connection, both ways.
    peer.write('two')
    w.read(ledger.add('read'), socket)
    const echoed = receiveBytes(peer, 5)
    w.write(ledger.add('second'), socket, Buffer.from('three'))
    await settleAll(p, ledger, 3000, 'traffic after the misuse')
    t.is(String(await echoed), 'three')
    t.is(Buffer.from(ledger.results.get('read')!.buffer!).toString(), 'two')
    t.is(ledger.results.get('read')!.conn, socket)
    t.deepEqual(events, [], 'the peer saw nothing of what was done to the old copy')

    // After free(): requests on the socket complete with ERR_CONN_CLOSED, and it is not delegated again.
    w.free(socket)
    w.read(ledger.add('after free'), socket)
    w.write(ledger.add('write after free'), socket, Buffer.from('x'))
    await settleAll(p, ledger, 3000, 'after free')
    t.is(ledger.results.get('after free')!.error?.code, 'ERR_CONN_CLOSED')
    t.is(ledger.results.get('write after free')!.error?.code, 'ERR_CONN_CLOSED')
    await within(3000, 'the peer sees EOF', new Promise<void>((resolve) => (events.includes('end') ? resolve() : peer.once('end', () => resolve()))))
    w.close()
    w.read(ledger.add('after close'), socket)
    await drainClosed(p, (res) => ledger.settle(res))
    t.is(ledger.results.get('after close')!.error?.code, 'ERR_WATCHER_CLOSED')
    t.deepEqual(ledger.problems, [])
    t.is(ledger.outstanding, 0)
    t.false(events.includes('data on the old copy'))
    other.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    peers.forEach((s) => s.destroy())
    await expectFdsBack(t, base, 'after free and close')
  })
}
