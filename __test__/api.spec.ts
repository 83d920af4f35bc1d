// What a production server needs from the API, through the public API:
// half-close, addresses, socket options, connect timeouts, cancellable waits,
// errors that say where, names that resolve to several addresses, and a short
// console.log form.
import test from 'ava'
import dns from 'node:dns'
import { lookup } from 'node:dns/promises'
import { createServer, connect as netConnect, type Socket } from 'node:net'
import { inspect } from 'node:util'
import { Conn, GaioError, Listener, OpType, Watcher, type OpResult } from '../index'
import { collectUntil, gaioPair, receiveUntilEnd, REFUSED_PORT, within } from './helpers'

const modes = ['thread', 'inline'] as const

function watcher(t: { teardown(fn: () => void): void }, mode: (typeof modes)[number], silentWrites = false): Watcher<string> {
  const w = new Watcher<string>({ mode, silentWrites })
  t.teardown(() => w.close())
  return w
}

const byContext = (results: OpResult[]) => new Map(results.map((r) => [r.context, r]))

/**
 * A connection from `w` to a node:net peer that allows half-open connections
 * (it does not end its side when ours ends), with the peer's socket.
 */
async function halfOpenPeer(t: { teardown(fn: () => void): void }, w: Watcher<string>): Promise<{ conn: Conn; peer: Socket }> {
  let peer: Socket | undefined
  const server = createServer({ allowHalfOpen: true }, (s) => (peer = s))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    peer?.destroy()
    server.close()
  })
  w.connect('connect', { host: '127.0.0.1', port: (server.address() as { port: number }).port })
  const [connected] = await collectUntil(w, (rs) => rs.length > 0, 5000, 'connect')
  if (connected!.error) throw connected!.error
  await within(5000, 'accepted', (async () => { while (!peer) await new Promise((r) => setTimeout(r, 5)) })())
  return { conn: connected!.conn as Conn, peer: peer! }
}

/**
 * Connects `w` to a half-open peer, writes 'head:' (context 'head') and `big`
 * (context 'big') on it, then half-closes (context 'fin'). Resolves with the
 * results up to the half-close's, and what the peer read up to end of stream.
 */
async function writeThenHalfClose(t: { teardown(fn: () => void): void }, w: Watcher<string>, big: Buffer) {
  const { conn, peer } = await halfOpenPeer(t, w)
  const everything = receiveUntilEnd(peer)
  w.write('head', conn, Buffer.from('head:'))
  w.write('big', conn, big)
  w.closeWrite('fin', conn)
  const results = await collectUntil(w, (rs) => rs.some((r) => r.context === 'fin'), 10_000, 'closeWrite')
  const got = await within(10_000, 'the peer reads to the end', everything)
  return { conn, peer, results, got }
}

for (const mode of modes) {
  test(`[${mode}] closeWrite(): the peer reads end of stream after every byte written before it, and this end still reads`, async (t) => {
    const w = watcher(t, mode)
    const big = Buffer.alloc(3 << 20, 7)
    const { conn, peer, results, got } = await writeThenHalfClose(t, w, big)
    const byName = byContext(results)
    const fin = byName.get('fin')!
    t.is(fin.operation, OpType.CloseWrite)
    t.is(fin.error, null)
    t.is(byName.get('big')!.size, big.length, 'the writes before it completed first')
    t.is(got.length, 5 + big.length, 'every byte, then end of stream')
    // Half-closed, not closed: the peer can still answer, and a write after it fails.
    w.read('answer', conn)
    peer.end('still here')
    w.write('late', conn, Buffer.from('x'))
    const after = byContext(await collectUntil(w, (rs) => rs.some((r) => r.context === 'answer') && rs.some((r) => r.context === 'late'), 5000, 'after the half-close'))
    t.is(Buffer.from(after.get('answer')!.buffer!).toString(), 'still here')
    t.is(after.get('late')!.error?.code, 'EPIPE')
  })

  test(`[${mode}] addresses: accepted, connected and delegated connections know both ends; a freed one forgets them`, async (t) => {
    const w = watcher(t, mode)
    const { listener, client, server } = await gaioPair(w)
    t.is(server.localPort, listener.port)
    t.is(server.localAddress, '127.0.0.1')
    t.is(server.localFamily, 'IPv4')
    t.is(client.remotePort, listener.port)
    t.is(client.remoteAddress, '127.0.0.1')
    t.is(client.remoteFamily, 'IPv4')
    t.is(server.remotePort, client.localPort, 'each end sees the other')
    t.is(typeof client.localPort, 'number')

    // A delegated net.Socket keeps its own addresses, and its Conn has them too.
    const nodeServer = createServer({ pauseOnConnect: true }, (socket) => {
      w.read('delegated', socket)
      socket.on('error', () => {})
    })
    await new Promise<void>((resolve) => nodeServer.listen(0, '127.0.0.1', resolve))
    t.teardown(() => nodeServer.close())
    const port = (nodeServer.address() as { port: number }).port
    const client2 = netConnect(port, '127.0.0.1')
    t.teardown(() => client2.destroy())
    await new Promise((resolve) => client2.once('connect', resolve))
    client2.write('hi')
    const [res] = await collectUntil(w, (rs) => rs.length > 0, 5000, 'delegated read')
    const socket = res!.conn as Socket
    t.is(socket.remotePort, client2.localPort, "the net.Socket's addresses survive the delegation")
    t.is(socket.localPort, port)

    w.free(server)
    t.is(server.remoteAddress, server.remoteAddress, 'read before: kept')
    const { client: other } = await gaioPair(w)
    w.free(other)
    t.is(other.remoteAddress, undefined, 'asked for only after free(): none')
  })

  test(`[${mode}] setNoDelay() and setKeepAlive() reach the socket; on a freed connection they throw ERR_CONN_CLOSED`, async (t) => {
    const w = watcher(t, mode)
    const { client, server } = await gaioPair(w)
    t.notThrows(() => w.setNoDelay(client, false))
    t.notThrows(() => w.setNoDelay(client))
    t.notThrows(() => w.setKeepAlive(server, true, 30_000))
    t.notThrows(() => w.setKeepAlive(server, false))
    t.throws(() => w.setKeepAlive(server, true, -1), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
    w.free(client)
    t.throws(() => w.setNoDelay(client), { instanceOf: GaioError, code: 'ERR_CONN_CLOSED' })
    // Still a working connection after the options.
    w.write('w', server, Buffer.from('after options'))
    const { client: c2, server: s2 } = await gaioPair(w)
    w.setKeepAlive(c2, true, 1000)
    w.write('w2', s2, Buffer.from('ok'))
    w.read('r2', c2)
    const rs = await collectUntil(w, (r) => r.some((x) => x.context === 'r2'), 5000, 'echo after options')
    t.is(Buffer.from(rs.find((x) => x.context === 'r2')!.buffer!).toString(), 'ok')
  })

  test(`[${mode}] connect timeout: an unanswered connect fails with ERR_DEADLINE and its socket closes`, async (t) => {
    const w = watcher(t, mode)
    // A listener with a backlog of 1 that never accepts: later SYNs go unanswered.
    const stuck = new Watcher({ mode })
    t.teardown(() => stuck.close())
    const ln = stuck.listen({ host: '127.0.0.1', port: 0, backlog: 1 })
    const fillers: Socket[] = []
    t.teardown(() => fillers.forEach((s) => s.destroy()))
    for (let i = 0; i < 4; i++) {
      const s = netConnect(ln.port, '127.0.0.1')
      s.on('error', () => {})
      fillers.push(s)
    }
    await new Promise((r) => setTimeout(r, 200))
    const started = Date.now()
    w.connect('slow', { host: '127.0.0.1', port: ln.port, timeout: 300 })
    const [res] = await collectUntil(w, (rs) => rs.length > 0, 10_000, 'connect timeout')
    t.is(res!.error?.code, 'ERR_DEADLINE')
    t.true(Date.now() - started >= 290, 'not before the timeout')
    t.throws(() => w.connect('x', { port: 1, timeout: -5 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
  })

  test(`[${mode}] waitIO({ signal }): an abort rejects with AbortError, results stay for the next call; iterate({ signal }) ends a loop`, async (t) => {
    const w = watcher(t, mode)
    const { client, server } = await gaioPair(w)
    const controller = new AbortController()
    const waiting = w.waitIO({ signal: controller.signal })
    controller.abort()
    const e = await t.throwsAsync(waiting)
    t.is(e!.name, 'AbortError')
    t.is((e as NodeJS.ErrnoException).code, 'ABORT_ERR')
    await t.throwsAsync(w.waitIO({ signal: AbortSignal.abort() }), { name: 'AbortError' })
    // Nothing is lost: the next waitIO() gets what completed meanwhile.
    w.write('w', client, Buffer.from('kept'))
    w.read('r', server)
    const rs = await collectUntil(w, (r) => r.some((x) => x.context === 'r'), 5000, 'after the abort')
    t.is(Buffer.from(rs.find((x) => x.context === 'r')!.buffer!).toString(), 'kept')

    const loop = new AbortController()
    setTimeout(() => loop.abort(), 50)
    let batches = 0
    const ended = await (async () => {
      try {
        for await (const _ of w.iterate({ signal: loop.signal })) batches++
        return 'done'
      } catch (error) {
        return (error as Error).name
      }
    })()
    t.is(ended, 'AbortError')
    t.is(batches, 0)
    // Breaking out of a loop leaves the watcher open.
    w.write('w2', client, Buffer.from('x'))
    for await (const results of w) {
      t.true(results.length > 0)
      break
    }
    w.read('r2', server)
    t.true((await collectUntil(w, (r) => r.some((x) => x.context === 'r2'), 5000, 'after break')).length > 0)
  })
}

test('errors say where, as Node says it: syscall, address and port, or path', async (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  w.connect('refused', { host: '127.0.0.1', port: REFUSED_PORT })
  const [res] = await collectUntil(w, (rs) => rs.length > 0, 5000, 'refused')
  const e = res!.error!
  t.is(e.code, 'ECONNREFUSED')
  t.is(e.syscall, 'connect')
  t.is(e.address, '127.0.0.1')
  t.is(e.port, REFUSED_PORT)
  t.is(e.message, `connect ECONNREFUSED 127.0.0.1:${REFUSED_PORT}`)
  t.is(typeof e.errno, 'number')

  w.connect('no socket', { path: '/nonexistent-dir/gaio.sock' })
  const [unix] = await collectUntil(w, (rs) => rs.length > 0, 5000, 'unix')
  t.is(unix!.error!.message, 'connect ENOENT /nonexistent-dir/gaio.sock')
  t.is(unix!.error!.path, '/nonexistent-dir/gaio.sock')

  const taken = w.listen({ host: '127.0.0.1', port: 0 })
  const inUse = t.throws(() => w.listen({ host: '127.0.0.1', port: taken.port }), { instanceOf: GaioError }) as GaioError
  t.is(inUse.message, `listen EADDRINUSE 127.0.0.1:${taken.port}`)
  t.is(inUse.syscall, 'listen')
})

test("argument errors carry Node's codes and name the argument; unknown options are refused by name", (t) => {
  t.throws(() => new Watcher({ bufferSiz: 10 } as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE', message: /unknown option "bufferSiz"/ })
  t.throws(() => new Watcher({ bufferSize: 'big' } as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE', message: /"options.bufferSize"/ })
  t.throws(() => new Watcher({ bufferSize: 0 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE', message: /"options.bufferSize"/ })
  t.throws(() => new Watcher({ mode: 'fast' } as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE', message: /options.mode/ })
  t.throws(() => new Watcher({ silentWrites: 1 } as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE', message: /"options.silentWrites"/ })
  const w = new Watcher()
  t.teardown(() => w.close())
  t.throws(() => w.connect('x', { host: '127.0.0.1', prot: 80 } as never), { code: 'ERR_INVALID_ARG_VALUE', message: /unknown option "prot"/ })
  t.throws(() => w.connect('x', { host: '127.0.0.1', port: 0 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE', message: /"options.port"/ })
  t.throws(() => w.accept('x', {} as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE', message: /"listener"/ })
})

test('deadlines are absolute: a small number is refused as a likely duration; { timeout } is the relative form', async (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  const { client, server } = await gaioPair(w)
  const e = t.throws(() => w.readTimeout('x', server, null, 5000), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
  t.regex(e!.message, /absolute/)
  t.regex(e!.message, /\{ timeout: 5000 \}/)
  t.throws(() => w.readTimeout('x', server, null, { timeout: -1 }), { instanceOf: RangeError })
  t.throws(() => w.readTimeout('x', server, null, { timeout: 5, extra: 1 } as never), { code: 'ERR_INVALID_ARG_VALUE' })
  w.readTimeout('relative', server, null, { timeout: 150 })
  w.writeTimeout('write', client, Buffer.from('x'), { timeout: 5000 })
  const results = await collectUntil(w, (rs) => rs.some((r) => r.context === 'relative'), 5000, 'relative deadline')
  const read = results.find((r) => r.context === 'relative')!
  // The write's byte arrives first: the read gets it, well before its deadline.
  t.is(read.error, null)
  const expiring = Date.now()
  w.readTimeout('expires', server, null, { timeout: 100 })
  const [expired] = await collectUntil(w, (rs) => rs.some((r) => r.context === 'expires'), 5000, 'expiry')
  t.is(expired!.error?.code, 'ERR_DEADLINE')
  t.true(Date.now() - expiring >= 95, 'not before its timeout')
})

test('a name that resolves to several addresses: each is tried in order until one connects', async (t) => {
  const addresses = await lookup('localhost', { all: true, verbatim: true })
  const families = new Set(addresses.map((a) => a.family))
  // Listen on the last address only: every one before it is refused first.
  const last = addresses[addresses.length - 1]!
  const w = new Watcher()
  t.teardown(() => w.close())
  const ln = w.listen({ host: last.address, port: 0 })
  w.accept('accept', ln)
  w.connect('connect', { host: 'localhost', port: ln.port })
  const results = byContext(await collectUntil(w, (rs) => rs.some((r) => r.context === 'connect'), 5000, 'connect by name'))
  t.is(results.get('connect')!.error, null, `localhost is ${addresses.map((a) => a.address).join(', ')}`)
  t.is((results.get('connect')!.conn as Conn).remoteAddress, last.address)
  t.log(`localhost: ${addresses.map((a) => a.address).join(', ')} (${families.size} families)`)
})

test('console.log shows a short form of a Watcher, a Conn and a Listener', async (t) => {
  const w = new Watcher({ mode: 'inline' })
  t.teardown(() => w.close())
  const { listener, client } = await gaioPair(w)
  t.regex(inspect(w), /^Watcher \{ mode: 'inline', outstanding: \d+ \}$/)
  t.is(inspect(listener), `Listener { 127.0.0.1:${listener.port} }`)
  t.is(inspect(client), `Conn { 127.0.0.1:${client.localPort} -> 127.0.0.1:${listener.port} }`)
  t.true(inspect(w).length < 100, 'not the swap buffers')
  w.free(client)
  t.is(inspect(client), 'Conn { closed }')
  t.true(listener instanceof Listener)
})

test('a read that ends names its syscall', async (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  const { client, server } = await gaioPair(w)
  w.free(server)
  w.read('read', client)
  const [res] = await collectUntil(w, (rs) => rs.length > 0, 5000, 'read after peer close')
  t.is(res!.error?.code, 'EOF')
  t.is(res!.error?.syscall, 'read')
})

for (const mode of modes) {
  test(`[${mode}] a write made right after closeWrite() never reaches the peer: it fails, after the end of stream`, async (t) => {
    const w = watcher(t, mode)
    const { conn, peer } = await halfOpenPeer(t, w)
    const peerBytes: Buffer[] = []
    peer.on('data', (d: Buffer) => peerBytes.push(d))
    const ended = new Promise<void>((resolve) => peer.once('end', resolve))
    w.write('before', conn, Buffer.from('before'))
    w.closeWrite('fin', conn)
    w.write('after', conn, Buffer.from('after'))
    const results = byContext(await collectUntil(w, (rs) => rs.length >= 3, 5000, 'the three'))
    await within(5000, 'the peer sees the end', ended)
    t.is(Buffer.concat(peerBytes).toString(), 'before', 'nothing after the end of stream')
    t.is(results.get('before')!.error, null)
    t.is(results.get('fin')!.error, null)
    t.is(results.get('after')!.error?.code, 'EPIPE')
  })
}

for (const mode of modes) {
  test(`[${mode}] silentWrites: writes that complete whole deliver nothing, a failed write and closeWrite() still do, and every byte arrives`, async (t) => {
    const w = watcher(t, mode, true)
    // A small write (sent from the JS thread at once) and one larger than a chunk (the engine's, in parts).
    const big = Buffer.alloc(9 << 20, 3)
    const { conn, results, got } = await writeThenHalfClose(t, w, big)
    t.deepEqual(results.map((r) => r.context), ['fin'], 'only the half-close completes')
    t.is(results[0]!.error, null)
    t.is(got.length, 5 + big.length, 'every byte was sent')
    w.write('late', conn, Buffer.from('x'))
    const [late] = await collectUntil(w, (rs) => rs.length > 0, 5000, 'a write after the half-close')
    t.is(late!.context, 'late')
    t.is(late!.error?.code, 'EPIPE', 'a failed write is delivered')
    t.regex(inspect(w), /outstanding: 0\b/, 'the silent writes were counted out, once each')
  })

  test(`[${mode}] silentWrites: the one write of a flush, sent whole there, is over: nothing outstanding before any waitIO()`, async (t) => {
    const w = watcher(t, mode, true)
    const { conn, peer } = await halfOpenPeer(t, w)
    const arrived = new Promise((resolve) => peer.once('data', resolve))
    w.write('small', conn, Buffer.from('hello'))
    await new Promise((resolve) => setImmediate(resolve)) // the flush has run
    t.regex(inspect(w), /outstanding: 0\b/)
    t.is(String(await within(5000, 'the bytes arrive', arrived)), 'hello')
  })

  test(`[${mode}] silentWrites: a large write cut short by free() or close() between its chunks is delivered, with what got out`, async (t) => {
    const CHUNK = 4 << 20 // the facade's WRITE_CHUNK: the next goes when a waitIO() takes this one's completion
    for (const end of ['free', 'close'] as const) {
      const w = watcher(t, mode, true)
      const { conn, peer } = await halfOpenPeer(t, w)
      let received = 0
      peer.on('data', (d: Buffer) => (received += d.length))
      const ended = new Promise((resolve) => peer.once('end', resolve))
      const total = 4 * CHUNK
      w.write('big', conn, Buffer.alloc(total, 1))
      // No waitIO() yet: the first chunk goes out whole (in thread mode, with what the
      // JS thread sent before it), and the write waits for its completion to be taken.
      let before = -1
      await within(10_000, 'the first chunk arrives, then nothing more', (async () => {
        while (received < CHUNK || received !== before) {
          before = received
          await new Promise((r) => setTimeout(r, 100))
        }
      })())
      if (end === 'free') w.free(conn)
      else w.close()
      const [cut] = await collectUntil(w, (rs) => rs.length > 0, 10_000, `the write after ${end}()`)
      t.is(cut!.context, 'big')
      t.is(cut!.error?.code, end === 'free' ? 'ERR_CONN_CLOSED' : 'ERR_WATCHER_CLOSED', end)
      // A poller kept off the CPU for the quiet spell above may have sent more since: count to end of stream.
      await within(10_000, `end of stream after ${end}()`, ended)
      t.is(cut!.size, received, `${end}: the size is what got out`)
      t.true(received < total, `${end}: and not all of it`)
    }
  })
}

test('waitIO() and iterate() check their options: a signal that is not an AbortSignal, an unknown option or null is refused, and the watcher still works', async (t) => {
  const w = new Watcher<string>()
  t.teardown(() => w.close())
  await t.throwsAsync(w.waitIO({ signal: {} } as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE', message: /"options.signal"/ })
  await t.throwsAsync(w.waitIO({ timeout: 100 } as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE', message: /unknown option "timeout"/ })
  await t.throwsAsync(w.waitIO(null as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => w.iterate({ signal: 1 } as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  // No waiter was left behind by the refused calls: a wait works, and close() settles it.
  const { client } = await gaioPair(w)
  w.write('write', client, Buffer.from('x'))
  const [written] = await collectUntil(w, (rs) => rs.some((r) => r.context === 'write'), 5000, 'a write after the refused waits')
  t.is(written!.error, null)
  const pending = w.waitIO()
  t.notThrows(() => w.close())
  await t.throwsAsync(pending, { code: 'ERR_WATCHER_CLOSED' })
})

test('listen() and connect() refuse a path together with a host or port, and a reusePort that is not a boolean', (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  const both = { code: 'ERR_INVALID_ARG_VALUE', message: /either path, or host and port/ }
  t.throws(() => w.connect('x', { path: '/tmp/gaio-none.sock', host: '127.0.0.1', port: 80 }), both)
  t.throws(() => w.connect('x', { path: '/tmp/gaio-none.sock', port: 80 } as never), both)
  t.throws(() => w.listen({ path: '/tmp/gaio-none.sock', port: 80 }), both)
  t.throws(() => w.listen({ host: '127.0.0.1', port: 0, reusePort: 'false' } as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE', message: /"options.reusePort"/ })
})

test("connect({ host: '' }) connects to the local host, as node:net does", async (t) => {
  const addresses = await lookup('localhost', { all: true, verbatim: true })
  const w = new Watcher()
  t.teardown(() => w.close())
  const ln = w.listen({ host: addresses[0]!.address, port: 0 })
  w.accept('accept', ln)
  w.connect('connect', { host: '', port: ln.port })
  const results = byContext(await collectUntil(w, (rs) => rs.some((r) => r.context === 'connect'), 5000, "connect to ''"))
  t.is(results.get('connect')!.error, null)
})

test.serial('a connect timeout counts from the call: a name lookup slower than it ends the connect with ERR_DEADLINE on time', async (t) => {
  // A resolver that answers after 3 s; the facade looks names up through node:dns's lookup.
  const realLookup = dns.lookup
  let answered = false
  const slow = (...args: unknown[]) =>
    setTimeout(() => {
      answered = true
      ;(realLookup as (...a: unknown[]) => void)('127.0.0.1', ...args.slice(1))
    }, 3000)
  dns.lookup = slow as unknown as typeof dns.lookup
  t.teardown(() => (dns.lookup = realLookup))
  const w = new Watcher<string>()
  t.teardown(() => w.close())
  const ln = w.listen({ host: '127.0.0.1', port: 0 })
  const started = Date.now()
  w.connect('slow', { host: 'slow.invalid', port: ln.port, timeout: 200 })
  const [ended] = await collectUntil(w, (rs) => rs.length > 0, 5000, 'the connect')
  t.false(answered, `ended after ${Date.now() - started} ms, when the lookup answered`)
  t.is(ended!.error?.code, 'ERR_DEADLINE')
  t.is(ended!.error?.address, 'slow.invalid')
  t.regex(inspect(w), /outstanding: 0\b/, 'counted out once')
})

for (const mode of modes) {
  test(`[${mode}] an accept on a freed listener gives back the connection id it took: none is lost`, async (t) => {
    const w = watcher(t, mode)
    const ln = w.listen({ host: '127.0.0.1', port: 0 })
    w.free(ln)
    for (let i = 0; i < 100; i++) w.accept(`accept ${i}`, ln)
    const failed = await collectUntil(w, (rs) => rs.length >= 100, 5000, 'the accepts')
    t.true(failed.every((r) => r.error?.code === 'ERR_CONN_CLOSED'))
    // An id is a slot (its low 20 bits) and a generation. The listener and the 100 accepts
    // took slots 0 to 99 (the listener's was free again before the first accept); had one
    // been lost, the next listener would take slot 100, a new one.
    const next = w.listen({ host: '127.0.0.1', port: 0 }) as unknown as { id: number }
    t.true((next.id & 0xfffff) < 100, `slot ${next.id & 0xfffff}`)
  })

  test(`[${mode}] a write of more than 4 MiB from swap memory sends the bytes it had at the call, though the next waitIO() may refill that memory`, async (t) => {
    const w = new Watcher<string>({ mode, bufferSize: 8 << 20 })
    t.teardown(() => w.close())
    const { conn, peer } = await halfOpenPeer(t, w)
    peer.write('x')
    w.read('read', conn)
    const [read] = await collectUntil(w, (rs) => rs.length > 0, 5000, 'a swap read')
    t.true(read!.isSwapBuffer)
    // A view of the watcher's swap memory larger than a chunk, as an echo of a big read would be.
    const swap = new Uint8Array(read!.buffer!.buffer, 0, 5 << 20).fill(1)
    const everything = receiveUntilEnd(peer)
    w.write('big', conn, swap)
    w.closeWrite('fin', conn)
    await new Promise((resolve) => setImmediate(resolve)) // flushed: the first chunk is taken
    swap.fill(2) // what a later read may put there
    await collectUntil(w, (rs) => rs.some((r) => r.context === 'fin'), 10_000, 'the write and the half-close')
    const got = await within(10_000, 'the peer reads to the end', everything)
    t.is(got.length, 5 << 20)
    t.is(got.indexOf(2), -1, 'bytes changed after the call were sent')
  })
}

for (const mode of modes) {
  test(`[${mode}] results on one connection keep the order of their requests when free() or close() cuts them short`, async (t) => {
    const freeing = watcher(t, mode)
    const { conn } = await halfOpenPeer(t, freeing)
    freeing.read('read before free', conn)
    await new Promise((resolve) => setTimeout(resolve, 50)) // in the engine by now
    freeing.free(conn)
    freeing.read('read after free', conn)
    const cut = await collectUntil(freeing, (rs) => rs.length >= 2, 5000, 'the reads')
    t.deepEqual(cut.map((r) => [r.context, r.error?.code]), [['read before free', 'ERR_CONN_CLOSED'], ['read after free', 'ERR_CONN_CLOSED']])

    const closing = watcher(t, mode)
    const { conn: slow, peer } = await halfOpenPeer(t, closing)
    peer.pause() // it never reads: the big write stays in the engine, the small one waits behind it
    closing.write('big', slow, Buffer.alloc(16 << 20, 1))
    closing.write('small', slow, Buffer.from('after'))
    await new Promise((resolve) => setTimeout(resolve, 100))
    closing.close()
    const closed = await closing.waitIO()
    t.deepEqual(closed.map((r) => [r.context, r.error?.code]), [['big', 'ERR_WATCHER_CLOSED'], ['small', 'ERR_WATCHER_CLOSED']])
    t.regex(inspect(closing), /outstanding: 0\b/)
  })
}
