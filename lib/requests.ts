// A watcher's pending requests, as a table of columns: a request is a slot
// number, and each of its fields an entry in that field's array. Ten thousand
// idle connections each hold a pending read, and a few words per request in
// columns cost less than an object per request (a header plus every field,
// used or not). The table also knows what each request completes as.

import type { Conn, ConnState, Listener } from './conn'
import type { ErrorPlace, GaioError } from './errors'
import { Kind } from './native'
import { OpType, type ConnLike } from './types'

/** A connect's destination (an IP address, or `unix:` and a path) and the addresses to try if it fails. */
export interface ConnectTarget {
  readonly address: string
  readonly fallbacks: readonly string[]
}

/** A result as the watcher builds it, before it is typed for the caller. */
export interface RawResult {
  operation: OpType
  context: unknown
  conn: ConnLike | Listener
  buffer: ArrayBufferView | null
  size: number
  isSwapBuffer: boolean
  error: GaioError | null
}

/** What each request kind completes as. */
const OPERATIONS = new Map<number, OpType>([
  [Kind.Read, OpType.Read],
  [Kind.ReadFull, OpType.Read],
  [Kind.Write, OpType.Write],
  [Kind.Accept, OpType.Accept],
  [Kind.Connect, OpType.Connect],
  [Kind.CloseWrite, OpType.CloseWrite],
])

/** The system call a request's OS error came from, as Node names them. */
const SYSCALLS = new Map<number, string>([
  [Kind.Read, 'read'],
  [Kind.ReadFull, 'read'],
  [Kind.Write, 'write'],
  [Kind.Accept, 'accept'],
  [Kind.Connect, 'connect'],
  [Kind.CloseWrite, 'shutdown'],
])

const INITIAL_SLOTS = 64

/** The requests from the call that made each until its result. */
export class RequestTable {
  private readonly freeSlots: number[] = []
  private size = 0
  kinds = new Uint8Array(INITIAL_SLOTS)
  /** Reads and writes: the length; accept: the listener's id; connect: the port; free: the id to close. */
  args = new Int32Array(INITIAL_SLOTS)
  /** Epoch milliseconds, or NO_DEADLINE. */
  deadlines = new Float64Array(INITIAL_SLOTS)
  /** Writes: the bytes sent so far (a large write goes to the engine a chunk at a time). */
  sent = new Int32Array(INITIAL_SLOTS)
  readonly contexts: unknown[] = []
  /** What the caller passed as the connection (a Conn, Listener or net.Socket), handed back; null for Free. */
  readonly conns: (ConnLike | Listener | null)[] = []
  /** The connection it acts on; for Free, none of the caller's. */
  readonly states: (ConnState | undefined)[] = []
  /** The caller's buffer as bytes: filled by reads, sent by writes; null for swap reads. */
  readonly buffers: (Uint8Array | null)[] = []
  /** Writes: what the caller passed, handed back in the result. */
  readonly givens: (ArrayBufferView | null)[] = []
  /** Accept and connect: the new connection. Few at a time, so kept aside. */
  readonly created = new Map<number, Conn>()
  /** Connect: where to. */
  readonly targets = new Map<number, ConnectTarget>()

  add(kind: Kind, context: unknown, conn: ConnLike | Listener | null, state: ConnState, buffer: Uint8Array | null, given: ArrayBufferView | null, arg: number, deadline: number): number {
    const slot = this.freeSlots.pop() ?? this.grow()
    this.kinds[slot] = kind
    this.args[slot] = arg
    this.deadlines[slot] = deadline
    this.sent[slot] = 0
    this.contexts[slot] = context
    this.conns[slot] = conn
    this.states[slot] = state
    this.buffers[slot] = buffer
    this.givens[slot] = given
    return slot
  }

  /** The slot is free for reuse; what it referred to is no longer held. */
  release(slot: number): void {
    this.contexts[slot] = undefined
    this.conns[slot] = null
    this.states[slot] = undefined
    this.buffers[slot] = null
    this.givens[slot] = null
    this.created.delete(slot)
    this.targets.delete(slot)
    this.freeSlots.push(slot)
  }

  /** What the request completes as. */
  operation(slot: number): OpType {
    return OPERATIONS.get(this.kinds[slot]!)!
  }

  /** The request's result with `size` bytes moved: its buffer is the bytes read, or what was given to write. */
  result(slot: number, size: number, error: GaioError | null): RawResult {
    const operation = this.operation(slot)
    const bytes = this.buffers[slot] ?? null
    const buffer = operation !== OpType.Read ? this.givens[slot] ?? null : bytes !== null && size > 0 ? bytes.subarray(0, size) : null
    // A failed accept hands back its listener, as the request named it; a failed connect, its dead connection.
    return { operation, context: this.contexts[slot], conn: this.conns[slot] as ConnLike, buffer, size, isSwapBuffer: false, error }
  }

  /** Where the request's OS error happened, for its message and fields. */
  place(slot: number): ErrorPlace {
    const syscall = SYSCALLS.get(this.kinds[slot]!)
    const address = this.targets.get(slot)?.address
    if (address === undefined) return { syscall }
    if (address.startsWith('unix:')) return { syscall, path: address.slice('unix:'.length) }
    return { syscall, address, port: this.args[slot]! }
  }

  private grow(): number {
    const slot = this.size++
    if (slot === this.kinds.length) {
      this.kinds = resized(this.kinds, new Uint8Array(2 * slot))
      this.args = resized(this.args, new Int32Array(2 * slot))
      this.deadlines = resized(this.deadlines, new Float64Array(2 * slot))
      this.sent = resized(this.sent, new Int32Array(2 * slot))
    }
    return slot
  }
}

function resized<T extends Uint8Array | Int32Array | Float64Array>(from: T, to: T): T {
  to.set(from)
  return to
}
