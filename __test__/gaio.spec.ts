// A port of gaio's own tests (aio_test.go in xtaci/gaio) to the public API,
// plus the cases its README promises: deadlines, end of stream, free, close,
// context passing and collection of forgotten connections and watchers.
import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { Socket } from 'node:net'
import { Watcher, OpType, Conn, GaioError, type OpResult, type WatcherOptions } from '../index'
import {
  within,
  sleep,
  startEchoServer,
  drive,
  collectUntil,
  netClient,
  netServer,
  receiveBytes,
  receiveUntilEnd,
  gaioPair,
  pattern,
  collectGarbage,
  withMode,
  scaled,
  type EchoOptions,
  isReadInto,
} from './helpers'

const HOST = '127.0.0.1'
const KiB = 1024
const MiB = 1024 * 1024

/** A watcher closed when the test ends. */
function watcher(t: ExecutionContext, options?: WatcherOptions): Watcher {
  const w = new Watcher(withMode(options))
  t.teardown(() => w.close())
  return w
}

/** An echo server closed when the test ends. */
function echo(t: ExecutionContext, options?: WatcherOptions, echoOptions?: EchoOptions) {
  const server = startEchoServer(options, echoOptions)
  t.teardown(() => server.stop())
  return server
}

function client(t: ExecutionContext, port: number): Promise<Socket> {
  return netClient(port).then((socket) => {
    t.teardown(() => socket.destroy())
    return socket
  })
}

/** Accepts one connection on a fresh listener of `w` from a node:net client. */
async function acceptFromNet(t: ExecutionContext, w: Watcher) {
  const ln = w.listen({ host: HOST, port: 0 })
  w.accept('accept', ln)
  const peer = await client(t, ln.port)
  const [res] = await collectUntil(w, (r) => r.length > 0, 5000, 'accept')
  if (res.error) throw res.error
  t.is(res.operation, OpType.Accept)
  return { ln, conn: res.conn as Conn, peer }
}

/** Connects `w` to `port`. */
async function connectTo(w: Watcher, port: number): Promise<Conn> {
  w.connect('connect', { host: HOST, port })
  const [res] = await collectUntil(w, (r) => r.length > 0, 5000, 'connect')
  if (res.error) throw res.error
  return res.conn as Conn
}

/** Reads with swap buffers until `n` bytes arrived; the copy survives later waitIO() calls. */
async function readBytes(w: Watcher, conn: Conn, n: number, ms = 10_000): Promise<Buffer> {
  const rx = Buffer.alloc(n)
  let got = 0
  w.read('rx', conn)
  await drive(
    w,
    (res) => {
      if (res.operation !== OpType.Read || res.context !== 'rx') return
      if (res.error) throw res.error
      rx.set(res.buffer!.subarray(0, res.size), got)
      got += res.size
      if (got < n) w.read('rx', conn)
      return got >= n
    },
    ms,
    `reading ${n} bytes`,
  )
  return rx
}

// ---- echo ------------------------------------------------------------------

for (const [name, echoOptions] of [
  ['swap buffers', {}],
  ['its own 1-byte buffers', { readBuffer: 1 }],
] as const) {
  test(`tiny echo: a node:net client gets "hello world" back from a server reading with ${name}`, async (t) => {
    const server = echo(t, { bufferSize: 1 }, echoOptions)
    const socket = await client(t, server.port)
    const rx = receiveBytes(socket, 11)
    socket.write('hello world')
    t.is((await within(5000, 'echo', rx)).toString(), 'hello world')
    t.is(server.stats.accepted, 1)
  })
}

for (const [name, echoOptions] of [
  ['swap buffers', {}],
  ['its own 64 KiB buffers', { readBuffer: 64 * KiB }],
] as const) {
  test(`huge echo: 16 MiB each way through a server reading with ${name}, every byte checked`, async (t) => {
    t.timeout(scaled(30_000))
    const server = echo(t, { bufferSize: 64 * KiB }, echoOptions)
    const socket = await client(t, server.port)
    const tx = randomBytes(16 * MiB)
    const rx = receiveBytes(socket, tx.length)
    socket.write(tx)
    const got = await within(25_000, 'huge echo', rx)
    t.is(got.length, tx.length)
    t.true(got.equals(tx), 'echoed bytes differ')
  })
}

test('bidirectional: a write and a read submitted together on one connection to an echo server', async (t) => {
  const server = echo(t)
  const w = watcher(t)
  const conn = await connectTo(w, server.port)
  const tx = Buffer.from('hello world')
  // Like gaio's test: the read goes in before the write has completed.
  w.write('tx', conn, tx)
  const rx = Buffer.alloc(tx.length)
  let target = rx
  let got = 0
  let written = -1
  w.read('rx', conn, target)
  await drive(w, (res) => {
    if (res.error) throw res.error
    if (res.operation === OpType.Write) {
      t.is(res.context, 'tx')
      written = res.size
    } else {
      t.is(res.operation, OpType.Read)
      t.true(isReadInto(res, target))
      got += res.size
      // A read may return part of the message: the rest goes into the rest of rx.
      if (got < tx.length) w.read('rx', conn, (target = rx.subarray(got)))
    }
    return written === tx.length && got === tx.length
  })
  t.is(rx.toString(), 'hello world')
})

test('bidirectional: both ends of a connection write 4 MiB and read at the same time', async (t) => {
  t.timeout(scaled(20_000))
  const w = watcher(t)
  const { client: a, server: b } = await gaioPair(w)
  const size = 4 * MiB
  const sides = [a, b].map((conn, i) => ({ name: i === 0 ? 'client' : 'server', conn, tx: randomBytes(size), rx: Buffer.alloc(size), got: 0, written: 0 }))
  // Both sides write all at once, then both read: neither write can finish
  // unless the other side's reads run while its own write is still pending.
  for (const side of sides) w.write(side, side.conn, side.tx)
  for (const side of sides) w.read(side, side.conn)
  await drive(
    w,
    (res) => {
      const side = res.context as (typeof sides)[number]
      if (res.error) throw new Error(`${side.name} ${OpType[res.operation]}: ${res.error.code}`)
      if (res.operation === OpType.Write) side.written = res.size
      else {
        side.rx.set(res.buffer!.subarray(0, res.size), side.got)
        side.got += res.size
        if (side.got < size) w.read(side, side.conn)
      }
      return sides.every((s) => s.written === size && s.got === size)
    },
    15_000,
    'bidirectional',
  )
  t.true(sides[0].rx.equals(sides[1].tx), 'the client got the server bytes')
  t.true(sides[1].rx.equals(sides[0].tx), 'the server got the client bytes')
})

// ---- readFull --------------------------------------------------------------

test('readFull: 16 MiB written through the watcher come back from an echo server in one completion', async (t) => {
  t.timeout(scaled(30_000))
  const server = echo(t, { bufferSize: 64 * KiB })
  const w = watcher(t)
  const conn = await connectTo(w, server.port)
  const tx = randomBytes(16 * MiB)
  const rx = Buffer.alloc(tx.length)
  w.write('tx', conn, tx)
  w.readFull('rx', conn, rx)
  const results = await collectUntil(w, (r) => r.some((x) => x.operation === OpType.Read), 25_000, 'readFull')
  const write = results.find((r) => r.operation === OpType.Write)!
  const read = results.find((r) => r.operation === OpType.Read)!
  t.is(write.error, null)
  t.is(write.size, tx.length)
  t.is(read.error, null)
  t.is(read.context, 'rx')
  t.is(read.size, rx.length)
  t.true(isReadInto(read, rx))
  t.false(read.isSwapBuffer)
  t.true(rx.equals(tx), 'readFull content mismatch')
})

test('readFull: waits across several small writes of the peer', async (t) => {
  const w = watcher(t)
  const { conn, peer } = await acceptFromNet(t, w)
  const rx = new Uint8Array(11)
  w.readFull('full', conn, rx)
  for (const part of ['hel', 'lo w', 'orl', 'd']) {
    peer.write(part)
    await sleep(20)
  }
  const [res] = await collectUntil(w, (r) => r.length > 0, 5000)
  t.is(res.error, null)
  t.is(res.size, 11)
  t.is(Buffer.from(rx).toString(), 'hello world')
})

test('readFull: end of stream first gives EOF with the partial bytes', async (t) => {
  const w = watcher(t)
  const { conn, peer } = await acceptFromNet(t, w)
  const rx = Buffer.alloc(100)
  w.readFull('full', conn, rx)
  peer.end('only 13 bytes')
  const [res] = await collectUntil(w, (r) => r.length > 0, 5000)
  t.is(res.error?.code, 'EOF')
  t.is(res.size, 13)
  t.is(rx.subarray(0, res.size).toString(), 'only 13 bytes')
})

test('readFull: a deadline first gives ERR_DEADLINE with the partial bytes', async (t) => {
  const w = watcher(t)
  const { conn, peer } = await acceptFromNet(t, w)
  const rx = Buffer.alloc(100)
  w.readFull('full', conn, rx, Date.now() + 300)
  peer.write('0123456789')
  const [res] = await collectUntil(w, (r) => r.length > 0, 5000)
  t.is(res.error?.code, 'ERR_DEADLINE')
  t.is(res.size, 10)
  t.is(rx.subarray(0, res.size).toString(), '0123456789')
})

// ---- deadlines -------------------------------------------------------------

for (const [name, buffer] of [
  ['the swap buffer', () => null],
  ['its own buffer', () => Buffer.alloc(64)],
] as const) {
  test(`deadline: readTimeout into ${name} on a silent connection completes with ERR_DEADLINE, and the connection still works`, async (t) => {
    const server = echo(t)
    const w = watcher(t)
    const conn = await connectTo(w, server.port)
    const other = await connectTo(w, server.port)
    const start = Date.now()
    w.readTimeout('late', conn, buffer(), new Date(start + 200))
    // On time is checked as an order, not a time (emulators are slow): no later than a read due 1 s after it.
    w.readTimeout('later', other, null, new Date(start + 1200))
    const batchOf = new Map<unknown, number>()
    let batches = 0
    let elapsed = -1
    const results = await collectUntil(w, (r) => {
      r.slice(batchOf.size).forEach((x) => batchOf.set(x.context, batches))
      if (elapsed < 0 && batchOf.has('late')) elapsed = Date.now() - start
      batches++
      return r.length === 2
    }, 5000, 'readTimeout')
    const res = results.find((r) => r.context === 'late')!
    t.is(res.operation, OpType.Read)
    t.is(res.context, 'late')
    t.true(res.error instanceof GaioError)
    t.is(res.error?.code, 'ERR_DEADLINE')
    t.is(res.size, 0)
    t.true(elapsed >= 195, `completed after ${elapsed} ms, before its deadline`)
    t.is(results.find((r) => r.context === 'later')!.error?.code, 'ERR_DEADLINE')
    t.true(batchOf.get('late')! <= batchOf.get('later')!, 'the deadline 200 ms ahead came no later than one 1.2 s ahead')
    // The connection is still usable.
    w.write('tx', conn, Buffer.from('ping'))
    t.is((await readBytes(w, conn, 4)).toString(), 'ping')
  })
}

test('deadline: writeTimeout to a peer that never reads completes with ERR_DEADLINE once the socket buffers fill', async (t) => {
  t.timeout(scaled(20_000))
  const hangup = await netServer()
  t.teardown(() => hangup.close())
  const w = watcher(t)
  const conn = await connectTo(w, hangup.port)
  const chunk = Buffer.alloc(1 * MiB, 7)
  let completed = 0
  let deadlineResult: OpResult | undefined
  const submit = () => w.writeTimeout('tx', conn, chunk, Date.now() + 300)
  submit()
  await drive(
    w,
    (res) => {
      t.is(res.operation, OpType.Write)
      if (res.error) {
        deadlineResult = res
        return true
      }
      completed++
      submit()
    },
    15_000,
    'writeTimeout',
  )
  t.is(deadlineResult!.error?.code, 'ERR_DEADLINE')
  t.true(deadlineResult!.size < chunk.length, `a timed-out write reports ${deadlineResult!.size} bytes written`)
  t.is(deadlineResult!.buffer, chunk)
  // The kernel buffers hold a few MiB at most: the peer that never reads stops the writes.
  t.true(completed < 64, `${completed} MiB were written to a peer that never reads`)
  // A connect completes at the handshake; Node's accept of it can come after the deadline's result.
  await within(5000, 'the peer accepts', (async () => { while (hangup.sockets.length === 0) await sleep(10) })())
  t.true(hangup.sockets.length === 1)
})

async function manyDeadlines(t: ExecutionContext, n: number) {
  t.timeout(scaled(60_000))
  const server = echo(t, { bufferSize: 128 }, { accepts: 256 })
  const w = watcher(t)
  const delay = 500
  const window = 512
  let started = 0
  let connecting = 0
  let timedOut = 0
  let early = 0
  const unexpected: string[] = []
  const connectMore = () => {
    for (; connecting < window && started < n; started++, connecting++) w.connect({ i: started, deadline: 0 }, { host: HOST, port: server.port })
  }
  connectMore()
  await drive(
    w,
    (res) => {
      const ctx = res.context as { i: number; deadline: number }
      if (res.operation === OpType.Connect) {
        connecting--
        if (res.error) throw new Error(`connect ${ctx.i}: ${res.error.code}`)
        // Send nothing: only the deadline can complete this read.
        ctx.deadline = Date.now() + delay
        w.readTimeout(ctx, res.conn, null, ctx.deadline)
        connectMore()
        return
      }
      if (res.error?.code !== 'ERR_DEADLINE') unexpected.push(`${OpType[res.operation]} ${ctx.i}: ${res.error?.code ?? `${res.size} bytes`}`)
      else timedOut++
      if (Date.now() < ctx.deadline - 2) early++
      return timedOut + unexpected.length === n
    },
    50_000,
    `deadlines on ${n} connections`,
  )
  t.deepEqual(unexpected, [])
  t.is(timedOut, n)
  t.is(early, 0, 'reads completed before their deadline')
  // A connect completes at the handshake: the server's accepts may still be catching up.
  await within(5000, 'the server accepts', (async () => { while (server.stats.accepted < n) await sleep(10) })())
  t.is(server.stats.accepted, n)
}

for (const n of [1024, 2048, 4096, 8192]) {
  test.serial(`deadline: ${n} silent connections, every read completes with ERR_DEADLINE`, manyDeadlines, n)
}

// ---- end of stream and closed connections ----------------------------------

test('peer closes: reads complete with the last bytes, then EOF, and keep giving EOF', async (t) => {
  const w = watcher(t)
  const { conn, peer } = await acceptFromNet(t, w)
  // Two reads pending before the peer says anything.
  w.read('a', conn)
  w.read('b', conn, Buffer.alloc(16))
  await sleep(20)
  peer.end('bye')
  // Re-read only when no read is pending; stop once every read has ended.
  let data = ''
  let pending = 2
  const ends: OpResult[] = []
  await drive(
    w,
    (r) => {
      pending--
      if (r.error) ends.push(r)
      else {
        data += Buffer.from(r.buffer!.subarray(0, r.size)).toString()
        if (pending === 0) {
          w.read('more', conn)
          pending++
        }
      }
      return ends.length > 0 && pending === 0
    },
    5000,
    'EOF',
  )
  t.is(data, 'bye')
  t.true(ends.length >= 1)
  for (const r of ends) {
    t.is(r.error?.code, 'EOF')
    t.is(r.size, 0)
  }
  // After end of stream, every read completes with EOF at once.
  w.read('c', conn)
  w.read('d', conn, Buffer.alloc(8))
  w.readFull('e', conn, Buffer.alloc(8))
  const after = await collectUntil(w, (r) => r.length >= 3)
  t.deepEqual(
    after.map((r) => [r.context, r.operation, r.size, r.error?.code]),
    [
      ['c', OpType.Read, 0, 'EOF'],
      ['d', OpType.Read, 0, 'EOF'],
      ['e', OpType.Read, 0, 'EOF'],
    ],
  )
})

test('peer closes: a read pending on a silent connection completes with EOF', async (t) => {
  const w = watcher(t)
  const { conn, peer } = await acceptFromNet(t, w)
  w.readTimeout('pending', conn, null, Date.now() + 5000)
  await sleep(50)
  peer.end()
  const [res] = await collectUntil(w, (r) => r.length > 0, 5000)
  t.is(res.context, 'pending')
  t.is(res.error?.code, 'EOF')
  t.is(res.size, 0)
})

test('write on a closed connection: after free, reads and writes complete with ERR_CONN_CLOSED', async (t) => {
  const w = watcher(t)
  const { client: a, server: b } = await gaioPair(w)
  w.free(a)
  const tx = Buffer.from('hello world')
  w.write('w', a, tx)
  w.writeTimeout('wt', a, tx, Date.now() + 1000)
  w.read('r', a)
  w.readFull('rf', a, Buffer.alloc(4))
  const results = await collectUntil(w, (r) => r.length >= 4)
  t.deepEqual(
    results.map((r) => [r.context, r.operation, r.size, r.error?.code]),
    [
      ['w', OpType.Write, 0, 'ERR_CONN_CLOSED'],
      ['wt', OpType.Write, 0, 'ERR_CONN_CLOSED'],
      ['r', OpType.Read, 0, 'ERR_CONN_CLOSED'],
      ['rf', OpType.Read, 0, 'ERR_CONN_CLOSED'],
    ],
  )
  t.is(results[0].conn, a)
  t.is(results[0].buffer, tx)
  // The other end saw the close.
  w.read('peer', b)
  const [eof] = await collectUntil(w, (r) => r.length > 0)
  t.is(eof.error?.code, 'EOF')
})

test('write on a closed connection: after the peer closed, a write fails with an OS error', async (t) => {
  const w = watcher(t)
  const { conn, peer } = await acceptFromNet(t, w)
  peer.destroy()
  await sleep(20)
  const tx = Buffer.from('hello world')
  let error: GaioError | null = null
  let writes = 0
  while (!error && writes < 50) {
    w.write(writes, conn, tx)
    writes++
    const [res] = await collectUntil(w, (r) => r.length > 0)
    t.is(res.operation, OpType.Write)
    t.is(res.context, writes - 1)
    error = res.error
    if (!error) await sleep(10)
  }
  t.truthy(error, `${writes} writes to a closed peer all succeeded`)
  t.true(['EPIPE', 'ECONNRESET'].includes(error!.code), `error ${error!.code}`)
  t.is(typeof error!.errno, 'number')
})

// ---- many connections ------------------------------------------------------

interface ManyOptions {
  rounds?: number
  /** Reads choose at random among the swap buffer and buffers of several kinds. */
  mixBuffers?: boolean
  watcher?: WatcherOptions
  server?: WatcherOptions
  serverEcho?: EchoOptions
}

/**
 * gaio's testParallel: `n` connections through the watcher's connect to an
 * echo server, each sending `size` bytes per round and reading them back.
 * Reads may return part of a message: they are re-submitted until every byte
 * is back, and every byte is checked.
 */
async function echoMany(t: ExecutionContext, n: number, size: number, options: ManyOptions = {}) {
  t.timeout(scaled(60_000))
  const rounds = options.rounds ?? 1
  const server = echo(t, options.server, { accepts: 256, ...options.serverEcho })
  const w = watcher(t, options.watcher)
  interface Peer {
    i: number
    conn: Conn | null
    round: number
    tx: Buffer
    rx: Buffer
    got: number
    own: Uint8Array | null
  }
  const window = 512
  let started = 0
  let connecting = 0
  let done = 0
  let swapReads = 0
  let ownReads = 0
  const open = new Set<Conn>()
  const problems: string[] = []
  const readNext = (p: Peer) => {
    p.own = null
    const choice = options.mixBuffers ? Math.floor(Math.random() * 5) : 0
    if (choice === 1) p.own = Buffer.alloc(size)
    // A tiny one: the read returns part of the message.
    else if (choice === 2) p.own = new Uint8Array(1 + Math.floor(Math.random() * 16))
    // A view at an offset into a larger buffer.
    else if (choice === 3) p.own = Buffer.alloc(size + 64).subarray(17, 17 + size)
    // The rest of the message only.
    else if (choice === 4) p.own = new Uint8Array(size - p.got)
    w.read(p, p.conn!, p.own)
  }
  const connectMore = () => {
    for (; connecting < window && started < n; started++, connecting++) {
      const p: Peer = { i: started, conn: null, round: 0, tx: pattern(started, size), rx: Buffer.alloc(size), got: 0, own: null }
      w.connect(p, { host: HOST, port: server.port })
    }
  }
  connectMore()
  await drive(
    w,
    (res) => {
      const p = res.context as Peer
      if (res.error) throw new Error(`${OpType[res.operation]} on connection ${p.i}: ${res.error.code}`)
      switch (res.operation) {
        case OpType.Connect:
          connecting--
          p.conn = res.conn as Conn
          open.add(p.conn)
          w.write(p, p.conn, p.tx)
          connectMore()
          break
        case OpType.Write:
          if (res.size !== size || res.buffer !== p.tx) problems.push(`write ${p.i}: ${res.size} bytes`)
          readNext(p)
          break
        case OpType.Read: {
          if (res.conn !== p.conn) problems.push(`read ${p.i}: another connection`)
          if (p.own) {
            ownReads++
            if (res.isSwapBuffer || !isReadInto(res, p.own)) problems.push(`read ${p.i}: not the bytes read, in the given buffer`)
          } else {
            swapReads++
            if (!res.isSwapBuffer) problems.push(`read ${p.i}: not a swap buffer`)
          }
          if (res.size === 0 || p.got + res.size > size) problems.push(`read ${p.i}: ${res.size} bytes after ${p.got}`)
          p.rx.set(res.buffer!.subarray(0, Math.min(res.size, size - p.got)), p.got)
          p.got += res.size
          if (p.got < size) {
            readNext(p)
            break
          }
          if (!p.rx.equals(p.tx)) problems.push(`connection ${p.i} round ${p.round}: echoed bytes differ`)
          if (++p.round < rounds) {
            p.tx = pattern(p.i + p.round * n, size)
            p.got = 0
            w.write(p, p.conn!, p.tx)
          } else done++
          break
        }
      }
      if (problems.length > 20) return true
      return done === n
    },
    50_000,
    `echo on ${n} connections`,
  )
  t.deepEqual(problems, [])
  t.is(done, n)
  // All of them were open at once, like gaio's test.
  t.is(open.size, n)
  t.is(server.stats.accepted, n)
  return { swapReads, ownReads }
}

for (const n of [1024, 2048, 4096, 8192]) {
  test.serial(`echo: ${n} connections each send 1 KiB, every byte comes back`, async (t) => {
    await echoMany(t, n, 1 * KiB)
  })
}

test.serial('echo: 4096 connections each send 16 bytes', async (t) => {
  await echoMany(t, 4096, 16)
})

test.serial('echo: random use of swap buffers and own buffers of several kinds, small swap arenas, 3 rounds on 2048 connections', async (t) => {
  const { swapReads, ownReads } = await echoMany(t, 2048, 1 * KiB, {
    rounds: 3,
    mixBuffers: true,
    // Swap arenas of 8 KiB: swap reads often wait for space (back-pressure).
    watcher: { bufferSize: 1 * KiB, swapSize: 8 * KiB },
    serverEcho: { readBuffer: 1 * KiB },
  })
  t.true(swapReads > 0 && ownReads > 0, `${swapReads} swap reads, ${ownReads} own-buffer reads`)
})

test('echo: reads into tiny Uint8Arrays survive forced garbage collection while pending', async (t) => {
  const gc = (globalThis as { gc?: () => void }).gc!
  const w = watcher(t)
  const { client: a, server: b } = await gaioPair(w)
  const tx = pattern(99, 256)
  const rx = Buffer.alloc(tx.length)
  let got = 0
  const readTiny = () => w.read('tiny', b, new Uint8Array(8))
  readTiny()
  w.write('tx', a, tx)
  await drive(w, (res) => {
    if (res.error) throw res.error
    if (res.operation !== OpType.Read) return
    rx.set(res.buffer!.subarray(0, res.size), got)
    got += res.size
    // Churn the heap so that small on-heap typed arrays would move if they could.
    for (let i = 0; i < 50; i++) new Uint8Array(8)
    gc()
    if (got < tx.length) readTiny()
    return got >= tx.length
  })
  t.true(rx.equals(tx))
})

// ---- gaio's TestEmptyBuffer and TestUnsupportedConn ------------------------

test('empty buffers: write, writeTimeout, read and readFull with no bytes throw ERR_EMPTY_BUFFER', async (t) => {
  const w = watcher(t)
  const { client: a } = await gaioPair(w)
  const empty = Buffer.alloc(0)
  const calls: [string, () => void][] = [
    ['write', () => w.write(null, a, empty)],
    ['writeTimeout', () => w.writeTimeout(null, a, empty, Date.now() + 1000)],
    ['read', () => w.read(null, a, new Uint8Array(0))],
    ['readFull', () => w.readFull(null, a, empty)],
  ]
  for (const [name, call] of calls) {
    const error = t.throws(call, { instanceOf: GaioError }, name)
    t.is(error?.code, 'ERR_EMPTY_BUFFER', name)
  }
  // Nothing was submitted: the connection still echoes normally.
  w.write('ok', a, Buffer.from('x'))
  const [res] = await collectUntil(w, (r) => r.length > 0)
  t.is(res.context, 'ok')
  t.is(res.error, null)
})

test('unsupported connections: reads and writes on something that is not a connection throw TypeError', async (t) => {
  const w = watcher(t)
  const buf = Buffer.from('x')
  for (const conn of [null, undefined, {}, 42, new Socket()]) {
    t.throws(() => w.read(null, conn as unknown as Conn), { instanceOf: TypeError }, String(conn))
    t.throws(() => w.write(null, conn as unknown as Conn, buf), { instanceOf: TypeError }, String(conn))
  }
})

// ---- context ---------------------------------------------------------------

test('context: every result carries the context object of its own request', async (t) => {
  const w = watcher(t)
  const ln = w.listen({ host: HOST, port: 0 })
  type Ctx = { op: OpType; name: string; conn?: Conn; mayTimeOut?: boolean }
  const expected = new Set<Ctx>()
  const make = (op: OpType, name: string, conn?: Conn, mayTimeOut = false): Ctx => {
    const ctx = { op, name, conn, mayTimeOut }
    expected.add(ctx)
    return ctx
  }
  const seen = new Set<unknown>()
  const problems: string[] = []
  const check = (res: OpResult) => {
    const ctx = res.context as Ctx
    if (!expected.has(ctx)) problems.push(`unknown context ${String(res.context)}`)
    else if (seen.has(ctx)) problems.push(`${ctx.name} delivered twice`)
    else if (ctx.op !== res.operation) problems.push(`${ctx.name}: operation ${OpType[res.operation]}`)
    else if (ctx.conn && ctx.conn !== res.conn) problems.push(`${ctx.name}: another connection`)
    else if (res.error && !(ctx.mayTimeOut && res.error.code === 'ERR_DEADLINE')) problems.push(`${ctx.name}: ${res.error.code}`)
    seen.add(ctx)
  }
  const pairs = 8
  for (let i = 0; i < pairs; i++) {
    w.accept(make(OpType.Accept, `accept ${i}`), ln)
    w.connect(make(OpType.Connect, `connect ${i}`), { host: HOST, port: ln.port })
  }
  const conns: Conn[] = []
  const setup = await collectUntil(w, (r) => r.length >= 2 * pairs)
  for (const res of setup) {
    check(res)
    conns.push(res.conn as Conn)
  }
  t.is(new Set(conns).size, 2 * pairs)
  // Requests of every kind on each connection, all in flight together. Each
  // connection receives 30 bytes: readFull takes 5, the 3-byte read at most 3,
  // the swap read the rest or part of it, and the read with a deadline what
  // is left, if anything.
  for (const [i, conn] of conns.entries()) {
    for (let k = 0; k < 3; k++) w.write(make(OpType.Write, `write ${i}.${k}`, conn), conn, Buffer.from('0123456789'))
    w.readFull(make(OpType.Read, `readFull ${i}`, conn), conn, Buffer.alloc(5))
    w.read(make(OpType.Read, `read into buffer ${i}`, conn), conn, Buffer.alloc(3))
    w.read(make(OpType.Read, `read ${i}`, conn), conn)
    w.readTimeout(make(OpType.Read, `readTimeout ${i}`, conn, true), conn, null, Date.now() + 300)
  }
  const total = expected.size
  await collectUntil(w, (r) => {
    r.splice(0).forEach(check)
    return seen.size >= total
  })
  t.deepEqual(problems, [])
  t.is(seen.size, total)
  // Contexts of any type come back as given, identity included.
  const fn = () => {}
  const given: unknown[] = [undefined, null, 0, -1.5, 'text', Symbol('ctx'), fn, [1, 2], new Map(), 10n, w]
  for (const ctx of given) w.write(ctx, conns[0], Buffer.from('x'))
  const results = await collectUntil(w, (r) => r.length >= given.length)
  t.is(results.length, given.length)
  for (const [i, res] of results.entries()) t.is(res.context, given[i])
})

// ---- free and close --------------------------------------------------------

test('free: pending reads complete with ERR_CONN_CLOSED and the peer sees end of stream', async (t) => {
  const w = watcher(t)
  const { conn, peer } = await acceptFromNet(t, w)
  const ended = receiveUntilEnd(peer)
  w.read('swap', conn)
  w.read('own', conn, Buffer.alloc(16))
  w.readFull('full', conn, Buffer.alloc(16))
  w.readTimeout('timeout', conn, null, Date.now() + 10_000)
  await sleep(50) // let them reach the poller
  w.free(conn)
  w.free(conn) // idempotent
  const results = await collectUntil(w, (r) => r.length >= 4)
  t.deepEqual(
    results.map((r) => [r.context, r.operation, r.size, r.error?.code]),
    [
      ['swap', OpType.Read, 0, 'ERR_CONN_CLOSED'],
      ['own', OpType.Read, 0, 'ERR_CONN_CLOSED'],
      ['full', OpType.Read, 0, 'ERR_CONN_CLOSED'],
      ['timeout', OpType.Read, 0, 'ERR_CONN_CLOSED'],
    ],
  )
  t.is((await within(5000, 'peer end', ended)).length, 0)
})

test('free: a write blocked on a peer that does not read completes with ERR_CONN_CLOSED; the peer gets exactly the bytes reported', async (t) => {
  const hangup = await netServer()
  t.teardown(() => hangup.close())
  const w = watcher(t)
  const conn = await connectTo(w, hangup.port)
  const tx = Buffer.alloc(32 * MiB, 1)
  w.write('big', conn, tx)
  // A connect completes at the handshake; wait until Node has accepted too.
  await within(5000, 'the peer accepts', (async () => { while (hangup.sockets.length === 0) await sleep(10) })())
  await sleep(200)
  t.is(hangup.sockets.length, 1)
  w.free(conn)
  const [res] = await collectUntil(w, (r) => r.length > 0)
  t.is(res.context, 'big')
  t.is(res.error?.code, 'ERR_CONN_CLOSED')
  t.true(res.size > 0 && res.size < tx.length, `${res.size} bytes written`)
  const peer = hangup.sockets[0]
  const received = receiveUntilEnd(peer)
  peer.resume()
  t.is((await within(10_000, 'peer drain', received)).length, res.size)
})

test('free: a listener with a pending accept; the accept completes with ERR_CONN_CLOSED and the port refuses', async (t) => {
  const w = watcher(t)
  const ln = w.listen({ host: HOST, port: 0 })
  w.accept('accept', ln)
  await sleep(20)
  w.free(ln)
  w.free(ln)
  const [res] = await collectUntil(w, (r) => r.length > 0)
  t.is(res.operation, OpType.Accept)
  t.is(res.error?.code, 'ERR_CONN_CLOSED')
  await t.throwsAsync(netClient(ln.port), { code: 'ECONNREFUSED' })
})

test('close: closing twice is a no-op', async (t) => {
  const w = new Watcher(withMode())
  const ln = w.listen({ host: HOST, port: 0 })
  t.notThrows(() => w.close())
  t.notThrows(() => w.close())
  await t.throwsAsync(w.waitIO(), { instanceOf: GaioError, code: 'ERR_WATCHER_CLOSED' })
  t.notThrows(() => w.close())
  await t.throwsAsync(netClient(ln.port), { code: 'ECONNREFUSED' })
})

test('close: the first waitIO() after close resolves with the cancelled requests, then waitIO() rejects', async (t) => {
  const w = new Watcher(withMode())
  t.teardown(() => w.close())
  const { conn, peer } = await acceptFromNet(t, w)
  const ended = receiveUntilEnd(peer)
  const ln2 = w.listen({ host: HOST, port: 0 })
  w.read('read', conn)
  w.readFull('readFull', conn, Buffer.alloc(10))
  w.accept('accept', ln2)
  await sleep(50)
  // This one is still queued in the facade when close() runs.
  w.read('queued', conn, Buffer.alloc(4))
  w.close()
  const cancelled = await within(5000, 'waitIO after close', w.waitIO())
  t.deepEqual(cancelled.map((r) => r.context).sort(), ['accept', 'queued', 'read', 'readFull'])
  for (const r of cancelled) {
    t.true(r.error instanceof GaioError)
    t.is(r.error?.code, 'ERR_WATCHER_CLOSED')
  }
  await t.throwsAsync(w.waitIO(), { instanceOf: GaioError, code: 'ERR_WATCHER_CLOSED' })
  await t.throwsAsync(w.waitIO(), { instanceOf: GaioError, code: 'ERR_WATCHER_CLOSED' })
  t.is((await within(5000, 'peer end', ended)).length, 0)
})

test('close: a waitIO() in progress resolves with the cancelled requests; without any it rejects', async (t) => {
  const w = new Watcher(withMode())
  t.teardown(() => w.close())
  const { conn } = await acceptFromNet(t, w)
  w.read('pending', conn)
  const waiting = w.waitIO()
  await sleep(50)
  w.close()
  const results = await within(5000, 'waitIO', waiting)
  t.deepEqual(results.map((r) => [r.context, r.error?.code]), [['pending', 'ERR_WATCHER_CLOSED']])
  await t.throwsAsync(w.waitIO(), { code: 'ERR_WATCHER_CLOSED' })

  const idle = new Watcher(withMode())
  const idleWait = idle.waitIO()
  idle.close()
  await t.throwsAsync(within(5000, 'idle waitIO', idleWait), { instanceOf: GaioError, code: 'ERR_WATCHER_CLOSED' })
})

test('close: reads, writes and every other request after close complete with ERR_WATCHER_CLOSED; listen throws', async (t) => {
  const w = new Watcher(withMode())
  const { ln, conn } = await acceptFromNet(t, w)
  w.close()
  const buf = Buffer.from('x')
  const calls: [string, () => void][] = [
    ['read', () => w.read(null, conn)],
    ['read into a buffer', () => w.read(null, conn, buf)],
    ['readTimeout', () => w.readTimeout(null, conn, null, Date.now() + 100)],
    ['readFull', () => w.readFull(null, conn, buf)],
    ['write', () => w.write(null, conn, buf)],
    ['writeTimeout', () => w.writeTimeout(null, conn, buf, Date.now() + 100)],
    ['accept', () => w.accept(null, ln)],
    ['connect', () => w.connect(null, { host: HOST, port: ln.port })],
    ['connect by name', () => w.connect(null, { host: 'localhost', port: ln.port })],
  ]
  for (const [name, call] of calls) {
    t.notThrows(() => call(), name)
  }
  t.is(t.throws(() => w.listen({ host: HOST, port: 0 }), { instanceOf: GaioError })?.code, 'ERR_WATCHER_CLOSED')
  // The requests come back, each once, in order, and then waitIO() rejects.
  const results = await w.waitIO()
  t.deepEqual(
    results.map((r) => r.error?.code),
    calls.map(() => 'ERR_WATCHER_CLOSED'),
  )
  t.deepEqual(results.map((r) => r.operation), [OpType.Read, OpType.Read, OpType.Read, OpType.Read, OpType.Write, OpType.Write, OpType.Accept, OpType.Connect, OpType.Connect])
  await t.throwsAsync(w.waitIO(), { instanceOf: GaioError, code: 'ERR_WATCHER_CLOSED' })
  // free after close is a no-op.
  t.notThrows(() => w.free(conn))
  t.notThrows(() => w.free(ln))
})

// ---- collection of forgotten objects ----------------------------------------

/** Accepts one connection from `peer` on `w` and forgets it: nothing refers to the Conn afterwards. */
async function acceptAndForget(w: Watcher, port: number, ln: Parameters<Watcher['accept']>[1]): Promise<{ peer: Socket; ref: WeakRef<Conn> }> {
  w.accept(null, ln)
  const peer = await netClient(port)
  const results = await collectUntil(w, (r) => r.length > 0)
  if (results[0].error) throw results[0].error
  const ref = new WeakRef(results[0].conn as Conn)
  results.length = 0
  return { peer, ref }
}

test('forgotten connections: a Conn nobody refers to and with nothing pending is closed when collected', async (t) => {
  t.timeout(scaled(20_000))
  const w = watcher(t)
  const ln = w.listen({ host: HOST, port: 0 })
  const peers: Socket[] = []
  let ended = 0
  const endings: Promise<unknown>[] = []
  const refs: WeakRef<Conn>[] = []
  for (let i = 0; i < 3; i++) {
    const { peer, ref } = await acceptAndForget(w, ln.port, ln)
    refs.push(ref)
    // Listened to at once: a collection (another test's gc() too) may close it before the next accept.
    endings.push(receiveUntilEnd(peer).then(() => ended++))
    peers.push(peer)
  }
  t.teardown(() => peers.forEach((p) => p.destroy()))
  const allEnded = Promise.all(endings)
  const until = Date.now() + scaled(10_000)
  while (ended < peers.length && Date.now() < until) await collectGarbage(2)
  // Which half failed: the collection, or the close that follows it.
  t.is(refs.filter((ref) => ref.deref() !== undefined).length, 0, 'Conns not collected')
  await within(1000, 'peers end', allEnded)
  t.is(ended, peers.length)
})

test('forgotten connections: a Conn with a pending read is kept until the read completes', async (t) => {
  t.timeout(scaled(20_000))
  const w = watcher(t)
  const ln = w.listen({ host: HOST, port: 0 })
  w.accept(null, ln)
  const peer = await client(t, ln.port)
  const ended = receiveUntilEnd(peer)
  let closed = false
  void ended.then(() => (closed = true))
  const accepted = await collectUntil(w, (r) => r.length > 0)
  w.read('pending', accepted[0].conn as Conn)
  accepted.length = 0
  await collectGarbage(5)
  await sleep(100)
  t.false(closed, 'the connection was closed while a read was pending on it')
  peer.write('late')
  const [res] = await collectUntil(w, (r) => r.length > 0)
  t.is(res.error, null)
  t.is(Buffer.from(res.buffer!.subarray(0, res.size)).toString(), 'late')
})

test('forgotten connections: one freed, then collected after 4096 reuses of its slot brought its id round again, leaves the new holder of the id open', async (t) => {
  t.timeout(scaled(60_000))
  const w = watcher(t)
  type WithId = { id: number }
  let first: object | null = w.listen({ host: HOST, port: 0 })
  const firstId = (first as WithId).id
  const firstRef = new WeakRef(first)
  w.free(first as Parameters<Watcher['free']>[0])
  // Each free releases the slot's id at once and the next listen takes the slot back, one generation on.
  for (let i = 1; i < 4096; i++) w.free(w.listen({ host: HOST, port: 0 }))
  const heir = w.listen({ host: HOST, port: 0 })
  t.is((heir as unknown as WithId).id, firstId, 'the id did not come round (the test shows nothing)')
  first = null
  const until = Date.now() + scaled(10_000)
  while (firstRef.deref() !== undefined && Date.now() < until) await collectGarbage(2)
  t.is(firstRef.deref(), undefined, 'the freed listener was not collected (the test shows nothing)')
  await collectGarbage(2)
  // Its collection must not have freed the id again, now the heir's.
  w.accept(null, heir)
  const peer = await client(t, heir.port)
  const [accepted] = await collectUntil(w, (r) => r.length > 0)
  t.is(accepted.error, null)
  t.is((accepted.conn as Conn).remotePort, peer.localPort)
})

/**
 * A listening watcher, held (with its listener, which a collection would free
 * on its own) only by the returned array until the caller empties it.
 */
function forgottenWatcherPort(): { port: number; hold: object[]; ref: WeakRef<Watcher> } {
  const w = new Watcher(withMode())
  const ln = w.listen({ host: HOST, port: 0 })
  return { port: ln.port, hold: [w, ln], ref: new WeakRef(w) }
}

test('forgotten watchers: a watcher nobody refers to is closed when collected, and its port stops accepting', async (t) => {
  t.timeout(scaled(20_000))
  const { port, hold, ref } = forgottenWatcherPort()
  // Listening now: the kernel completes the handshake even before any accept.
  const early = await netClient(port)
  early.destroy()
  hold.length = 0 // forgotten from here
  let refused: unknown = null
  const until = Date.now() + scaled(10_000)
  while (!refused && Date.now() < until) {
    await collectGarbage(2)
    try {
      const socket = await netClient(port)
      socket.destroy()
    } catch (e) {
      // A reset means the listener closed with this connect in its backlog: the next one tells.
      if ((e as NodeJS.ErrnoException).code !== 'ECONNRESET') refused = e
    }
  }
  // Which half failed: the collection, or the close that follows it.
  t.is(ref.deref(), undefined, 'the watcher was not collected')
  t.is((refused as NodeJS.ErrnoException | null)?.code, 'ECONNREFUSED')
})

test('forgotten watchers: a watcher waiting in waitIO() is not collected', async (t) => {
  t.timeout(scaled(20_000))
  let result: OpResult[] | null = null
  const start = () => {
    const w = new Watcher(withMode())
    const ln = w.listen({ host: HOST, port: 0 })
    w.accept('accept', ln)
    void w.waitIO().then((r) => (result = r))
    return { ref: new WeakRef(w), port: ln.port }
  }
  const { ref, port } = start()
  await collectGarbage(5)
  // Refused if the watcher had been collected and closed.
  await client(t, port)
  const until = Date.now() + scaled(5000)
  while (!result && Date.now() < until) await sleep(10)
  ref.deref()?.close()
  t.truthy(result, 'the accept never completed')
  t.is(result![0].context, 'accept')
  t.is(result![0].error, null)
})
