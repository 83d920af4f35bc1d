// Misuse: bad input gets a clear TypeError / RangeError / GaioError at the
// call, or a result with an error code; never a crash or a hang.
import test from 'ava'
import { createServer, Socket } from 'node:net'
import { Conn, GaioError, Listener, OpType, Watcher, type OpResult } from '../index'
import { loadAddon } from '../lib/loader'
import { collectUntil, gaioPair, netClient, outcomeWithoutMemory, REFUSED_PORT, sleep, within, isReadInto } from './helpers'

const nativePath = loadAddon().path

/**
 * Results that arrive within `ms`. The last waitIO() stays pending (it cannot
 * be cancelled), so call this only at the end of a test: close() settles it.
 */
async function resultsFor(w: Watcher, ms: number): Promise<OpResult[]> {
  const all: OpResult[] = []
  const until = Date.now() + ms
  while (Date.now() < until) {
    const batch = await Promise.race([w.waitIO(), sleep(until - Date.now()).then(() => null)])
    if (batch === null) break
    all.push(...batch)
  }
  return all
}

function detach(view: ArrayBufferView): void {
  structuredClone(view.buffer, { transfer: [view.buffer as ArrayBuffer] })
  if (view.byteLength !== 0) throw new Error('the buffer did not detach')
}

async function pair(t: { teardown(fn: () => void): void }) {
  const w = new Watcher()
  t.teardown(() => w.close())
  return { w, ...(await gaioPair(w)) }
}

test('new Watcher(): wrong option types and ranges', (t) => {
  t.throws(() => new Watcher(null as never), { instanceOf: TypeError })
  t.throws(() => new Watcher('fast' as never), { instanceOf: TypeError })
  t.throws(() => new Watcher({ bufferSize: '4096' as never }), { instanceOf: TypeError })
  t.throws(() => new Watcher({ bufferSize: 0 }), { instanceOf: RangeError })
  t.throws(() => new Watcher({ bufferSize: -1 }), { instanceOf: RangeError })
  t.throws(() => new Watcher({ bufferSize: 1.5 }), { instanceOf: RangeError })
  t.throws(() => new Watcher({ bufferSize: NaN }), { instanceOf: RangeError })
  t.throws(() => new Watcher({ bufferSize: 2 ** 40 }), { instanceOf: RangeError })
  t.throws(() => new Watcher({ bufferSize: 8192, swapSize: 4096 }), { instanceOf: RangeError, message: /swapSize/ })
  t.throws(() => new Watcher({ swapSize: {} as never }), { instanceOf: TypeError })
  t.throws(() => new Watcher({ cpu: null as never }), { instanceOf: TypeError })
  const w = new Watcher({ bufferSize: 1, swapSize: 1 })
  w.close()
  t.pass()
})

test('listen(): wrong argument types, and a clear GaioError from the system', async (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  t.true(w.listen() instanceof Listener, 'no options: localhost, a free port')
  t.throws(() => w.listen(null as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => w.listen({ prot: 80 } as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE', message: /unknown option "prot"/ })
  t.throws(() => w.listen(8080 as never), { instanceOf: TypeError })
  t.throws(() => w.listen({ host: 'example.com' }), { instanceOf: TypeError, message: /IP address/ })
  t.throws(() => w.listen({ host: 127 as never }), { instanceOf: TypeError })
  t.throws(() => w.listen({ port: '80' as never }), { instanceOf: TypeError })
  t.throws(() => w.listen({ port: -1 }), { instanceOf: RangeError })
  t.throws(() => w.listen({ port: 65536 }), { instanceOf: RangeError })
  t.throws(() => w.listen({ port: 1.5 }), { instanceOf: RangeError })
  t.throws(() => w.listen({ backlog: 0 }), { instanceOf: RangeError })
  t.throws(() => w.listen({ backlog: 'many' as never }), { instanceOf: TypeError })
  t.throws(() => w.listen({ path: '' }), { instanceOf: TypeError })
  t.throws(() => w.listen({ path: 42 as never }), { instanceOf: TypeError })
  const missing = t.throws(() => w.listen({ path: '/nonexistent-dir/gaio.sock' }), { instanceOf: GaioError })
  t.is(missing?.code, 'ENOENT')
  // An address this machine does not have.
  const foreign = t.throws(() => w.listen({ host: '192.0.2.1', port: 0 }), { instanceOf: GaioError })
  t.is(foreign?.code, 'EADDRNOTAVAIL')
  // After all that, the watcher works.
  const ln = w.listen({ host: 'localhost', port: 0 })
  t.is(ln.address, '127.0.0.1')
  t.true(ln.port > 0)
})

test('listen() on a port already in use: GaioError EADDRINUSE', async (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  const ln = w.listen({ host: '127.0.0.1', port: 0 })
  const again = t.throws(() => w.listen({ host: '127.0.0.1', port: ln.port }), { instanceOf: GaioError })
  t.is(again?.code, 'EADDRINUSE')
  t.is(again?.errno, 98)
  t.regex(again!.message, /EADDRINUSE/)

  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port
  const taken = t.throws(() => w.listen({ host: '127.0.0.1', port }), { instanceOf: GaioError })
  t.is(taken?.code, 'EADDRINUSE')
  // Even with reusePort, a port held by a socket without it stays taken.
  t.is(t.throws(() => w.listen({ host: '127.0.0.1', port, reusePort: true }), { instanceOf: GaioError })?.code, 'EADDRINUSE')
})

test('connect() to a closed port: a result with ECONNREFUSED', async (t) => {
  const w = new Watcher()
  t.teardown(() => w.close())
  w.connect('refused', { host: '127.0.0.1', port: REFUSED_PORT })
  const [res] = await collectUntil(w, (rs) => rs.length >= 1, 3000, 'refused connect')
  t.is(res.operation, OpType.Connect)
  t.is(res.context, 'refused')
  t.true(res.error instanceof GaioError)
  t.is(res.error?.code, 'ECONNREFUSED')
  t.true(res.conn instanceof Conn)
  // The failed connection is closed: using it gives results, not throws.
  w.read('on refused', res.conn as Conn)
  w.write('on refused', res.conn as Conn, Buffer.from('x'))
  const after = await collectUntil(w, (rs) => rs.length >= 2, 3000, 'use of a refused conn')
  t.deepEqual(after.map((r) => r.error?.code), ['ERR_CONN_CLOSED', 'ERR_CONN_CLOSED'])
})

test('accept(), connect(), free(): wrong argument types', async (t) => {
  const { w, listener, client } = await pair(t)
  for (const bad of [undefined, null, {}, 1, 'listener', client, new Socket()]) {
    t.throws(() => w.accept('x', bad as never), { instanceOf: TypeError, message: /Listener/ })
  }
  t.throws(() => w.connect('x', undefined as never), { instanceOf: TypeError })
  t.throws(() => w.connect('x', null as never), { instanceOf: TypeError })
  t.throws(() => w.connect('x', 'localhost:80' as never), { instanceOf: TypeError })
  t.throws(() => w.connect('x', {}), { instanceOf: TypeError, message: /port/ })
  t.throws(() => w.connect('x', { port: '80' as never }), { instanceOf: TypeError })
  t.throws(() => w.connect('x', { port: 0 }), { instanceOf: RangeError })
  t.throws(() => w.connect('x', { port: 65536 }), { instanceOf: RangeError })
  t.throws(() => w.connect('x', { port: NaN }), { instanceOf: RangeError })
  t.throws(() => w.connect('x', { host: 127001 as never, port: 80 }), { instanceOf: TypeError })
  t.throws(() => w.connect('x', { path: '' }), { instanceOf: TypeError })
  t.throws(() => w.connect('x', { path: {} as never }), { instanceOf: TypeError })
  for (const bad of [undefined, null, {}, 1, 'conn']) {
    t.throws(() => w.free(bad as never), { instanceOf: TypeError })
  }
  // None of that queued anything: the next results are exactly those of this accept and connect.
  w.accept('a', listener)
  w.connect('c', { host: '127.0.0.1', port: listener.port })
  const rs = await collectUntil(w, (r) => r.length >= 2, 3000, 'accept and connect')
  t.deepEqual(rs.map((r) => [r.context, r.error]).sort((x, y) => String(x[0]).localeCompare(String(y[0]))), [['a', null], ['c', null]])
  t.deepEqual(await resultsFor(w, 100), [])
})

test('read(), readTimeout(), readFull(), write(), writeTimeout(): wrong argument types', async (t) => {
  const { w, listener, client, server } = await pair(t)
  const buf = new Uint8Array(8)
  const soon = Date.now() + 1000
  const calls: [string, (conn: unknown, buffer: unknown, deadline: unknown) => void, boolean][] = [
    ['read', (c, b) => w.read('x', c as never, b as never), false],
    ['readTimeout', (c, b, d) => w.readTimeout('x', c as never, b as never, d as never), true],
    ['readFull', (c, b, d) => w.readFull('x', c as never, b as never, d as never), true],
    ['write', (c, b) => w.write('x', c as never, b as never), false],
    ['writeTimeout', (c, b, d) => w.writeTimeout('x', c as never, b as never, d as never), true],
  ]
  const other = new Watcher()
  t.teardown(() => other.close())
  const foreign = (await gaioPair(other)).client
  for (const [name, call, takesDeadline] of calls) {
    // conn not a Conn (nor a net.Socket)
    for (const bad of [undefined, null, {}, 7, 'conn', buf, Promise.resolve()]) {
      t.throws(() => call(bad, buf, soon), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE', message: /"conn" argument/ }, `${name}(conn: ${String(bad)})`)
    }
    t.throws(() => call(listener, buf, soon), { instanceOf: TypeError, message: /listener/i }, `${name} on a listener`)
    t.throws(() => call(foreign, buf, soon), { instanceOf: TypeError, message: /another watcher/ }, `${name} with another watcher's Conn`)
    // buffer not a view (null and undefined are fine for reads: the swap buffer)
    for (const bad of ['bytes', [1, 2, 3], new ArrayBuffer(4), { length: 3 }, 42, true]) {
      t.throws(() => call(client, bad, soon), { instanceOf: TypeError, message: /Buffer, TypedArray or DataView/ }, `${name}(buffer: ${String(bad)})`)
    }
    if (name.startsWith('write') || name === 'readFull') {
      t.throws(() => call(client, undefined, soon), { instanceOf: TypeError }, `${name} without a buffer`)
      t.throws(() => call(client, null, soon), { instanceOf: TypeError }, `${name} with a null buffer`)
    }
    if (takesDeadline) {
      for (const bad of ['tomorrow', '2030-01-01', {}, 10n, [1]]) {
        t.throws(() => call(client, buf, bad), { instanceOf: TypeError, message: /deadline/ }, `${name}(deadline: ${String(bad)})`)
      }
      t.throws(() => call(client, buf, NaN), { instanceOf: RangeError, message: /deadline/ }, `${name}(deadline: NaN)`)
      t.throws(() => call(client, buf, new Date('not a date')), { instanceOf: RangeError }, `${name}(deadline: Invalid Date)`)
    }
  }
  // readTimeout and writeTimeout need their deadline; readFull's is optional.
  t.throws(() => w.readTimeout('x', client, buf, undefined as never), { instanceOf: TypeError })
  t.throws(() => w.writeTimeout('x', client, buf, undefined as never), { instanceOf: TypeError })
  t.throws(() => w.readFull('x', client, undefined as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE', message: /"buffer" argument/ })

  // A bad buffer or deadline does not delegate a net.Socket: it stays with Node.
  const peer = createServer()
  await new Promise<void>((resolve) => peer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => peer.close())
  const socket = await netClient((peer.address() as { port: number }).port)
  t.teardown(() => socket.destroy())
  t.throws(() => w.write('x', socket, 'text' as never), { instanceOf: TypeError })
  t.throws(() => w.readTimeout('x', socket, null, 'soon' as never), { instanceOf: TypeError })
  t.throws(() => w.readTimeout('x', socket, null, NaN), { instanceOf: RangeError })
  t.false(socket.destroyed)

  // Nothing was queued by the failed calls: the next results are exactly these.
  w.write('good write', client, Buffer.from('abc'))
  w.readFull('good read', server, new Uint8Array(3))
  const rs = await collectUntil(w, (r) => r.length >= 2, 3000, 'good calls')
  t.deepEqual(rs.map((r) => [r.context, r.error]).sort((x, y) => String(x[0]).localeCompare(String(y[0]))), [['good read', null], ['good write', null]])
  t.deepEqual(await resultsFor(w, 100), [])
})

test('zero-length buffers: ERR_EMPTY_BUFFER at the call', async (t) => {
  const { w, client, server } = await pair(t)
  const empties = [new Uint8Array(0), Buffer.alloc(0), new DataView(new ArrayBuffer(4), 4), new Uint8Array(10).subarray(5, 5), new Float64Array(0)]
  for (const empty of empties) {
    for (const [name, call] of [
      ['read', () => w.read('x', server, empty)],
      ['readTimeout', () => w.readTimeout('x', server, empty, Date.now() + 1000)],
      ['readFull', () => w.readFull('x', server, empty)],
      ['write', () => w.write('x', client, empty)],
      ['writeTimeout', () => w.writeTimeout('x', client, empty, Date.now() + 1000)],
    ] as const) {
      const e = t.throws(call, { instanceOf: GaioError }, `${name} with ${empty.constructor.name}(0)`)
      t.is(e?.code, 'ERR_EMPTY_BUFFER')
    }
  }
  t.deepEqual(await resultsFor(w, 100), [], 'nothing was queued')
})

test('a past deadline: ERR_DEADLINE, unless the data is already there', async (t) => {
  const { w, client, server } = await pair(t)
  const past = [Date.now() - 1000, 0, new Date(0), -Infinity]
  past.forEach((deadline, i) => w.readTimeout(`past ${i}`, server, null, deadline))
  w.readFull('past readFull', server, new Uint8Array(4), Date.now() - 1)
  const expired = await collectUntil(w, (rs) => rs.length >= 5, 3000, 'past deadlines')
  for (const res of expired) {
    t.is(res.error?.code, 'ERR_DEADLINE', String(res.context))
    t.is(res.size, 0)
  }

  // The bytes are already in the socket: a read with a past deadline gets them.
  w.write('w', client, Buffer.from('here'))
  await collectUntil(w, (rs) => rs.length >= 1, 3000, 'write')
  await sleep(50)
  w.readTimeout('data there', server, null, Date.now() - 1000)
  const [got] = await collectUntil(w, (rs) => rs.length >= 1, 3000, 'read with data there')
  t.is(got.error, null)
  t.is(Buffer.from(got.buffer!).toString(), 'here')
  // And a write to a socket with room completes despite its past deadline.
  w.writeTimeout('room', client, Buffer.from('x'), Date.now() - 1000)
  const [wrote] = await collectUntil(w, (rs) => rs.length >= 1, 3000, 'write with a past deadline')
  t.is(wrote.error, null)
  t.is(wrote.size, 1)

  // A deadline in the near future passes while waiting; a readFull keeps what it got.
  w.write('partial', client, Buffer.from('ab'))
  const into = new Uint8Array(5)
  const started = Date.now()
  w.readFull('short', server, into, Date.now() + 150)
  const results = await collectUntil(w, (rs) => rs.some((r) => r.context === 'short'), 3000, 'future deadline')
  const short = results.find((r) => r.context === 'short')!
  t.true(Date.now() - started >= 120, 'not before the deadline')
  t.is(short.error?.code, 'ERR_DEADLINE')
  // The 'x' of the write above was never read: it comes first.
  t.is(short.size, 3)
  t.true(isReadInto(short, into))
  t.deepEqual([...into], [...Buffer.from('xab'), 0, 0], 'the bytes read before the deadline are in the buffer')
})

test('reads and writes on a listener are TypeErrors; accept on a Conn too', async (t) => {
  const { w, listener, client } = await pair(t)
  t.throws(() => w.read('x', listener as never), { instanceOf: TypeError, message: /listener/i })
  t.throws(() => w.readTimeout('x', listener as never, null, Date.now() + 100), { instanceOf: TypeError, message: /listener/i })
  t.throws(() => w.readFull('x', listener as never, new Uint8Array(1)), { instanceOf: TypeError, message: /listener/i })
  t.throws(() => w.write('x', listener as never, Buffer.from('x')), { instanceOf: TypeError, message: /listener/i })
  t.throws(() => w.writeTimeout('x', listener as never, Buffer.from('x'), Date.now() + 100), { instanceOf: TypeError, message: /listener/i })
  t.throws(() => w.accept('x', client as never), { instanceOf: TypeError })
  t.true(listener instanceof Listener)
  t.deepEqual(await resultsFor(w, 50), [])
})

test('operations on a freed connection complete with ERR_CONN_CLOSED; double free is a no-op', async (t) => {
  const { w, listener, client, server } = await pair(t)
  // In flight when freed.
  w.read('in flight', server)
  w.readFull('in flight full', server, new Uint8Array(4))
  w.accept('pending accept', listener)
  await sleep(20)
  w.free(server)
  w.free(server)
  w.free(listener)
  w.free(listener)
  const first = await collectUntil(w, (rs) => rs.length >= 3, 3000, 'in-flight requests')
  t.deepEqual(first.map((r) => [r.context, r.error?.code]).sort((x, y) => String(x[0]).localeCompare(String(y[0]))), [
    ['in flight', 'ERR_CONN_CLOSED'],
    ['in flight full', 'ERR_CONN_CLOSED'],
    ['pending accept', 'ERR_CONN_CLOSED'],
  ])
  // Submitted after the free.
  w.read('after', server)
  w.readTimeout('after timeout', server, new Uint8Array(2), Date.now() + 1000)
  w.readFull('after full', server, new Uint8Array(2))
  w.write('after write', server, Buffer.from('x'))
  w.writeTimeout('after write timeout', server, Buffer.from('x'), Date.now() + 1000)
  w.accept('after accept', listener)
  w.free(server) // a third time
  const later = await collectUntil(w, (rs) => rs.length >= 6, 3000, 'requests after free')
  for (const res of later) {
    t.is(res.error?.code, 'ERR_CONN_CLOSED', String(res.context))
    t.is(res.size, 0)
  }
  t.is(later.find((r) => r.context === 'after')?.conn, server, 'the result names the freed Conn')
  // The other end saw the close, and nothing came before its EOF: no duplicate completions from the double frees.
  w.read('eof', client)
  const rest = await collectUntil(w, (rs) => rs.some((r) => r.context === 'eof'), 3000, 'EOF on the peer')
  t.deepEqual(rest.map((r) => [r.context, r.error?.code]), [['eof', 'EOF']])
  // free() of a net.Socket the watcher never took is a no-op too.
  const socket = new Socket()
  w.free(socket)
  t.false(socket.destroyed)
  socket.destroy()
})

test('a buffer detached after write() but before the flush: ERR_BUFFER_DETACHED', async (t) => {
  const { w, client, server } = await pair(t)
  const a = new Uint8Array(16).fill(1)
  const b = new Uint8Array(16).fill(2)
  const c = Buffer.from('kept')
  w.write('detached', client, a)
  w.writeTimeout('detached with deadline', client, b, Date.now() + 1000)
  w.write('kept', client, c)
  detach(a)
  detach(b)
  const rs = await collectUntil(w, (r) => r.length >= 3, 3000, 'writes')
  const by = new Map(rs.map((r) => [r.context, r]))
  t.is(by.get('detached')?.error?.code, 'ERR_BUFFER_DETACHED')
  t.is(by.get('detached')?.size, 0)
  t.is(by.get('detached with deadline')?.error?.code, 'ERR_BUFFER_DETACHED')
  t.is(by.get('kept')?.error, null)
  // Only the kept bytes went out.
  w.readFull('peer', server, new Uint8Array(4))
  const [got] = await collectUntil(w, (r) => r.length >= 1, 3000, 'peer read')
  t.is(Buffer.from(got.buffer!).toString(), 'kept')
  w.readTimeout('nothing more', server, null, Date.now() + 100)
  const [none] = await collectUntil(w, (r) => r.length >= 1, 3000, 'nothing more')
  t.is(none.error?.code, 'ERR_DEADLINE')
})

test('a buffer detached while a read is in flight: ERR_BUFFER_DETACHED, no crash, the connection goes on', async (t) => {
  const { w, client, server } = await pair(t)
  const plain = new Uint8Array(8)
  const full = new Uint8Array(4)
  w.read('plain', server, plain)
  await sleep(20)
  detach(plain)
  w.write('w1', client, Buffer.from('1234'))
  const r1 = await collectUntil(w, (rs) => rs.some((r) => r.context === 'plain'), 3000, 'plain read')
  const p = r1.find((r) => r.context === 'plain')!
  t.is(p.error?.code, 'ERR_BUFFER_DETACHED')
  t.is(p.size, 0)

  w.readFull('full', server, full)
  await sleep(20)
  detach(full)
  w.write('w2', client, Buffer.from('abcd'))
  const r2 = await collectUntil(w, (rs) => rs.some((r) => r.context === 'full'), 3000, 'readFull')
  t.is(r2.find((r) => r.context === 'full')!.error?.code, 'ERR_BUFFER_DETACHED')

  // Detached and GC'd meanwhile: still no crash.
  for (let i = 0; i < 20; i++) {
    const buf = new Uint8Array(1024)
    w.read(i, server, buf)
    detach(buf)
  }
  ;(globalThis as { gc?: () => void }).gc?.()
  w.write('w3', client, Buffer.alloc(20 * 1024, 9))
  const r3 = await collectUntil(w, (rs) => rs.filter((r) => typeof r.context === 'number').length === 20, 3000, 'twenty reads')
  for (const r of r3.filter((r) => typeof r.context === 'number')) t.is(r.error?.code, 'ERR_BUFFER_DETACHED')

  // The connection still carries data.
  w.write('w4', client, Buffer.from('fine'))
  w.readFull('fine', server, new Uint8Array(4))
  const r4 = await collectUntil(w, (rs) => rs.some((r) => r.context === 'fine'), 3000, 'after detaching')
  const fine = r4.find((r) => r.context === 'fine')!
  t.is(fine.error, null)
  t.is(fine.size, 4)
})

for (const mode of ['thread', 'inline'] as const) test(`[${mode}] swap memory as a read's buffer is refused: the next waitIO() may refill it; writing it is fine`, async (t) => {
  const w = new Watcher({ mode })
  t.teardown(() => w.close())
  const { client, server } = await gaioPair(w)
  w.read('swap', server)
  w.write('w', client, Buffer.from('ping'))
  const [got] = (await collectUntil(w, (rs) => rs.some((r) => r.context === 'swap'), 3000, 'swap read')).filter((r) => r.context === 'swap')
  t.true(got!.isSwapBuffer)
  const view = got!.buffer!
  for (const read of [() => w.read('again', server, view), () => w.readTimeout('again', server, view.subarray(1), Date.now() + 1000), () => w.readFull('again', server, new DataView(view.buffer, view.byteOffset, 2))]) {
    t.throws(read, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE', message: /swap memory/ })
  }
  w.write('echo', server, view)
  w.readFull('back', client, new Uint8Array(4))
  const after = await collectUntil(w, (rs) => rs.some((r) => r.context === 'back') && rs.some((r) => r.context === 'echo'), 3000, 'echo')
  t.is(Buffer.from(after.find((r) => r.context === 'back')!.buffer!).toString(), 'ping')
  t.deepEqual(after.map((r) => r.context).sort(), ['back', 'echo'], 'the refused reads left nothing behind')
})

test('a second concurrent waitIO() rejects with ERR_WAIT_PENDING; the first still resolves', async (t) => {
  const { w, client, server } = await pair(t)
  const first = w.waitIO()
  const second = await t.throwsAsync(w.waitIO(), { instanceOf: GaioError })
  t.is(second?.code, 'ERR_WAIT_PENDING')
  const iterator = w[Symbol.asyncIterator]()
  t.is((await t.throwsAsync(iterator.next(), { instanceOf: GaioError }))?.code, 'ERR_WAIT_PENDING')
  w.write('w', client, Buffer.from('x'))
  w.read('r', server)
  const got = await within(3000, 'first waitIO', first)
  t.true(got.length >= 1)
})

test('after close(): requests complete with ERR_WATCHER_CLOSED, listen throws, then waitIO rejects; free and close are no-ops', async (t) => {
  const { w, listener, client } = await pair(t)
  w.read('pending', client)
  const waiting = w.waitIO()
  w.close()
  const last = await within(3000, 'the final batch', waiting)
  t.deepEqual(last.map((r) => [r.context, r.error?.code]), [['pending', 'ERR_WATCHER_CLOSED']])
  for (const call of [
    () => w.read('x', client),
    () => w.write('x', client, Buffer.from('x')),
    () => w.readFull('x', client, new Uint8Array(1)),
    () => w.accept('x', listener),
    () => w.connect('x', { port: 80 }),
  ]) {
    t.notThrows(call)
  }
  t.is(t.throws(() => w.listen({ port: 0 }), { instanceOf: GaioError })?.code, 'ERR_WATCHER_CLOSED')
  const late = await w.waitIO()
  t.deepEqual(late.map((r) => [r.context, r.error?.code]), Array(5).fill(['x', 'ERR_WATCHER_CLOSED']))
  // Wrong arguments still throw at the call.
  t.throws(() => w.read('x', {} as never), { instanceOf: TypeError })
  t.is((await t.throwsAsync(w.waitIO(), { instanceOf: GaioError }))?.code, 'ERR_WATCHER_CLOSED')
  t.notThrows(() => w.free(client))
  t.notThrows(() => w.close())
})

test('the native functions called directly with garbage throw or fail the record; a panic is an ERR_INTERNAL_PANIC error; the process survives', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const native = require(nativePath) as Record<string, (...args: unknown[]) => unknown>
  t.deepEqual(Object.keys(native).sort(), ['_panic', 'createWatcher', 'layout', 'sendNow', 'setKeepAlive', 'setNoDelay', 'socketAddresses'])
  for (const inline of [false, true]) {
    t.throws(() => native.createWatcher('not a function', 1024, 4096, -1, inline), { instanceOf: TypeError })
    t.throws(() => native.createWatcher(() => {}, -5, 4096, -1, inline), { instanceOf: RangeError })
    t.throws(() => native.createWatcher(() => {}, 'big', 4096, -1, inline), { instanceOf: TypeError })
    t.is((t.throws(() => native.createWatcher(() => {}, 8192, 4096, -1, inline)) as NodeJS.ErrnoException).code, 'ERR_WATCHER_START')
  }
  t.throws(() => native.createWatcher(() => {}, 1024, 4096, -1, 'yes'), { instanceOf: TypeError })
  t.is((t.throws(() => native.createWatcher(() => {}, 1024, 4096, 0, true)) as NodeJS.ErrnoException).code, 'ERR_WATCHER_START')

  const panic = t.throws(() => native._panic())
  t.is((panic as NodeJS.ErrnoException).code, 'ERR_INTERNAL_PANIC')
  t.regex(panic!.message, /deliberate panic/)
  t.throws(() => native._panic(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), { message: /deliberate panic/ })

  // A real watcher's methods (bound to it: no handle argument to forge), with garbage.
  for (const inline of [false, true]) {
    const h = native.createWatcher(() => {}, 1024, 4096, -1, inline) as Record<string, (...args: unknown[]) => unknown>
    t.teardown(() => h.close())
    const [submitMemory] = h.records(6, 0) as ArrayBuffer[]
    const submitRecords = new Int32Array(submitMemory)
    const submit = (fields: number[], extras: unknown) => {
      submitRecords.set(fields)
      return h.submit(1, extras)
    }
    t.throws(() => h.records(-1, 5), { instanceOf: RangeError })
    t.throws(() => h.records('6', 5), { instanceOf: TypeError })
    t.throws(() => h.submit(2, []), { instanceOf: RangeError }, 'more records than the memory holds')
    t.throws(() => h.submit(-1, []), { instanceOf: RangeError })
    // Its fields, 6 × 0xffffffff, wrap around 32 bits (armv7) to fewer than the memory holds.
    t.throws(() => h.submit(0xffffffff, []), { instanceOf: RangeError }, 'a count whose fields overflow a 32-bit size')
    t.throws(() => h.submit('1', []), { instanceOf: TypeError })
    // A record that cannot be read fails on its own (EINVAL), never the whole batch.
    const garbage: [number[], unknown][] = [
      [[99, 1, 0, 0, -1, -1], []], // no such kind
      [[0, 2, 0, -3, -1, -1], []], // a negative length
      [[2, 3, 0, 3, 0, -1], ['not bytes']],
      [[2, 4, 0, 3, 5, -1], []], // no such extra
      [[2, 5, 0, 3, 0, -1], [{}]],
      [[4, 6, 0, 80, 0, -1], ['not an address']],
      [[4, 7, 0, 70000, 0, -1], ['127.0.0.1']], // no such port
    ]
    for (const [fields, extras] of garbage) t.notThrows(() => submit(fields, extras))
    t.throws(() => submit([2, 9, 0, 3, 0, -1], undefined), { instanceOf: TypeError }, 'no extras array: refused at the call')
    t.throws(() => h.copyOwned(99, new Uint8Array(4)), { instanceOf: RangeError })
    t.throws(() => h.copyOwned(0, 'target'), { instanceOf: TypeError })
    t.is(h.listen(1, 'not an ip', 0, '', 16, false), -22, 'an address that does not parse: -EINVAL')
    t.throws(() => h.listen(1, {}, 0, '', 16, false), { instanceOf: TypeError })
    t.throws(() => h.keepAlive('yes'), { instanceOf: TypeError })
    t.is(h.adopt(1, 999_999), -9, 'adopting a descriptor that does not exist: -EBADF')

    // A read on a connection the engine never heard of completes with ERR_CONN_CLOSED (-3),
    // but only into completion memory with room: none yet, so take refuses and loses nothing.
    submit([0, 8, 12345, 10, -1, -1], [])
    await sleep(20)
    t.true((h.take() as number) < 0, 'no room for the completions waiting: it says how many, and takes nothing')
    const [, takeMemory] = h.records(6, 5 * 8) as ArrayBuffer[]
    let n = 0
    for (let i = 0; i < 100 && n < 8; i++) {
      n += h.take() as number
      if (n < 8) await sleep(10)
    }
    const records = new Int32Array(takeMemory)
    const outcome = (req: number) => {
      for (let at = 0; at < records.length; at += 5) if (records[at] === req) return [...records.subarray(at, at + 5)]
    }
    for (let req = 1; req <= 7; req++) t.deepEqual(outcome(req), [req, 0, 22, -1, 0], `garbage record ${req}`)
    t.deepEqual(outcome(8), [8, 0, -3, -1, 0])
    h.close()
    t.notThrows(() => h.close())
  }

  // The process is fine: a watcher still does its job.
  const w = new Watcher()
  t.teardown(() => w.close())
  const { client, server } = await gaioPair(w)
  w.write('w', client, Buffer.from('alive'))
  w.readFull('r', server, new Uint8Array(5))
  const rs = await collectUntil(w, (r) => r.length >= 2, 3000, 'echo after the garbage')
  t.is(Buffer.from(rs.find((r) => r.context === 'r')!.buffer!).toString(), 'alive')
})

test('native sizes past their caps are RangeErrors before anything is allocated; a refused records() call replaces nothing', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const native = require(nativePath) as Record<string, (...args: unknown[]) => unknown> & { layout: Record<string, number> }
  const outOfRange = { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }
  for (const inline of [false, true]) {
    // Before the caps these allocated what was asked (two arenas of 4 GiB; 16 GiB of records), or aborted the process.
    t.throws(() => native.createWatcher(() => {}, 1, 2 ** 32 - 1, -1, inline), { ...outOfRange, message: /swapSize/ })
    t.throws(() => native.createWatcher(() => {}, 2 ** 30 + 1, 4096, -1, inline), { ...outOfRange, message: /bufferSize/ })
    const h = native.createWatcher(() => {}, 1024, 4096, -1, inline) as Record<string, (...args: unknown[]) => unknown>
    t.teardown(() => h.close())
    const [submitMemory, takeMemory] = h.records(6, 5) as ArrayBuffer[]
    t.throws(() => h.records(2 ** 32 - 1, 0), { ...outOfRange, message: /submitLen/ })
    t.throws(() => h.records(6, 2 ** 32 - 1), { ...outOfRange, message: /takeLen/ })
    // The memory handed out before the refused calls is still the memory read and written.
    new Int32Array(submitMemory!).set([0, 8, 12345, 10, -1, -1]) // a read on a connection the engine never heard of
    h.submit(1, [])
    let n = 0
    for (let i = 0; i < 100 && n === 0; i++) {
      n = h.take() as number
      if (n === 0) await sleep(10)
    }
    t.is(n, 1)
    t.deepEqual([...new Int32Array(takeMemory!)], [8, 0, -3, -1, 0])
    h.close()
  }
  // One fact each, exported for the facade: the arenas' cap, and the records' cap (in records; records() takes fields).
  t.is(native.layout.maxSwapSize, 2 ** 30)
  t.is(native.layout.maxRecords, 2 ** 24)
})

test('record memory under the cap that the system cannot give is an ERR_MEMORY_ALLOCATION_FAILED error, not an abort', async (t) => {
  // Record memory of the most records allowed: 384 MiB.
  const limited = await outcomeWithoutMemory('h.records(native.layout.maxRecords * native.layout.submitFields, 0)', 'h.records(6, 5)')
  t.is(limited.signal, null, `no abort: ${limited.stderr}`)
  t.is(limited.status, 0, limited.stderr)
  t.is(limited.outcome, 'ERR_MEMORY_ALLOCATION_FAILED')
})

test('swap arenas under the cap that the system cannot give make new Watcher() throw ERR_WATCHER_START, not abort; a small watcher still starts', async (t) => {
  // Two arenas of 1 GiB.
  const limited = await outcomeWithoutMemory('new Watcher({ swapSize: 1 << 30 })', "new Watcher({ mode: 'inline', bufferSize: 1024, swapSize: 4096 }).close()")
  t.is(limited.signal, null, `no abort: ${limited.stderr}`)
  t.is(limited.status, 0, limited.stderr)
  t.is(limited.outcome, 'ERR_WATCHER_START')
})

test('an extras element whose getter throws fails its own record (EINVAL); the rest of the batch is applied and submit does not throw', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const native = require(nativePath) as Record<string, (...args: unknown[]) => unknown>
  const server = createServer((socket) => socket.destroy())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port
  for (const inline of [false, true]) {
    const h = native.createWatcher(() => {}, 1024, 4096, -1, inline) as Record<string, (...args: unknown[]) => unknown>
    t.teardown(() => h.close())
    const [submitMemory, takeMemory] = h.records(3 * 6, 3 * 5) as ArrayBuffer[]
    // A write whose buffer is behind a throwing getter, then a connect and a read that are fine.
    new Int32Array(submitMemory!).set([2, 1, 0, 3, 0, -1, 4, 2, 77, port, 1, -1, 0, 3, 12345, 10, -1, -1])
    let calls = 0
    const extras: unknown[] = [undefined, '127.0.0.1']
    Object.defineProperty(extras, 0, {
      get() {
        calls++
        throw new Error('getter says no')
      },
    })
    t.notThrows(() => h.submit(3, extras), `${inline ? 'inline' : 'thread'}: nothing left pending to throw`)
    t.is(calls, 1, 'the element is read once')
    const records = new Int32Array(takeMemory!)
    const seen = new Map<number, number[]>()
    for (let i = 0; i < 300 && seen.size < 3; i++) {
      const n = h.take() as number
      for (let at = 0; at < n * 5; at += 5) seen.set(records[at]!, [...records.subarray(at, at + 5)])
      if (seen.size < 3) await sleep(10)
    }
    t.deepEqual(seen.get(1), [1, 0, 22, -1, 0], 'the write behind the getter: EINVAL')
    const connect = seen.get(2)
    t.deepEqual(connect?.slice(0, 4), [2, 0, 0, 3], 'the connect after it: connected (a socket)')
    t.true(connect![4]! >= 0)
    t.deepEqual(seen.get(3), [3, 0, -3, -1, 0], 'the read after it: applied (ERR_CONN_CLOSED: no such connection)')
    h.close()
  }
})

test("another watcher's Conn or Listener is refused with a TypeError", async (t) => {
  const a = new Watcher()
  const b = new Watcher()
  t.teardown(() => {
    a.close()
    b.close()
  })
  // Both watchers number their connections alike: ids alone would collide.
  const pa = await gaioPair(a)
  const pb = await gaioPair(b)
  t.throws(() => b.accept('x', pa.listener), { instanceOf: TypeError, message: /another watcher/ })
  t.throws(() => b.read('x', pa.server), { instanceOf: TypeError, message: /another watcher/ })
  t.throws(() => b.write('x', pa.client, Buffer.from('x')), { instanceOf: TypeError, message: /another watcher/ })
  t.throws(() => b.free(pa.client), { instanceOf: TypeError, message: /another watcher/ })
  t.throws(() => b.free(pa.listener), { instanceOf: TypeError, message: /another watcher/ })
  // b's own connections were not touched.
  b.write('w', pb.client, Buffer.from('mine'))
  b.readFull('r', pb.server, new Uint8Array(4))
  const rs = await collectUntil(b, (r) => r.length >= 2, 3000, 'b still works')
  t.is(Buffer.from(rs.find((r) => r.context === 'r')!.buffer!).toString(), 'mine')
  t.deepEqual(await resultsFor(a, 50), [])
})
