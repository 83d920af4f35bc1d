// node:http as a user writes a "hello" responder. Only the http workloads use it.
import http from 'node:http'
import { BACKLOG, HOST } from '../lib/common.mjs'

export function nodeHttp() {
  return {
    serve(proto, counters) {
      if (proto !== 'http') throw new Error('node-http serves http only')
      const server = http.createServer((req, res) => res.end('hello'))
      server.keepAliveTimeout = 60_000
      server.on('connection', (s) => {
        counters.conns++
        counters.accepts++
        s.on('close', () => counters.conns--)
      })
      return new Promise((resolve, reject) => {
        server.on('error', reject)
        server.listen({ host: HOST, port: 0, backlog: BACKLOG }, () => resolve(server.address().port))
      })
    },
  }
}
