// Keep-alive HTTP/1.1 responder: answers every request on a connection in
// order, pipelined ones included, and closes after `Connection: close`.
// Bodies are read by Content-Length (no chunked uploads: 411). A sketch for
// the protocol's shape, not a full HTTP parser.
// Usage: node examples/http-server.js [port], then `curl http://127.0.0.1:PORT/hello`.
'use strict'
const { Watcher, OpType } = require('..')

const w = new Watcher()
const ln = w.listen({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0) })
console.log(`listening ${ln.address}:${ln.port}`)

function response(status, body, close) {
  const head = `HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body, 'latin1')}\r\n`
  return `${head}${close ? 'Connection: close\r\n' : ''}\r\n${body}`
}

// Answers the complete requests at the start of `state.pending`, keeping the rest.
function answer(state) {
  let out = ''
  for (;;) {
    const headEnd = state.pending.indexOf('\r\n\r\n')
    if (headEnd < 0 || state.close) break
    const [requestLine, ...fields] = state.pending.toString('latin1', 0, headEnd).split('\r\n')
    const headers = new Map(fields.map((f) => [f.slice(0, f.indexOf(':')).trim().toLowerCase(), f.slice(f.indexOf(':') + 1).trim()]))
    const length = Number(headers.get('content-length') ?? 0)
    if (state.pending.length < headEnd + 4 + length) break // the body is still coming
    const [method, target] = requestLine.split(' ')
    state.pending = state.pending.subarray(headEnd + 4 + length)
    state.close = headers.get('connection')?.toLowerCase() === 'close' || headers.has('transfer-encoding')
    out += headers.has('transfer-encoding') ? response('411 Length Required', '', true) : response('200 OK', `${method} ${target} (${length} bytes)\n`, state.close)
  }
  return out
}

async function main() {
  w.accept(null, ln)
  for await (const results of w) {
    for (const res of results) {
      const state = res.context
      if (res.operation === OpType.Accept) {
        if (res.error) throw res.error
        w.accept(null, ln)
        w.read({ pending: Buffer.alloc(0), close: false }, res.conn)
      } else if (res.error) {
        w.free(res.conn) // EOF, a reset, a failed write, or a drain that timed out
      } else if (res.operation === OpType.Read) {
        if (state.close) {
          w.readTimeout(state, res.conn, null, { timeout: 5000 }) // drain until the client closes: unread bytes would make close() a reset
          continue
        }
        state.pending = Buffer.concat([state.pending, res.buffer]) // swap bytes: copied to keep them
        const out = answer(state)
        if (out) w.write(state, res.conn, Buffer.from(out, 'latin1')) // read on once it is written
        else w.read(state, res.conn)
      } else if (res.operation === OpType.Write) {
        if (state.close) w.closeWrite(state, res.conn)
        else w.read(state, res.conn)
      } else if (res.operation === OpType.CloseWrite) {
        w.readTimeout(state, res.conn, null, { timeout: 5000 })
      }
    }
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
