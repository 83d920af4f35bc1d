// The public shapes: what a result is, and the options each call takes.

import type { Socket } from 'node:net'
import type { Conn, Listener } from './conn'
import type { GaioError } from './errors'

/** What a completed request was. */
export enum OpType {
  Read = 0,
  Write = 1,
  Accept = 2,
  Connect = 3,
  /** A half-close: `closeWrite()`. */
  CloseWrite = 4,
}

/** What requests take as a connection: a Conn, or a net.Socket to delegate on first use. */
export type ConnLike = Conn | Socket

interface Outcome<Context> {
  /** The context value given with the request. */
  readonly context: Context
  /** Bytes read or written (also when `error` is set, for a partial readFull or write). */
  readonly size: number
}

/** A read that got bytes: `buffer` holds exactly `size` of them. */
export interface ReadDone<Context = unknown> extends Outcome<Context> {
  readonly operation: OpType.Read
  readonly conn: ConnLike
  /** The bytes read, as a view of the swap buffer or of the caller's buffer. */
  readonly buffer: Uint8Array
  /** The bytes are in the watcher's swap buffer: valid until the next waitIO(). */
  readonly isSwapBuffer: boolean
  readonly error: null
}

/** A read that failed; a readFull cut short still hands over what it got. */
export interface ReadFailed<Context = unknown> extends Outcome<Context> {
  readonly operation: OpType.Read
  readonly conn: ConnLike
  /** The bytes read before the failure (`size` of them), or null when none were. */
  readonly buffer: Uint8Array | null
  readonly isSwapBuffer: boolean
  readonly error: GaioError
}

export interface WriteResult<Context = unknown> extends Outcome<Context> {
  readonly operation: OpType.Write
  readonly conn: ConnLike
  /** The bytes given to write(): the buffer itself, or a Uint8Array over another kind of view. */
  readonly buffer: Uint8Array
  readonly isSwapBuffer: false
  readonly error: GaioError | null
}

export interface CloseWriteResult<Context = unknown> extends Outcome<Context> {
  readonly operation: OpType.CloseWrite
  readonly conn: ConnLike
  readonly buffer: null
  readonly isSwapBuffer: false
  readonly error: GaioError | null
}

/** An accept or connect that made a connection. */
export interface Connected<Context = unknown> extends Outcome<Context> {
  readonly operation: OpType.Accept | OpType.Connect
  /** The new connection. */
  readonly conn: Conn
  readonly buffer: null
  readonly isSwapBuffer: false
  readonly error: null
}

/** An accept that failed: `conn` is its listener, to accept on again. */
export interface AcceptFailed<Context = unknown> extends Outcome<Context> {
  readonly operation: OpType.Accept
  readonly conn: Listener
  readonly buffer: null
  readonly isSwapBuffer: false
  readonly error: GaioError
}

/** A connect that failed: `conn` is a connection that never opened (every request on it fails). */
export interface ConnectFailed<Context = unknown> extends Outcome<Context> {
  readonly operation: OpType.Connect
  readonly conn: Conn
  readonly buffer: null
  readonly isSwapBuffer: false
  readonly error: GaioError
}

/**
 * One completed request. Narrow it on `operation` and `error`: a read without
 * an error has its bytes in `buffer`; an accept or connect without one has
 * the new connection in `conn`.
 * @example
 * for (const res of await w.waitIO()) {
 *   if (res.operation === OpType.Read && res.error === null) w.write(null, res.conn, res.buffer)
 * }
 */
export type OpResult<Context = unknown> =
  | ReadDone<Context>
  | ReadFailed<Context>
  | WriteResult<Context>
  | CloseWriteResult<Context>
  | Connected<Context>
  | AcceptFailed<Context>
  | ConnectFailed<Context>

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
  /**
   * A write that completes whole delivers no result (default false): a
   * responder's steady state is then one completion per batch, its read. A
   * write that fails, in part or whole, and every closeWrite() still deliver one.
   * A silent write that the watcher sends whole at the flush is over there
   * (inline, any write with nothing queued ahead of it; threaded, the first
   * such write of each flush); the others count as outstanding (and keep the
   * process alive) until a waitIO() takes their completions: keep a waitIO()
   * pending. It also hears of failures, and moves a write larger than 4 MiB on
   * to its next chunk.
   */
  silentWrites?: boolean
}

export interface ListenOptions {
  /** An IP address (an IPv6 one may carry a %scope) or 'localhost' (the default: 127.0.0.1). */
  host?: string
  /** 0 (the default) picks a free port. */
  port?: number
  /** A Unix socket path instead of host and port. */
  path?: string
  /** The kernel's queue of connections not yet accepted (default 4096). */
  backlog?: number
  /** SO_REUSEPORT: several listeners on one port share its connections. */
  reusePort?: boolean
}

export interface ConnectOptions {
  /** An IP address, or a name: every address it resolves to is tried in order. */
  host?: string
  port?: number
  /** A Unix socket path instead of host and port. */
  path?: string
  /** Fail with ERR_DEADLINE (and close the socket) if not connected within this many milliseconds. */
  timeout?: number
}

/** When a request gives up: a Date, epoch milliseconds, or `{ timeout }` milliseconds from now. */
export type Deadline = Date | number | { timeout: number }

export interface WaitOptions {
  /** Stops waiting: waitIO() rejects with an AbortError; results stay for the next call. */
  signal?: AbortSignal
}
