// One request between the call that made it and its result.

import type { Conn, ConnState, Listener } from './conn'
import type { Kind } from './native'
import type { ConnLike } from './types'

/** One request until it completes. A class, so every request has one shape (and a small one). */
export class Request {
  constructor(
    readonly kind: Kind,
    readonly context: unknown,
    /** What the caller passed as the connection (a Conn, Listener or net.Socket), handed back. */
    readonly conn: ConnLike | Listener | null,
    /** The connection it acts on; for Free, the one to close. */
    readonly state: ConnState,
    /** The caller's buffer as bytes: filled by reads, sent by writes; null for swap reads. */
    readonly buffer: Uint8Array | null,
    /** Writes: what the caller passed, handed back in the result. */
    readonly given: ArrayBufferView | null,
    /** Reads and writes: the length; accept: the listener's id; connect: the port; free: the id to close. */
    readonly arg: number,
    /** Its deadline in epoch milliseconds, or NO_DEADLINE. */
    readonly deadline: number,
    /** Accept and connect: the new connection. */
    readonly created: Conn | null = null,
    /** Connect: where to (an IP address, or `unix:` and a path). */
    readonly address: string | null = null,
    /** Connect: the addresses a name also resolved to, tried in turn if this one fails. */
    readonly fallbacks: readonly string[] = [],
  ) {}

  /** Writes larger than a chunk go to the engine a chunk at a time: the bytes sent so far. */
  sent = 0
}
