// TCP proxy: forwards each client to an upstream server, both ways.
// Back-pressure: a side is read again only when the previous write to the
// other side has completed. Half-close: a peer's end of stream becomes
// closeWrite() on the other side; both are freed once both directions ended.
// Usage: node examples/proxy.js UPSTREAM_PORT [UPSTREAM_HOST]
'use strict'
const { Watcher, OpType } = require('..')

const upstream = { host: process.argv[3] ?? '127.0.0.1', port: Number(process.argv[2]) }
const w = new Watcher()
const ln = w.listen({ host: '127.0.0.1', port: 0 })
console.log(`listening ${ln.address}:${ln.port}`)

function close(pair) {
  for (const conn of pair.conns) w.free(conn)
}

async function main() {
  w.accept(null, ln)
  for await (const results of w) {
    for (const res of results) {
      const leg = res.context
      switch (res.operation) {
        case OpType.Accept:
          if (res.error) throw res.error
          w.accept(null, ln)
          w.connect(res.conn, upstream) // the client is the connect's context
          break
        case OpType.Connect: {
          if (res.error) {
            w.free(leg)
            break
          }
          // A leg carries bytes one way and is the context of its requests; a pair is two legs.
          const pair = { conns: [leg, res.conn], open: 2 }
          w.read({ from: leg, to: res.conn, pair }, leg)
          w.read({ from: res.conn, to: leg, pair }, res.conn)
          break
        }
        case OpType.Read:
          if (!res.error) w.write(leg, leg.to, res.buffer) // bytes are copied when flushed
          else if (res.error.code === 'EOF') w.closeWrite(leg, leg.to)
          else close(leg.pair)
          break
        case OpType.Write:
          if (res.error) close(leg.pair)
          else w.read(leg, leg.from)
          break
        case OpType.CloseWrite:
          if (res.error || --leg.pair.open === 0) close(leg.pair)
          break
      }
    }
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
