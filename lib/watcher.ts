// The Watcher: it validates calls, queues submissions and flushes them to the
// native side once per microtask, and turns the flat completion
// records the native side writes into result objects. See ARCHITECTURE.md.

import { lookup, type LookupAddress } from 'node:dns'
import { isIP, Socket } from 'node:net'
import { inspect } from 'node:util'
import { bytesOf, deadlineAt, integerIn, MAX_DELAY, MAX_TRANSFER, nonEmpty, transferable } from './args'
import { Conn, ConnIds, DEAD_CONN_ID, Listener, WatcherScope, type ConnState } from './conn'
import { delegatedConn, descriptorOf, handOver } from './delegate'
import { errorFromCode, GaioError, invalidArgType, invalidArgValue, outOfRange } from './errors'
import { enrolOwner, killTicket, retireOwner, trackForgotten } from './forgotten'
import { EngineErrors, Kind, MAX_RECORDS, native, NO_DEADLINE, SUBMIT_FIELDS, TAKE_FIELDS, Where, type NativeWatcher } from './native'
import { connectToOf, listenAtOf, signalOf, watcherConfigOf } from './options'
import { RequestTable, type RawResult } from './requests'
import { OpType, type ConnectOptions, type ConnLike, type Deadline, type ListenOptions, type OpResult, type WaitOptions, type WatcherOptions } from './types'
import { abortError, PendingWait } from './waiter'

const closeForgottenWatcher = new FinalizationRegistry<{ nativeWatcher: NativeWatcher; scope: WatcherScope; owner: number }>(({ nativeWatcher, scope, owner }) => {
  scope.closed = true
  nativeWatcher.close()
  retireOwner(owner)
})

/**
 * Writes larger than this go to the engine a chunk at a time, the next when
 * the last is out: the engine copies what it cannot send at once, and a whole
 * 512 MiB write would otherwise double the caller's memory.
 */
const WRITE_CHUNK = 4 << 20
const NOTHING = new Uint8Array(0)

/**
 * The most records one crossing carries: a flush of more requests crosses in
 * several, so the record memory stays small and within the addon's limit.
 */
const SUBMIT_BATCH = 1 << 16

/**
 * Threaded, the JS thread sends this many writes of a flush itself (no thread
 * hop: what a ping-pong needs) and leaves the rest to the poller thread, which
 * sends them while the JS thread goes on. With many connections a small
 * message's cost is mostly the send's kernel work, all of it on the JS thread
 * if it sent every write (benchmark/README.md, "Who sends"). Inline there is
 * one thread either way, and the flush sends every write it can.
 */
const SENDS_HERE_PER_FLUSH = 1

/** Every watcher's swap arenas: views into them are valid only until the next waitIO(). */
const swapMemory = new WeakSet<ArrayBufferLike>()

/**
 * A poller with the connections given to it. Submit requests with a context
 * value each; `waitIO()` resolves with the completions, in batches.
 * `Context` is the type of those context values.
 * @example
 * const w = new Watcher<string>()
 * const ln = w.listen({ port: 8080 })
 * w.accept('accept', ln)
 * for await (const results of w) for (const res of results) console.log(res.context, res.error)
 */
export class Watcher<Context = unknown> implements AsyncIterable<OpResult<Context>[]> {
  private readonly nativeWatcher: NativeWatcher
  private readonly mode: 'thread' | 'inline'
  private readonly bufferSize: number
  private readonly silentWrites: boolean
  private readonly swap: Uint8Array[]
  private readonly ids = new ConnIds()
  private readonly scope = new WatcherScope()
  private readonly requests = new RequestTable()
  private queue: number[] = []
  /**
   * Connections with a chunked write under way, and the writes (and
   * half-closes) made on them since: those wait their turn here, so that
   * bytes go out in the order they were written.
   */
  private readonly held = new Map<ConnState, { owner: number; waiting: number[] }>()
  /** Connects waiting for their name to resolve: close() completes them at once. */
  private readonly lookups = new Set<{ context: unknown }>()
  private flushScheduled = false
  /** Views of record memory the native side owns and reads or writes in place. */
  private submitRecords!: Int32Array
  private takeRecords!: Int32Array
  /** Requests not yet delivered by waitIO(): while there are any, the process stays alive. */
  private outstanding = 0
  private local: RawResult[] = []
  /** What close() could not collect: the poller's failure, for the next waitIO() to report once. */
  private failure: Error | null = null
  private readonly wait = new PendingWait<RawResult[]>(this)
  /** How this watcher's callbacks find it without keeping it alive. */
  private readonly self = new WeakRef(this as Watcher<unknown>)
  /** How the registry of forgotten connections names this watcher. */
  private readonly forgottenOwner = enrolOwner(this.self)

  /**
   * @throws {TypeError} ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE for a wrong option or an unknown one.
   * @throws {RangeError} ERR_OUT_OF_RANGE for a size out of range, or a `cpu` this process may not run on.
   * @example const w = new Watcher({ mode: 'inline' })
   */
  constructor(options: WatcherOptions = {}) {
    const { bufferSize, swapSize, cpu, mode, silentWrites } = watcherConfigOf(options)
    this.mode = mode
    this.bufferSize = bufferSize
    this.silentWrites = silentWrites
    try {
      this.nativeWatcher = native.createWatcher(Watcher.readyCallback(this.self), bufferSize, swapSize, cpu, mode === 'inline')
    } catch (e) {
      if (cpu >= 0 && (e as GaioError).code === 'ERR_WATCHER_START') throw outOfRange('options.cpu', `a CPU this process may run on (${(e as Error).message})`, cpu)
      throw e
    }
    this.swap = this.nativeWatcher.swapBuffers().map((b) => new Uint8Array(b))
    for (const arena of this.swap) swapMemory.add(arena.buffer)
    this.resizeRecords(64 * SUBMIT_FIELDS, 64 * TAKE_FIELDS)
    closeForgottenWatcher.register(this, { nativeWatcher: this.nativeWatcher, scope: this.scope, owner: this.forgottenOwner }, this)
  }

  /**
   * The native side holds this callback; it must not hold the watcher, or a
   * forgotten watcher could never be collected. Made outside the constructor:
   * a closure there shares its context (and `this`) with the constructor's other closures.
   */
  private static readyCallback(watcher: WeakRef<Watcher<unknown>>): () => void {
    return () => watcher.deref()?.onReady()
  }

  // ---- connections ----

  /**
   * Listens on a TCP address (port 0 picks one) or a Unix socket path. A
   * listener keeps the process alive only while an accept is pending on it.
   * @throws {GaioError} the OS's error, such as EADDRINUSE (`listen EADDRINUSE 127.0.0.1:8080`); ERR_WATCHER_CLOSED after close().
   * @throws {TypeError} ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE for a bad or unknown option.
   * @example const ln = w.listen({ host: '127.0.0.1', port: 0 }); ln.port
   */
  listen(options: ListenOptions = {}): Listener {
    if (this.scope.closed) throw new GaioError('ERR_WATCHER_CLOSED', 'the watcher is closed')
    const { host, port, path, backlog, reusePort } = listenAtOf(options)
    this.flush()
    const id = this.ids.allocate()
    const bound = this.nativeWatcher.listen(id, host, port, path, backlog, reusePort)
    if (bound < 0) {
      this.ids.release(id)
      throw errorFromCode(-bound, path ? { syscall: 'listen', path } : { syscall: 'listen', address: host, port })
    }
    const listener = new Listener(id, this.scope, bound, path || host)
    this.track(listener)
    return listener
  }

  /**
   * Accepts one connection on `listener`; completes as OpType.Accept with the
   * new Conn (or, failed, with the listener as `conn`).
   * @throws {TypeError} ERR_INVALID_ARG_TYPE when `listener` is not a Listener; ERR_INVALID_ARG_VALUE when it is another watcher's.
   * @example w.accept('accept', ln)
   */
  accept(context: Context, listener: Listener): void {
    if (!(listener instanceof Listener)) throw invalidArgType('listener', 'an instance of Listener', listener)
    this.own(listener)
    const created = this.newConn()
    const slot = this.requests.add(Kind.Accept, context, listener, listener, null, null, 0, NO_DEADLINE)
    this.requests.created.set(slot, created)
    this.push(slot)
  }

  /**
   * Connects to a TCP address or Unix socket path; completes as
   * OpType.Connect with the new Conn. A name is looked up first and every
   * address it resolves to is tried in order until one connects.
   * @throws {TypeError} ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE for a bad or unknown option.
   * @throws {RangeError} ERR_OUT_OF_RANGE for a port or timeout out of range.
   * @example w.connect('upstream', { host: 'localhost', port: 6379, timeout: 2000 })
   */
  connect(context: Context, options: ConnectOptions): void {
    const to = connectToOf(options)
    const { deadline } = to
    if ('path' in to) return this.enqueueConnect(context, [`unix:${to.path}`], -1, deadline)
    const { host, port } = to
    if (isIP(host) || this.scope.closed) return this.enqueueConnect(context, [host], port, deadline)
    // Names resolve first; the request counts as outstanding meanwhile.
    this.retain(1)
    const pending = { context }
    this.lookups.add(pending)
    const place = { syscall: 'connect', address: host, port }
    // The timeout counts from the call, lookup included: a slow resolver ends the connect on time.
    const expiry = deadline === NO_DEADLINE ? undefined : setTimeout(() => {
      if (!this.lookups.delete(pending)) return
      this.retain(-1)
      this.deliverLocal({ operation: OpType.Connect, context, conn: this.deadConn(), buffer: null, size: 0, isSwapBuffer: false, error: errorFromCode(EngineErrors.ERR_DEADLINE, place) })
    }, deadline - Date.now())
    lookup(host, { all: true, verbatim: true }, (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => {
      clearTimeout(expiry)
      if (!this.lookups.delete(pending)) return // close() or the timeout has completed it
      this.retain(-1)
      if (err) {
        const failed = new GaioError(err.code ?? 'ENOTFOUND', err.message, err.errno, { syscall: 'getaddrinfo', address: host })
        return this.deliverLocal({ operation: OpType.Connect, context, conn: this.deadConn(), buffer: null, size: 0, isSwapBuffer: false, error: failed })
      }
      this.enqueueConnect(context, err ? [host] : addresses.map((a) => a.address), port, deadline)
    })
  }

  /**
   * Closes a connection or listener now; what was pending on it completes with
   * ERR_CONN_CLOSED. A Unix listener's socket file is removed before this
   * returns. Idempotent.
   * @throws {TypeError} ERR_INVALID_ARG_TYPE for something that is not a connection; ERR_INVALID_ARG_VALUE for another watcher's.
   * @example w.free(res.conn)
   */
  free(conn: ConnLike | Listener): void {
    const state = conn instanceof Listener ? this.own(conn) : this.stateOf(conn as ConnLike, false)
    if (state === undefined || state.freed || this.scope.closed) return
    this.queueFree(state)
    this.flush()
  }

  /**
   * TCP_NODELAY on or off (on by default for connections the watcher makes, as in Go).
   * @throws {GaioError} ERR_CONN_CLOSED if the connection is freed; the OS's error (`setsockopt EINVAL`).
   * @example w.setNoDelay(conn, false) // let the kernel coalesce small writes
   */
  setNoDelay(conn: ConnLike, noDelay = true): void {
    this.socketOption(conn, (fd) => native.setNoDelay(fd, Boolean(noDelay)))
  }

  /**
   * TCP keep-alive on or off; `initialDelay` (ms, rounded up to seconds) is the
   * idle time before the first probe (0 keeps the system's).
   * @throws {GaioError} ERR_CONN_CLOSED if the connection is freed; the OS's error.
   * @throws {RangeError} ERR_OUT_OF_RANGE for a negative or huge delay.
   * @example w.setKeepAlive(conn, true, 30_000)
   */
  setKeepAlive(conn: ConnLike, enable = false, initialDelay = 0): void {
    const seconds = Math.ceil(integerIn(initialDelay, 0, MAX_DELAY, 'initialDelay') / 1000)
    this.socketOption(conn, (fd) => native.setKeepAlive(fd, Boolean(enable), seconds))
  }

  // ---- reads and writes ----

  /**
   * Reads at least one byte into `buffer`, or into the swap buffer when none is given.
   * The result's `buffer` is a view of exactly the bytes read.
   * @throws {TypeError} ERR_INVALID_ARG_TYPE for a bad connection or buffer; ERR_INVALID_ARG_VALUE for a Listener or another watcher's connection.
   * @throws {GaioError} ERR_EMPTY_BUFFER for a zero-length buffer; ERR_SOCKET_HAS_DATA for a net.Socket delegated too late.
   * @example w.read('read', conn) // swap buffer: valid until the next waitIO()
   */
  read(context: Context, conn: ConnLike, buffer?: ArrayBufferView | null): void {
    this.submitRead(Kind.Read, context, conn, buffer, NO_DEADLINE)
  }

  /**
   * read() that fails with ERR_DEADLINE if nothing arrives by `deadline`.
   * @throws {RangeError} ERR_OUT_OF_RANGE for a deadline that looks like a duration (use `{ timeout }`); as read() otherwise.
   * @example w.readTimeout('read', conn, null, { timeout: 5000 })
   */
  readTimeout(context: Context, conn: ConnLike, buffer: ArrayBufferView | null | undefined, deadline: Deadline): void {
    this.submitRead(Kind.Read, context, conn, buffer, deadlineAt(deadline))
  }

  /**
   * Reads until `buffer` is full (or end of stream, an error, or the deadline).
   * @throws {RangeError} ERR_OUT_OF_RANGE for a buffer of 2 GiB or more; as read() otherwise.
   * @example w.readFull('header', conn, new Uint8Array(4))
   */
  readFull(context: Context, conn: ConnLike, buffer: ArrayBufferView, deadline?: Deadline): void {
    if (buffer === null || buffer === undefined) throw invalidArgType('buffer', 'an instance of Buffer, TypedArray or DataView', buffer)
    this.submitRead(Kind.ReadFull, context, conn, buffer, deadline === undefined ? NO_DEADLINE : deadlineAt(deadline))
  }

  /**
   * Writes every byte of `buffer`. The bytes are taken when the request is flushed (same tick).
   * @throws {RangeError} ERR_OUT_OF_RANGE for a buffer of 2 GiB or more (split it).
   * @throws {GaioError} ERR_EMPTY_BUFFER for a zero-length buffer.
   * @example w.write('reply', conn, Buffer.from('hello'))
   */
  write(context: Context, conn: ConnLike, buffer: ArrayBufferView): void {
    this.submitWrite(context, conn, buffer, NO_DEADLINE)
  }

  /**
   * write() that fails with ERR_DEADLINE if not every byte is written by `deadline`.
   * @throws {RangeError} as write(), and for a deadline that looks like a duration.
   * @example w.writeTimeout('reply', conn, data, { timeout: 1000 })
   */
  writeTimeout(context: Context, conn: ConnLike, buffer: ArrayBufferView, deadline: Deadline): void {
    this.submitWrite(context, conn, buffer, deadlineAt(deadline))
  }

  /**
   * Half-close: once every write made before it has gone out, the sending
   * side shuts down and the peer reads end of stream; reading goes on.
   * Completes as OpType.CloseWrite. Writes made after it fail (EPIPE).
   * @throws {TypeError} ERR_INVALID_ARG_TYPE for a bad connection; ERR_INVALID_ARG_VALUE for a Listener or another watcher's connection.
   * @example w.closeWrite('eof forwarded', upstream)
   */
  closeWrite(context: Context, conn: ConnLike): void {
    this.enqueueOn(Kind.CloseWrite, context, conn, null, null, 0, NO_DEADLINE)
  }

  // ---- results ----

  /**
   * Resolves with the next non-empty batch of results. Swap-buffer views in
   * the previous batch are released when this is called. After close() it
   * resolves with what is left to deliver (what close() cancelled, and requests
   * made since, each with ERR_WATCHER_CLOSED), and rejects with
   * ERR_WATCHER_CLOSED once nothing is: that ends a `for await` loop.
   * @throws {GaioError} (rejects) ERR_WAIT_PENDING while another waitIO() waits; ERR_WATCHER_CLOSED; an AbortError when `signal` aborts.
   * @example const results = await w.waitIO({ signal: AbortSignal.timeout(1000) })
   */
  waitIO(options: WaitOptions = {}): Promise<OpResult<Context>[]> {
    let signal: AbortSignal | undefined
    try {
      signal = signalOf(options)
    } catch (e) {
      return Promise.reject(e)
    }
    if (this.wait.active) return Promise.reject(new GaioError('ERR_WAIT_PENDING', 'waitIO() is already waiting'))
    if (signal?.aborted) return Promise.reject(abortError(signal))
    if (this.scope.closed) {
      const left = this.takeLocal()
      if (left.length) return Promise.resolve(this.typed(left))
      return Promise.reject(this.closedError())
    }
    try {
      this.flush()
      const results = this.collect()
      if (results.length) return Promise.resolve(this.typed(results))
    } catch (e) {
      return Promise.reject(e)
    }
    return this.wait.begin(signal).then((results) => this.typed(results))
  }

  /**
   * The batches of results, as `waitIO()` gives them, until the watcher is
   * closed and everything is delivered. Breaking out of the loop leaves the
   * watcher open (close() it when done); `signal` ends a loop that is waiting
   * by throwing an AbortError from it.
   * @example for await (const results of w.iterate({ signal })) handle(results)
   */
  iterate(options: WaitOptions = {}): AsyncIterable<OpResult<Context>[]> {
    signalOf(options)
    return { [Symbol.asyncIterator]: () => this.iterator(options) }
  }

  /**
   * `for await (const results of w)`: the batches, as iterate() without a signal.
   * @example for await (const results of w) for (const res of results) if (res.error) w.free(res.conn)
   */
  [Symbol.asyncIterator](): AsyncIterator<OpResult<Context>[]> {
    return this.iterator({})
  }

  /**
   * Closes every connection and stops the poller. Requests still pending
   * complete with ERR_WATCHER_CLOSED: a waitIO() in progress resolves with
   * them, or else the next call does. Unix listeners' socket files are removed
   * before this returns. Idempotent; it does not throw, not even after the poller
   * failed: then what the poller held gets no result, and the next waitIO()
   * rejects with the failure (ERR_INTERNAL_PANIC) once nothing else is left.
   * @example w.close()
   */
  close(): void {
    if (this.scope.closed) return
    this.flush()
    // What never reached the engine: what the flush above released from a hold or
    // continued, the writes still held behind a chunked one, and names being looked up.
    const queued = this.queue
    this.queue = []
    const held = [...this.held.values()].flatMap((hold) => hold.waiting)
    this.held.clear()
    const lookups = [...this.lookups]
    this.lookups.clear()
    this.scope.closed = true
    this.nativeWatcher.close()
    closeForgottenWatcher.unregister(this)
    retireOwner(this.forgottenOwner)
    // Per connection, requests complete in the order made: what the engine had goes first.
    const results = this.collectOrNothing()
    const closed = () => errorFromCode(EngineErrors.ERR_WATCHER_CLOSED)
    for (const slot of queued) {
      if (this.requests.kinds[slot] === Kind.Free) this.requests.release(slot)
      else results.push(this.finish(slot, this.requests.sent[slot]!, errorFromCode(this.closedCode(slot))))
    }
    for (const slot of held) results.push(this.finish(slot, 0, closed()))
    for (const { context } of lookups) {
      results.push({ operation: OpType.Connect, context, conn: this.deadConn(), buffer: null, size: 0, isSwapBuffer: false, error: closed() })
    }
    this.local = results
    this.outstanding = 0
    this.settleWaiter()
  }

  /** @internal A short form for console.log: not the swap buffers. */
  [inspect.custom](): string {
    return `Watcher { mode: '${this.mode}', outstanding: ${this.outstanding}${this.scope.closed ? ', closed' : ''} }`
  }

  // ---- internals ----

  private iterator(options: WaitOptions): AsyncIterator<OpResult<Context>[]> {
    return {
      next: () =>
        this.waitIO(options).then(
          (value) => ({ value, done: false }),
          (e: GaioError) => {
            if (e.code === 'ERR_WATCHER_CLOSED') return { value: undefined, done: true }
            throw e
          },
        ),
      // Breaking out of a loop ends only the loop.
      return: () => Promise.resolve({ value: undefined, done: true }),
    }
  }

  private typed(results: RawResult[]): OpResult<Context>[] {
    return results as unknown as OpResult<Context>[]
  }

  private newConn(): Conn {
    return new Conn(this.ids.allocate(), this.scope)
  }

  /** How a request the watcher's close cut short ends: one made after its connection was freed was doomed already. */
  private closedCode(slot: number): number {
    return this.requests.states[slot]!.id === DEAD_CONN_ID ? EngineErrors.ERR_CONN_CLOSED : EngineErrors.ERR_WATCHER_CLOSED
  }

  /** The new connection of an accept or connect that never came to be: its id is free again. */
  private unmake(created: Conn): void {
    this.ids.release(created.id)
    created.freed = true
    killTicket(created.ticket)
  }

  /** The connection of a connect that failed before it had one. */
  private deadConn(): Conn {
    const conn = new Conn(DEAD_CONN_ID, this.scope)
    conn.freed = true
    return conn
  }

  private own<T extends ConnState>(state: T): T {
    if (state.owner !== this.scope) throw invalidArgValue('conn', state, 'belongs to another watcher')
    return state
  }

  /** A forgotten connection (`owner`: what the caller holds) is freed by the collector. */
  private track(state: ConnState, owner: object = state): void {
    state.ticket = trackForgotten(owner, this.forgottenOwner, state.id)
  }

  /** @internal */
  releaseForgotten(id: number): void {
    if (this.scope.closed) return
    this.queueFreeOf(id)
    this.scheduleFlush()
  }

  /** The state of a connection argument; a net.Socket is delegated on first use. */
  private stateOf(conn: ConnLike, delegate: boolean): ConnState | undefined {
    if (conn instanceof Conn) return this.own(conn)
    if ((conn as unknown) instanceof Listener) throw invalidArgValue('conn', conn, 'is a Listener: reads and writes need a connection')
    if (!(conn instanceof Socket)) throw invalidArgType('conn', 'an instance of Conn or net.Socket', conn)
    const known = delegatedConn(conn)
    if (known) return this.own(known)
    return delegate ? this.delegate(conn) : undefined
  }

  private delegate(socket: Socket): Conn {
    const fd = descriptorOf(socket)
    this.flush()
    const state = this.newConn()
    const adopted = this.nativeWatcher.adopt(state.id, fd)
    if (adopted < 0) {
      this.ids.release(state.id)
      throw errorFromCode(-adopted, { syscall: 'dup' })
    }
    state.fd = adopted
    handOver(socket, state)
    this.track(state, socket)
    return state
  }

  private socketOption(conn: ConnLike, set: (fd: number) => number): void {
    const state = this.stateOf(conn, true) as Conn
    if (state.listener) throw invalidArgValue('conn', conn, 'is a Listener: socket options apply to connections')
    if (!state.open) throw errorFromCode(EngineErrors.ERR_CONN_CLOSED)
    const rc = set(state.fd)
    if (rc < 0) throw errorFromCode(-rc, { syscall: 'setsockopt' })
  }

  private submitRead(kind: Kind, context: unknown, conn: ConnLike, buffer: ArrayBufferView | null | undefined, deadline: number): void {
    const bytes = buffer === null || buffer === undefined ? null : nonEmpty(bytesOf(buffer, 'buffer'), 'buffer')
    // The bytes are copied in at a later take, when the poller may be refilling that memory.
    if (bytes && swapMemory.has(bytes.buffer)) throw invalidArgValue('buffer', buffer, 'is swap memory (a result\'s buffer), which the next waitIO() may refill: read into memory of your own')
    if (bytes && kind === Kind.ReadFull) transferable(bytes, 'buffer')
    // A read returns at most what it asks for: asking for less of a huge buffer changes nothing else.
    this.enqueueOn(kind, context, conn, bytes, null, bytes ? Math.min(bytes.byteLength, MAX_TRANSFER) : this.bufferSize, deadline)
  }

  private submitWrite(context: unknown, conn: ConnLike, buffer: ArrayBufferView, deadline: number): void {
    let bytes = transferable(nonEmpty(bytesOf(buffer, 'buffer'), 'buffer'), 'buffer')
    // Its later chunks are read after the next waitIO(), which may refill swap memory.
    if (bytes.byteLength > WRITE_CHUNK && swapMemory.has(bytes.buffer)) bytes = bytes.slice()
    this.enqueueOn(Kind.Write, context, conn, bytes, bytes, bytes.byteLength, deadline)
  }

  private enqueueOn(kind: Kind, context: unknown, conn: ConnLike, bytes: Uint8Array | null, given: ArrayBufferView | null, arg: number, deadline: number): void {
    if (this.scope.closed) {
      // Checked, but not delegated: a closed watcher leaves a net.Socket alone.
      this.stateOf(conn, false)
      const slot = this.requests.add(kind, context, conn, this.deadConn(), bytes, given, 0, NO_DEADLINE)
      return this.deliverLocal(this.finish(slot, 0, errorFromCode(EngineErrors.ERR_WATCHER_CLOSED)))
    }
    const state = this.stateOf(conn, true)!
    if (state.listener) throw invalidArgValue('conn', conn, 'is a Listener: reads and writes need a connection')
    this.push(this.requests.add(kind, context, conn, state, bytes, given, arg, deadline))
  }

  /** A connect to the first of `addresses`; the others are tried in turn if it fails. */
  private enqueueConnect(context: unknown, addresses: readonly string[], port: number, deadline: number): void {
    const created = this.newConn()
    this.track(created)
    const slot = this.requests.add(Kind.Connect, context, created, created, null, null, port, deadline)
    this.requests.created.set(slot, created)
    this.requests.targets.set(slot, { address: addresses[0]!, fallbacks: addresses.slice(1) })
    this.push(slot)
  }

  private push(slot: number): void {
    if (this.scope.closed) {
      const created = this.requests.created.get(slot)
      if (created) this.unmake(created)
      return this.deliverLocal(this.finish(slot, this.requests.sent[slot]!, errorFromCode(EngineErrors.ERR_WATCHER_CLOSED)))
    }
    // A freed connection's request goes to the engine under an id that names nothing, to
    // fail with ERR_CONN_CLOSED after what the connection had there, in the order made.
    if (this.requests.states[slot]!.freed) this.requests.states[slot] = this.deadConn()
    this.retain(1)
    this.dispatch(slot)
  }

  /** Queues a request for the next flush, or holds it behind a chunked write on its connection. */
  private dispatch(slot: number): void {
    const kind = this.requests.kinds[slot]
    if (kind === Kind.Write || kind === Kind.CloseWrite) {
      const state = this.requests.states[slot]!
      const hold = this.held.get(state)
      if (hold) return void hold.waiting.push(slot)
      if (this.requests.args[slot]! > WRITE_CHUNK) this.held.set(state, { owner: slot, waiting: [] })
    }
    this.queue.push(slot)
    this.scheduleFlush()
  }

  /** A chunked write is over (its slot not yet released): what waited behind it goes, in order. */
  private releaseHeld(slot: number): void {
    const state = this.requests.states[slot]!
    const hold = this.held.get(state)
    if (hold?.owner !== slot) return
    this.held.delete(state)
    for (const waiting of hold.waiting) this.dispatch(waiting)
  }

  private queueFree(state: ConnState): void {
    state.freed = true
    killTicket(state.ticket)
    this.queueFreeOf(state.id)
  }

  private queueFreeOf(id: number): void {
    // A stale id (released already) names nothing of ours: freeing it could close a newer connection.
    if (!this.ids.release(id)) return
    this.queue.push(this.requests.add(Kind.Free, null, null, this.deadConn(), null, null, id, NO_DEADLINE))
  }

  /** Counts requests not yet delivered; the first keeps the process alive, the last lets it go. */
  private retain(delta: number): void {
    // Once closed, nothing keeps the process alive, and nothing is outstanding.
    if (this.scope.closed) return
    const before = this.outstanding
    this.outstanding += delta
    if (before === 0 && this.outstanding > 0) this.nativeWatcher.keepAlive(true)
    else if (before > 0 && this.outstanding === 0) this.nativeWatcher.keepAlive(false)
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    queueMicrotask(() => this.flush())
  }

  /** Hands every queued request to the engine: one call, or one per SUBMIT_BATCH. */
  private flush(): void {
    this.flushScheduled = false
    const queue = this.queue
    if (queue.length === 0 || this.scope.closed) return
    this.queue = []
    if (this.submitRecords.length < Math.min(queue.length, SUBMIT_BATCH) * SUBMIT_FIELDS) {
      this.resizeRecords(Math.min(2 * queue.length, SUBMIT_BATCH) * SUBMIT_FIELDS, this.takeRecords.length)
    }
    const records = this.submitRecords
    const requests = this.requests
    let extras: unknown[] = []
    let count = 0
    let ready = false
    let now = 0
    let sendsHere = this.mode === 'inline' ? Infinity : SENDS_HERE_PER_FLUSH
    for (const slot of queue) {
      const kind = requests.kinds[slot]!
      // Made after its connection was freed (see push): whatever it is, it crosses as a
      // read of an id that names nothing, to fail there after what came before it.
      const doomed = kind !== Kind.Free && requests.states[slot]!.id === DEAD_CONN_ID
      let conn = kind === Kind.Free ? requests.args[slot]! : requests.states[slot]!.id
      let arg = requests.args[slot]!
      let extra = -1
      if (doomed) {
        arg = 1
      } else if (kind === Kind.Write) {
        const state = requests.states[slot] as Conn
        // The caller may have detached or resized the buffer since the call.
        const detached = requests.buffers[slot]!.byteLength !== arg
        if (detached && state.writing === 0) {
          this.completeHere(slot, detachedError())
          continue
        }
        if (!detached && state.writing === 0 && state.open && sendsHere > 0) {
          // Nothing of this connection's is queued in the engine, so nothing
          // else writes to its socket now: send from here. Sent whole, it
          // completes here: no thread hop, no completion record.
          sendsHere--
          const sent = native.sendNow(state.fd, this.chunkOf(slot))
          if (sent < 0) {
            this.completeHere(slot, errorFromCode(-sent, { syscall: 'write' }))
            continue
          }
          requests.sent[slot] += sent
          if (requests.sent[slot] === arg) {
            this.completeHere(slot, null)
            continue
          }
        }
        // A detached one crosses with no bytes, to fail in its turn behind this
        // connection's writes: whenever that is, so with no deadline of its own.
        if (detached) requests.deadlines[slot] = NO_DEADLINE
        const chunk = detached ? NOTHING : this.chunkOf(slot)
        arg = chunk.byteLength
        extra = extras.push(chunk) - 1
        state.writing++
      } else if (kind === Kind.CloseWrite) {
        // Writes made after it must not go out directly, ahead of the shutdown.
        ;(requests.states[slot] as Conn).writing++
      } else if (kind === Kind.Accept) {
        conn = requests.created.get(slot)!.id
        arg = requests.states[slot]!.id
      } else if (kind === Kind.Connect) {
        extra = extras.push(requests.targets.get(slot)!.address) - 1
      }
      const deadline = requests.deadlines[slot]!
      const at = count * SUBMIT_FIELDS
      records[at] = doomed ? Kind.Read : kind
      records[at + 1] = slot
      records[at + 2] = conn
      records[at + 3] = arg
      records[at + 4] = extra
      records[at + 5] = deadline === NO_DEADLINE ? NO_DEADLINE : Math.max(0, Math.ceil(deadline - (now ||= Date.now())))
      count++
      if (kind === Kind.Free) requests.release(slot)
      if (count === SUBMIT_BATCH) {
        ready = this.nativeWatcher.submit(count, extras) || ready
        count = 0
        extras = []
      }
    }
    // Inline, the writes went out during the call and completions may be waiting already.
    if (this.nativeWatcher.submit(count, extras) || ready) this.onReady()
  }

  /** The part of a write the engine gets next: what is not sent yet, at most a chunk. */
  private chunkOf(slot: number): Uint8Array {
    const bytes = this.requests.buffers[slot]!
    const sent = this.requests.sent[slot]!
    const length = this.requests.args[slot]!
    const end = Math.min(length, sent + WRITE_CHUNK)
    return sent === 0 && end === length ? bytes : bytes.subarray(sent, end)
  }

  /** A write that ends without the engine: its result goes with the next batch. */
  private completeHere(slot: number, error: GaioError | null): void {
    this.retain(-1) // deliverLocal counts it again
    this.releaseHeld(slot)
    const size = this.requests.sent[slot]!
    if (error === null && this.silentWrites) this.requests.release(slot)
    else this.deliverLocal(this.finish(slot, size, error))
  }

  private resizeRecords(submitLen: number, takeLen: number): void {
    const [submit, take] = this.nativeWatcher.records(submitLen, takeLen)
    this.submitRecords = new Int32Array(submit!)
    this.takeRecords = new Int32Array(take!)
  }

  /** The request is over: its result, and its slot free for the next. */
  private finish(slot: number, size: number, error: GaioError | null): RawResult {
    const result = this.requests.result(slot, size, error)
    this.requests.release(slot)
    return result
  }

  private onReady(): void {
    if (!this.wait.active) return
    if (this.scope.closed) return this.settleWaiter()
    let results: RawResult[]
    try {
      results = this.collect()
    } catch (e) {
      // Only an engine failure gets here; the waiter hears of it.
      return this.wait.reject(e as Error)
    }
    if (results.length) this.settleWaiter(results)
  }

  private settleWaiter(given?: RawResult[]): void {
    if (!this.wait.active) return
    // Taken only when someone waits: close() keeps them for the next waitIO() otherwise.
    const results = given ?? this.takeLocal()
    if (this.scope.closed && results.length === 0) this.wait.reject(this.closedError())
    else this.wait.resolve(results)
  }

  private takeLocal(): RawResult[] {
    const local = this.local
    this.local = []
    return local
  }

  private deliverLocal(result: RawResult): void {
    this.local.push(result)
    this.retain(1)
    if (this.wait.active) queueMicrotask(() => this.onReady())
  }

  /** collect(), for close(): a poller that failed has nothing to give, and waitIO() reports the failure, not close(). */
  private collectOrNothing(): RawResult[] {
    const reported = this.scope.failed
    try {
      return this.collect()
    } catch (e) {
      if (!reported) this.failure = e as Error
      return this.takeLocal()
    }
  }

  /** Why a closed watcher's waitIO() ends: the failure close() met, once, then ERR_WATCHER_CLOSED. */
  private closedError(): Error {
    const failure = this.failure
    this.failure = null
    return failure ?? new GaioError('ERR_WATCHER_CLOSED', 'the watcher is closed')
  }

  /** Takes the engine's completions and any local results, as result objects. */
  private collect(): RawResult[] {
    let count: number
    try {
      // More completions than the records hold: grow them to fit, and take again (more may
      // have come). Twice what fits, but within the addon's limit, unless they do not fit in that.
      while ((count = this.nativeWatcher.take()) < 0) {
        this.resizeRecords(this.submitRecords.length, Math.max(-count, Math.min(-2 * count, MAX_RECORDS)) * TAKE_FIELDS)
      }
    } catch (e) {
      // The poller died and its sockets with it: no descriptor of ours may be used again.
      this.scope.failed = true
      throw e
    }
    const records = this.takeRecords
    const results = this.takeLocal()
    const finished = results.length + count
    for (let i = 0; i < count; i++) {
      const at = i * TAKE_FIELDS
      const result = this.complete(records[at]!, records[at + 1]!, records[at + 2]!, records[at + 3]!, records[at + 4]!)
      if (result) results.push(result)
    }
    if (finished && !this.scope.closed) this.retain(-finished)
    return results
  }

  /**
   * The result of a request the engine completed, its slot released; none for
   * a connect that goes on to its next address, a large write that goes on to
   * its next chunk (the slot kept), or a silent write.
   */
  private complete(slot: number, size: number, code: number, where: number, offset: number): RawResult | null {
    const requests = this.requests
    const kind = requests.kinds[slot]!
    const error = code === 0 ? null : errorFromCode(code === EngineErrors.ERR_WATCHER_CLOSED ? this.closedCode(slot) : code, requests.place(slot))
    if (kind === Kind.Accept || kind === Kind.Connect) {
      const created = requests.created.get(slot)!
      if (error) {
        this.unmake(created)
        const { fallbacks } = requests.targets.get(slot) ?? { fallbacks: [] }
        if (kind === Kind.Connect && fallbacks.length > 0 && !this.scope.closed && error.code !== 'ERR_DEADLINE') {
          this.enqueueConnect(requests.contexts[slot], fallbacks, requests.args[slot]!, requests.deadlines[slot]!)
          requests.release(slot)
          return null
        }
        return this.finish(slot, 0, error)
      }
      if (where === Where.Socket) created.fd = offset
      if (kind === Kind.Accept) this.track(created)
      const result = { operation: requests.operation(slot), context: requests.contexts[slot], conn: created, buffer: null, size: 0, isSwapBuffer: false, error }
      requests.release(slot)
      return result
    }
    if (kind === Kind.Write) return this.continueWrite(slot, size, error)
    if (kind === Kind.CloseWrite) (requests.states[slot] as Conn).writing--
    if (kind !== Kind.Read && kind !== Kind.ReadFull) return this.finish(slot, size, error)
    if (where === Where.None || size === 0) return this.finish(slot, size, error)
    const buffer = requests.buffers[slot] ?? null
    if (buffer === null) {
      const view = this.swap[where]!.subarray(offset, offset + size)
      const result = { operation: OpType.Read, context: requests.contexts[slot], conn: requests.conns[slot] as ConnLike, buffer: view, size, isSwapBuffer: true, error }
      requests.release(slot)
      return result
    }
    if (buffer.byteLength < size) {
      return this.finish(slot, 0, new GaioError('ERR_BUFFER_DETACHED', 'the buffer was detached before the read completed'))
    }
    if (where === Where.Owned) this.nativeWatcher.copyOwned(offset, buffer)
    else buffer.set(this.swap[where]!.subarray(offset, offset + size))
    return this.finish(slot, size, error)
  }

  /** A chunk of a large write is out: the next goes, or, with the last or an error, the write's result. */
  private continueWrite(slot: number, size: number, error: GaioError | null): RawResult | null {
    const requests = this.requests
    const state = requests.states[slot] as Conn
    const sent = (requests.sent[slot] += size)
    state.writing--
    const cut = this.scope.closed ? EngineErrors.ERR_WATCHER_CLOSED : state.freed ? EngineErrors.ERR_CONN_CLOSED : 0
    const length = requests.args[slot]!
    if (error === null && sent < length && cut === 0) {
      // Straight to the queue: the writes held behind this one wait for all of it.
      this.retain(1)
      this.queue.push(slot)
      this.scheduleFlush()
      return null
    }
    this.releaseHeld(slot)
    // The engine fails only a write of nothing so, and the facade sends nothing only for a detached buffer.
    const failure = error?.code === 'ERR_EMPTY_BUFFER' ? detachedError() : (error ?? (sent < length ? errorFromCode(cut) : null))
    if (failure === null && this.silentWrites) {
      requests.release(slot)
      return null
    }
    return this.finish(slot, sent, failure)
  }
}

function detachedError(): GaioError {
  return new GaioError('ERR_BUFFER_DETACHED', 'the buffer was detached before it was sent')
}
