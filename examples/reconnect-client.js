// A client that stays connected: it sends "ping N" lines and expects each to
// be answered within a second (REPLY_TIMEOUT_MS). A connect that takes too long, a reply that
// does not come, or a server that goes away ends the connection; it then
// reconnects with exponential backoff (reset once connected again).
// Usage: node examples/reconnect-client.js PORT [HOST]   (against, say, examples/echo-server.js)
'use strict'
const { Watcher, OpType } = require('..')

const server = { host: process.argv[3] ?? '127.0.0.1', port: Number(process.argv[2]) }
const INTERVAL = Number(process.env.PING_INTERVAL_MS) || 1000
const REPLY_TIMEOUT = Number(process.env.REPLY_TIMEOUT_MS) || 1000
const BACKOFF = { first: 100, max: 5000 }
const w = new Watcher()
let backoff = BACKOFF.first
let sent = 0
let current = null // the connection in use: results of an older one are stale

function connect() {
  w.connect(null, { ...server, timeout: 2 * REPLY_TIMEOUT })
}

function ping(conn) {
  w.write(null, conn, Buffer.from(`ping ${++sent}\n`))
  // Absolute deadlines work too (Date.now() + 1000); { timeout } is relative.
  w.readTimeout(null, conn, null, { timeout: REPLY_TIMEOUT })
}

function lost(conn, error) {
  w.free(conn)
  current = null
  console.log(`lost: ${error.code} (${error.message}); retrying in ${backoff} ms`)
  setTimeout(connect, backoff)
  backoff = Math.min(backoff * 2, BACKOFF.max)
}

async function main() {
  connect()
  for await (const results of w) {
    for (const res of results) {
      if (res.error) {
        // A failed write fails the read too; a connection given up already has nothing to say.
        if (res.operation === OpType.Connect || (res.operation === OpType.Read && res.conn === current)) lost(res.conn, res.error)
      } else if (res.operation === OpType.Connect) {
        backoff = BACKOFF.first
        current = res.conn
        console.log(`connected ${res.conn.remoteAddress}:${res.conn.remotePort}`)
        ping(res.conn)
      } else if (res.operation === OpType.Read) {
        console.log(`reply ${Buffer.from(res.buffer).toString().trim()}`)
        setTimeout(() => res.conn === current && ping(res.conn), INTERVAL)
      }
    }
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
