// Line-based chat: each complete line a client sends goes to every other
// client, prefixed with the sender's address. A read's swap buffer is only
// valid until the next waitIO(), so a partial line is copied and kept.
// Usage: node examples/chat-server.js [port], then `nc 127.0.0.1 PORT` from a few terminals.
'use strict'
const { Watcher, OpType } = require('..')

const w = new Watcher()
const ln = w.listen({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0) })
console.log(`listening ${ln.address}:${ln.port}`)

// Each client's connection, with the bytes of its line not yet complete.
const clients = new Map()

function leave(conn) {
  clients.delete(conn)
  w.free(conn)
}

function received(conn, bytes) {
  const client = clients.get(conn)
  const text = Buffer.concat([client.partial, bytes])
  const end = text.lastIndexOf('\n') + 1
  client.partial = text.subarray(end)
  if (end === 0) return
  const lines = text.toString('utf8', 0, end).split('\n').slice(0, -1)
  const message = Buffer.from(lines.map((line) => `${client.name}: ${line}\n`).join(''))
  for (const other of clients.keys()) if (other !== conn) w.write(null, other, message)
}

async function main() {
  w.accept(null, ln)
  for await (const results of w) {
    for (const res of results) {
      if (res.operation === OpType.Accept) {
        if (res.error) throw res.error
        w.accept(null, ln)
        const name = `${res.conn.remoteAddress}:${res.conn.remotePort}`
        w.write(null, res.conn, Buffer.from(`welcome ${name}, ${clients.size} others here\n`))
        clients.set(res.conn, { name, partial: Buffer.alloc(0) })
        w.read(null, res.conn)
      } else if (res.operation === OpType.Read) {
        if (res.error) leave(res.conn) // EOF, or the client is gone
        else {
          received(res.conn, res.buffer)
          w.read(null, res.conn)
        }
      } else if (res.operation === OpType.Write && res.error) {
        if (clients.has(res.conn)) leave(res.conn)
      }
    }
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
