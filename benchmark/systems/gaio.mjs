// This library: an echo or HTTP server loop and the benchmark's clients, each
// side on its own Watcher (one JS thread drives both, as the Rust ceiling's one
// driver thread does). gaio-inline is the same code with { mode: 'inline' }.
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ACCEPTS, BACKLOG, CHUNK, CONNECTING, Framer, HOST, ROOT, chunk, countRequests, expectEcho, now, payload, responses } from '../lib/common.mjs'

const require = createRequire(import.meta.url)
const { Watcher, OpType } = require(join(ROOT, 'index.js'))

/**
 * Whether this build has a working `mode: 'inline'`. The watcher ignores
 * options it does not know, so "does not throw" alone would also pass on a
 * build without the mode: it counts only if an unknown mode is rejected or
 * the typings declare `mode`.
 */
export function inlineSupport() {
  try {
    new Watcher({ mode: 'inline' }).close()
  } catch (e) {
    return { ok: false, why: `new Watcher({ mode: 'inline' }) throws: ${e.message}` }
  }
  let validated = false
  try {
    new Watcher({ mode: 'no-such-mode' }).close()
  } catch {
    validated = true
  }
  let typed = false
  try {
    typed = /\bmode\??\s*:/.test(readFileSync(join(ROOT, 'index.d.ts'), 'utf8'))
  } catch {}
  if (validated || typed) return { ok: true }
  return { ok: false, why: "this build ignores the option (new Watcher({ mode: 'inline' }) runs the default mode)" }
}

const closing = (error) => error && (error.code === 'ERR_WATCHER_CLOSED' || error.code === 'ERR_CONN_CLOSED')

/**
 * Serves `proto` on `ln` until the watcher closes. echo writes back what each
 * read got and reads again at once (requests on a connection complete in
 * order, per direction); http answers each request; frame answers each
 * length-prefixed frame (lib/common.mjs's Framer); fanout and push only read,
 * and write when told: counters.broadcast(message) writes one message to every
 * connection, counters.push(total) writes `total` bytes in fresh chunks to
 * each, all submitted at once (gaio's write queue has no bound).
 */
async function serveLoop(w, ln, proto, counters) {
  const live = proto === 'fanout' || proto === 'push' ? new Set() : null
  if (live) {
    counters.broadcast = (message) => {
      for (const c of live) w.write(null, c, message)
    }
    counters.push = (total) => {
      for (const c of live) for (let at = 0; at < total; at += CHUNK) w.write(null, c, chunk(at))
    }
  }
  for (let i = 0; i < ACCEPTS; i++) w.accept(null, ln)
  for await (const results of w) {
    for (const r of results) {
      switch (r.operation) {
        case OpType.Accept:
          if (closing(r.error)) break
          w.accept(null, ln)
          if (r.error) break
          counters.conns++
          counters.accepts++
          counters.accepted?.()
          live?.add(r.conn)
          w.read(proto === 'http' ? { matched: 0 } : proto === 'frame' ? new Framer() : null, r.conn)
          break
        case OpType.Read:
          if (r.error) {
            if (!closing(r.error)) counters.conns--
            live?.delete(r.conn)
            w.free(r.conn)
            break
          }
          counters.bytes += r.size
          if (proto === 'http') {
            const n = countRequests(r.context, r.buffer)
            if (n) w.write(null, r.conn, responses(n))
          } else if (proto === 'frame') {
            const acks = r.context.push(r.buffer)
            if (acks) w.write(null, r.conn, acks)
          } else if (!live) w.write(null, r.conn, r.buffer)
          w.read(r.context, r.conn)
          break
        // Writes report only failures (silentWrites), and a failed one is followed by a failed read.
      }
    }
  }
}

/** `at` overrides the address: scale puts several listeners on one port ({ host, port, reusePort }). */
function listen(w, at = {}) {
  return w.listen({ host: HOST, port: 0, backlog: BACKLOG, ...at })
}

/** Servers deliver no result for writes that go out whole: a reply costs no completion. */
const serverOptions = (options) => ({ ...options, silentWrites: true })

/**
 * Runs `client(watcher, port, counters)` against an echo server on a second
 * watcher; closes both after. `counters.accepts` counts accepted connections
 * and `counters.accepted` (if the client sets it) runs at each accept.
 */
async function withEchoServer(options, client) {
  const server = new Watcher(serverOptions(options))
  const clients = new Watcher(options)
  const ln = listen(server)
  const counters = { bytes: 0, conns: 0, accepts: 0, accepted: null }
  const served = serveLoop(server, ln, 'echo', counters)
  try {
    return await client(clients, ln.port, counters)
  } finally {
    clients.close()
    server.close()
    await served
  }
}

function check(r, what) {
  if (r.error) throw new Error(`gaio ${what}: ${OpType[r.operation]} failed with ${r.error.code}`)
}

export function gaio(options = {}) {
  return {
    /** One connection writes `size` bytes and reads them back, for `ms`. */
    echo: ({ size, ms }) =>
      withEchoServer(options, async (w, port) => {
        const message = payload(0, size)
        w.connect(null, { host: HOST, port })
        let start = 0
        let got = 0
        let roundTrips = 0
        for (;;) {
          for (const r of await w.waitIO()) {
            check(r, 'echo client')
            if (r.operation === OpType.Connect) {
              start = now()
              w.write(null, r.conn, message)
              w.read(null, r.conn)
            } else if (r.operation === OpType.Read) {
              expectEcho(0, got, r.buffer, size)
              got += r.size
              if (got < size) {
                w.read(null, r.conn)
                continue
              }
              got = 0
              roundTrips++
              const seconds = now() - start
              if (seconds >= ms / 1000) return { roundTrips, seconds }
              w.write(null, r.conn, message)
              w.read(null, r.conn)
            }
          }
        }
      }),

    /** `conns` connections each send `size` bytes once; seconds until every byte is back. */
    burst: ({ conns, size }) =>
      withEchoServer(options, async (w, port, server) => {
        const start = now()
        let started = 0
        let finished = 0
        // Held until the end, as the other systems hold theirs: a Conn nobody
        // references would be closed by the garbage collector mid-run.
        const held = []
        // At most CONNECTING connections started and not yet accepted (see lib/common.mjs).
        const open = () => {
          while (started < conns && started - server.accepts < CONNECTING) w.connect({ k: started++, got: 0 }, { host: HOST, port })
        }
        server.accepted = open
        open()
        for (;;) {
          for (const r of await w.waitIO()) {
            check(r, 'client')
            const c = r.context
            if (r.operation === OpType.Connect) {
              held.push(r.conn)
              w.write(c, r.conn, payload(c.k, size))
              w.read(c, r.conn)
            } else if (r.operation === OpType.Read) {
              expectEcho(c.k, c.got, r.buffer, size)
              c.got += r.size
              if (c.got < size) w.read(c, r.conn)
              else if (++finished === conns) return { seconds: now() - start }
            }
          }
        }
      }),

    /** A server for another process's clients (benchmark/server.mjs, scale-server.mjs); resolves never. */
    serve(proto, counters, at) {
      const w = new Watcher(serverOptions(options))
      const ln = listen(w, at)
      serveLoop(w, ln, proto, counters).catch((e) => {
        console.error(e)
        process.exit(1)
      })
      return ln.port
    },
  }
}
