// The two examples of the seed README (examples/*.js), run as child processes
// and driven with node:net clients.
import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { type Socket } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { netClient, receiveBytes, within } from './helpers'

const examples = join(__dirname, '..', 'examples')

/** Starts an example; resolves with the child and the port from its first stdout line. */
async function start(t: { teardown(fn: () => void): void }, file: string, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [join(examples, file)], {
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
  const before = Date.now()
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
