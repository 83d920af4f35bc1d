// What every workload and system shares: the payload pattern and its check,
// the connect bound, the HTTP responder's parsing, statistics, and the child
// processes (servers, clients, the Rust ceiling) with their one-line-JSON
// protocol.
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

// ---- statistics -------------------------------------------------------------------

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Least squares y = slope * x + intercept. */
export function fit(points) {
  const n = points.length
  const mx = points.reduce((a, [x]) => a + x, 0) / n
  const my = points.reduce((a, [, y]) => a + y, 0) / n
  let sxy = 0
  let sxx = 0
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my)
    sxx += (x - mx) ** 2
  }
  const slope = sxy / sxx
  return { slope, intercept: my - slope * mx }
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
 * Starts a server process for `system` speaking `proto` (echo or http) and
 * waits for its port. Node servers run benchmark/server.mjs with --expose-gc;
 * rust-engine runs the ceiling's serve mode. Both answer `stats` with
 * { cpuUs, bytes, conns, accepts, ns } and `mem` with { rss } (after a GC in Node).
 */
export async function startServer(system, proto) {
  const server =
    system === 'rust-engine'
      ? child(CEILING, ['serve', '--proto', proto], { label: `rust-engine ${proto} server` })
      : child(process.execPath, ['--expose-gc', join(ROOT, 'benchmark', 'server.mjs'), system, proto], { label: `${system} ${proto} server` })
  try {
    const { port } = await server.next(30_000)
    return { ...server, port }
  } catch (e) {
    server.kill()
    throw e
  }
}
