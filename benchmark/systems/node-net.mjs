// node:net, both as a user writes it (data events, socket.write, a closure per
// socket) and the fastest way we know (node-net-fast): TCP_NODELAY on both
// sides (as gaio sets it), one shared set of handlers for every server socket
// (`this` is the socket: no closures or state object per connection), no cork
// (each data event writes once, so cork would only add work), and the client's
// reads through `onread` into one static buffer instead of a Buffer per read.
import net from 'node:net'
import { BACKLOG, CHUNK, CONNECTING, Framer, HOST, chunk, countRequests, expectEcho, now, payload, responses } from '../lib/common.mjs'

/** One static buffer for every fast client socket: onread hands it back before the next read. */
const STATIC = Buffer.alloc(64 * 1024)

/** `at` overrides the address (scale's cluster workers listen on every address). */
function listen(server, at = {}) {
  return new Promise((resolve, reject) => {
    server.on('error', reject)
    server.listen({ host: HOST, port: 0, backlog: BACKLOG, ...at }, () => resolve(server))
  })
}

/**
 * The connections a broadcast or a push writes to (protos fanout and push; see
 * gaio.mjs). `push` writes every chunk at once, ignoring write()'s answer, or
 * with `drain`, stops where write() says the buffer is full and goes on at 'drain'.
 */
function writers(proto, counters, drain) {
  if (proto !== 'fanout' && proto !== 'push') return null
  const live = new Set()
  counters.broadcast = (message) => {
    for (const s of live) s.write(message)
  }
  counters.push = (total) => {
    for (const s of live) {
      let at = 0
      const more = () => {
        while (at < total) {
          const room = s.write(chunk(at))
          at += CHUNK
          if (drain && !room) return s.once('drain', more)
        }
      }
      more()
    }
  }
  return live
}

/** As a user writes it: closures and a state object per socket. */
function plainServer(proto, counters) {
  const live = writers(proto, counters, false)
  return net.createServer((s) => {
    counters.conns++
    counters.accepts++
    live?.add(s)
    const state = proto === 'frame' ? new Framer() : { matched: 0 }
    s.on('error', () => {})
    s.on('close', () => {
      counters.conns--
      live?.delete(s)
    })
    s.on('data', (d) => {
      counters.bytes += d.length
      if (proto === 'http') {
        const n = countRequests(state, d)
        if (n) s.write(responses(n))
      } else if (proto === 'frame') {
        const acks = state.push(d)
        if (acks) s.write(acks)
      } else if (!live) s.write(d)
    })
  })
}

/** One set of handlers for every socket of the server; the socket carries its own HTTP or frame state. */
function fastServer(proto, counters) {
  const live = writers(proto, counters, true)
  function onData(d) {
    counters.bytes += d.length
    if (proto === 'http') {
      const n = countRequests(this, d)
      if (n) this.write(responses(n))
    } else if (proto === 'frame') {
      const acks = this.framer.push(d)
      if (acks) this.write(acks)
    } else if (!live) this.write(d)
  }
  function onClose() {
    counters.conns--
    live?.delete(this)
  }
  function ignore() {}
  return net.createServer({ noDelay: true }, (s) => {
    counters.conns++
    counters.accepts++
    live?.add(s)
    if (proto === 'http') s.matched = 0
    else if (proto === 'frame') s.framer = new Framer()
    s.on('error', ignore)
    s.on('close', onClose)
    s.on('data', onData)
  })
}

function createServer(fast, proto, counters, at) {
  return listen((fast ? fastServer : plainServer)(proto, counters), at)
}

/**
 * A client socket whose received bytes go to `onBytes(chunk)`: data events
 * (plain), or onread into STATIC (fast). `onBytes` must not keep the chunk.
 */
function connect(fast, port, onConnect, onBytes, onError) {
  const options = { host: HOST, port }
  if (fast) {
    options.noDelay = true
    options.onread = { buffer: STATIC, callback: (n, buf) => onBytes(buf.subarray(0, n)) }
  }
  const c = net.connect(options, () => onConnect(c))
  c.on('error', onError)
  if (!fast) c.on('data', onBytes)
  return c
}

/** Runs `client(port, counters)` against an echo server; `counters.accepted` (if set) runs at each accept. */
async function withEchoServer(fast, client) {
  const sockets = new Set()
  const counters = { bytes: 0, conns: 0, accepts: 0, accepted: null }
  const server = await createServer(fast, 'echo', counters)
  server.on('connection', (s) => {
    sockets.add(s)
    counters.accepted?.(counters.accepts)
  })
  try {
    return await client(server.address().port, counters)
  } finally {
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => server.close(resolve))
  }
}

export function nodeNet({ fast = false } = {}) {
  return {
    echo: ({ size, ms }) =>
      withEchoServer(fast, (port) =>
        new Promise((resolve, reject) => {
          const message = payload(0, size)
          let start = 0
          let got = 0
          let roundTrips = 0
          const c = connect(
            fast,
            port,
            () => {
              start = now()
              c.write(message)
            },
            (chunk) => {
              try {
                expectEcho(0, got, chunk, size)
              } catch (e) {
                c.destroy()
                return reject(e)
              }
              got += chunk.length
              if (got < size) return
              got = 0
              roundTrips++
              const seconds = now() - start
              if (seconds < ms / 1000) return c.write(message)
              c.destroy()
              resolve({ roundTrips, seconds })
            },
            reject,
          )
        }),
      ),

    burst: ({ conns, size }) =>
      withEchoServer(fast, (port, server) =>
        new Promise((resolve, reject) => {
          const clients = []
          const start = now()
          let started = 0
          let finished = 0
          const end = (error, result) => {
            // A reset, not a close: no TIME_WAIT left behind to slow the next run's connects.
            for (const c of clients) c.resetAndDestroy()
            error ? reject(error) : resolve(result)
          }
          const connectOne = () => {
            const k = started++
            let got = 0
            const c = connect(
              fast,
              port,
              () => c.write(payload(k, size)),
              (chunk) => {
                try {
                  expectEcho(k, got, chunk, size)
                } catch (e) {
                  return end(e)
                }
                got += chunk.length
                if (got === size && ++finished === conns) end(null, { seconds: now() - start })
              },
              end,
            )
            clients.push(c)
          }
          // At most CONNECTING connections started and not yet accepted (see lib/common.mjs).
          const open = (accepted) => {
            while (started < conns && started - accepted < CONNECTING) connectOne()
          }
          server.accepted = open
          open(0)
        }),
      ),

    async serve(proto, counters, at) {
      const server = await createServer(fast, proto, counters, at)
      return server.address().port
    },
  }
}
