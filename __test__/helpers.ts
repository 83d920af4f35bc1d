// Shared test helpers. Other spec files may add to this file: append only.
import { spawn } from 'node:child_process'
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { Watcher, Listener, Conn, OpType, GaioError, type OpResult, type WatcherOptions } from '../index'
import { loadAddon } from '../lib/loader'

/**
 * How much slower than a native machine the tests may run: every time limit
 * (the most a step may take, never the least) is multiplied by it. 1 by default;
 * scripts/test-arm.sh raises it for CPU emulation (GAIO_TEST_TIME_SCALE).
 */
export const TIME_SCALE = Number(process.env.GAIO_TEST_TIME_SCALE ?? 1)
if (!(TIME_SCALE >= 1)) throw new Error(`GAIO_TEST_TIME_SCALE must be a number >= 1, not ${process.env.GAIO_TEST_TIME_SCALE}`)

/** A time limit of `ms` on a native machine, scaled for this one. */
export const scaled = (ms: number) => ms * TIME_SCALE

/** Rejects if `promise` does not settle within `ms` (scaled). */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  return race(scaled(ms), what, promise)
}

function race<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * A port nothing listens on, for connects that must be refused: 1 (tcpmux), below the
 * ephemeral range. A port a closed listener freed is not enough: another test may be
 * given it to listen on, or a connect may take it as its own source port (a TCP
 * self-connect, which succeeds).
 */
export const REFUSED_PORT = 1

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export interface EchoOptions {
  /** Accept requests kept pending at once (default 64). */
  accepts?: number
  /** Read into a buffer of this size per connection instead of the swap buffer. */
  readBuffer?: number
}

export interface EchoStats {
  accepted: number
  /** Bytes echoed. */
  bytes: number
  /** Connections freed after EOF or an error. */
  freed: number
}

/**
 * A ping-pong echo server on `w` (which it drives: nothing else may call
 * w.waitIO()): accepts on `ln`, reads, writes back what it read, reads again.
 * Connections that fail or reach end of stream are freed. Resolves when the
 * watcher is closed; `stats` counts as it goes.
 */
export function echoServer(w: Watcher, ln: Listener, options: EchoOptions = {}, stats: EchoStats = { accepted: 0, bytes: 0, freed: 0 }): Promise<EchoStats> {
  const accepts = options.accepts ?? 64
  const buffers = new Map<Conn, Uint8Array>()
  const startRead = (conn: Conn) => {
    if (options.readBuffer === undefined) return w.read(null, conn)
    let buf = buffers.get(conn)
    if (!buf) buffers.set(conn, (buf = Buffer.alloc(options.readBuffer)))
    w.read(null, conn, buf)
  }
  const drop = (conn: Conn) => {
    buffers.delete(conn)
    w.free(conn)
    stats.freed++
  }
  let accepting = true
  for (let i = 0; i < accepts; i++) w.accept(null, ln)
  return (async () => {
    for (;;) {
      let results: OpResult[]
      try {
        results = await w.waitIO()
      } catch (e) {
        if (e instanceof GaioError && e.code === 'ERR_WATCHER_CLOSED') return stats
        throw e
      }
      handle(results)
    }
  })()

  function handle(results: OpResult[]) {
    for (const res of results) {
      const conn = res.conn as Conn
      if (res.error?.code === 'ERR_WATCHER_CLOSED') continue
      switch (res.operation) {
        case OpType.Accept:
          if (res.error) {
            // The listener was freed: stop accepting. Anything else (EMFILE): try again.
            if (res.error.code === 'ERR_CONN_CLOSED') accepting = false
            else if (accepting) w.accept(null, ln)
            continue
          }
          stats.accepted++
          startRead(conn)
          if (accepting) w.accept(null, ln)
          break
        case OpType.Read:
          if (res.error || res.size === 0) drop(conn)
          // The write copies the bytes when it is flushed, before the next waitIO().
          else w.write(null, conn, res.buffer!.subarray(0, res.size))
          break
        case OpType.Write:
          if (res.error) drop(conn)
          else {
            stats.bytes += res.size
            startRead(conn)
          }
          break
      }
    }
  }
}

/** A watcher running an echo server on 127.0.0.1; `stop()` closes it and waits for the loop. */
export function startEchoServer(watcherOptions: ConstructorParameters<typeof Watcher>[0] = {}, echo: EchoOptions = {}) {
  const w = new Watcher(withMode(watcherOptions))
  const ln = w.listen({ host: '127.0.0.1', port: 0 })
  const stats: EchoStats = { accepted: 0, bytes: 0, freed: 0 }
  const loop = echoServer(w, ln, echo, stats)
  return {
    watcher: w,
    listener: ln,
    port: ln.port,
    stats,
    loop,
    async stop() {
      w.close()
      await loop
    },
  }
}

/**
 * Calls `onResult` for each result of each batch until it returns true (the
 * rest of that batch is left unhandled) or `ms` pass. Swap-buffer views are
 * valid inside `onResult` only.
 */
export async function drive(w: Watcher, onResult: (res: OpResult) => boolean | void, ms = 10_000, what = 'drive'): Promise<void> {
  const until = Date.now() + scaled(ms)
  for (;;) {
    const left = until - Date.now()
    if (left <= 0) throw new Error(`${what}: not done within ${scaled(ms)} ms`)
    const results = await race(left, what, w.waitIO())
    for (const res of results) if (onResult(res) === true) return
  }
}

/**
 * Collects results until `predicate` holds for all collected so far, or `ms`
 * pass. Swap-buffer views in earlier batches are stale by the time this
 * returns: copy bytes inside the predicate if they matter.
 */
export async function collectUntil(w: Watcher, predicate: (results: OpResult[]) => boolean, ms = 10_000, what = 'collectUntil'): Promise<OpResult[]> {
  const collected: OpResult[] = []
  const until = Date.now() + scaled(ms)
  while (!predicate(collected)) {
    const left = until - Date.now()
    if (left <= 0) throw new Error(`${what}: condition not met within ${scaled(ms)} ms (${collected.length} results)`)
    collected.push(...(await race(left, what, w.waitIO())))
  }
  return collected
}

/** A connected node:net client. */
export function netClient(port: number, host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, host, () => {
      socket.off('error', reject)
      resolve(socket)
    })
    socket.once('error', reject)
  })
}

/** Collects exactly `n` bytes from a node:net socket (rejects at EOF before that). */
export function receiveBytes(socket: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let got = 0
    const cleanup = () => {
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('error', reject)
    }
    const onData = (d: Buffer) => {
      chunks.push(d)
      got += d.length
      if (got >= n) {
        cleanup()
        resolve(Buffer.concat(chunks))
      }
    }
    const onEnd = () => {
      cleanup()
      reject(new Error(`EOF after ${got} of ${n} bytes`))
    }
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('error', reject)
  })
}

/** Resolves with the bytes a node:net socket receives until the peer ends the stream. */
export function receiveUntilEnd(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    socket.on('data', (d: Buffer) => chunks.push(d))
    socket.once('end', () => resolve(Buffer.concat(chunks)))
    socket.once('error', reject)
  })
}

/** A node:net server on 127.0.0.1 that calls `onConnection` (default: hold the socket, paused, never reading). */
export async function netServer(onConnection?: (socket: Socket) => void): Promise<{ server: Server; port: number; sockets: Socket[]; close(): Promise<void> }> {
  const sockets: Socket[] = []
  const server = createServer({ pauseOnConnect: onConnection === undefined }, (socket) => {
    sockets.push(socket)
    socket.on('error', () => {})
    onConnection?.(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  return {
    server,
    port,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

/** A connected pair of gaio connections on one watcher, both ends in this process. */
export async function gaioPair(w: Watcher, ms = 5000): Promise<{ listener: Listener; client: Conn; server: Conn }> {
  const listener = w.listen({ host: '127.0.0.1', port: 0 })
  const acceptContext = {}
  const connectContext = {}
  w.accept(acceptContext, listener)
  w.connect(connectContext, { host: '127.0.0.1', port: listener.port })
  let client: Conn | undefined
  let server: Conn | undefined
  await drive(
    w,
    (res) => {
      if (res.error) throw res.error
      if (res.context === acceptContext) server = res.conn as Conn
      if (res.context === connectContext) client = res.conn as Conn
      return client !== undefined && server !== undefined
    },
    ms,
    'gaioPair',
  )
  return { listener, client: client!, server: server! }
}

/** Deterministic bytes for connection `seed`: distinct per connection, cheap to check. */
export function pattern(seed: number, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size)
  let x = (seed * 2654435761 + 12345) >>> 0
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    buf[i] = x >>> 24
  }
  return buf
}

/** Runs globalThis.gc() several times with turns of the event loop in between. */
export async function collectGarbage(rounds = 5): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (!gc) throw new Error('run node with --expose-gc')
  for (let i = 0; i < rounds; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
    await sleep(10)
  }
}

/** Each client sends `rounds` messages (sized by `size(client, round)`) and must get each back intact. */
export function echoOnAll(clients: Socket[], rounds: number, size: (client: number, round: number) => number, ms = 10_000): Promise<void> {
  const all = clients.map(async (c, i) => {
    for (let round = 0; round < rounds; round++) {
      const data = pattern(i * 10 + round, size(i, round))
      const echoed = receiveBytes(c, data.length)
      c.write(data)
      if (!(await echoed).equals(data)) throw new Error(`client ${i} round ${round}: echo differs`)
    }
  })
  return within(ms, 'echo on all clients', Promise.all(all).then(() => undefined))
}

let mode: 'thread' | 'inline' = 'thread'

/** Makes every watcher the shared tests create use `m` (a spec file per mode). */
export function useMode(m: 'thread' | 'inline'): void {
  mode = m
}

/** `options` with the driving mode of this test process, unless they name one. */
export function withMode(options: WatcherOptions = {}): WatcherOptions {
  return { mode, ...options }
}

/** Whether a read's result buffer is the `size` bytes it read, as a view of the memory the caller gave. */
export function isReadInto(result: OpResult, given: ArrayBufferView): boolean {
  const view = result.buffer
  return view !== null && view.buffer === given.buffer && view.byteOffset === given.byteOffset && view.byteLength === result.size
}

/** The built entry point, for child processes: they load gaio as a user does. */
export const indexJs = join(__dirname, '..', 'index.js')

/**
 * What `attempt` (statements given `native`, the addon, and `Watcher`) ends
 * with when the system cannot give the memory it asks for: the code of what it
 * threw, or 'allocated'. The child measures its address space after loading
 * gaio and making a small native watcher (/proc/self/status), and is then run
 * again limited to that plus 256 MiB (`ulimit -v`): less than the smallest
 * attempt (384 MiB), and room for an emulator's own heap, which the limit bounds
 * too (qemu-aarch64 aborted in GLib's allocator with 128 MiB). A 32-bit guest under an
 * emulator lives in address space the emulator reserved beforehand, which the
 * limit does not bound: there the child fills that space itself (elsewhere,
 * 512 MiB that it can allocate despite the limit says the limit failed).
 * `after` runs next, to show that the process still works.
 */
export async function outcomeWithoutMemory(attempt: string, after: string): Promise<{ outcome: string; signal: NodeJS.Signals | null; status: number | null; stderr: string }> {
  const script = `
    const native = require(process.env.GAIO_NATIVE)
    const { Watcher } = require(process.env.GAIO_INDEX)
    const h = native.createWatcher(() => {}, 1024, 4096, -1, true)
    h.records(6, 5)
    if (process.env.GAIO_MEASURE) {
      console.log(/VmPeak:\\s*(\\d+) kB/.exec(require('node:fs').readFileSync('/proc/self/status', 'utf8'))[1])
    } else {
      const ballast = []
      try { ballast.push(Buffer.allocUnsafeSlow(512 << 20)) } catch {}
      if (ballast.length && process.arch === 'arm') {
        try { for (;;) ballast.push(Buffer.allocUnsafeSlow(64 << 20)) } catch {}
      }
      let outcome = ballast.length && process.arch !== 'arm' ? 'the limit does not bind' : 'allocated'
      try { ${attempt} } catch (e) { outcome = e.code }
      ${after}
      h.close()
      console.log(outcome)
    }`
  // Not spawnSync: a child that takes long (an emulator's) would stall every other test of the file.
  const once = (limitKb: string, measure: boolean) =>
    new Promise<{ stdout: string; stderr: string; status: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', 'ulimit -v "$LIMIT" && exec "$NODE" -e "$SCRIPT"'], {
        env: { ...process.env, NODE: process.execPath, SCRIPT: script, LIMIT: limitKb, GAIO_NATIVE: loadAddon().path, GAIO_INDEX: indexJs, ...(measure ? { GAIO_MEASURE: '1' } : {}) },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: scaled(30_000),
        // An emulator (qemu-user) short of address space for itself can wedge where it
        // never delivers a SIGTERM to the program it runs (seen once in CI: 25 min at full CPU).
        killSignal: 'SIGKILL',
      })
      let stdout = ''
      let stderr = ''
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
      child.on('error', reject)
      child.on('close', (status, signal) => resolve({ stdout, stderr, status, signal }))
    })
  // Such a wedged emulator is the emulator's failure, not the program's: one more try.
  const run = async (limitKb: string, measure: boolean) => {
    const first = await once(limitKb, measure)
    return first.signal === 'SIGKILL' ? once(limitKb, measure) : first
  }
  const measured = await run('unlimited', true)
  if (measured.status !== 0) throw new Error(`measuring the address space failed: ${measured.stderr}`)
  const limited = await run(String(Number(measured.stdout.trim()) + 256 * 1024), false)
  return { outcome: limited.stdout.trim(), signal: limited.signal, status: limited.status, stderr: limited.stderr }
}

/**
 * Runs `body` in a child Node limited to 256 descriptors (`ulimit -n`), after a
 * prologue that gives it `Watcher`, `OpType`, `fs`, a watcher `w` in `mode`, a
 * listener `ln`, and `fillers`: descriptors opened until EMFILE, so that the
 * next accept fails. Extra environment for the body in `env`.
 */
export function spawnOutOfDescriptors(mode: 'thread' | 'inline', body: string, env: Record<string, string> = {}) {
  const script = `
    const { Watcher, OpType } = require(process.env.GAIO_INDEX)
    const fs = require('node:fs')
    const w = new Watcher({ mode: process.env.GAIO_MODE })
    const ln = w.listen({ host: '127.0.0.1', port: 0 })
    const fillers = []
    for (;;) {
      try { fillers.push(fs.openSync('/dev/null', 'r')) } catch (e) { if (e.code !== 'EMFILE') throw e; break }
    }
    ${body}`
  return spawn('/bin/sh', ['-c', 'ulimit -n 256 && exec "$NODE" -e "$SCRIPT"'], {
    env: { ...process.env, ...env, NODE: process.execPath, SCRIPT: script, GAIO_INDEX: indexJs, GAIO_MODE: mode },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}
