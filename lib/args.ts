// Argument checks shared by the calls: each returns the checked value or
// throws Node's kind of error (ERR_INVALID_ARG_TYPE, ERR_INVALID_ARG_VALUE,
// ERR_OUT_OF_RANGE), naming the argument.

import { GaioError, invalidArgType, invalidArgValue, outOfRange } from './errors'

export function bytesOf(buf: unknown, what: string): Uint8Array {
  if (!ArrayBuffer.isView(buf)) throw invalidArgType(what, 'an instance of Buffer, TypedArray or DataView', buf)
  return buf instanceof Uint8Array ? buf : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
}

export function nonEmpty(bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.byteLength === 0) throw new GaioError('ERR_EMPTY_BUFFER', `${what} is empty (or its ArrayBuffer is detached)`)
  return bytes
}

/** The most bytes one request moves: lengths and sizes cross to the engine as 32-bit integers. */
export const MAX_TRANSFER = 0x7fffffff

export function transferable(bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.byteLength > MAX_TRANSFER) throw outOfRange(`${what}.byteLength`, `<= ${MAX_TRANSFER}: one request moves at most ${MAX_TRANSFER} bytes, split it`, bytes.byteLength)
  return bytes
}

export const MAX_DELAY = 0x7fffffff

/**
 * Deadlines are absolute; a number below this (2001-09-09) is almost surely a
 * duration passed by mistake, which would fire at once. 0 and negative numbers
 * still mean "long past", as a Date long past does.
 */
const EARLIEST_DEADLINE = 1e12

/** The deadline as epoch milliseconds, clamped to what the engine takes (from now to MAX_DELAY after). */
export function deadlineAt(deadline: unknown, what = 'deadline'): number {
  const now = Date.now()
  if (deadline !== null && typeof deadline === 'object' && !(deadline instanceof Date)) {
    checkKeys(deadline, what, ['timeout'])
    const timeout = (deadline as { timeout?: unknown }).timeout
    if (typeof timeout !== 'number') throw invalidArgType(`${what}.timeout`, 'of type number', timeout)
    if (Number.isNaN(timeout) || timeout < 0) throw outOfRange(`${what}.timeout`, '>= 0 (milliseconds from now)', timeout)
    return now + Math.min(MAX_DELAY, timeout)
  }
  const at = deadline instanceof Date ? deadline.getTime() : deadline
  if (typeof at !== 'number') throw invalidArgType(what, 'a Date, epoch milliseconds or { timeout: ms }', deadline)
  if (Number.isNaN(at)) throw outOfRange(what, 'a valid time', deadline)
  if (typeof deadline === 'number' && at > 0 && at < EARLIEST_DEADLINE) {
    throw outOfRange(what, `an absolute time (a Date or epoch milliseconds, such as Date.now() + ${at}); for a duration pass { timeout: ${at} }`, at)
  }
  return Math.min(now + MAX_DELAY, Math.max(now, at))
}

export function integerIn(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number') throw invalidArgType(what, 'of type number', value)
  if (!Number.isInteger(value) || value < min || value > max) throw outOfRange(what, `an integer >= ${min} and <= ${max}`, value)
  return value
}

export function booleanOf(value: unknown, what: string): boolean {
  if (typeof value !== 'boolean') throw invalidArgType(what, 'of type boolean', value)
  return value
}

/** An options argument: an object (or undefined, for none). */
export function optionsObject(options: unknown, what: string): object {
  if (options === undefined) return {}
  if (options === null || typeof options !== 'object') throw invalidArgType(what, 'of type object', options)
  return options
}

/** Refuses keys not in `known`: a misspelt option would otherwise be ignored without a word. */
export function checkKeys(options: object, what: string, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw invalidArgValue(what, options, `has an unknown option "${key}" (known: ${known.join(', ')})`)
  }
}
