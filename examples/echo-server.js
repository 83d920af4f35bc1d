// Echo server: every client gets back whatever it sends.
// The gaio README's TL;DR example. Usage: node examples/echo-server.js [port]
'use strict'
const { Watcher, OpType } = require('..')

const watcher = new Watcher()
const listener = watcher.listen({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0) })
console.log(`listening ${listener.address}:${listener.port}`)

async function serve() {
  watcher.accept(null, listener)
  for await (const results of watcher) {
    for (const res of results) {
      if (res.error) {
        if (res.operation === OpType.Accept) throw res.error
        watcher.free(res.conn) // end of stream, or the client is gone
        continue
      }
      switch (res.operation) {
        case OpType.Accept: {
          watcher.accept(null, listener) // keep accepting
          // Each connection reads into a buffer of its own, passed along as the context.
          const buf = new Uint8Array(128)
          watcher.read(buf, res.conn, buf)
          break
        }
        case OpType.Read:
          // Send back what came; don't read again until the write completes.
          watcher.write(res.context, res.conn, res.buffer.subarray(0, res.size))
          break
        case OpType.Write:
          watcher.read(res.context, res.conn, res.context)
          break
      }
    }
  }
}

serve().catch((err) => {
  console.error(err)
  process.exit(1)
})
