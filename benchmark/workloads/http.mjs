// The seed's "30K-40K RPS" claim: an HTTP/1.1 keep-alive "hello" responder,
// driven by wrk (one thread, an external client that is the same for every
// system). gaio, node:net and Rust send the same response bytes; node:http
// sends its own headers. One GET is checked by hand before wrk runs; wrk
// parses every response, and any error or non-2xx response fails the run.
import http from 'node:http'
import { spawn } from 'node:child_process'
import { HOST, startServer } from '../lib/common.mjs'

function probe(port) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: HOST, port, path: '/', agent: false }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d) => (body += d))
        res.on('end', () => (res.statusCode === 200 && body === 'hello' ? resolve() : reject(new Error(`probe got ${res.statusCode} ${JSON.stringify(body)}`))))
      })
      .on('error', reject)
  })
}

function wrk(args) {
  return new Promise((resolve, reject) => {
    const p = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (out += d))
    p.on('error', reject)
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited ${code}: ${out}`))))
  })
}

function parse(out) {
  const rps = Number(/Requests\/sec:\s*([\d.]+)/.exec(out)?.[1])
  if (!(rps > 0)) throw new Error(`wrk reported no requests:\n${out}`)
  const non2xx = Number(/Non-2xx or 3xx responses:\s*(\d+)/.exec(out)?.[1] ?? 0)
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)?.slice(1).map(Number) ?? [0, 0, 0, 0]
  if (non2xx || errors.some((n) => n > 0)) throw new Error(`wrk saw ${non2xx} non-2xx responses and socket errors [connect, read, write, timeout] = [${errors}]`)
  return rps
}

function httpWorkload(id, conns) {
  return {
    id,
    title: (mode) => `wrk -t1 -c${conns} -d${mode.httpSeconds}s against a keep-alive "hello" responder in its own process`,
    systems: ['gaio', 'gaio-inline', 'node-net', 'node-http', 'rust-engine'],
    needs: ['wrk'],
    metrics: [{ metric: 'req/s', unit: 'req/s', better: 'higher' }],
    async run(system, mode) {
      const server = await startServer(system, 'http')
      try {
        await probe(server.port)
        const out = await wrk(['-t1', `-c${conns}`, `-d${mode.httpSeconds}s`, '--timeout', '5s', `http://${HOST}:${server.port}/`])
        return { 'req/s': parse(out) }
      } finally {
        await server.end()
      }
    },
  }
}

export const httpC100 = httpWorkload('http', 100)
export const httpC1000 = httpWorkload('http-c1000', 1000)
