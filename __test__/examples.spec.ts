// The examples (examples/*.js), run as child processes and driven with real
// clients: node:net sockets, node:http, and a node:net server that goes away.
import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { Agent, request as httpRequest } from 'node:http'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { netClient, receiveBytes, scaled, within } from './helpers'

const examples = join(__dirname, '..', 'examples')

/** Starts an example; resolves with the child and the port from its first stdout line. */
async function start(t: { teardown(fn: () => void): void }, file: string, env: Record<string, string> = {}, args: string[] = []) {
  const child = spawn(process.execPath, [join(examples, file), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => (stderr += d))
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  const firstLine = new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! })
    lines.once('line', resolve)
    child.once('exit', (code, signal) => reject(new Error(`${file} exited (${code ?? signal}) before listening: ${stderr}`)))
  })
  const line = await within(5000, `${file} first line`, firstLine)
  const match = /^listening 127\.0\.0\.1:(\d+)$/.exec(line)
  if (!match) throw new Error(`unexpected first line from ${file}: ${JSON.stringify(line)}`)
  return { child, port: Number(match[1]), stderr: () => stderr }
}

function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode!)
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal!)))
}

test('echo server: several clients each get their own bytes back', async (t) => {
  const { child, port, stderr } = await start(t, 'echo-server.js')
  const clients = await within(5000, 'connect', Promise.all(Array.from({ length: 6 }, () => netClient(port))))
  t.teardown(() => clients.forEach((c) => c.destroy()))

  const exchange = async (socket: Socket, index: number) => {
    // Several rounds, some larger than the server's 128-byte buffer.
    for (const size of [1, 100, 128, 129, 5000]) {
      const sent = randomBytes(size)
      sent[0] = index // no two clients send the same bytes
      const echoed = receiveBytes(socket, size)
      socket.write(sent)
      t.deepEqual(await echoed, sent, `client ${index}, ${size} bytes`)
    }
  }
  await within(10_000, 'echo rounds', Promise.all(clients.map(exchange)))

  // A client that leaves does not disturb the others or the server.
  clients[0].destroy()
  const again = Buffer.from('still there?')
  const echoed = receiveBytes(clients[1], again.length)
  clients[1].write(again)
  t.deepEqual(await within(5000, 'echo after a client left', echoed), again)

  t.is(child.exitCode, null, `the server is still running (stderr: ${stderr()})`)
  child.kill('SIGTERM')
  t.is(await within(5000, 'exit on SIGTERM', exited(child)), 'SIGTERM')
})

test('push server: two clients each receive at least two pushes', async (t) => {
  const { child, port, stderr } = await start(t, 'push-server.js', { PUSH_INTERVAL_MS: '50' })
  // Before connecting: on a loaded machine the server may accept and push well before this process hears it connected.
  const before = Date.now()
  const clients = await within(5000, 'connect', Promise.all([netClient(port), netClient(port)]))
  t.teardown(() => clients.forEach((c) => c.destroy()))

  const twoPushes = (socket: Socket) =>
    new Promise<string[]>((resolve, reject) => {
      let text = ''
      socket.setEncoding('utf8')
      socket.on('data', (d: string) => {
        text += d
        const lines = text.split('\n')
        if (lines.length > 2) resolve(lines.slice(0, 2))
      })
      socket.once('end', () => reject(new Error(`EOF after ${JSON.stringify(text)}`)))
    })
  const received = await within(5000, 'two pushes each', Promise.all(clients.map(twoPushes)))
  for (const lines of received) {
    t.is(lines.length, 2)
    const times = lines.map((line) => Date.parse(line))
    for (const [i, time] of times.entries()) {
      t.false(Number.isNaN(time), `a push is a timestamp: ${JSON.stringify(lines[i])}`)
      t.true(time >= before - 1000 && time <= Date.now() + 1000, `the push holds the current time: ${lines[i]}`)
    }
    t.true(times[1] > times[0], 'successive pushes carry later times')
  }

  // A client that leaves is dropped (its writes fail); the other keeps getting pushes.
  clients[0].destroy()
  const more = await within(5000, 'pushes after a client left', new Promise<number>((resolve) => {
    let lines = 0
    clients[1].on('data', (d: string) => {
      lines += d.split('\n').length - 1
      if (lines >= 4) resolve(lines)
    })
  }))
  t.true(more >= 4)

  t.is(child.exitCode, null, `the server is still running (stderr: ${stderr()})`)
  child.kill('SIGTERM')
  t.is(await within(5000, 'exit on SIGTERM', exited(child)), 'SIGTERM')
})

/** Resolves once `socket` has received `n` lines (split on \n), or rejects at its end. */
function receiveLines(socket: Socket, n: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    let text = ''
    const onData = (d: Buffer) => {
      text += d.toString('utf8')
      const lines = text.split('\n')
      if (lines.length > n) {
        socket.off('data', onData)
        resolve(lines.slice(0, n))
      }
    }
    socket.on('data', onData)
    socket.once('end', () => reject(new Error(`end after ${JSON.stringify(text)}`)))
  })
}

// The gaio proxy and its node:net twin pass the same tests.
for (const file of ['proxy.js', 'net-proxy.js']) {
  test(`${file}: bytes go both ways, and each side's end of stream reaches the other (half-close)`, async (t) => {
    // Upstream answers with the digest of everything it got, after the client's end, then ends.
    const upstream = await new Promise<{ port: number; close(): void }>((resolve) => {
      const server = createServer({ allowHalfOpen: true }, (socket) => {
        const hash = createHash('sha256')
        socket.on('data', (d) => hash.update(d))
        socket.on('end', () => socket.end(`got ${hash.digest('hex')}`))
      })
      server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as { port: number }).port, close: () => server.close() }))
    })
    t.teardown(upstream.close)
    const { port } = await start(t, file, {}, [String(upstream.port)])
    const client = await within(5000, 'connect', netClient(port))
    t.teardown(() => client.destroy())
    client.on('error', () => {})

    const sent = randomBytes(4 << 20)
    const reply = new Promise<string>((resolve) => {
      let text = ''
      client.on('data', (d: Buffer) => (text += d))
      client.on('end', () => resolve(text))
    })
    client.end(sent) // write, then half-close: the reply must still come back
    t.is(await within(20_000, 'reply after half-close', reply), `got ${createHash('sha256').update(sent).digest('hex')}`)
    // Both directions ended: the proxy closes both connections.
    await within(5000, 'closed', new Promise((resolve) => (client.destroyed ? resolve(null) : client.once('close', resolve))))
  })

  test(`${file}: back-pressure: a client stalls while upstream does not read, then every byte arrives in order`, async (t) => {
    let upstreamSocket: Socket | undefined
    const arrived = createHash('sha256')
    let arrivedBytes = 0
    const upstream = await new Promise<{ port: number; close(): void }>((resolve) => {
      const server = createServer({ pauseOnConnect: true }, (socket) => {
        upstreamSocket = socket
        socket.on('data', (d) => {
          arrived.update(d)
          arrivedBytes += d.length
        })
      })
      server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as { port: number }).port, close: () => server.close() }))
    })
    t.teardown(upstream.close)
    t.teardown(() => upstreamSocket?.destroy())
    const { port } = await start(t, file, {}, [String(upstream.port)])
    const client = await within(5000, 'connect', netClient(port))
    t.teardown(() => client.destroy())

    // More than the kernel's buffers along the way can hold (a few tens of MiB on loopback).
    const chunk = 1 << 20
    const total = 160 * chunk
    const data = randomBytes(total)
    let accepted = 0
    for (let at = 0; at < total; at += chunk) client.write(data.subarray(at, at + chunk), () => (accepted += chunk))
    // Wait until the client's writes stop progressing.
    let last = -1
    while (accepted !== last) {
      last = accepted
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
    t.is(arrivedBytes, 0)
    t.true(accepted < total, `the proxy stopped reading: ${accepted / chunk} of ${total / chunk} MiB taken`)

    const done = new Promise<void>((resolve) => {
      const check = setInterval(() => arrivedBytes === total && (clearInterval(check), resolve()), 20)
    })
    upstreamSocket!.resume()
    await within(60_000, 'everything through once upstream reads', done)
    t.is(arrived.digest('hex'), createHash('sha256').update(data).digest('hex'))
  })
}

test('chat server: each complete line goes to every other client, with its sender', async (t) => {
  const { port } = await start(t, 'chat-server.js')
  const clients: Socket[] = []
  t.teardown(() => clients.forEach((c) => c.destroy()))
  // One at a time: each welcome says the server has registered the client.
  for (let i = 0; i < 3; i++) {
    const client = await within(5000, 'connect', netClient(port))
    clients.push(client)
    const [welcome] = await within(5000, 'welcome', receiveLines(client, 1))
    t.is(welcome, `welcome 127.0.0.1:${client.localPort}, ${i} others here`)
  }
  const [alice, bob, carol] = clients as [Socket, Socket, Socket]
  const toBob = receiveLines(bob, 2)
  const toCarol = receiveLines(carol, 2)
  let toAlice = ''
  alice.on('data', (d: Buffer) => (toAlice += d))
  // A line split across writes (and reads) arrives whole; two lines in one write arrive as two.
  for (const piece of ['hel', 'lo\nwor', 'ld\n']) {
    alice.write(piece)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const expected = [`127.0.0.1:${alice.localPort}: hello`, `127.0.0.1:${alice.localPort}: world`]
  t.deepEqual(await within(5000, 'bob', toBob), expected)
  t.deepEqual(await within(5000, 'carol', toCarol), expected)

  // A client that leaves is dropped; the others still talk.
  alice.destroy()
  const fromCarol = receiveLines(bob, 1)
  carol.write('still here\n')
  t.deepEqual(await within(5000, 'after one left', fromCarol), [`127.0.0.1:${carol.localPort}: still here`])
  t.is(toAlice, '', 'a sender does not get its own lines')
})

test('http server: keep-alive requests from node:http share one connection', async (t) => {
  const { port } = await start(t, 'http-server.js')
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const get = (path: string, body?: string) =>
    new Promise<{ status: number; body: string; reused: boolean }>((resolve, reject) => {
      const req = httpRequest({ port, host: '127.0.0.1', path, agent, method: body === undefined ? 'GET' : 'POST' }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (text += d))
        res.on('end', () => resolve({ status: res.statusCode!, body: text, reused: req.reusedSocket }))
      })
      req.on('error', reject)
      req.end(body)
    })
  const first = await within(5000, 'first request', get('/a'))
  t.deepEqual(first, { status: 200, body: 'GET /a (0 bytes)\n', reused: false })
  for (const path of ['/b', '/c']) t.deepEqual(await within(5000, path, get(path)), { status: 200, body: `GET ${path} (0 bytes)\n`, reused: true })
  t.deepEqual(await within(5000, 'post', get('/d', 'x'.repeat(100_000))), { status: 200, body: 'POST /d (100000 bytes)\n', reused: true })
})

test('http server: pipelined requests are answered in order; Connection: close ends the connection', async (t) => {
  const { port } = await start(t, 'http-server.js')
  const client = await within(5000, 'connect', netClient(port))
  t.teardown(() => client.destroy())
  const received = new Promise<string>((resolve) => {
    let text = ''
    client.on('data', (d: Buffer) => (text += d))
    client.on('end', () => resolve(text))
  })
  const requests = [
    'GET /one HTTP/1.1\r\nHost: x\r\n\r\n',
    'POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
    'GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  ].join('')
  // All three in one write, then split mid-request: the server keeps what is incomplete.
  client.write(requests.slice(0, 50))
  await new Promise((resolve) => setTimeout(resolve, 50))
  client.write(requests.slice(50))
  const text = await within(5000, 'responses, then the end', received)
  const bodies = [...text.matchAll(/\r\n\r\n([^\n]*\n)/g)].map((m) => m[1])
  t.deepEqual(bodies, ['GET /one (0 bytes)\n', 'POST /two (5 bytes)\n', 'GET /three (0 bytes)\n'])
  t.is(text.match(/HTTP\/1\.1 200 OK/g)?.length, 3)
  t.true(text.endsWith('Connection: close\r\n\r\nGET /three (0 bytes)\n'))
})

test('reconnect client: a server that goes away, refuses, then stalls is reconnected to with backoff', async (t) => {
  // The server the client talks to: echoes while `echo` is on, else holds the connection silently.
  let echo = true
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    socket.on('data', (d) => echo && socket.write(d))
  })
  const listen = (port: number) => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  const stop = () => new Promise<void>((resolve) => (sockets.forEach((s) => s.destroy()), server.close(() => resolve())))
  await listen(0)
  const port = (server.address() as { port: number }).port
  t.teardown(() => void stop())

  // 3 s for a reply: the echo server shares this worker with other tests, and under load one can take over a second.
  const child = spawn(process.execPath, [join(examples, 'reconnect-client.js'), String(port)], {
    env: { ...process.env, PING_INTERVAL_MS: '20', REPLY_TIMEOUT_MS: String(scaled(3000)) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => void child.kill('SIGKILL'))
  const lines: string[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line))
  createInterface({ input: child.stderr! }).on('line', (line) => lines.push(`stderr: ${line}`))
  child.on('exit', (code, signal) => lines.push(`exited: ${code ?? signal}`))
  // Waits for the next line (after those matched before) that matches.
  let cursor = 0
  const seen = async (what: RegExp) => {
    let timer: NodeJS.Timeout | undefined
    const found = new Promise<void>((resolve) => {
      timer = setInterval(() => {
        while (cursor < lines.length) if (what.test(lines[cursor++]!)) return resolve()
      }, 10)
    })
    try {
      await within(10_000, `${what} after ${JSON.stringify(lines)}`, found)
    } finally {
      clearInterval(timer)
    }
  }

  await seen(new RegExp(`^connected 127\\.0\\.0\\.1:${port}$`))
  await seen(/^reply ping 2$/)
  await stop()
  await seen(/^lost: (EOF|ECONNRESET) /)
  const refused = /^lost: ECONNREFUSED \(connect ECONNREFUSED 127\.0\.0\.1:\d+\); retrying in (\d+) ms$/
  await seen(refused)
  await seen(refused)
  echo = false
  await listen(port)
  await seen(/^lost: ERR_DEADLINE /) // connected, but the reply does not come
  echo = true
  await seen(/^reply ping \d+$/)

  // The waits between attempts doubled while the server refused, and started over once connected.
  const waits = lines.map((l) => refused.exec(l)?.[1]).filter((w) => w !== undefined).map(Number)
  t.true(waits.length >= 2, lines.join('\n'))
  t.is(waits[1], 2 * waits[0]!, lines.join('\n'))
  t.is(/retrying in (\d+) ms$/.exec(lines.filter((l) => l.startsWith('lost: ERR_DEADLINE')).at(-1)!)?.[1], '100', 'the backoff starts over once connected')
  t.true(lines.filter((l) => l.startsWith('connected')).length >= 2)
})
