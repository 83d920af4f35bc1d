// The native side as the facade sees it: the addon's functions, the watcher
// methods bound to native state, and the crossing format they share, which
// the addon exports (src/layout.rs) so that it is defined in one place.

import { loadAddon } from './loader'

/** The crossing format (src/layout.rs). */
interface Layout {
  /** Submission record: [kind, req, conn, arg, extra, deadline]. */
  submitFields: number
  /** Completion record: [req, size, error, where, offset]. */
  takeFields: number
  noDeadline: number
  /** The largest swapSize (and so bufferSize) the native side takes. */
  maxSwapSize: number
  /** The most records either record memory may hold. */
  maxRecords: number
  kinds: Record<'Read' | 'ReadFull' | 'Write' | 'Accept' | 'Connect' | 'Free' | 'CloseWrite', number>
  /** Where a completion's read bytes are, besides swap arena 0 or 1. */
  where: Record<'None' | 'Owned' | 'Socket', number>
  /** The engine's own error codes (negative; positive ones are errno values). */
  errors: Record<'EOF' | 'ERR_DEADLINE' | 'ERR_CONN_CLOSED' | 'ERR_WATCHER_CLOSED' | 'ERR_INVALID_OP' | 'ERR_EMPTY_BUFFER', number>
}

interface Native {
  layout: Layout
  createWatcher(onReady: () => void, bufferSize: number, swapSize: number, cpu: number, inline: boolean): NativeWatcher
  /** [localAddress, localPort, remoteAddress, remotePort] of an open connection's descriptor. */
  socketAddresses(fd: number): [string?, number?, string?, number?]
  /** Bytes sent now from `bytes` (0 when the socket takes none), or -errno. */
  sendNow(fd: number, bytes: Uint8Array): number
  /** 0, or -errno. */
  setNoDelay(fd: number, on: boolean): number
  /** 0, or -errno. */
  setKeepAlive(fd: number, on: boolean, idleSeconds: number): number
}

/** The native side of one watcher: methods bound to its state (src/lib.rs). */
export interface NativeWatcher {
  /** Fresh record memory: [submission records, completion records], lengths in fields. */
  records(submitLen: number, takeLen: number): ArrayBuffer[]
  swapBuffers(): ArrayBuffer[]
  /** Reads `count` records from the submission memory. True when a take is wanted now (inline mode): completions wait, or a starved swap read needs a take. */
  submit(count: number, extras: unknown[]): boolean
  /** Writes the completions into the completion memory; returns how many, or -how many when it holds too few. */
  take(): number
  copyOwned(index: number, target: Uint8Array): void
  keepAlive(on: boolean): void
  close(): void
  /** The bound port, or -errno. */
  listen(conn: number, host: string, port: number, path: string, backlog: number, reusePort: boolean): number
  /** The duplicate's descriptor, or -errno. */
  adopt(conn: number, fd: number): number
  /** A test hook: the poller panics at its next notification (on its thread, or in an inline turn). */
  _panicPoller(): void
}

export const native = loadAddon<Native>().binding
export const { submitFields: SUBMIT_FIELDS, takeFields: TAKE_FIELDS, noDeadline: NO_DEADLINE, maxSwapSize: MAX_SWAP_SIZE, maxRecords: MAX_RECORDS, kinds: Kind, where: Where, errors: EngineErrors } = native.layout
export type Kind = number
