// Delegating a net.Socket to a watcher on first use (gaio's "non-intrusive
// design": hand over a net.Conn after some handshaking or option setting).
import test from 'ava'
import { execFileSync } from 'node:child_process'
import { connect, createServer, Socket, type Server } from 'node:net'
import { GaioError, OpType, Watcher, type OpResult } from '../index'
import { collectUntil, netServer, receiveBytes, within, isReadInto } from './helpers'

function listening(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)))
}

/** A node:net client, handed to `onConnect` inside its connect callback. */
function connectThen<T>(port: number, onConnect: (socket: Socket) => T): Promise<{ socket: Socket; value: T }> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(port, '127.0.0.1', () => {
      try {
        resolve({ socket, value: onConnect(socket) })
      } catch (e) {
        reject(e)
      }
    })
    socket.once('error', reject)
  })
}

/** Records what a node:net peer sees besides data: it must see neither EOF nor a reset while the watcher owns the other end. */
function watchPeer(socket: Socket) {
  const seen: string[] = []
  socket.on('end', () => seen.push('end'))
  socket.on('error', (e: NodeJS.ErrnoException) => seen.push(`error ${e.code}`))
  socket.on('close', () => seen.push('close'))
  return seen
}

/** What writing to a destroyed net.Socket gives in node:net itself. */
function writeError(socket: Socket): Promise<string | undefined> {
  return new Promise((resolve) => socket.write('again', (e?: Error | null) => resolve((e as NodeJS.ErrnoException | null)?.code)))
}

/** The `timer:(...)` of the TCP socket with this local port, as ss(8) reports it. */
function ssTimer(localPort: number): string {
  const out = execFileSync('ss', ['-tnoH', 'state', 'established', 'sport', '=', `:${localPort}`], { encoding: 'utf8' })
  return /timer:\(([^)]*)\)/.exec(out)?.[1] ?? ''
}

test('a client net.Socket delegated in its connect callback: same object in results, options kept, peer undisturbed', async (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  const peers: Socket[] = []
  const server = createServer((s) => peers.push(s))
  const port = await listening(server)
  t.teardown(() => {
    peers.forEach((s) => s.destroy())
    server.close()
  })

  let localPort = 0
  const { socket } = await within(
    3000,
    'connect',
    connectThen(port, (s) => {
      s.setNoDelay(true)
      s.setKeepAlive(true, 1000)
      localPort = s.localPort!
      // First use: the watcher takes the socket over here.
      w.write('hello', s, Buffer.from('hello from the watcher'))
      w.read('reply', s)
      return s
    }),
  )
  t.true(socket.destroyed, "Node's copy is destroyed once the watcher owns the socket")
  t.is(await writeError(socket), 'ERR_STREAM_DESTROYED', 'writing through the net.Socket fails as on any destroyed net.Socket')
  const plain = new Socket()
  plain.destroy()
  t.is(await writeError(plain), 'ERR_STREAM_DESTROYED', 'the same as node:net for its own destroyed sockets')

  await within(3000, 'the peer connection', new Promise<void>((resolve) => (peers.length ? resolve() : server.once('connection', () => resolve()))))
  const peer = peers[0]
  const seen = watchPeer(peer)
  t.deepEqual((await receiveBytes(peer, 22)).toString(), 'hello from the watcher')
  peer.write('hello from the peer')

  const results = await collectUntil(w, (rs) => rs.length >= 2, 3000, 'write and read')
  const byContext = new Map<unknown, OpResult>(results.map((r) => [r.context, r]))
  const wrote = byContext.get('hello')!
  const read = byContext.get('reply')!
  t.is(wrote.operation, OpType.Write)
  t.is(wrote.error, null)
  t.is(wrote.size, 22)
  t.is(wrote.conn, socket, 'the write result carries the very same net.Socket')
  t.is(read.operation, OpType.Read)
  t.is(read.error, null)
  t.is(read.conn, socket, 'the read result carries the very same net.Socket')
  t.is(Buffer.from(read.buffer!).toString(), 'hello from the peer')

  // SO_KEEPALIVE with a 1 s idle time, set through Node before delegation, is
  // still on the socket the watcher owns (the default idle time is 2 hours).
  const timer = ssTimer(localPort)
  t.regex(timer, /^keepalive,/, `the watcher's socket keeps SO_KEEPALIVE (ss: ${timer})`)
  const left = /^keepalive,(?:(\d+)sec)?(?:(\d+)ms)?/.exec(timer)
  t.truthy(left)
  t.true(Number(left![1] ?? 0) * 1000 + Number(left![2] ?? 0) <= 1000, `and its 1 s idle time (ss: ${timer})`)

  // More traffic after Node's copy is gone: it still works both ways.
  for (let i = 0; i < 3; i++) {
    const echoed = receiveBytes(peer, 6)
    w.write(i, socket, Buffer.from(`ping ${i}`))
    t.is((await within(3000, 'ping', echoed)).toString(), `ping ${i}`)
  }
  await collectUntil(w, (rs) => rs.filter((r) => r.operation === OpType.Write).length === 3, 3000, 'pings')
  t.deepEqual(seen, [], 'the peer saw no EOF, reset or close when Node destroyed its copy')

  // Freeing through the net.Socket closes the watcher's descriptor: now the peer sees EOF.
  const ended = new Promise<void>((resolve) => peer.once('end', resolve))
  w.free(socket)
  await within(3000, 'EOF after free', ended)
  t.deepEqual(seen.filter((s) => s.startsWith('error')), [])
})

test('a server-side net.Socket from createServer({ pauseOnConnect: true }) is delegated and echoed by the watcher', async (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  const delegated: Socket[] = []
  const server = createServer({ pauseOnConnect: true }, (socket) => {
    socket.setNoDelay(true)
    delegated.push(socket)
    // First use: a read into a buffer of our own.
    const buf = new Uint8Array(64)
    w.read(buf, socket, buf)
  })
  const port = await listening(server)
  t.teardown(() => server.close())

  const clients = await Promise.all([0, 1, 2].map(() => connectThen(port, (s) => s).then(({ socket }) => socket)))
  t.teardown(() => clients.forEach((c) => c.destroy()))
  const seen = clients.map(watchPeer)
  // Sent before or after the server delegates: the bytes wait in the kernel either way.
  const echoes = clients.map((c, i) => {
    const echoed = receiveBytes(c, 9)
    c.write(`client ${i}!`)
    return echoed
  })

  let reads = 0
  let writes = 0
  await collectUntil(
    w,
    (rs) => {
      for (const res of rs.splice(0)) {
        t.is(res.error, null)
        t.true(res.conn instanceof Socket)
        t.true(delegated.includes(res.conn as Socket), 'results carry the net.Socket the server handed over')
        if (res.operation === OpType.Read) {
          reads++
          t.true(isReadInto(res, res.context as Uint8Array), 'the read landed in the buffer given')
          w.write(res.context, res.conn, res.buffer!.subarray(0, res.size))
        } else if (res.operation === OpType.Write) writes++
      }
      return writes === 3
    },
    5000,
    'echo on delegated sockets',
  )
  t.is(reads, 3)
  t.deepEqual((await within(3000, 'echoes', Promise.all(echoes))).map(String), ['client 0!', 'client 1!', 'client 2!'])
  t.is(delegated.length, 3)
  for (const s of delegated) t.true(s.destroyed, "Node's copy of each server-side socket is destroyed")
  t.deepEqual(seen, [[], [], []], 'no client saw EOF or a reset')
})

test('a net.Socket that already buffered data is refused with ERR_SOCKET_HAS_DATA and keeps its data', async (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  // Not paused: Node starts reading as soon as the connection is accepted.
  const { port, sockets, close } = await netServer(() => {})
  t.teardown(close)
  const client = await new Promise<Socket>((resolve) => {
    const c: Socket = connect(port, '127.0.0.1', () => resolve(c))
  })
  t.teardown(() => client.destroy())
  client.write('early bytes')

  await within(3000, 'server socket', new Promise<void>((resolve) => {
    const poll = () => (sockets.length && sockets[0].readableLength > 0 ? resolve() : setTimeout(poll, 5))
    poll()
  }))
  const socket = sockets[0]
  t.is(socket.readableLength, 11)

  const refused = t.throws(() => w.read('too late', socket), { instanceOf: GaioError })
  t.is(refused?.code, 'ERR_SOCKET_HAS_DATA')
  t.throws(() => w.write('too late', socket, Buffer.from('x')), { instanceOf: GaioError, message: /already read data/ })
  t.false(socket.destroyed, 'a refused socket stays with Node')

  // Nothing was lost: the bytes are still there, and the socket still works.
  t.is(String(socket.read()), 'early bytes')
  const reply = receiveBytes(client, 5)
  socket.write('reply')
  t.is(String(await within(3000, 'reply', reply)), 'reply')

  // Drained, the same socket can be delegated after all.
  t.is(socket.readableLength, 0)
  w.read('now', socket)
  t.true(socket.destroyed)
  client.write('later')
  const [res] = await collectUntil(w, (rs) => rs.length >= 1, 3000, 'read after late delegation')
  t.is(res.conn, socket)
  t.is(res.error, null)
  t.is(Buffer.from(res.buffer!).toString(), 'later')
})

test('a net.Socket that still has writes queued in Node is refused, and they are not lost', async (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  // The peer does not read at first, so Node's write of 16 MiB cannot finish.
  const { port, sockets, close } = await netServer()
  t.teardown(close)
  const big = Buffer.alloc(16 << 20, 7)
  let nodeWrite: Promise<Error | null | undefined> = Promise.resolve(undefined)
  const { socket } = await within(3000, 'connect', connectThen(port, (s) => {
    nodeWrite = new Promise((resolve) => s.write(big, resolve))
    return s
  }))
  t.teardown(() => socket.destroy())
  t.true(socket.writableLength > 0, 'Node still holds bytes to write')

  const refused = t.throws(() => w.write('tail', socket, Buffer.from('tail')), { instanceOf: GaioError })
  t.is(refused?.code, 'ERR_SOCKET_HAS_DATA')
  t.false(socket.destroyed)

  // Every byte of Node's write arrives once the peer reads.
  await within(3000, 'server socket', new Promise<void>((resolve) => {
    const poll = () => (sockets.length ? resolve() : setTimeout(poll, 5))
    poll()
  }))
  const received = receiveBytes(sockets[0], big.length)
  sockets[0].resume()
  t.is((await within(5000, 'all of Node\'s bytes', received)).length, big.length)
  t.falsy(await within(3000, 'write callback', nodeWrite))
})

test('an unconnected net.Socket cannot be delegated', (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  const socket = new Socket()
  t.throws(() => w.read(null, socket), { instanceOf: TypeError, message: /not connected/ })
  t.throws(() => w.write(null, socket, Buffer.from('x')), { instanceOf: TypeError, message: /not connected/ })
  t.false(socket.destroyed)
  socket.destroy()
})
