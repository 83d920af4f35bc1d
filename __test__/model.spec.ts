// Model-based random test: seeded sequences of API calls, misuse included,
// over real connections, checked against a simple model of what must happen.
//
//   - every request that did not throw completes exactly once, with an
//     operation, connection, buffer and size consistent with the call;
//   - bytes arrive in order and intact: what a connection reads is always a
//     prefix of what its peer wrote (each write counting the bytes it reports),
//     and after a drain, everything written was read;
//   - a request made after free() completes with ERR_CONN_CLOSED, one made
//     after close() with ERR_WATCHER_CLOSED; per direction, no request
//     completes normally after one was cut by free() or close();
//   - no data after EOF;
//   - calls throw only what the README documents (TypeError, RangeError,
//     GaioError ERR_EMPTY_BUFFER, ERR_WATCHER_CLOSED from listen() after
//     close(), ERR_WAIT_PENDING from a second waitIO()), and misuse throws it.
//
// GAIO_SEED=<n> replays a run's choices (the I/O timing still varies);
// GAIO_EPISODE=<k> runs only that episode; GAIO_MODEL_MS sets the time budget
// (default 20 s). The seed is printed, and repeated in every failure.
import test from 'ava'
import { randomInt } from 'node:crypto'
import { connect as netConnect, Socket } from 'node:net'
import { Conn, GaioError, Listener, OpType, Watcher, type ConnLike, type OpResult, type WatcherOptions } from '../index'
import { collectGarbage, gaioPair, pattern } from './helpers'
import { detach, fdsSettle, fdSummary, openFds, Poller, rng, type Rng } from './reliability'

const SEED = process.env.GAIO_SEED !== undefined ? Number(process.env.GAIO_SEED) : randomInt(2 ** 31)
const BUDGET_MS = Number(process.env.GAIO_MODEL_MS ?? 20_000)
const ONLY_EPISODE = process.env.GAIO_EPISODE !== undefined ? Number(process.env.GAIO_EPISODE) : undefined
const HOST = '127.0.0.1'

type Kind = 'read' | 'readFull' | 'write' | 'accept' | 'connect'

interface Side {
  name: string
  /** A Conn, or a net.Socket delegated to the watcher. */
  conn: ConnLike
  peer: Side | null
  /** free() was called, or the connect that made it failed. */
  freed: boolean
  writes: Op[]
  reads: Op[]
  /** Reader's position in the peer's writes. */
  cursor: { write: number; offset: number }
  received: number
  /** A read into a detached buffer consumed bytes nobody saw: stop checking content. */
  desync: boolean
  eof: boolean
}

interface Op {
  id: number
  kind: Kind
  side: Side | null
  /** What the call was made after. */
  afterFree: boolean
  afterClose: boolean
  deadline: boolean
  detached: boolean
  given: ArrayBufferView | null
  /** Requested length (reads) or the bytes at the call (writes). */
  len: number
  tx: Buffer | null
  /** Writes: bytes the reader has seen of this one. */
  seen: number
  /** connect: 'refused' (closed port) or 'loner' (a listener that never accepts); accept: 'idle'. */
  target?: 'refused' | 'loner' | 'idle'
  result?: OpResult
}

const CLOSED_CODES = new Set(['ERR_CONN_CLOSED', 'ERR_WATCHER_CLOSED'])

class Episode {
  readonly problems: string[] = []
  readonly trace: string[] = []
  readonly ops = new Map<number, Op>()
  readonly sides: Side[] = []
  readonly stats = new Map<string, number>()
  private nextId = 0
  private closed = false
  private pending = 0
  readonly w: Watcher
  readonly poller: Poller
  ln!: Listener
  idle!: Listener
  idleFreed = false
  lnFreed = false
  refusedPort = 0
  readonly maxWrite: number
  readonly bufferSize: number

  constructor(
    readonly r: Rng,
    readonly options: WatcherOptions,
    readonly foreign: { w: Watcher; conn: Conn; listener: Listener },
    readonly huge: () => Uint8Array,
  ) {
    this.w = new Watcher(options)
    this.poller = new Poller(this.w)
    this.bufferSize = options.bufferSize ?? 65536
    this.maxWrite = this.bufferSize < 512 ? 4096 : 4 << 20
  }

  problem(message: string) {
    if (this.problems.length < 50) this.problems.push(message)
  }

  log(line: string) {
    this.trace.push(line)
    if (this.trace.length > 40) this.trace.shift()
  }

  count(key: string) {
    this.stats.set(key, (this.stats.get(key) ?? 0) + 1)
  }

  newSide(name: string, conn: ConnLike, peer: Side | null): Side {
    const side: Side = { name, conn, peer, freed: false, writes: [], reads: [], cursor: { write: 0, offset: 0 }, received: 0, desync: false, eof: false }
    this.sides.push(side)
    return side
  }

  async setUp(pairs: number) {
    const closedPort = this.w.listen({ host: HOST, port: 0 })
    this.refusedPort = closedPort.port
    this.w.free(closedPort)
    this.ln = this.w.listen({ host: HOST, port: 0 })
    this.idle = this.w.listen({ host: HOST, port: 0 })
    for (let i = 0; i < pairs; i++) {
      const accepted = {}
      const connected = {}
      this.w.accept(accepted, this.ln)
      let a: Conn | undefined
      let c: ConnLike | undefined
      if (this.r.chance(0.3)) {
        // A net.Socket, delegated to the watcher in its connect callback by its first write.
        c = await new Promise<Socket>((resolve, reject) => {
          const socket: Socket = netConnect(this.ln.port, HOST, () => {
            const side = this.newSide(`d${i}`, socket, null)
            const tx = pattern(this.r.int(0, 1 << 30), this.r.int(1, 64))
            const op = this.register('write', side, { given: tx, len: tx.length, tx })
            this.call(op, () => this.w.write(op, socket, tx))
            resolve(socket)
          })
          socket.once('error', reject)
        })
      } else {
        this.w.connect(connected, { host: this.r.chance(0.5) ? HOST : 'localhost', port: this.ln.port })
      }
      while (!a || !c) {
        const batch = await this.poller.next(5000)
        if (!batch) throw new Error('pair set-up timed out')
        for (const res of batch) {
          if (res.context === accepted || res.context === connected) {
            if (res.error) throw res.error
            if (res.context === accepted) a = res.conn as Conn
            else c = res.conn as Conn
          } else this.check(res)
        }
      }
      const client = this.sides.find((x) => x.conn === c) ?? this.newSide(`c${i}`, c, null)
      const server = this.newSide(`s${i}`, a, client)
      client.peer = server
    }
    if (this.r.chance(0.25)) {
      // Misuse: delegating a net.Socket that still has writes queued in Node (nobody accepts or reads it).
      const socket = await new Promise<Socket>((resolve, reject) => {
        const s: Socket = netConnect(this.ln.port, HOST, () => resolve(s))
        s.once('error', reject)
      })
      socket.on('error', () => {})
      socket.write(Buffer.alloc(16 << 20))
      if (socket.writableLength > 0) {
        this.misuse('delegating a net.Socket with writes queued', GaioError, 'ERR_SOCKET_HAS_DATA', () => this.w.write('bad', socket, Buffer.from('x')))
        if (socket.destroyed) this.problem('a refused net.Socket was destroyed')
      }
      socket.destroy()
    }
  }

  // ---- submitting ----

  private register(kind: Kind, side: Side | null, fields: Partial<Op>): Op {
    const op: Op = {
      id: this.nextId++,
      kind,
      side,
      afterFree: side?.freed ?? false,
      afterClose: this.closed,
      deadline: false,
      detached: false,
      given: null,
      len: 0,
      tx: null,
      seen: 0,
      ...fields,
    }
    this.ops.set(op.id, op)
    this.pending++
    if (side && kind === 'write') side.writes.push(op)
    if (side && (kind === 'read' || kind === 'readFull')) side.reads.push(op)
    return op
  }

  /** Runs a call that must not throw; registers its op first, unregisters it if it throws anyway. */
  private call(op: Op, f: () => void) {
    this.log(`#${op.id} ${op.kind} on ${op.side?.name ?? op.target}${op.afterFree ? ' (freed)' : ''}${op.afterClose ? ' (closed)' : ''} len ${op.len}${op.deadline ? ' deadline' : ''}`)
    try {
      f()
    } catch (e) {
      this.problem(`#${op.id} ${op.kind}: unexpected throw ${(e as Error)?.name} ${(e as GaioError)?.code ?? ''} ${(e as Error)?.message}`)
      this.ops.delete(op.id)
      this.pending--
    }
  }

  /** A call that must throw `kind` (and queue nothing). */
  private misuse(what: string, kind: typeof TypeError | typeof RangeError | typeof GaioError, code: string | undefined, f: () => void) {
    this.log(`misuse: ${what}`)
    this.count(`misuse ${kind.name}${code ? ` ${code}` : ''}`)
    try {
      f()
    } catch (e) {
      if (!(e instanceof kind) || (code !== undefined && (e as GaioError).code !== code)) {
        this.problem(`${what}: threw ${(e as Error)?.name} ${(e as GaioError)?.code ?? ''} ${(e as Error)?.message}, expected ${kind.name} ${code ?? ''}`)
      }
      return
    }
    this.problem(`${what}: did not throw (expected ${kind.name} ${code ?? ''})`)
  }

  private pickSide(): Side {
    return this.r.pick(this.sides)
  }

  private size(max: number): number {
    const bucket = this.r.weighted({ tiny: 30, small: 40, medium: 25, large: 5 })
    const [lo, hi] = { tiny: [1, 16], small: [17, 4096], medium: [4097, 256 * 1024], large: [256 * 1024 + 1, 4 << 20] }[bucket]
    return Math.min(max, this.r.int(lo, hi))
  }

  /** A view of `len` bytes, of a random kind, holding `bytes` if given. */
  private view(len: number, bytes?: Buffer): { view: ArrayBufferView; detachable: boolean } {
    const kind = this.r.weighted({ u8: 30, buffer: 20, dataview: 10, f64: 10, i16: 10, shared: 10, offset: 10 })
    let view: ArrayBufferView
    let u8: Uint8Array
    switch (kind) {
      case 'buffer':
        view = u8 = Buffer.alloc(len)
        break
      case 'dataview': {
        const ab = new ArrayBuffer(len + 3)
        view = new DataView(ab, 3, len)
        u8 = new Uint8Array(ab, 3, len)
        break
      }
      case 'f64':
      case 'i16': {
        const unit = kind === 'f64' ? 8 : 2
        if (len % unit !== 0) return this.plain(len, bytes)
        view = kind === 'f64' ? new Float64Array(len / 8) : new Int16Array(len / 2)
        u8 = new Uint8Array(view.buffer, view.byteOffset, len)
        break
      }
      case 'shared':
        view = u8 = new Uint8Array(new SharedArrayBuffer(len))
        if (bytes) u8.set(bytes)
        return { view, detachable: false }
      case 'offset':
        view = u8 = new Uint8Array(len + 17).subarray(7, 7 + len)
        break
      default:
        return this.plain(len, bytes)
    }
    if (bytes) u8.set(bytes)
    return { view, detachable: true }
  }

  private plain(len: number, bytes?: Buffer) {
    const view = new Uint8Array(len)
    if (bytes) view.set(bytes)
    return { view, detachable: true }
  }

  private deadline(): { at: number | Date | undefined; finite: boolean } {
    const choice = this.r.weighted({ none: 60, past: 10, soon: 15, far: 10, infinite: 5 })
    switch (choice) {
      case 'past': return { at: this.r.chance(0.5) ? Date.now() - this.r.int(0, 10_000) : new Date(0), finite: true }
      case 'soon': return { at: new Date(Date.now() + this.r.int(0, 50)), finite: true }
      case 'far': return { at: Date.now() + 60_000, finite: true }
      case 'infinite': return { at: Infinity, finite: true }
      default: return { at: undefined, finite: false }
    }
  }

  step() {
    const action = this.r.weighted({
      write: 30,
      read: 25,
      readFull: 8,
      free: 2,
      freeIdle: 0.5,
      accept: 2,
      connectRefused: 2,
      connectLoner: 1.5,
      misuse: 8,
      detachWrite: 2,
      detachRead: 1,
      gc: 0.5,
      close: 0.3,
    })
    const w = this.w
    switch (action) {
      case 'write': {
        const side = this.pickSide()
        const len = this.size(this.maxWrite)
        const tx = pattern(this.r.int(0, 1 << 30), len)
        const { view } = this.view(len, tx)
        const dl = this.deadline()
        const op = this.register('write', side, { given: view, len, tx, deadline: dl.finite })
        this.call(op, () => (dl.at === undefined ? w.write(op, side.conn, view) : w.writeTimeout(op, side.conn, view, dl.at!)))
        break
      }
      case 'read':
      case 'readFull': {
        const side = this.pickSide()
        const full = action === 'readFull'
        const swap = !full && this.r.chance(0.5)
        const len = swap ? this.bufferSize : this.size(full ? 1 << 20 : 1 << 20)
        const view = swap ? null : this.view(len).view
        const dl = this.deadline()
        const op = this.register(full ? 'readFull' : 'read', side, { given: view, len, deadline: dl.finite })
        this.call(op, () => {
          if (full) w.readFull(op, side.conn, view!, dl.at)
          else if (dl.at === undefined) w.read(op, side.conn, view)
          else w.readTimeout(op, side.conn, view, dl.at)
        })
        break
      }
      case 'detachWrite': {
        const side = this.pickSide()
        const len = this.size(64 * 1024)
        const tx = pattern(this.r.int(0, 1 << 30), len)
        const view = this.plain(len, tx).view
        const op = this.register('write', side, { given: view, len, tx, detached: true })
        this.call(op, () => w.write(op, side.conn, view))
        detach(view)
        break
      }
      case 'detachRead': {
        const side = this.pickSide()
        const view = this.plain(this.size(64 * 1024)).view
        const op = this.register('read', side, { given: view, len: view.byteLength, detached: true })
        this.call(op, () => w.read(op, side.conn, view))
        detach(view)
        break
      }
      case 'free': {
        const side = this.pickSide()
        this.log(`free ${side.name}`)
        side.freed = true
        w.free(side.conn)
        if (this.r.chance(0.3)) w.free(side.conn)
        break
      }
      case 'freeIdle':
        this.log('free idle listener')
        this.idleFreed = true
        w.free(this.idle)
        break
      case 'accept': {
        const op = this.register('accept', null, { target: 'idle', afterFree: this.idleFreed })
        this.call(op, () => w.accept(op, this.idle))
        break
      }
      case 'connectRefused': {
        const op = this.register('connect', null, { target: 'refused' })
        this.call(op, () => w.connect(op, { host: this.r.chance(0.5) ? HOST : 'localhost', port: this.refusedPort }))
        break
      }
      case 'connectLoner': {
        if (this.sides.length > 40) break
        const op = this.register('connect', null, { target: 'loner', afterFree: this.lnFreed })
        this.call(op, () => w.connect(op, { host: HOST, port: this.ln.port }))
        break
      }
      case 'misuse':
        this.misuseStep()
        break
      case 'gc':
        this.log('gc')
        ;(globalThis as { gc?: () => void }).gc?.()
        break
      case 'close':
        this.log('close')
        this.closed = true
        w.close()
        break
    }
  }

  private misuseStep() {
    const w = this.w
    const side = this.pickSide()
    const buf = Buffer.from('x')
    const which = this.r.int(0, 15)
    switch (which) {
      case 0: {
        const junk = this.r.pick([null, undefined, {}, 42, 'conn', buf, this.idle, this.foreign.conn])
        return this.misuse(`read on ${String(junk)}`, TypeError, undefined, () => w.read('bad', junk as never))
      }
      case 1: {
        const junk = this.r.pick([null, undefined, {}, 42, 'conn', this.ln, this.foreign.conn])
        return this.misuse(`write on ${String(junk)}`, TypeError, undefined, () => w.write('bad', junk as never, buf))
      }
      case 2: {
        const junk = this.r.pick(['bytes', [1, 2, 3], new ArrayBuffer(4), { length: 3 }, 42, null])
        return this.misuse(`write of ${String(junk)}`, TypeError, undefined, () => w.write('bad', side.conn, junk as never))
      }
      case 3: {
        const empty = this.r.pick([new Uint8Array(0), Buffer.alloc(0), new Float64Array(0), new DataView(new ArrayBuffer(2), 2), new Uint8Array(new SharedArrayBuffer(0))])
        const call = this.r.pick([
          () => w.write('bad', side.conn, empty),
          () => w.read('bad', side.conn, empty),
          () => w.readFull('bad', side.conn, empty),
          () => w.readTimeout('bad', side.conn, empty, Date.now() + 10),
        ])
        return this.misuse('an empty buffer', GaioError, 'ERR_EMPTY_BUFFER', call)
      }
      case 4: {
        const gone = new Uint8Array(8)
        detach(gone)
        return this.misuse('a buffer detached before the call', GaioError, 'ERR_EMPTY_BUFFER', () => w.write('bad', side.conn, gone))
      }
      case 5: {
        const bad = this.r.pick([NaN, new Date('nope')])
        return this.misuse(`deadline ${String(bad)}`, RangeError, undefined, () => w.readTimeout('bad', side.conn, null, bad))
      }
      case 6: {
        const bad = this.r.pick(['soon', {}, 10n, [1], undefined])
        return this.misuse(`deadline ${typeof bad}`, TypeError, undefined, () => w.writeTimeout('bad', side.conn, buf, bad as never))
      }
      case 7: {
        const junk = this.r.pick([side.conn, {}, null, this.foreign.listener])
        return this.misuse('accept on a non-listener', TypeError, undefined, () => w.accept('bad', junk as never))
      }
      case 8: {
        const port = this.r.pick([0, -1, 65536, 1.5, NaN])
        return this.misuse(`connect to port ${port}`, RangeError, undefined, () => w.connect('bad', { host: HOST, port }))
      }
      case 9:
        return this.misuse('connect without options', TypeError, undefined, () => w.connect('bad', this.r.pick([null, 'x', undefined]) as never))
      case 10: {
        const junk = this.r.pick([{}, 42, this.foreign.conn, this.foreign.listener])
        return this.misuse('free of something not ours', TypeError, undefined, () => w.free(junk as never))
      }
      case 11:
        if (this.closed) return this.misuse('listen after close', GaioError, 'ERR_WATCHER_CLOSED', () => w.listen({ host: HOST, port: 0 }))
        return this.misuse('listen on a bad port', RangeError, undefined, () => w.listen({ host: HOST, port: 70000 }))
      case 12:
        return this.misuse('readFull over 2 GiB', RangeError, undefined, () => w.readFull('bad', side.conn, this.huge()))
      case 13:
        return this.misuse('write over 2 GiB', RangeError, undefined, () => w.write('bad', side.conn, this.huge()))
      case 14:
        return this.misuse('readFull without a buffer', TypeError, undefined, () => w.readFull('bad', side.conn, null as never))
      default:
        return this.misuse('read with a listener', TypeError, undefined, () => w.read('bad', this.ln as never))
    }
  }

  // ---- results ----

  handle(batch: OpResult[]) {
    for (const res of batch) this.check(res)
  }

  check(res: OpResult) {
    const op = res.context as Op
    if (!op || typeof op !== 'object' || typeof op.id !== 'number' || this.ops.get(op.id) !== op) {
      this.problem(`a result with an unknown context: ${String(res.context)}`)
      return
    }
    if (op.result) {
      this.problem(`#${op.id} ${op.kind} completed twice (${op.result.error?.code ?? 'ok'}, then ${res.error?.code ?? 'ok'})`)
      return
    }
    op.result = res
    this.pending--
    const code = res.error?.code ?? null
    this.count(`${op.kind} ${code ?? 'ok'}`)
    const where = `#${op.id} ${op.kind} on ${op.side?.name ?? op.target}: ${code ?? 'ok'}, ${res.size} bytes`
    const expectOp = { read: OpType.Read, readFull: OpType.Read, write: OpType.Write, accept: OpType.Accept, connect: OpType.Connect }[op.kind]
    if (res.operation !== expectOp) this.problem(`${where}: operation ${OpType[res.operation]}`)
    if (res.error && !(res.error instanceof GaioError)) this.problem(`${where}: error is not a GaioError`)

    // After close() or free(): exactly the closed codes, nothing else.
    if (op.afterClose) {
      if (code !== 'ERR_WATCHER_CLOSED' || res.size !== 0) this.problem(`${where}: made after close()`)
      return
    }
    if (op.afterFree) {
      if (code !== 'ERR_CONN_CLOSED' || res.size !== 0) this.problem(`${where}: made after free()`)
      return
    }
    const allowed = new Set<string | null>()
    if (this.closed) allowed.add('ERR_WATCHER_CLOSED')
    switch (op.kind) {
      case 'accept':
        if (this.idleFreed) allowed.add('ERR_CONN_CLOSED')
        if (!allowed.has(code)) this.problem(`${where}: an accept nobody connects to`)
        if (!(res.conn instanceof Conn)) this.problem(`${where}: conn is not a Conn`)
        return
      case 'connect':
        if (!(res.conn instanceof Conn)) this.problem(`${where}: conn is not a Conn`)
        if (op.target === 'refused') allowed.add('ECONNREFUSED')
        else {
          allowed.add(null)
          if (this.lnFreed) allowed.add('ECONNREFUSED')
        }
        if (!allowed.has(code)) this.problem(`${where}: unexpected`)
        {
          const side = this.newSide(`${op.target}${op.id}`, res.conn as Conn, null)
          side.freed = code !== null
        }
        return
    }
    const side = op.side!
    if (res.conn !== side.conn) this.problem(`${where}: result names another connection`)
    if (side.freed) allowed.add('ERR_CONN_CLOSED')
    if (op.deadline) allowed.add('ERR_DEADLINE')
    if (op.detached) allowed.add('ERR_BUFFER_DETACHED')
    if (op.kind === 'write') {
      allowed.add(null).add('EPIPE').add('ECONNRESET')
      if (!allowed.has(code)) this.problem(`${where}: unexpected`)
      if (res.buffer !== op.given) this.problem(`${where}: buffer is not the one given`)
      if (code === null && res.size !== op.len) this.problem(`${where}: a whole write of ${op.len} reports ${res.size}`)
      if (code !== null && !(res.size >= 0 && res.size < op.len)) this.problem(`${where}: a failed write of ${op.len}`)
      if (code === 'ERR_BUFFER_DETACHED' && res.size !== 0) this.problem(`${where}: a detached write wrote bytes`)
      if (op.seen > res.size) this.problem(`${where}: the peer already read ${op.seen} bytes of it`)
      this.checkOrder(side.writes, op, where)
      return
    }
    // Reads.
    allowed.add(null).add('EOF').add('ECONNRESET')
    if (!allowed.has(code)) this.problem(`${where}: unexpected`)
    this.checkOrder(side.reads, op, where)
    if (code === 'ERR_BUFFER_DETACHED') {
      side.desync = true
      if (res.size !== 0) this.problem(`${where}: reports bytes`)
      return
    }
    if (op.given) {
      if (res.buffer !== op.given) this.problem(`${where}: buffer is not the one given`)
      if (res.isSwapBuffer) this.problem(`${where}: isSwapBuffer with a buffer given`)
    } else if (res.size > 0 && (!res.isSwapBuffer || res.buffer?.byteLength !== res.size)) {
      this.problem(`${where}: a swap read without its view`)
    }
    if (res.size > op.len) this.problem(`${where}: more than the ${op.len} asked for`)
    if (op.kind === 'readFull' && code === null && res.size !== op.len) this.problem(`${where}: a readFull of ${op.len} completed short`)
    if (op.kind === 'read' && code === null && res.size === 0) this.problem(`${where}: a read with no bytes and no error`)
    if (op.kind === 'read' && code !== null && res.size !== 0) this.problem(`${where}: a failed read with bytes`)
    if (res.size > 0) {
      if (op.detached) this.problem(`${where}: bytes in a detached buffer`)
      if (side.eof) this.problem(`${where}: data after EOF`)
      const v = (op.given ?? res.buffer)!
      this.receive(side, new Uint8Array(v.buffer, v.byteOffset, res.size), where)
    }
    if (code === 'EOF') side.eof = true
  }

  /** Per direction, in the order made: nothing completes normally after a request cut by free() or close(). */
  private checkOrder(list: Op[], op: Op, where: string) {
    const normal = (o: Op) => {
      const code = o.result?.error?.code ?? null
      return o.result !== undefined && code !== 'ERR_DEADLINE' && code !== 'ERR_BUFFER_DETACHED' && !CLOSED_CODES.has(code as string)
    }
    const cut = (o: Op) => CLOSED_CODES.has(o.result?.error?.code as string) && !o.afterFree && !o.afterClose
    const index = list.indexOf(op)
    // Whichever of the two is delivered last finds the other.
    if (normal(op)) {
      const earlier = list.slice(0, index).find(cut)
      if (earlier) this.problem(`${where}: completed normally after #${earlier.id}, made before it, was cut with ${earlier.result!.error!.code}`)
    } else if (cut(op)) {
      const later = list.slice(index + 1).find(normal)
      if (later) this.problem(`${where}: cut, but #${later.id}, made after it, completed normally`)
    }
  }

  /** Bytes a read on `side` got: they must continue its peer's stream. */
  private receive(side: Side, bytes: Uint8Array, where: string) {
    if (side.desync) return
    const peer = side.peer
    if (!peer) return this.problem(`${where}: bytes on a connection nobody writes to`)
    let at = 0
    const cur = side.cursor
    while (at < bytes.length) {
      const write = peer.writes[cur.write]
      if (!write) return this.problem(`${where}: ${bytes.length - at} bytes more than ${peer.name} wrote`)
      const limit = write.result ? write.result.size : write.tx!.length
      if (cur.offset >= limit) {
        if (!write.result) return this.problem(`${where}: bytes past #${write.id}, still pending`)
        cur.write++
        cur.offset = 0
        continue
      }
      const n = Math.min(limit - cur.offset, bytes.length - at)
      const expected = write.tx!.subarray(cur.offset, cur.offset + n)
      if (!Buffer.from(bytes.buffer, bytes.byteOffset + at, n).equals(expected)) {
        return this.problem(`${where}: bytes differ from #${write.id} at offset ${cur.offset} (stream offset ${side.received + at})`)
      }
      cur.offset += n
      write.seen = cur.offset
      at += n
    }
    side.received += bytes.length
  }

  // ---- driving ----

  /** Takes one batch if one comes within `ms`; false if none came (a waitIO() is then still waiting). */
  async poll(ms: number): Promise<boolean> {
    let closed = false
    const batch = await this.poller.next(ms).catch((e) => {
      if ((e as GaioError).code !== 'ERR_WATCHER_CLOSED') throw e
      closed = true
      return null
    })
    if (batch) this.handle(batch)
    return batch !== null || closed
  }

  /**
   * Misuse: a second waitIO() while one waits. Only right after a poll that
   * timed out, before any other call: an inline watcher can settle a waiting
   * waitIO() during a call (its writes and their completions run at once).
   */
  waitTwice() {
    this.count('misuse waitIO twice')
    this.log('misuse: a second waitIO()')
    this.w.waitIO().then(
      () => this.problem('a second waitIO() resolved'),
      (e) => (e as GaioError).code !== 'ERR_WAIT_PENDING' && this.problem(`a second waitIO(): ${(e as GaioError).code}`),
    )
  }

  /** Keeps swap reads pending on each live side until nothing more arrives. */
  async drain(ms: number) {
    const until = Date.now() + ms
    let quietSince = Date.now()
    // Stops once nothing came for 300 ms and every direction whose total is known has it all
    // (a loaded machine can be quiet for 300 ms with bytes still to come), or at `ms`.
    while (Date.now() < until && (Date.now() - quietSince < 300 || this.drainable().some((d) => d.received < d.written))) {
      for (const side of this.sides) {
        if (side.freed || side.eof || side.desync) continue
        for (let n = side.reads.filter((o) => !o.result).length; n < 64; n++) {
          const op = this.register('read', side, { len: this.bufferSize })
          this.call(op, () => this.w.read(op, side.conn))
        }
      }
      const before = this.pending
      await this.poll(50)
      if (this.pending !== before) quietSince = Date.now()
    }
    // Where both ends are open and every request on the direction has completed, every byte written was read.
    for (const { side, peer, written, received } of this.drainable()) {
      if (received !== written) this.problem(`${peer.name} → ${side.name}: ${written} bytes written, ${received} read after the drain`)
      else this.count('drained directions')
    }
  }

  /** Directions with both ends open, every write completed and no readFull holding bytes back. */
  private drainable() {
    const out: { side: Side; peer: Side; written: number; received: number }[] = []
    for (const side of this.sides) {
      const peer = side.peer
      if (!peer || side.freed || peer.freed || side.desync || side.eof) continue
      // A pending readFull may hold bytes it has not delivered; a pending read holds none.
      if (side.reads.some((o) => !o.result && o.kind === 'readFull') || peer.writes.some((o) => !o.result)) continue
      out.push({ side, peer, written: peer.writes.reduce((sum, o) => sum + o.result!.size, 0), received: side.received })
    }
    return out
  }

  async finish(graceful: boolean) {
    if (graceful && !this.closed) {
      await this.drain(10_000)
      for (const side of this.sides) {
        side.freed = true
        this.w.free(side.conn)
      }
      this.idleFreed = true
      this.w.free(this.idle)
      this.lnFreed = true
      this.w.free(this.ln)
      const until = Date.now() + 10_000
      while (this.pending > 0 && Date.now() < until) await this.poll(100)
      if (this.pending > 0) this.problem(`${this.pending} requests still pending 10 s after every connection was freed`)
    }
    this.closed = true
    this.w.close()
    const until = Date.now() + 10_000
    for (;;) {
      if (Date.now() > until) {
        this.problem('waitIO() did not reject within 10 s of close()')
        break
      }
      let batch: OpResult[] | null
      try {
        batch = await this.poller.next(until - Date.now())
      } catch (e) {
        if ((e as GaioError).code !== 'ERR_WATCHER_CLOSED') this.problem(`waitIO() after close rejected with ${(e as GaioError).code}`)
        break
      }
      if (batch) this.handle(batch)
    }
    const left = [...this.ops.values()].filter((o) => !o.result)
    if (left.length) this.problem(`${left.length} requests never completed: ${left.slice(0, 5).map((o) => `#${o.id} ${o.kind} on ${o.side?.name ?? o.target}`).join(', ')}`)
    if (this.pending !== left.length) this.problem(`bookkeeping: ${this.pending} pending, ${left.length} without a result`)
  }
}

test('model: random sequences of calls, misuse included, against the model of what must complete and what must arrive', async (t) => {
  t.timeout(BUDGET_MS + 120_000)
  t.log(`seed ${SEED} (GAIO_SEED=${SEED} replays the choices), budget ${BUDGET_MS} ms`)
  // A watcher whose objects the episodes use as "another watcher's".
  const other = new Watcher()
  t.teardown(() => other.close())
  const otherPair = await gaioPair(other)
  let hugeBuffer: Uint8Array | undefined
  const huge = () => (hugeBuffer ??= new Uint8Array(2 ** 31 + 1)) // calloc'd: untouched pages cost nothing
  await collectGarbage()
  const base = openFds()
  const started = Date.now()
  const totals = new Map<string, number>()
  let episodes = 0
  for (let episode = ONLY_EPISODE ?? 0; ONLY_EPISODE === undefined ? Date.now() - started < BUDGET_MS : episode === ONLY_EPISODE; episode++) {
    const r = rng((SEED ^ Math.imul(episode + 1, 0x9e3779b9)) >>> 0)
    const bufferSize = r.pick([7, 512, 4096, 65536])
    const options: WatcherOptions = {
      mode: r.pick(['thread', 'inline'] as const),
      bufferSize,
      swapSize: r.chance(0.3) ? bufferSize * r.pick([1, 2, 16]) : undefined,
    }
    const ep = new Episode(r, options, { w: other, conn: otherPair.client, listener: otherPair.listener }, huge)
    const steps = r.int(50, 500)
    const graceful = r.chance(0.6)
    const label = `seed ${SEED} episode ${episode} (${options.mode}, bufferSize ${bufferSize}, swapSize ${options.swapSize ?? 'default'}, ${steps} steps, ${graceful ? 'graceful' : 'abrupt'} end)`
    try {
      await ep.setUp(r.int(1, 5))
      for (let i = 0; i < steps; i++) {
        ep.step()
        if (r.chance(0.25) && !(await ep.poll(r.pick([0, 0, 1, 5, 20]))) && r.chance(0.05)) ep.waitTwice()
      }
      await ep.finish(graceful)
    } catch (e) {
      ep.problem(`threw: ${(e as Error)?.stack ?? e}`)
      ep.w.close()
    }
    for (const [k, n] of ep.stats) totals.set(k, (totals.get(k) ?? 0) + n)
    const fds = await fdsSettle(base, 3000)
    if (fds > base) ep.problem(`${fds - base} descriptors left open after the episode (${fdSummary()})`)
    episodes++
    if (ep.problems.length) {
      const message = `${label}: ${ep.problems.length} problems\n  ${ep.problems.slice(0, 20).join('\n  ')}\nlast calls:\n  ${ep.trace.join('\n  ')}\nrerun: GAIO_SEED=${SEED} GAIO_EPISODE=${episode} npx ava __test__/model.spec.ts`
      console.error(message)
      t.fail(message)
      break
    }
  }
  other.close()
  const summary = [...totals].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')
  t.log(`${episodes} episodes in ${Date.now() - started} ms: ${summary}`)
  t.true(episodes > 0)
})
