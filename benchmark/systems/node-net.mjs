// node:net, both as a user writes it (data events, socket.write) and tuned:
// TCP_NODELAY on both sides (as gaio sets it), the client's reads through the
// `onread` option into one static buffer instead of a new Buffer per read, and
// the server's writes of one data event corked into one writev.
import net from 'node:net'
import { BACKLOG, CONNECTING, HOST, countRequests, expectEcho, now, payload, responses } from '../lib/common.mjs'

/** One static buffer for every tuned client socket: onread hands it back before the next read. */
const STATIC = Buffer.alloc(64 * 1024)

function createServer(tuned, proto, counters) {
  const server = net.createServer({ noDelay: tuned }, (s) => {
    counters.conns++
    counters.accepts++
    const state = { matched: 0 }
    s.on('error', () => {})
    s.on('close', () => counters.conns--)
    s.on('data', (d) => {
      counters.bytes += d.length
      const reply = proto === 'http' ? countRequests(state, d) : 0
      if (tuned) s.cork()
      if (proto !== 'http') s.write(d)
      else if (reply) s.write(responses(reply))
      if (tuned) s.uncork()
    })
  })
  return new Promise((resolve, reject) => {
    server.on('error', reject)
    server.listen({ host: HOST, port: 0, backlog: BACKLOG }, () => resolve(server))
  })
}

/**
 * A client socket whose received bytes go to `onBytes(chunk)`: data events
 * (plain), or onread into STATIC (tuned). `onBytes` must not keep the chunk.
 */
function connect(tuned, port, onConnect, onBytes, onError) {
  const options = { host: HOST, port }
  if (tuned) {
    options.noDelay = true
    options.onread = { buffer: STATIC, callback: (n, buf) => onBytes(buf.subarray(0, n)) }
  }
  const c = net.connect(options, () => onConnect(c))
  c.on('error', onError)
  if (!tuned) c.on('data', onBytes)
  return c
}

/** Runs `client(port, counters)` against an echo server; `counters.accepted` (if set) runs at each accept. */
async function withEchoServer(tuned, client) {
  const sockets = new Set()
  const counters = { bytes: 0, conns: 0, accepts: 0, accepted: null }
  const server = await createServer(tuned, 'echo', counters)
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

export function nodeNet({ tuned = false } = {}) {
  return {
    echo: ({ size, ms }) =>
      withEchoServer(tuned, (port) =>
        new Promise((resolve, reject) => {
          const message = payload(0, size)
          let start = 0
          let got = 0
          let roundTrips = 0
          const c = connect(
            tuned,
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
      withEchoServer(tuned, (port, server) =>
        new Promise((resolve, reject) => {
          const clients = []
          const start = now()
          let started = 0
          let finished = 0
          const end = (error, result) => {
            for (const c of clients) c.destroy()
            error ? reject(error) : resolve(result)
          }
          const connectOne = () => {
            const k = started++
            let got = 0
            const c = connect(
              tuned,
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

    async serve(proto, counters) {
      const server = await createServer(tuned, proto, counters)
      return server.address().port
    },
  }
}
