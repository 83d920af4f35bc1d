// gaio for Node.js: proactor-pattern TCP I/O, after Go's github.com/xtaci/gaio.
//
// You submit reads, writes, accepts and connects with a context value each;
// a native poller thread performs them on edge-triggered readiness and
// `waitIO()` hands back the completions in batches. This file is the facade:
// it validates calls, queues submissions and flushes them to the native side
// in one crossing per microtask, and turns the flat completion records the
// native side writes into result objects. See ARCHITECTURE.md.

import { existsSync } from 'node:fs'
import { isIP, Socket } from 'node:net'
import { lookup } from 'node:dns'
import { constants as osConstants } from 'node:os'
import { join } from 'node:path'

/** What a completed request was. */
export enum OpType {
  Read = 0,
  Write = 1,
  Accept = 2,
  Connect = 3,
}

/** An error carried by a result or thrown by a call; `code` names it. */
export class GaioError extends Error {
  readonly code: string
  readonly errno?: number
  constructor(code: string, message: string, errno?: number) {
    super(message)
    this.name = 'GaioError'
    this.code = code
    this.errno = errno
  }
}

/** @internal What the watcher knows of one connection or listener: the object itself, to keep one per connection. */
interface ConnState {
  readonly id: number
  readonly listener: boolean
  /** Which watcher made it: ids are per watcher, so another's would name one of ours. */
  readonly owner: number
  freed: boolean
}

/** A connection owned by a watcher: accepted, connected, or delegated. */
export class Conn implements ConnState {
  /** @internal */ readonly id: number
  /** @internal */ readonly owner: number
  /** @internal */ readonly listener = false
  /** @internal */ freed = false
  /** @internal */ constructor(id: number, owner: number) {
    this.id = id
    this.owner = owner
  }
}

/** A listening socket owned by a watcher. */
export class Listener implements ConnState {
  /** @internal */ readonly id: number
  /** @internal */ readonly owner: number
  /** @internal */ readonly listener = true
  /** @internal */ freed = false
  /** The bound TCP port (0 for a Unix socket). */
  readonly port: number
  /** The host it was bound to, or the Unix socket path. */
  readonly address: string
  /** @internal */ constructor(id: number, owner: number, port: number, address: string) {
    this.id = id
    this.owner = owner
    this.port = port
    this.address = address
  }
}

/** What requests take as a connection: a Conn, or a net.Socket to delegate on first use. */
export type ConnLike = Conn | Socket

export interface OpResult {
  operation: OpType
  /** The context value given with the request. */
  context: unknown
  /** The connection: for Accept and Connect, the new one. */
  conn: ConnLike
  /** Reads: the bytes, as a view of the swap buffer or the caller's buffer. Writes: the buffer written. */
  buffer: Uint8Array | null
  /** Bytes read or written (also when `error` is set, for a partial readFull or write). */
  size: number
  /** The bytes are in the watcher's swap buffer: valid until the next waitIO(). */
  isSwapBuffer: boolean
  error: GaioError | null
}

export interface WatcherOptions {
  /** The most bytes a read without a buffer returns (default 65536). */
  bufferSize?: number
  /** Size of each of the two swap arenas reads land in (default 1 MiB, at least bufferSize). */
  swapSize?: number
  /** Pin the poller thread to this CPU (Linux only; not with mode 'inline'). */
  cpu?: number
  /**
   * 'thread' (default): a poller thread of its own does the I/O, and batches
   * cross to JS; the I/O runs in parallel with JS. 'inline': no thread; Node's
   * event loop watches the watcher's poll descriptor and the I/O runs on the JS
   * thread, writes during the flush: no thread hop per message, the lower latency.
   */
  mode?: 'thread' | 'inline'
}

export interface ListenOptions {
  host?: string
  port?: number
  /** A Unix socket path instead of host and port. */
  path?: string
  backlog?: number
  reusePort?: boolean
}

export interface ConnectOptions {
  host?: string
  port?: number
  path?: string
}

export type Deadline = Date | number

// ---- the native side -------------------------------------------------------

interface Native {
  createWatcher(onReady: () => void, bufferSize: number, swapSize: number, cpu: number, inline: boolean): NativeWatcher
}

/** The native side of one watcher: methods bound to its state (src/lib.rs). */
interface NativeWatcher {
  /** Fresh record memory: [submission records, completion records], lengths in fields. */
  records(submitLen: number, takeLen: number): ArrayBuffer[]
  swapBuffers(): ArrayBuffer[]
  /** Reads `count` records from the submission memory. True when completions are already waiting (inline mode). */
  submit(count: number, extras: unknown[]): boolean
  /** Writes the completions into the completion memory; returns how many. */
  take(): number
  copyOwned(index: number, target: Uint8Array): void
  keepAlive(on: boolean): void
  close(): void
  listen(conn: number, host: string, port: number, path: string, backlog: number, reusePort: boolean): number
  adopt(conn: number, fd: number): number
}

function platformSuffix(): string {
  const { platform, arch } = process
  if (platform !== 'linux') return `${platform}-${arch}`
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined
  const libc = report?.header?.glibcVersionRuntime ? 'gnu' : 'musl'
  return arch === 'arm' ? `linux-arm-${libc}eabihf` : `linux-${arch}-${libc}`
}

function loadNative(): Native {
  const suffix = platformSuffix()
  const local = join(__dirname, `gaio.${suffix}.node`)
  return require(existsSync(local) ? local : `gaio-${suffix}`) as Native
}

const native = loadNative()

// Submission record: [kind, req, conn, arg, extra, deadline]. Completion record:
// [req, size, error, where, offset]. Both layouts are mirrored in src/lib.rs.
const SUBMIT_FIELDS = 6
const TAKE_FIELDS = 5
const enum Kind {
  Read = 0,
  ReadFull = 1,
  Write = 2,
  Accept = 3,
  Connect = 4,
  Free = 5,
}
const NO_DEADLINE = -1
const WHERE_NONE = -1
const WHERE_OWNED = 2

// Negative error numbers are the engine's own; positive ones are errno values.
const ENGINE_ERRORS: Record<number, [string, string]> = {
  [-1]: ['EOF', 'end of stream'],
  [-2]: ['ERR_DEADLINE', 'the deadline passed'],
  [-3]: ['ERR_CONN_CLOSED', 'the connection is closed'],
  [-4]: ['ERR_WATCHER_CLOSED', 'the watcher is closed'],
  [-5]: ['ERR_INVALID_OP', 'the operation does not apply to this kind of connection'],
  [-6]: ['ERR_EMPTY_BUFFER', 'empty buffer'],
}
const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, n]) => [n, name]))

function errorFromCode(code: number): GaioError {
  const known = ENGINE_ERRORS[code]
  if (known) return new GaioError(known[0], known[1])
  const name = ERRNO_NAMES.get(code) ?? `E${code}`
  return new GaioError(name, `${name} (errno ${code})`, code)
}

// ---- argument checks -------------------------------------------------------

function bytesOf(buf: unknown, what: string): Uint8Array {
  if (!ArrayBuffer.isView(buf)) throw new TypeError(`${what} must be a Buffer, TypedArray or DataView`)
  return buf instanceof Uint8Array ? buf : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
}

function nonEmpty(bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.byteLength === 0) throw new GaioError('ERR_EMPTY_BUFFER', `${what} is empty (or its ArrayBuffer is detached)`)
  return bytes
}

/** The most bytes one request moves: lengths and sizes cross to the engine as 32-bit integers. */
const MAX_TRANSFER = 0x7fffffff

function transferable(bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.byteLength > MAX_TRANSFER) throw new RangeError(`${what} holds ${bytes.byteLength} bytes; one request moves at most ${MAX_TRANSFER}: split it`)
  return bytes
}

const MAX_DELAY = 0x7fffffff

/** Milliseconds from now until the deadline, clamped to what the engine takes. */
function delayUntil(deadline: unknown): number {
  const at = deadline instanceof Date ? deadline.getTime() : deadline
  if (typeof at !== 'number') throw new TypeError('deadline must be a Date or epoch milliseconds')
  if (Number.isNaN(at)) throw new RangeError('deadline is not a valid time')
  return Math.min(MAX_DELAY, Math.max(0, Math.ceil(at - Date.now())))
}

function integerIn(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number') throw new TypeError(`${what} must be a number`)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${what} must be an integer from ${min} to ${max}`)
  }
  return value
}

// ---- ids -------------------------------------------------------------------

// A connection id is a slot in the engine's table plus a generation, so a
// stale id never reaches a newer connection in the same slot.
const SLOT_BITS = 20
const SLOTS = 1 << SLOT_BITS
const GENERATIONS = 1 << (32 - SLOT_BITS)

class ConnIds {
  private free: number[] = []
  private generations: number[] = []

  allocate(): number {
    const slot = this.free.pop() ?? this.generations.length
    if (slot >= SLOTS) throw new RangeError(`a watcher holds at most ${SLOTS} connections`)
    if (slot === this.generations.length) this.generations.push(0)
    return (this.generations[slot] * SLOTS + slot) | 0
  }

  release(id: number): void {
    const slot = id & (SLOTS - 1)
    this.generations[slot] = (this.generations[slot] + 1) % GENERATIONS
    this.free.push(slot)
  }
}

/** One request until it completes. A class, so every request has one shape (and a small one). */
class Request {
  constructor(
    readonly kind: Kind,
    readonly context: unknown,
    /** What the caller passed as the connection (a Conn, Listener or net.Socket), handed back. */
    readonly conn: ConnLike | Listener | null,
    /** The connection it acts on; for Free, the one to close. */
    readonly state: ConnState,
    /** The caller's buffer: filled by reads, sent by writes; null for swap reads. */
    readonly buffer: Uint8Array | null,
    /** What the caller passed, handed back in the result. */
    readonly given: Uint8Array | null,
    readonly arg: number,
    readonly delay: number,
    /** Accept and connect: the new connection. */
    readonly created: Conn | null = null,
    /** Connect: where to. */
    readonly address: string | null = null,
  ) {}
}

/** Each watcher's mark on the connections it makes. */
let watchers = 0

// Watchers with a waitIO() in progress: like a goroutine blocked in WaitIO,
// waiting keeps the watcher alive even if nothing else refers to it.
const waiting = new Set<Watcher>()

const closeForgottenWatcher = new FinalizationRegistry<NativeWatcher>((handle) => handle.close())

/**
 * One poller thread with the connections given to it. Submit requests with a
 * context value each; `waitIO()` resolves with the completions, in batches.
 */
export class Watcher implements AsyncIterable<OpResult[]> {
  private readonly handle: NativeWatcher
  private readonly bufferSize: number
  private readonly swap: Uint8Array[]
  private readonly ids = new ConnIds()
  private readonly sockets = new WeakMap<Socket, Conn>()
  private readonly token = ++watchers
  private readonly requests: (Request | undefined)[] = []
  private readonly freeRequestSlots: number[] = []
  private queue: number[] = []
  private flushScheduled = false
  /** Views of record memory the native side owns and reads or writes in place. */
  private submitRecords!: Int32Array
  private takeRecords!: Int32Array
  /** Requests handed to the engine and not yet taken back. */
  private inEngine = 0
  /** Requests not yet delivered by waitIO(): while there are any, the process stays alive. */
  private outstanding = 0
  private local: OpResult[] = []
  private waiter: { resolve: (r: OpResult[]) => void; reject: (e: Error) => void } | null = null
  private closed = false
  private readonly forgottenConns: FinalizationRegistry<number>

  constructor(options: WatcherOptions = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object')
    const bufferSize = integerIn(options.bufferSize ?? 65536, 1, 1 << 30, 'bufferSize')
    const swapSize = integerIn(options.swapSize ?? Math.max(1 << 20, bufferSize), bufferSize, 1 << 30, 'swapSize')
    const cpu = options.cpu === undefined ? -1 : integerIn(options.cpu, 0, 1 << 16, 'cpu')
    const mode = options.mode ?? 'thread'
    if (mode !== 'thread' && mode !== 'inline') throw new TypeError("mode must be 'thread' or 'inline'")
    if (mode === 'inline' && cpu >= 0) throw new TypeError('cpu pins the poller thread; an inline watcher has none')
    this.bufferSize = bufferSize
    // The native side holds this callback; it must not hold the watcher, or a
    // forgotten watcher could never be collected.
    const self = new WeakRef(this)
    this.handle = native.createWatcher(() => self.deref()?.onReady(), bufferSize, swapSize, cpu, mode === 'inline')
    this.swap = this.handle.swapBuffers().map((b) => new Uint8Array(b))
    this.resizeRecords(64 * SUBMIT_FIELDS, 64 * TAKE_FIELDS)
    closeForgottenWatcher.register(this, this.handle, this)
    this.forgottenConns = new FinalizationRegistry((id) => this.release(id))
  }

  // ---- connections ----

  /** Listens on a TCP address (port 0 picks one) or a Unix socket path. */
  listen(options: ListenOptions): Listener {
    if (this.closed) throw new GaioError('ERR_WATCHER_CLOSED', 'the watcher is closed')
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object')
    const backlog = integerIn(options.backlog ?? 4096, 1, MAX_DELAY, 'backlog')
    const reusePort = Boolean(options.reusePort)
    let host = ''
    let port = 0
    let path = ''
    if (options.path !== undefined) {
      if (typeof options.path !== 'string' || options.path === '') throw new TypeError('path must be a non-empty string')
      path = options.path
    } else {
      host = options.host === undefined || options.host === 'localhost' ? '127.0.0.1' : options.host
      if (typeof host !== 'string' || !isIP(host)) throw new TypeError('host must be an IP address or "localhost"')
      port = integerIn(options.port ?? 0, 0, 65535, 'port')
    }
    this.flush()
    const id = this.ids.allocate()
    const bound = this.handle.listen(id, host, port, path, backlog, reusePort)
    if (bound < 0) {
      this.ids.release(id)
      throw errorFromCode(-bound)
    }
    const listener = new Listener(id, this.token, bound, path || host)
    this.track(listener)
    return listener
  }

  /** Accepts one connection on `listener`; completes as OpType.Accept with the new Conn. */
  accept(context: unknown, listener: Listener): void {
    if (!(listener instanceof Listener)) throw new TypeError('listener must be a Listener')
    this.own(listener)
    this.push(new Request(Kind.Accept, context, listener, listener, null, null, 0, NO_DEADLINE, this.newConn()))
  }

  /** Connects to a TCP address or Unix socket path; completes as OpType.Connect with the new Conn. */
  connect(context: unknown, options: ConnectOptions): void {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object')
    if (options.path !== undefined) {
      if (typeof options.path !== 'string' || options.path === '') throw new TypeError('path must be a non-empty string')
      return this.enqueueConnect(context, `unix:${options.path}`, -1)
    }
    const host = options.host === undefined || options.host === 'localhost' ? '127.0.0.1' : options.host
    if (typeof host !== 'string') throw new TypeError('host must be a string')
    const port = integerIn(options.port, 1, 65535, 'port')
    if (isIP(host) || this.closed) return this.enqueueConnect(context, host, port)
    // Names resolve first; the request counts as outstanding meanwhile.
    this.retain(1)
    lookup(host, (err, address) => {
      this.retain(-1)
      if (err && !this.closed) {
        const failed = new GaioError(err.code ?? 'ENOTFOUND', err.message)
        return this.deliverLocal({ operation: OpType.Connect, context, conn: this.deadConn(), buffer: null, size: 0, isSwapBuffer: false, error: failed })
      }
      this.enqueueConnect(context, address, port)
    })
  }

  /** Closes a connection or listener now; what was pending on it completes with ERR_CONN_CLOSED. Idempotent. */
  free(conn: ConnLike | Listener): void {
    const state = conn instanceof Listener ? this.own(conn) : this.stateOf(conn as ConnLike, false)
    if (state === undefined || state.freed || this.closed) return
    this.queueFree(state)
    this.flush()
  }

  // ---- reads and writes ----

  /** Reads at least one byte into `buffer`, or into the swap buffer when none is given. */
  read(context: unknown, conn: ConnLike, buffer?: ArrayBufferView | null): void {
    this.submitRead(Kind.Read, context, conn, buffer, NO_DEADLINE)
  }

  /** read() that fails with ERR_DEADLINE if nothing arrives by `deadline`. */
  readTimeout(context: unknown, conn: ConnLike, buffer: ArrayBufferView | null | undefined, deadline: Deadline): void {
    this.submitRead(Kind.Read, context, conn, buffer, delayUntil(deadline))
  }

  /** Reads until `buffer` is full (or end of stream, error, or the deadline). */
  readFull(context: unknown, conn: ConnLike, buffer: ArrayBufferView, deadline?: Deadline): void {
    if (buffer === null || buffer === undefined) throw new TypeError('readFull needs a buffer')
    this.submitRead(Kind.ReadFull, context, conn, buffer, deadline === undefined ? NO_DEADLINE : delayUntil(deadline))
  }

  /** Writes every byte of `buffer`. The bytes are copied when the request is flushed (same tick). */
  write(context: unknown, conn: ConnLike, buffer: ArrayBufferView): void {
    this.submitWrite(context, conn, buffer, NO_DEADLINE)
  }

  /** write() that fails with ERR_DEADLINE if not every byte is written by `deadline`. */
  writeTimeout(context: unknown, conn: ConnLike, buffer: ArrayBufferView, deadline: Deadline): void {
    this.submitWrite(context, conn, buffer, delayUntil(deadline))
  }

  // ---- results ----

  /**
   * Resolves with the next non-empty batch of results. Swap-buffer views in
   * the previous batch are released when this is called. After close() it
   * resolves with what is left to deliver (what close() cancelled, and requests
   * made since, each with ERR_WATCHER_CLOSED), and rejects with
   * ERR_WATCHER_CLOSED once nothing is: that ends a `for await` loop.
   */
  waitIO(): Promise<OpResult[]> {
    if (this.waiter) return Promise.reject(new GaioError('ERR_WAIT_PENDING', 'waitIO() is already waiting'))
    if (this.closed) {
      const left = this.takeLocal()
      if (left.length) return Promise.resolve(left)
      return Promise.reject(new GaioError('ERR_WATCHER_CLOSED', 'the watcher is closed'))
    }
    try {
      this.flush()
      const results = this.collect()
      if (results.length) return Promise.resolve(results)
    } catch (e) {
      return Promise.reject(e)
    }
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject }
      waiting.add(this)
    })
  }

  [Symbol.asyncIterator](): AsyncIterator<OpResult[]> {
    return {
      next: () =>
        this.waitIO().then(
          (value) => ({ value, done: false }),
          (e: GaioError) => {
            if (e.code === 'ERR_WATCHER_CLOSED') return { value: undefined, done: true }
            throw e
          },
        ),
    }
  }

  /**
   * Closes every connection and stops the poller. Requests still pending
   * complete with ERR_WATCHER_CLOSED: a waitIO() in progress resolves with
   * them, or else the next call does. Idempotent.
   */
  close(): void {
    if (this.closed) return
    this.flush()
    this.closed = true
    this.handle.close()
    closeForgottenWatcher.unregister(this)
    // collect() takes this.local itself (and replaces it): keep what it returns.
    this.local = this.collect()
    this.outstanding = 0
    this.settleWaiter()
  }

  // ---- internals ----

  private newConn(): Conn {
    return new Conn(this.ids.allocate(), this.token)
  }

  /** The connection of a connect that failed before it had one. */
  private deadConn(): Conn {
    const conn = new Conn(-1, this.token)
    conn.freed = true
    return conn
  }

  private own<T extends ConnState>(state: T): T {
    if (state.owner !== this.token) throw new TypeError('the connection belongs to another watcher')
    return state
  }

  /** A forgotten connection (`owner`: what the caller holds) is freed by the collector. */
  private track(state: ConnState, owner: object = state): void {
    this.forgottenConns.register(owner, state.id, state)
  }

  private release(id: number): void {
    if (this.closed) return
    this.queueFreeOf(id)
    this.scheduleFlush()
  }

  /** The state of a connection argument; a net.Socket is delegated on first use. */
  private stateOf(conn: ConnLike, delegate: boolean): ConnState | undefined {
    if (conn instanceof Conn) return this.own(conn)
    if ((conn as unknown) instanceof Listener) throw new TypeError('reads and writes need a connection, not a listener')
    if (!(conn instanceof Socket)) throw new TypeError('conn must be a Conn or a net.Socket')
    const known = this.sockets.get(conn)
    if (known || !delegate) return known
    return this.delegate(conn)
  }

  private delegate(socket: Socket): Conn {
    const handle = (socket as unknown as { _handle?: { fd?: number; readStop?: () => void } })._handle
    const fd = handle?.fd
    if (typeof fd !== 'number' || fd < 0) throw new TypeError('the net.Socket is not connected (no file descriptor)')
    if (socket.readableLength > 0) {
      throw new GaioError('ERR_SOCKET_HAS_DATA', 'the net.Socket has already read data: delegate it before reading (for example in its connect callback, or with pauseOnConnect)')
    }
    // Destroying Node's copy would drop what it has not written yet.
    if (socket.writableLength > 0) {
      throw new GaioError('ERR_SOCKET_HAS_DATA', 'the net.Socket still has bytes queued for writing: delegate it once they are written (its write callback, or the drain event)')
    }
    this.flush()
    const state = this.newConn()
    const adopted = this.handle.adopt(state.id, fd)
    if (adopted < 0) {
      this.ids.release(state.id)
      throw errorFromCode(-adopted)
    }
    handle!.readStop?.()
    // The watcher owns a duplicate now; closing Node's copy sends nothing to the peer.
    socket.destroy()
    this.sockets.set(socket, state)
    this.track(state, socket)
    return state
  }

  private submitRead(kind: Kind, context: unknown, conn: ConnLike, buffer: ArrayBufferView | null | undefined, delay: number): void {
    const bytes = buffer === null || buffer === undefined ? null : nonEmpty(bytesOf(buffer, 'buffer'), 'buffer')
    const given = buffer === null || buffer === undefined ? null : (buffer as Uint8Array)
    if (bytes && kind === Kind.ReadFull) transferable(bytes, 'buffer')
    // A read returns at most what it asks for: asking for less of a huge buffer changes nothing else.
    this.enqueueOn(kind, context, conn, bytes, given, bytes ? Math.min(bytes.byteLength, MAX_TRANSFER) : this.bufferSize, delay)
  }

  private submitWrite(context: unknown, conn: ConnLike, buffer: ArrayBufferView, delay: number): void {
    const bytes = transferable(nonEmpty(bytesOf(buffer, 'buffer'), 'buffer'), 'buffer')
    this.enqueueOn(Kind.Write, context, conn, bytes, buffer as Uint8Array, bytes.byteLength, delay)
  }

  private enqueueOn(kind: Kind, context: unknown, conn: ConnLike, bytes: Uint8Array | null, given: Uint8Array | null, arg: number, delay: number): void {
    if (this.closed) {
      // Checked, but not delegated: a closed watcher leaves a net.Socket alone.
      this.stateOf(conn, false)
      return this.deliverLocal(this.resultOf(new Request(kind, context, conn, this.deadConn(), null, given, 0, NO_DEADLINE), 0, errorFromCode(-4)))
    }
    const state = this.stateOf(conn, true)!
    if (state.listener) throw new TypeError('reads and writes need a connection, not a listener')
    this.push(new Request(kind, context, conn, state, bytes, given, arg, delay))
  }

  private enqueueConnect(context: unknown, address: string, port: number): void {
    const created = this.newConn()
    this.track(created)
    this.push(new Request(Kind.Connect, context, created, created, null, null, port, NO_DEADLINE, created, address))
  }

  private push(request: Request): void {
    if (this.closed || request.state.freed) {
      return this.deliverLocal(this.resultOf(request, 0, errorFromCode(this.closed ? -4 : -3)))
    }
    this.queue.push(this.newRequest(request))
    this.retain(1)
    this.scheduleFlush()
  }

  private newRequest(request: Request): number {
    const slot = this.freeRequestSlots.pop() ?? this.requests.length
    this.requests[slot] = request
    return slot
  }

  private queueFree(state: ConnState): void {
    state.freed = true
    this.forgottenConns.unregister(state)
    this.queueFreeOf(state.id)
  }

  private queueFreeOf(id: number): void {
    this.queue.push(this.newRequest(new Request(Kind.Free, null, null, this.deadConn(), null, null, id, NO_DEADLINE)))
    this.ids.release(id)
  }

  /** Counts requests not yet delivered; the first keeps the process alive, the last lets it go. */
  private retain(delta: number): void {
    const before = this.outstanding
    this.outstanding += delta
    if (this.closed) return
    if (before === 0 && this.outstanding > 0) this.handle.keepAlive(true)
    else if (before > 0 && this.outstanding === 0) this.handle.keepAlive(false)
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    queueMicrotask(() => this.flush())
  }

  /** Hands every queued request to the engine in one call. */
  private flush(): void {
    this.flushScheduled = false
    const queue = this.queue
    if (queue.length === 0 || this.closed) return
    this.queue = []
    if (this.submitRecords.length < queue.length * SUBMIT_FIELDS) {
      this.resizeRecords(2 * queue.length * SUBMIT_FIELDS, this.takeRecords.length)
    }
    const records = this.submitRecords
    const extras: unknown[] = []
    let count = 0
    for (const slot of queue) {
      const request = this.requests[slot]!
      let conn = request.kind === Kind.Free ? request.arg : request.state.id
      let arg = request.arg
      let extra = -1
      if (request.kind === Kind.Write) {
        // The caller may have detached or shrunk the buffer since the call.
        if (request.buffer!.byteLength !== request.arg) {
          this.finish(slot)
          this.deliverLocal(this.resultOf(request, 0, new GaioError('ERR_BUFFER_DETACHED', 'the buffer was detached before it was sent')))
          continue
        }
        extra = extras.push(request.buffer) - 1
      } else if (request.kind === Kind.Accept) {
        conn = request.created!.id
        arg = request.state.id
      } else if (request.kind === Kind.Connect) {
        extra = extras.push(request.address!) - 1
      }
      const at = count * SUBMIT_FIELDS
      records[at] = request.kind
      records[at + 1] = slot
      records[at + 2] = conn
      records[at + 3] = arg
      records[at + 4] = extra
      records[at + 5] = request.delay
      count++
      if (request.kind === Kind.Free) this.finish(slot)
      else this.inEngine++
    }
    // Inline, the writes went out during the call and completions may be waiting already.
    if (this.handle.submit(count, extras)) this.onReady()
  }

  private resizeRecords(submitLen: number, takeLen: number): void {
    const [submit, take] = this.handle.records(submitLen, takeLen)
    this.submitRecords = new Int32Array(submit)
    this.takeRecords = new Int32Array(take)
  }

  private finish(slot: number): Request {
    const request = this.requests[slot]!
    this.requests[slot] = undefined
    this.freeRequestSlots.push(slot)
    return request
  }

  private onReady(): void {
    if (!this.waiter) return
    if (this.closed) return this.settleWaiter()
    let results: OpResult[]
    try {
      results = this.collect()
    } catch (e) {
      // Only an engine failure gets here; the waiter hears of it.
      const waiter = this.waiter
      this.waiter = null
      waiting.delete(this)
      return waiter.reject(e as Error)
    }
    if (results.length) this.settleWaiter(results)
  }

  private settleWaiter(given?: OpResult[]): void {
    const waiter = this.waiter
    if (!waiter) return
    // Taken only when someone waits: close() keeps them for the next waitIO() otherwise.
    const results = given ?? this.takeLocal()
    this.waiter = null
    waiting.delete(this)
    if (this.closed && results.length === 0) {
      return waiter.reject(new GaioError('ERR_WATCHER_CLOSED', 'the watcher is closed'))
    }
    waiter.resolve(results)
  }

  private takeLocal(): OpResult[] {
    const local = this.local
    this.local = []
    return local
  }

  private deliverLocal(result: OpResult): void {
    this.local.push(result)
    this.retain(1)
    if (this.waiter) queueMicrotask(() => this.onReady())
  }

  /** Takes the engine's completions and any local results, as result objects. */
  private collect(): OpResult[] {
    if (this.takeRecords.length < this.inEngine * TAKE_FIELDS) {
      this.resizeRecords(this.submitRecords.length, 2 * this.inEngine * TAKE_FIELDS)
    }
    const records = this.takeRecords
    const count = this.handle.take()
    const results = this.takeLocal()
    for (let i = 0; i < count; i++) {
      const at = i * TAKE_FIELDS
      const request = this.finish(records[at])
      const size = records[at + 1]
      const code = records[at + 2]
      results.push(this.complete(request, size, code === 0 ? null : errorFromCode(code), records[at + 3], records[at + 4]))
    }
    this.inEngine -= count
    if (results.length && !this.closed) this.retain(-results.length)
    return results
  }

  private complete(request: Request, size: number, error: GaioError | null, where: number, offset: number): OpResult {
    if (request.kind === Kind.Accept || request.kind === Kind.Connect) {
      const created = request.created!
      if (error) {
        this.ids.release(created.id)
        created.freed = true
      }
      const conn = created
      if (request.kind === Kind.Accept && !error) this.track(created)
      return { operation: request.kind === Kind.Accept ? OpType.Accept : OpType.Connect, context: request.context, conn, buffer: null, size: 0, isSwapBuffer: false, error }
    }
    if (request.kind === Kind.Write || where === WHERE_NONE || size === 0) return this.resultOf(request, size, error)
    if (request.buffer === null) {
      const view = this.swap[where].subarray(offset, offset + size)
      return { operation: OpType.Read, context: request.context, conn: request.conn as ConnLike, buffer: view, size, isSwapBuffer: true, error }
    }
    if (request.buffer.byteLength < size) {
      return this.resultOf(request, 0, new GaioError('ERR_BUFFER_DETACHED', 'the buffer was detached before the read completed'))
    }
    if (where === WHERE_OWNED) this.handle.copyOwned(offset, request.buffer)
    else request.buffer.set(this.swap[where].subarray(offset, offset + size))
    return this.resultOf(request, size, error)
  }

  private resultOf(request: Request, size: number, error: GaioError | null): OpResult {
    const operation = request.kind === Kind.Write ? OpType.Write : request.kind === Kind.Accept ? OpType.Accept : request.kind === Kind.Connect ? OpType.Connect : OpType.Read
    // A failed accept hands back its listener, as the request named it.
    return { operation, context: request.context, conn: request.conn as ConnLike, buffer: request.given, size, isSwapBuffer: false, error }
  }
}
