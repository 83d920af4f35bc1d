// Push server: sends the current time to every connected client once a second.
// After the gaio README's push server example. Usage: node examples/push-server.js [port]
// PUSH_INTERVAL_MS sets the interval (default 1000).
'use strict'
const { Watcher, OpType } = require('..')

const interval = Number(process.env.PUSH_INTERVAL_MS) || 1000
const watcher = new Watcher()
const listener = watcher.listen({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0) })
console.log(`listening ${listener.address}:${listener.port}`) // then, say, `nc 127.0.0.1 PORT`

// Connections whose previous push completed: a slow client is skipped until it catches up.
let ready = []

setInterval(() => {
  const push = Buffer.from(`${new Date().toISOString()}\n`)
  for (const conn of ready) watcher.write(null, conn, push) // copied when flushed: one buffer serves all
  ready = []
}, interval)

async function main() {
  watcher.accept(null, listener)
  for await (const results of watcher) {
    for (const res of results) {
      if (res.operation === OpType.Accept) {
        if (res.error) throw res.error
        watcher.accept(null, listener)
        ready.push(res.conn)
      } else if (res.operation === OpType.Write) {
        if (res.error) watcher.free(res.conn) // the client went away
        else ready.push(res.conn)
      }
    }
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
