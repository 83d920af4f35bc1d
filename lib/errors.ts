// Errors: the one class results and calls carry, the codes the native side
// reports, and argument errors in Node's own style and codes.

import { constants as osConstants } from 'node:os'
import { inspect } from 'node:util'
import { EngineErrors } from './native'

/** Where an OS error happened, as Node's own errors say it. */
export interface ErrorPlace {
  /** The system call that failed: 'connect', 'accept', 'read', 'write', 'listen', 'shutdown'. */
  syscall?: string
  /** The IP address (or host) involved. */
  address?: string
  port?: number
  /** The Unix socket path involved. */
  path?: string
}

/**
 * An error carried by a result or thrown by a call; `code` names it. OS errors
 * carry `errno` and, like Node's, the `syscall` and the `address` and `port`
 * (or `path`) involved: `connect ECONNREFUSED 127.0.0.1:8080`.
 * @example
 * if (res.error?.code === 'ECONNREFUSED') console.log(res.error.message) // 'connect ECONNREFUSED 127.0.0.1:8080'
 */
export class GaioError extends Error {
  /** What went wrong: 'EOF', 'ERR_DEADLINE', 'ERR_CONN_CLOSED', …, or the OS's code. @example if (res.error?.code === 'EOF') w.free(res.conn) */
  readonly code: string
  /** The OS's error number, for OS errors only. @example res.error.errno // 111 (ECONNREFUSED on Linux) */
  readonly errno?: number
  /** The system call that failed, for OS errors. @example res.error.syscall // 'connect' */
  readonly syscall?: string
  /** The IP address involved, as with Node's errors. @example res.error.address // '127.0.0.1' */
  readonly address?: string
  /** The port involved. @example res.error.port // 8080 */
  readonly port?: number
  /** The Unix socket path involved. @example res.error.path // '/tmp/app.sock' */
  readonly path?: string
  /**
   * Made by the watcher; constructing one yourself is for tests and wrappers.
   * @example new GaioError('ERR_DEADLINE', 'the deadline passed')
   */
  constructor(code: string, message: string, errno?: number, place: ErrorPlace = {}) {
    super(message)
    this.name = 'GaioError'
    this.code = code
    if (errno !== undefined) this.errno = errno
    if (place.syscall !== undefined) this.syscall = place.syscall
    if (place.address !== undefined) this.address = place.address
    if (place.port !== undefined) this.port = place.port
    if (place.path !== undefined) this.path = place.path
  }
}

/** What each of the engine's own errors (lib/native.ts) means. */
const ENGINE_MESSAGES: Record<keyof typeof EngineErrors, string> = {
  EOF: 'end of stream',
  ERR_DEADLINE: 'the deadline passed',
  ERR_CONN_CLOSED: 'the connection is closed',
  ERR_WATCHER_CLOSED: 'the watcher is closed',
  ERR_INVALID_OP: 'the operation does not apply to this kind of connection',
  ERR_EMPTY_BUFFER: 'empty buffer',
}
const ENGINE_ERRORS = new Map<number, [string, string]>(
  Object.entries(EngineErrors).map(([name, code]) => [code, [name, ENGINE_MESSAGES[name as keyof typeof EngineErrors]]]),
)
const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, n]) => [n, name]))

/** @internal The error for a code from the native side, saying where it happened. */
export function errorFromCode(code: number, place: ErrorPlace = {}): GaioError {
  const known = ENGINE_ERRORS.get(code)
  if (known) return new GaioError(known[0], known[1], undefined, place)
  const name = ERRNO_NAMES.get(code) ?? `E${code}`
  const where = place.path ?? (place.address === undefined ? '' : place.port === undefined ? place.address : `${place.address}:${place.port}`)
  const message = [place.syscall, name, where].filter(Boolean).join(' ')
  return new GaioError(name, message, code, place)
}

/** Node's error codes for bad arguments: a TypeError or RangeError with `code`. */
type ArgumentErrorCode = 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE'

function argumentError(Kind: typeof TypeError | typeof RangeError, code: ArgumentErrorCode, message: string): Error {
  const error = new Kind(message) as Error & { code: ArgumentErrorCode }
  error.code = code
  return error
}

/** How Node's messages show a value received. */
function received(value: unknown): string {
  if (value === null || value === undefined) return `Received ${value}`
  if (typeof value === 'function') return `Received function ${value.name || '<anonymous>'}`
  if (typeof value === 'object') return `Received ${value.constructor?.name ? `an instance of ${value.constructor.name}` : inspect(value, { depth: -1 })}`
  return `Received type ${typeof value} (${inspect(value).slice(0, 28)})`
}

/** @internal ERR_INVALID_ARG_TYPE: `name` must be `expected` (a phrase: "of type number", "an instance of Conn"). */
export function invalidArgType(name: string, expected: string, value: unknown): Error {
  return argumentError(TypeError, 'ERR_INVALID_ARG_TYPE', `The "${name}" argument must be ${expected}. ${received(value)}`)
}

/** @internal ERR_INVALID_ARG_VALUE: `name` is of the right type but not acceptable, for `reason`. */
export function invalidArgValue(name: string, value: unknown, reason: string): Error {
  return argumentError(TypeError, 'ERR_INVALID_ARG_VALUE', `The argument '${name}' ${reason}. Received ${inspect(value, { depth: 0 })}`)
}

/** @internal ERR_OUT_OF_RANGE: `name` must be within `range`. */
export function outOfRange(name: string, range: string, value: unknown): Error {
  return argumentError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "${name}" is out of range. It must be ${range}. Received ${inspect(value)}`)
}
