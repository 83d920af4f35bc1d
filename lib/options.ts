// The options each Watcher call takes, checked and turned into what the call
// needs: defaults applied, unknown keys refused, contradictions caught.

import { isIP } from 'node:net'
import { booleanOf, checkKeys, integerIn, MAX_DELAY, optionsObject } from './args'
import { invalidArgType, invalidArgValue } from './errors'
import { MAX_SWAP_SIZE, NO_DEADLINE } from './native'
import type { ConnectOptions, ListenOptions, WaitOptions, WatcherOptions } from './types'

const WATCHER_OPTIONS = ['bufferSize', 'swapSize', 'cpu', 'mode', 'silentWrites'] as const
const LISTEN_OPTIONS = ['host', 'port', 'path', 'backlog', 'reusePort'] as const
const CONNECT_OPTIONS = ['host', 'port', 'path', 'timeout'] as const
const WAIT_OPTIONS = ['signal'] as const

export interface WatcherConfig {
  bufferSize: number
  swapSize: number
  /** The CPU to pin the poller to, or -1. */
  cpu: number
  mode: 'thread' | 'inline'
  silentWrites: boolean
}

export function watcherConfigOf(options: unknown): WatcherConfig {
  const given = optionsObject(options, 'options') as WatcherOptions
  checkKeys(given, 'options', WATCHER_OPTIONS)
  const bufferSize = integerIn(given.bufferSize ?? 65536, 1, MAX_SWAP_SIZE, 'options.bufferSize')
  const swapSize = integerIn(given.swapSize ?? Math.max(1 << 20, bufferSize), bufferSize, MAX_SWAP_SIZE, 'options.swapSize')
  const cpu = given.cpu === undefined ? -1 : integerIn(given.cpu, 0, 1 << 16, 'options.cpu')
  const mode = given.mode ?? 'thread'
  if (mode !== 'thread' && mode !== 'inline') throw invalidArgValue('options.mode', mode, "must be 'thread' or 'inline'")
  if (mode === 'inline' && cpu >= 0) throw invalidArgValue('options.cpu', cpu, 'pins the poller thread, and an inline watcher has none')
  const silentWrites = booleanOf(given.silentWrites ?? false, 'options.silentWrites')
  return { bufferSize, swapSize, cpu, mode, silentWrites }
}

/** Where to listen: a Unix socket path (`path` non-empty), or an IP address and port. */
export interface ListenAt {
  host: string
  port: number
  path: string
  backlog: number
  reusePort: boolean
}

export function listenAtOf(options: unknown): ListenAt {
  const given = optionsObject(options, 'options') as ListenOptions
  checkKeys(given, 'options', LISTEN_OPTIONS)
  const backlog = integerIn(given.backlog ?? 4096, 1, MAX_DELAY, 'options.backlog')
  const reusePort = booleanOf(given.reusePort ?? false, 'options.reusePort')
  if (given.path !== undefined) {
    eitherPathOrAddress(given)
    return { host: '', port: 0, path: pathOf(given.path, 'options.path'), backlog, reusePort }
  }
  let host = hostOf(given.host, 'options.host')
  // Listening on a name would need a lookup first; localhost is the one name taken.
  if (host === 'localhost') host = '127.0.0.1'
  if (!isIP(host)) throw invalidArgValue('options.host', host, 'must be an IP address or "localhost"')
  return { host, port: integerIn(given.port ?? 0, 0, 65535, 'options.port'), path: '', backlog, reusePort }
}

/** Where to connect: a Unix socket path, or a host (a name or an IP address) and port; and by when. */
export type ConnectTo = ({ path: string } | { host: string; port: number }) & { deadline: number }

export function connectToOf(options: unknown): ConnectTo {
  const given = optionsObject(options, 'options') as ConnectOptions
  checkKeys(given, 'options', CONNECT_OPTIONS)
  const deadline = given.timeout === undefined ? NO_DEADLINE : Date.now() + integerIn(given.timeout, 0, MAX_DELAY, 'options.timeout')
  if (given.path !== undefined) {
    eitherPathOrAddress(given)
    return { path: pathOf(given.path, 'options.path'), deadline }
  }
  // As node:net: an empty host is the local host (a lookup of '' finds nothing).
  const host = hostOf(given.host, 'options.host') || 'localhost'
  return { host, port: integerIn(given.port, 1, 65535, 'options.port'), deadline }
}

/** A waitIO() options argument's signal, checked: a wrong one would leave a waiter nobody can settle. */
export function signalOf(options: unknown): AbortSignal | undefined {
  const given = optionsObject(options, 'options') as WaitOptions
  checkKeys(given, 'options', WAIT_OPTIONS)
  if (given.signal !== undefined && !(given.signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', given.signal)
  return given.signal
}

/** A host argument; none means localhost. */
function hostOf(host: unknown, what: string): string {
  if (host === undefined) return 'localhost'
  if (typeof host !== 'string') throw invalidArgType(what, 'of type string', host)
  return host
}

/** A Unix socket path and a TCP address exclude each other. */
function eitherPathOrAddress(given: { host?: unknown; port?: unknown }): void {
  if (given.host !== undefined || given.port !== undefined) throw invalidArgValue('options', given, 'takes either path, or host and port, not both')
}

function pathOf(path: unknown, what: string): string {
  if (typeof path !== 'string') throw invalidArgType(what, 'of type string', path)
  if (path === '') throw invalidArgValue(what, path, 'must be a non-empty path')
  return path
}
