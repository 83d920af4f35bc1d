// The seed's "30K-40K RPS" claim: an HTTP/1.1 keep-alive "hello" responder,
// driven by wrk (one thread, an external client that is the same for every
// system). gaio, node:net and Rust send the same response bytes; node:http
// sends its own headers. One GET is checked by hand before wrk runs; wrk
// parses every response, and any error or non-2xx response fails the run.
import http from 'node:http'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { HOST, HTTP_SYSTEMS, ROOT, startServer } from '../lib/common.mjs'

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

/** Requests/s and the number of requests answered, from wrk's report; any error fails the run. */
function parse(out) {
  const rps = Number(/Requests\/sec:\s*([\d.]+)/.exec(out)?.[1])
  const requests = Number(/(\d+) requests in/.exec(out)?.[1])
  if (!(rps > 0 && requests > 0)) throw new Error(`wrk reported no requests:\n${out}`)
  const non2xx = Number(/Non-2xx or 3xx responses:\s*(\d+)/.exec(out)?.[1] ?? 0)
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)?.slice(1).map(Number) ?? [0, 0, 0, 0]
  if (non2xx || errors.some((n) => n > 0)) throw new Error(`wrk saw ${non2xx} non-2xx responses and socket errors [connect, read, write, timeout] = [${errors}]`)
  return { rps, requests }
}

/**
 * Requests/s, and the server's CPU per request, which a noisy neighbour moves far less than
 * requests/s. `pipelined`: each write carries 16 requests (the Lua script).
 */
function httpWorkload(id, conns, { pipelined = false } = {}) {
  const metrics = [
    { metric: 'req/s', unit: 'req/s', better: 'higher' },
    { metric: 'server us/req', unit: 'us', better: 'lower' },
  ]
  const targets = [{ metric: 'req/s', ratio: 1.2 }]
  if (pipelined) targets.push({ metric: 'server us/req', ratio: 1.0 })
  const script = pipelined ? ['-s', join(ROOT, 'benchmark', 'workloads', 'http-pipelined.lua')] : []
  return {
    id,
    title: (mode) => `wrk -t1 -c${conns} -d${mode.httpSeconds}s${pipelined ? ' with 16 requests per write' : ''} against a keep-alive "hello" responder in its own process`,
    systems: HTTP_SYSTEMS,
    targets,
    needs: ['wrk'],
    metrics,
    async run(system, mode) {
      const server = await startServer(system, 'http')
      try {
        await probe(server.port)
        const before = await server.ask('stats')
        const out = await wrk(['-t1', `-c${conns}`, `-d${mode.httpSeconds}s`, '--timeout', '5s', ...script, `http://${HOST}:${server.port}/`])
        const after = await server.ask('stats')
        const { rps, requests } = parse(out)
        return { 'req/s': rps, 'server us/req': (after.cpuUs - before.cpuUs) / requests }
      } finally {
        await server.end()
      }
    },
  }
}

export const httpC100 = httpWorkload('http', 100)
export const httpC1000 = httpWorkload('http-c1000', 1000)
export const httpPipelined = httpWorkload('http-pipelined', 1000, { pipelined: true })
