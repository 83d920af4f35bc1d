// What every workload and system shares: the payload pattern and its check,
// the connect bound, the kernel's counters (listen drops, TIME_WAIT), the HTTP
// responder's parsing, and the child processes (servers, clients, the Rust
// ceiling) with their one-line-JSON protocol. Statistics: stats.mjs.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const HOST = '127.0.0.1'
/**
 * Connections started and not yet accepted by the server, at most, for every
 * system. A burst of thousands measures the kernel's SYN retransmit. Counting
 * only until the client's connect completes is not enough: on loopback that
 * happens as soon as the connection is in the listener's accept queue, and a
 * server that does not get to accept for a few turns then overflows even a
 * 4096 backlog (node:net did, in one run of four: 1023 SYNs dropped, +1 s).
 * In-process clients see the server's accepts; idle-mem's client in another
 * process is told them by the harness; chat's 1000 cannot overflow a 4096 queue.
 */
export const CONNECTING = 1024
/** Accepts kept outstanding on a gaio listener. */
export const ACCEPTS = 512
/** Every listener, of every system, gets this backlog (somaxconn here is 4096). */
export const BACKLOG = 4096

/** Every system that serves echo (and http); node-http serves http only. */
export const ECHO_SYSTEMS = ['gaio', 'gaio-inline', 'node-net', 'node-net-fast', 'rust-engine']
export const HTTP_SYSTEMS = [...ECHO_SYSTEMS, 'node-http']

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
export const now = () => Number(process.hrtime.bigint()) / 1e9

// ---- payloads -------------------------------------------------------------------

// Connection k sends bytes (k + i) % 251: a crossed or shifted echo shows up
// as a mismatch, and the check is one memcmp against a slice of PATTERN.
const PATTERN = Buffer.alloc(1 << 17)
for (let i = 0; i < PATTERN.length; i++) PATTERN[i] = i % 251

/** The `size` bytes connection k sends (size up to 128 KiB - 251). */
export function payload(k, size) {
  const at = k % 251
  return PATTERN.subarray(at, at + size)
}

/** Throws unless `bytes` are what connection k sent at `offset`. */
export function expectEcho(k, offset, bytes, size) {
  if (offset + bytes.length > size) throw new Error(`connection ${k}: ${offset + bytes.length} bytes back, ${size} sent`)
  const at = (k % 251) + offset
  if (Buffer.compare(bytes, PATTERN.subarray(at, at + bytes.length)) !== 0) {
    throw new Error(`connection ${k}: echoed bytes at ${offset} differ from what was sent`)
  }
}

/** What a push writes at a time: a fresh copy each, as a program producing data would. */
export const CHUNK = 64 * 1024

/** The chunk at stream offset `at` (a multiple of CHUNK) of a push: bytes (at + i) % 251. */
export function chunk(at) {
  return Buffer.from(payload(at, CHUNK))
}

/** The kernel's count of SYNs dropped because a listen queue was full (Linux; 0 elsewhere). */
export function listenDrops() {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n')
    const names = lines.find((l) => l.startsWith('TcpExt:'))?.split(/\s+/)
    const values = lines.filter((l) => l.startsWith('TcpExt:'))[1]?.split(/\s+/)
    return Number(values?.[names.indexOf('ListenOverflows')] ?? 0)
  } catch {
    return 0
  }
}

/** Sockets in TIME_WAIT (state 06 in /proc/net/tcp and tcp6); null where there is no /proc. */
export function timeWait() {
  let n = 0
  try {
    for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(file, 'utf8').split('\n')) if (line.trim().split(/\s+/, 4)[3] === '06') n++
    }
  } catch {
    return null
  }
  return n
}

/**
 * Waits until TIME_WAIT sockets are back to `baseline` (+ a little: other
 * processes share the machine) or `capMs` passed; they last 60 s on Linux, and
 * thousands of them slow the next run's connects. Resolves with the count.
 */
export async function settle(baseline, capMs) {
  const deadline = Date.now() + capMs
  for (;;) {
    const n = timeWait()
    if (n === null || n <= baseline + 100 || Date.now() >= deadline) return n
    await sleep(250)
  }
}

// ---- HTTP -------------------------------------------------------------------------

/** What the gaio, node:net and Rust responders send: the same bytes. */
export const HTTP_RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello')
const END = [13, 10, 13, 10]

/**
 * Counts the requests that end in `bytes` (GETs without a body, as wrk sends
 * them). `state.matched` carries a partial "\r\n\r\n" over to the next read.
 */
export function countRequests(state, bytes) {
  let matched = state.matched
  let requests = 0
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]
    if (b === END[matched]) {
      if (++matched === 4) {
        requests++
        matched = 0
      }
    } else matched = b === 13 ? 1 : 0
  }
  state.matched = matched
  return requests
}

/** `n` responses in one buffer (n is 1 unless the client pipelines). */
export function responses(n) {
  return n === 1 ? HTTP_RESPONSE : Buffer.concat(Array(n).fill(HTTP_RESPONSE))
}

// ---- framing ----------------------------------------------------------------------

/**
 * Length-prefixed frames ([u32 LE length][payload]) arriving in pieces of any
 * size. The bytes of an unfinished frame are kept across reads, copied (a
 * read's bytes may not outlive it: gaio's swap views are reused). Each whole
 * frame is answered with 8 bytes, its length and its last 4 payload bytes, so
 * the client sees any slip in the boundaries. The same code for every Node system.
 */
export class Framer {
  kept = Buffer.alloc(64 * 1024)
  length = 0
  frames = 0

  /** Takes a read's bytes; returns the acks to write, or null. */
  push(bytes) {
    let data = bytes
    if (this.length) {
      if (this.length + bytes.length > this.kept.length) this.kept = Buffer.concat([this.kept.subarray(0, this.length)], 2 * (this.length + bytes.length))
      this.kept.set(bytes, this.length)
      data = this.kept.subarray(0, this.length + bytes.length)
    }
    const view = Buffer.from(data.buffer, data.byteOffset, data.length)
    // A frame takes at least 8 bytes (payloads have 4 or more), its ack 8.
    const acks = Buffer.allocUnsafe(view.length & ~7)
    let count = 0
    let at = 0
    while (view.length - at >= 4) {
      const n = view.readUInt32LE(at)
      if (view.length - at - 4 < n) break
      acks.writeUInt32LE(n, 8 * count)
      view.copy(acks, 8 * count + 4, at + n, at + 4 + n)
      count++
      at += 4 + n
    }
    this.frames += count
    const rest = view.length - at
    // Keep the unfinished frame: copied to the front of `kept`.
    if (rest && (at > 0 || !this.length)) {
      if (rest > this.kept.length) this.kept = Buffer.alloc(2 * rest)
      view.copy(this.kept, 0, at)
    }
    this.length = rest
    return count ? acks.subarray(0, 8 * count) : null
  }
}

// ---- child processes --------------------------------------------------------------

/**
 * Spawns a process that speaks one JSON object per stdout line. `next()`
 * resolves with the next object; `ask(command)` writes a line to its stdin
 * and resolves with the answer; `end()` closes stdin (the signal to stop) and
 * resolves when it exits.
 */
export function child(command, args, { label = command } = {}) {
  const proc = spawn(command, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
  const queue = []
  const waiters = []
  let stderr = ''
  let exited = null
  const fail = (why) => {
    for (const w of waiters.splice(0)) w.reject(new Error(`${label}: ${why}${stderr ? `\n${stderr.trim()}` : ''}`))
  }
  proc.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)))
  createInterface({ input: proc.stdout }).on('line', (line) => {
    let value
    try {
      value = JSON.parse(line)
    } catch {
      return // not ours (a warning printed by a library, say)
    }
    const w = waiters.shift()
    if (w) w.resolve(value)
    else queue.push(value)
  })
  const done = new Promise((resolve) =>
    proc.on('close', (code, signal) => {
      exited = { code, signal }
      fail(`exited (${signal ?? code}) before answering`)
      resolve(exited)
    }),
  )
  proc.stdin.on('error', () => {})
  const next = (timeoutMs = 60_000) => {
    if (queue.length) return Promise.resolve(queue.shift())
    if (exited) return Promise.reject(new Error(`${label}: exited (${exited.signal ?? exited.code})${stderr ? `\n${stderr.trim()}` : ''}`))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${label}: no answer within ${timeoutMs} ms`)), timeoutMs)
      waiters.push({ resolve: (v) => (clearTimeout(timer), resolve(v)), reject: (e) => (clearTimeout(timer), reject(e)) })
    })
  }
  return {
    proc,
    next,
    ask(command, timeoutMs) {
      proc.stdin.write(`${command}\n`)
      return next(timeoutMs)
    },
    async end(timeoutMs = 10_000) {
      proc.stdin.end()
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
      const result = await done
      clearTimeout(timer)
      return result
    },
    kill() {
      if (!exited) proc.kill('SIGKILL')
      return done
    },
  }
}

// ---- the Rust ceiling ---------------------------------------------------------------

export const CEILING = join(ROOT, 'target', 'release', 'examples', 'ceiling')
const DEBIAN_REGISTRY = '/usr/share/cargo/registry'

/** Builds crates/engine/examples/ceiling.rs in release mode (quick when nothing changed). */
export function buildCeiling() {
  const args = ['build', '--release', '--quiet', '--example', 'ceiling', '-p', 'gaio-engine']
  // The same source replacement as scripts/build.mjs where crates.io is out of reach.
  if (existsSync(DEBIAN_REGISTRY)) {
    args.push('--offline', '--config', 'source.crates-io.replace-with="debian"', '--config', `source.debian.directory="${DEBIAN_REGISTRY}"`)
  }
  console.log('bench: cargo build --release --example ceiling (the Rust ceiling; quick when nothing changed)')
  const r = spawnSync('cargo', args, { cwd: ROOT, stdio: 'inherit' })
  if (r.error || r.status !== 0) return `cargo build of the ceiling failed (${r.error?.message ?? `exit ${r.status}`})`
  return null
}

/**
 * One in-process measurement (`echo` or `burst`, client and server in one
 * process) in a fresh process: benchmark/one.mjs for the Node systems, the
 * ceiling for rust-engine. Resolves with the JSON it prints.
 */
export async function measure(system, primitive, params) {
  const c =
    system === 'rust-engine'
      ? child(CEILING, [primitive, ...Object.entries(params).flatMap(([k, v]) => [`--${k}`, String(v)])], { label: `rust-engine ${primitive}` })
      : child(process.execPath, [join(ROOT, 'benchmark', 'one.mjs'), system, primitive, JSON.stringify(params)], { label: `${system} ${primitive}` })
  try {
    return await c.next(120_000)
  } finally {
    await c.end()
  }
}

/**
 * Feeds a pacing client (the ceiling's hold and burst-client) the server's
 * accepts since `base` as `accepted N` lines, so at most CONNECTING of its
 * connections are started and not yet accepted, until `done()` says so.
 * `base` must be counted before the client starts: it connects at once, and a
 * count that already includes its first CONNECTING would never let it go on.
 */
export async function pace(server, client, base, done) {
  const deadline = Date.now() + 60_000
  for (;;) {
    const stats = await server.ask('stats')
    if (done(stats)) return stats
    if (Date.now() > deadline) throw new Error(`pacing: the server holds ${stats.conns} connections after 60 s (${stats.accepts - base} accepted since the start, the client told so)`)
    client.proc.stdin.write(`accepted ${stats.accepts - base}\n`)
    await sleep(2)
  }
}

/** Waits until the server holds no connections (the clients' closes all seen). */
export async function drained(server) {
  const deadline = Date.now() + 30_000
  while ((await server.ask('stats')).conns !== 0) {
    if (Date.now() > deadline) throw new Error('the server did not see every connection close')
    await sleep(20)
  }
}

/** Runs `body(server)` against a fresh server process for `system`, and stops the server after. */
export async function withServer(system, proto, body) {
  const server = await startServer(system, proto)
  try {
    return await body(server)
  } finally {
    await server.end()
  }
}

/**
 * Starts a server process for `system` speaking `proto` (echo or http) and
 * waits for its port. Node servers run benchmark/server.mjs with --expose-gc;
 * rust-engine runs the ceiling's serve mode. Both answer `stats` with
 * { cpuUs, bytes, conns, accepts, ns } and `mem` with { rss } (Node, after full
 * GCs: also heapUsed, heapResident, external).
 */
export function startServer(system, proto) {
  return listening(
    system === 'rust-engine'
      ? child(CEILING, ['serve', '--proto', proto], { label: `rust-engine ${proto} server` })
      : child(process.execPath, ['--expose-gc', join(ROOT, 'benchmark', 'server.mjs'), system, proto], { label: `${system} ${proto} server` }),
  )
}

/** A server child once it has said its port: the child with `port`; killed if it does not say it. */
export async function listening(server) {
  try {
    const { port } = await server.next(30_000)
    return { ...server, port }
  } catch (e) {
    server.kill()
    throw e
  }
}
