// Lifetimes as users meet them, each in a fresh process: workers that end
// while holding a watcher (in a program whose main thread never loads gaio,
// as ava's own process would hide a crash), and watchers nobody holds any
// more, which must give back their thread and descriptors to the collector.
import test from 'ava'
import { spawn } from 'node:child_process'
import { indexJs, scaled } from './helpers'

const modes = ['thread', 'inline'] as const

/** Counting helpers, pasted into each child: threads, poller threads and descriptors of the child itself. */
const counters = `
  const fs = require('node:fs')
  const counts = () => {
    const tasks = fs.readdirSync('/proc/self/task')
    const pollers = tasks.filter((t) => { try { return fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim() === 'gaio-poller' } catch { return false } })
    return { threads: tasks.length, pollers: pollers.length, fds: fs.readdirSync('/proc/self/fd').length }
  }
  const same = (a, b) => a.threads === b.threads && a.pollers === b.pollers && a.fds === b.fds
  /** Polls until the counts are back to 'base' (threads end and descriptors close a moment after). */
  const settle = async (base, ms) => {
    const until = Date.now() + ms
    let now = counts()
    while (!same(now, base) && Date.now() < until) { await new Promise((r) => setTimeout(r, 20)); now = counts() }
    return now
  }
`

interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  out: string
}

function runChild(script: string, args: string[] = []): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args, '-e', counters + script], {
      env: { ...process.env, GAIO_INDEX: indexJs },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`the child did not finish within ${scaled(60_000)} ms; output: ${out}`))
    }, scaled(60_000))
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, out })
    })
  })
}

/** The child's last JSON line (stderr, a panic message say, may come after it). */
function report<T>(out: string): T {
  const line = out.split('\n').reverse().find((l) => l.startsWith('{'))
  if (line === undefined) throw new Error(`no JSON line in the child's output: ${out}`)
  return JSON.parse(line) as T
}

const endings = {
  // Returns from its script with nothing keeping its loop alive.
  natural: '',
  exit: 'process.exit(0)',
  // Keeps running until the main thread terminates it.
  terminate: "require('node:worker_threads').parentPort.postMessage('up'); setInterval(() => {}, 1000)",
} as const

for (const mode of modes) {
  for (const [ending, tail] of Object.entries(endings)) {
    test(`[${mode}] a worker holding a used watcher ends (${ending}) in a process whose main thread never loads gaio: no crash, its threads and descriptors are released`, async (t) => {
      const workerCode = `
        const { Watcher } = require(process.env.GAIO_INDEX)
        const w = new Watcher({ mode: ${JSON.stringify(mode)} })
        const ln = w.listen({ host: '127.0.0.1', port: 0 })
        w.accept('a', ln)
        w.connect('c', { host: '127.0.0.1', port: ln.port })
        // Until both have completed: with nothing outstanding, the watcher holds the loop no longer.
        ;(async () => { for (let n = 0; n < 2; ) n += (await w.waitIO()).length; ${tail} })()
      `
      const script = `
        const { Worker } = require('node:worker_threads')
        const run = (code) => new Promise((resolve, reject) => {
          const worker = new Worker(code, { eval: true })
          worker.on('message', () => worker.terminate())
          worker.on('error', reject)
          worker.on('exit', resolve)
        })
        ;(async () => {
          await run('1') // Node starts some threads with its first worker: count after it.
          const before = counts()
          const code = await run(${JSON.stringify(workerCode)})
          const after = await settle(before, ${scaled(5000)})
          if (require.cache[require.resolve(process.env.GAIO_INDEX)]) throw new Error('the main thread loaded gaio')
          console.log(JSON.stringify({ code, before, after }))
        })().catch((e) => { console.error(e); process.exit(2) })
      `
      const { code, signal, out } = await runChild(script)
      t.is(signal, null, `the process was killed by a signal; output: ${out}`)
      t.is(code, 0, out)
      const result = report<{ code: number; before: object; after: object }>(out)
      t.is(result.code, ending === 'terminate' ? 1 : 0, 'the worker exit code')
      t.deepEqual(result.after, result.before, 'threads, poller threads and descriptors are back to what they were')
    })
  }
}

test('forgotten watchers, used or not, in both modes, are collected: their poller threads stop and their descriptors close', async (t) => {
  const script = `
    const { Watcher, OpType } = require(process.env.GAIO_INDEX)
    const tick = () => new Promise((r) => setTimeout(r, 20))
    const collect = async (refs) => {
      // deref() keeps a live target until the end of the job: collect only in a later one.
      for (let i = 0; i < 50 && refs.some((r) => r.deref()); i++) {
        await tick()
        globalThis.gc()
        await tick()
      }
      return refs.map((r) => r.deref() === undefined)
    }
    /** A watcher that listened, connected and echoed a message, all of it delivered; then let go. */
    async function used(mode) {
      const w = new Watcher({ mode })
      const ln = w.listen({ host: '127.0.0.1', port: 0 })
      w.accept('accept', ln)
      w.connect('connect', { host: '127.0.0.1', port: ln.port })
      const conns = {}
      while (!conns.accept || !conns.connect) for (const r of await w.waitIO()) conns[r.context] = r.conn
      w.write('write', conns.connect, Buffer.from('ping'))
      w.read('read', conns.accept)
      let got = ''
      while (!got) for (const r of await w.waitIO()) if (r.operation === OpType.Read) got = Buffer.from(r.buffer).toString()
      if (got !== 'ping') throw new Error('echo failed: ' + got)
      return new WeakRef(w)
    }
    ;(async () => {
      // A first watcher of each mode loads what stays loaded (the addon, the libuv poll of the loop).
      for (const mode of ['thread', 'inline']) new Watcher({ mode }).close()
      const before = counts()
      const refs = []
      // Each made in a function of its own, so that no frame still running holds one.
      const idle = (mode) => new WeakRef(new Watcher({ mode }))
      for (const mode of ['thread', 'inline']) {
        refs.push(idle(mode))
        refs.push(await used(mode))
      }
      const during = counts()
      const collected = await collect(refs)
      const after = await settle(before, ${scaled(5000)})
      console.log(JSON.stringify({ collected, before, during, after }))
    })().catch((e) => { console.error(e); process.exit(2) })
  `
  const { code, signal, out } = await runChild(script, ['--expose-gc'])
  t.is(signal, null, out)
  t.is(code, 0, out)
  const result = report<{ collected: boolean[]; before: { pollers: number; fds: number }; during: { pollers: number; fds: number }; after: object }>(out)
  t.is(result.during.pollers, result.before.pollers + 2, 'the two threaded watchers ran poller threads')
  t.true(result.during.fds > result.before.fds, 'the watchers held descriptors')
  t.deepEqual(result.collected, [true, true, true, true], 'every watcher was collected')
  t.deepEqual(result.after, result.before, 'threads and descriptors are back to what they were')
})

for (const mode of modes) {
  test(`[${mode}] a watcher collected while a forgotten connection of its awaits cleanup leaves the process's finalizers working`, async (t) => {
    // V8 11 (Node 20) posts one cleanup task for every FinalizationRegistry of the process;
    // if a registry with cleanup due is collected before the task runs, no registry ever
    // calls back again. gaio's registries must outlive their watchers.
    const script = `
      const { Watcher } = require(process.env.GAIO_INDEX)
      const net = require('node:net')
      const tick = () => new Promise((r) => setTimeout(r, 20))
      /** A closed watcher and, dropped with the results, the Conn it accepted. */
      async function closedWithForgottenConn() {
        const w = new Watcher({ mode: ${JSON.stringify(mode)} })
        const ln = w.listen({ host: '127.0.0.1', port: 0 })
        w.accept('accept', ln)
        const peer = net.connect(ln.port, '127.0.0.1').on('error', () => {})
        while ((await w.waitIO()).length === 0) {}
        w.close()
        return { w, peer }
      }
      ;(async () => {
        let held = await closedWithForgottenConn()
        const { peer } = held
        const watcher = new WeakRef(held.w)
        await tick()
        // In one job: the Conn dies, so cleanup is due; then its watcher dies before it runs.
        globalThis.gc()
        held = null
        globalThis.gc()
        await tick()
        globalThis.gc()
        const collected = watcher.deref() === undefined
        let fired = 0
        const own = new FinalizationRegistry(() => fired++)
        for (let i = 0; i < 50 && fired === 0; i++) {
          ;(() => own.register({}, i))()
          await tick()
          globalThis.gc()
          await tick()
        }
        peer.destroy()
        console.log(JSON.stringify({ collected, fired }))
      })().catch((e) => { console.error(e); process.exit(2) })
    `
    const { code, signal, out } = await runChild(script, ['--expose-gc'])
    t.is(signal, null, out)
    t.is(code, 0, out)
    const result = report<{ collected: boolean; fired: number }>(out)
    t.true(result.collected, 'the watcher was collected (else this test shows nothing)')
    t.true(result.fired > 0, "the program's own FinalizationRegistry never called back")
  })
}

/**
 * A child script: a watcher in `mode` that has accepted a connection (`accepted`)
 * from a node:net `client`, then `body`, run in an async function (given `w`,
 * `ln`, `net`, `client` and `accepted`; a throw exits with status 2).
 */
function withAcceptedConn(mode: string, body: string): string {
  return `
    const { Watcher } = require(process.env.GAIO_INDEX)
    const net = require('node:net')
    const w = new Watcher({ mode: ${JSON.stringify(mode)} })
    const ln = w.listen({ host: '127.0.0.1', port: 0 })
    w.accept('accept', ln)
    const client = net.connect(ln.port, '127.0.0.1')
    ;(async () => {
      const [accepted] = await w.waitIO()
      ${body}
    })().catch((e) => { console.error(e); process.exit(2) })
  `
}

for (const mode of modes) {
  test(`[${mode}] a poller that panics fails the waiting waitIO() with ERR_INTERNAL_PANIC, no longer holds the process open, and close() after it does not throw`, async (t) => {
    // The read's completion and the panic race: a waitIO() may take the read
    // before the panic is recorded, so the read may come first, once. The held
    // accept never completes: only the failure can let the process end.
    const script = withAcceptedConn(mode, `
        w.accept('held', ln)
        w.read('pending', accepted.conn)
        w.nativeWatcher._panicPoller()
        client.end('x') // the read completes, and the poller panics telling JS so
        const outcomes = []
        while (outcomes.length < 3 && outcomes.at(-1) !== 'ERR_INTERNAL_PANIC') {
          outcomes.push(await w.waitIO().then((rs) => rs.map((r) => r.context).join(), (e) => e.code))
        }
        let closed = 'closed'
        try { w.close() } catch (e) { closed = e.code }
        console.log(JSON.stringify({ outcomes, closed }))
    `)
    const { code, signal, out } = await runChild(script)
    t.is(signal, null, out)
    t.is(code, 0, out)
    const { outcomes, closed } = report<{ outcomes: string[]; closed: string }>(out)
    t.true(
      ['ERR_INTERNAL_PANIC', 'pending,ERR_INTERNAL_PANIC'].includes(outcomes.join()),
      `outcomes: ${outcomes.join(' then ')}`,
    )
    t.is(closed, 'closed', 'close() after the failure does not throw')
  })
}

for (const mode of modes) {
  test(`[${mode}] after a poller panic nobody has heard of yet, a write goes to no other socket, and waitIO() after close() reports the panic`, async (t) => {
    // Until the facade takes, it still names the failed watcher's descriptors:
    // a number closed by then could be a new socket's (the lowest free one is
    // taken first), so the failed watcher's sockets are only shut down.
    const script = withAcceptedConn(mode, `
        w.read('pending', accepted.conn)
        w.nativeWatcher._panicPoller()
        const ended = new Promise((resolve) => client.once('end', resolve))
        client.write('x') // the read completes; the poller panics with no waitIO() to tell
        await ended
        client.destroy()
        const leaked = []
        const server = net.createServer((s) => s.on('data', (d) => leaked.push(String(d))))
        await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
        const others = await Promise.all([0, 1, 2, 3].map(() => new Promise((resolve) => {
          const c = net.connect(server.address().port, '127.0.0.1', () => resolve(c))
          c.on('data', (d) => leaked.push(String(d)))
        })))
        w.write('late', accepted.conn, Buffer.from('leak'))
        await new Promise((resolve) => setTimeout(resolve, 200))
        w.close()
        const outcomes = []
        for (let i = 0; i < 3; i++) {
          outcomes.push(await w.waitIO().then((rs) => rs.map((r) => r.context).join(), (e) => e.code))
        }
        for (const c of others) c.destroy()
        server.close()
        console.log(JSON.stringify({ leaked, outcomes }))
    `)
    const { code, signal, out } = await runChild(script)
    t.is(signal, null, out)
    t.is(code, 0, out)
    const { leaked, outcomes } = report<{ leaked: string[]; outcomes: string[] }>(out)
    t.deepEqual(leaked, [], 'the write reached no other socket')
    t.deepEqual(outcomes, ['late', 'ERR_INTERNAL_PANIC', 'ERR_WATCHER_CLOSED'], 'the write failed; then the panic, once; then closed')
  })
}

for (const mode of modes) {
  test(`[${mode}] a write whose buffer is detached before the flush completes with ERR_BUFFER_DETACHED and does not hold the process open`, async (t) => {
    const script = `
      const { Watcher } = require(process.env.GAIO_INDEX)
      const w = new Watcher({ mode: ${JSON.stringify(mode)} })
      const ln = w.listen({ host: '127.0.0.1', port: 0 })
      w.accept('accept', ln)
      w.connect('connect', { host: '127.0.0.1', port: ln.port })
      ;(async () => {
        let conn
        while (!conn) for (const r of await w.waitIO()) if (r.context === 'connect') conn = r.conn
        const bytes = new Uint8Array(16)
        w.write('detached', conn, bytes)
        structuredClone(bytes.buffer, { transfer: [bytes.buffer] }) // before the flush
        const [result] = await w.waitIO()
        console.log(JSON.stringify({ code: result.error && result.error.code }))
      })().catch((e) => { console.error(e); process.exit(2) })
    `
    const { code, signal, out } = await runChild(script)
    t.is(signal, null, out)
    t.is(code, 0, out)
    t.deepEqual(report(out), { code: 'ERR_BUFFER_DETACHED' })
  })
}

for (const mode of modes) {
  test(`[${mode}] silentWrites: writes that complete without a result do not hold the process open`, async (t) => {
    const script = `
      const { createServer } = require('node:net')
      const { Watcher } = require(process.env.GAIO_INDEX)
      const w = new Watcher({ mode: ${JSON.stringify(mode)}, silentWrites: true })
      const expected = 5 + (9 << 20)
      let received = 0
      const server = createServer((socket) => socket.on('data', (d) => {
        received += d.length
        if (received === expected) { socket.destroy(); server.close() }
      }))
      server.listen(0, '127.0.0.1', async () => {
        w.connect('connect', { host: '127.0.0.1', port: server.address().port })
        const [{ conn }] = await w.waitIO()
        w.write('small', conn, Buffer.from('head:'))
        w.write('big', conn, Buffer.alloc(9 << 20))
        // A waiting waitIO() moves the large write on, chunk by chunk; it gets no result.
        for (;;) results += (await w.waitIO()).length
      })
      let results = 0
      process.on('exit', () => console.log(JSON.stringify({ received, results })))
    `
    const { code, signal, out } = await runChild(script)
    t.is(signal, null, out)
    t.is(code, 0, out)
    t.deepEqual(report(out), { received: 5 + (9 << 20), results: 0 }, 'every byte arrived without a result, and then the process ended by itself')
  })
}
