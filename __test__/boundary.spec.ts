// The boundary between JavaScript and the engine: what the facade accepts as
// a buffer (any element type, SharedArrayBuffer views, resizable and detached
// ArrayBuffers, views over 2 GiB), out-of-range deadlines, and a panic in
// native code, which must surface as a JS Error and leave the process, and the
// watchers in it, working. (Wrong types and the glue's own checks on garbage
// records are in misuse.spec.ts.)
import test, { type ExecutionContext } from 'ava'
import { GaioError, Watcher } from '../index'
import { loadAddon } from '../lib/loader'
import { gaioPair, isReadInto, pattern, scaled, sleep } from './helpers'
import { detach, Ledger, Poller } from './reliability'

const MODES = ['thread', 'inline'] as const

async function pair(t: ExecutionContext, mode: (typeof MODES)[number]) {
  const w = new Watcher({ mode })
  t.teardown(() => w.close())
  const p = await gaioPair(w)
  return { w, poller: new Poller(w), ...p }
}

/** Takes results until every context in `ledger` has one; `seen` hears each with its batch's number. */
async function settle<C>(p: Poller, ledger: Ledger<C>, ms = 5000, seen?: (context: C, batch: number) => void): Promise<void> {
  const until = Date.now() + scaled(ms)
  for (let index = 0; ledger.outstanding > 0; index++) {
    const batch = await p.next(Math.max(1, until - Date.now()))
    if (batch === null) throw new Error(`${ledger.outstanding} requests pending after ${ms} ms`)
    for (const r of batch) {
      ledger.settle(r)
      seen?.(r.context as C, index)
    }
  }
}

/** A resizable ArrayBuffer (ES2024; Node 20 has it, the typings here do not). */
function resizable(length: number, maxByteLength: number): ArrayBuffer & { resize(n: number): void } {
  return new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer & { resize(n: number): void })(length, { maxByteLength })
}

/** The bytes of any view. */
const bytesOf = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)

for (const mode of MODES) {
  test(`[${mode}] any TypedArray or DataView is its bytes: writes send them, reads fill them, sizes count bytes`, async (t) => {
    const { w, poller, client, server } = await pair(t, mode)
    const source = pattern(1, 64)
    const kinds: [string, (n: number) => ArrayBufferView][] = [
      ['Int8Array', (n) => new Int8Array(n)],
      ['Uint8ClampedArray', (n) => new Uint8ClampedArray(n)],
      ['Int16Array', (n) => new Int16Array(n / 2)],
      ['Uint16Array', (n) => new Uint16Array(n / 2)],
      ['Int32Array', (n) => new Int32Array(n / 4)],
      ['Uint32Array', (n) => new Uint32Array(n / 4)],
      ['Float32Array', (n) => new Float32Array(n / 4)],
      ['Float64Array', (n) => new Float64Array(n / 8)],
      ['BigInt64Array', (n) => new BigInt64Array(n / 8)],
      ['BigUint64Array', (n) => new BigUint64Array(n / 8)],
      ['DataView at an odd offset', (n) => new DataView(new ArrayBuffer(n + 5), 5, n)],
      ['Float64Array at an offset', (n) => new Float64Array(new ArrayBuffer(n + 16), 8, n / 8)],
      ['Buffer', (n) => Buffer.alloc(n)],
    ]
    for (const [name, make] of kinds) {
      const out = make(64)
      bytesOf(out).set(source)
      const into = make(64)
      const ledger = new Ledger<string>()
      w.write(ledger.add('write'), client, out)
      w.readFull(ledger.add('readFull'), server, into)
      await settle(poller, ledger)
      const wrote = ledger.results.get('write')!
      const read = ledger.results.get('readFull')!
      t.is(wrote.error, null, name)
      t.is(wrote.size, 64, `${name}: a write's size is in bytes`)
      t.true(wrote.buffer instanceof Uint8Array && bytesOf(wrote.buffer).equals(bytesOf(out)) && wrote.buffer.buffer === out.buffer, `${name}: the result hands back the bytes given, as a Uint8Array over the same memory`)
      t.is(read.size, 64, name)
      t.true(isReadInto(read, into), name)
      t.true(bytesOf(into).equals(source), `${name}: the bytes, not the elements, crossed`)
    }
    // A plain read into a Float64Array can end inside an element: its size is in bytes too.
    const f = new Float64Array(4)
    const ledger = new Ledger<string>()
    w.write(ledger.add('three bytes'), client, Uint8Array.of(1, 2, 3))
    await settle(poller, ledger)
    await sleep(20)
    w.read(ledger.add('read'), server, f)
    await settle(poller, ledger)
    const read = ledger.results.get('read')!
    t.is(read.size, 3)
    t.true(isReadInto(read, f))
    t.deepEqual([...bytesOf(f).subarray(0, 4)], [1, 2, 3, 0])
  })

  test(`[${mode}] SharedArrayBuffer views work like any buffer; a write sends the bytes as they are at the flush`, async (t) => {
    const { w, poller, client, server } = await pair(t, mode)
    const shared = new SharedArrayBuffer(32)
    const out = new Uint8Array(shared, 8, 16)
    out.set(pattern(2, 16))
    const sent = Buffer.from(out)
    const into = new Int32Array(new SharedArrayBuffer(16))
    const view = new DataView(new SharedArrayBuffer(40), 3, 16)
    const ledger = new Ledger<string>()
    w.write(ledger.add('write'), client, out)
    w.readFull(ledger.add('readFull'), server, into)
    // The flush copies the bytes within the same tick: what changes after the first await is not sent.
    await Promise.resolve()
    out.fill(0xee)
    await settle(poller, ledger)
    t.is(ledger.results.get('write')!.error, null)
    t.true(bytesOf(into).equals(sent), 'the bytes as they were when the request was flushed')
    w.write(ledger.add('again'), client, out)
    w.read(ledger.add('read'), server, view)
    await settle(poller, ledger)
    const read = ledger.results.get('read')!
    t.true(isReadInto(read, view))
    t.is(read.size, 16)
    t.true(bytesOf(view).equals(Buffer.alloc(16, 0xee)))
  })

  test(`[${mode}] a flush of more requests than one crossing carries (65536): each completes once, in order, every byte in place`, async (t) => {
    const { w, poller, client, server } = await pair(t, mode)
    const ledger = new Ledger<string>()
    const count = (1 << 16) + 1000
    const bytes = pattern(7, count)
    const into = new Uint8Array(count)
    // Reads always cross; writes do too, but for those the flush sends itself.
    for (let i = 0; i < count; i++) {
      w.read(ledger.add(`read ${i}`), server, into.subarray(i, i + 1))
      w.write(ledger.add(`write ${i}`), client, bytes.subarray(i, i + 1))
    }
    await settle(poller, ledger, 20_000)
    for (const kind of ['read', 'write']) {
      const done = [...ledger.results].filter(([k]) => k.startsWith(kind))
      t.deepEqual(done.map(([k]) => k), Array.from({ length: count }, (_, i) => `${kind} ${i}`), `${kind}s in order`)
      t.true(done.every(([, r]) => r.error === null && r.size === 1), `${kind}s whole`)
    }
    t.true(Buffer.from(into).equals(Buffer.from(bytes)))
  })

  test(`[${mode}] a write detached before its flush fails in its turn: after its connection's writes the engine has, before the later ones`, async (t) => {
    const { w, poller, client, server } = await pair(t, mode)
    const ledger = new Ledger<string>()
    // More than the sockets hold, in writes of one chunk each: they wait in the engine for the peer.
    const ahead = Array.from({ length: 4 }, (_, i) => pattern(i, 4 << 20))
    ahead.forEach((bytes, i) => w.write(ledger.add(`ahead ${i}`), client, bytes))
    await Promise.resolve()
    const gone = new Uint8Array(64)
    w.write(ledger.add('detached'), client, gone)
    w.write(ledger.add('behind'), client, Buffer.from('behind'))
    detach(gone)
    const into = new Uint8Array((16 << 20) + 6)
    w.readFull(ledger.add('peer'), server, into)
    await settle(poller, ledger, 10_000)
    t.deepEqual([...ledger.results.keys()].filter((k) => k !== 'peer'), ['ahead 0', 'ahead 1', 'ahead 2', 'ahead 3', 'detached', 'behind'])
    t.is(ledger.results.get('detached')!.error?.code, 'ERR_BUFFER_DETACHED')
    t.is(ledger.results.get('detached')!.size, 0)
    t.true(Buffer.from(into.subarray(16 << 20)).equals(Buffer.from('behind')), 'nothing of the detached write went out')
  })

  test(`[${mode}] detached and resized ArrayBuffers: ERR_EMPTY_BUFFER at the call, ERR_BUFFER_DETACHED after it; the connection goes on`, async (t) => {
    const { w, poller, client, server } = await pair(t, mode)
    // Detached before the call: it has no bytes, and the error says it may be detached.
    const gone = new Uint8Array(8)
    detach(gone)
    for (const [name, call] of [
      ['write', () => w.write('x', client, gone)],
      ['writeTimeout', () => w.writeTimeout('x', client, gone, Date.now() + 100)],
      ['read', () => w.read('x', server, gone)],
      ['readTimeout', () => w.readTimeout('x', server, gone, Date.now() + 100)],
      ['readFull', () => w.readFull('x', server, gone)],
    ] as const) {
      const e = t.throws(call, { instanceOf: GaioError, message: /detached/ }, name)
      t.is(e?.code, 'ERR_EMPTY_BUFFER', name)
    }

    // Resized between the call and the flush: the length at the call is what was asked for.
    const ledger = new Ledger<string>()
    const shrinking = resizable(8, 64)
    new Uint8Array(shrinking).fill(1)
    const growing = resizable(8, 64)
    const tracking = new Uint8Array(growing) // follows the buffer's length
    tracking.fill(2)
    w.write(ledger.add('shrunk'), client, new Uint8Array(shrinking))
    w.write(ledger.add('grown'), client, tracking)
    w.write(ledger.add('kept'), client, Buffer.from('kept'))
    shrinking.resize(4)
    growing.resize(32)
    await settle(poller, ledger)
    t.is(ledger.results.get('shrunk')!.error?.code, 'ERR_BUFFER_DETACHED')
    t.is(ledger.results.get('grown')!.error?.code, 'ERR_BUFFER_DETACHED')
    t.is(ledger.results.get('kept')!.error, null)

    // Resized while a read waits: too small for the bytes is ERR_BUFFER_DETACHED; larger is fine.
    const small = resizable(16, 64)
    w.read(ledger.add('read into a shrunk buffer'), server, new Uint8Array(small))
    await sleep(20)
    small.resize(2)
    const big = resizable(4, 64)
    const bigView = new Uint8Array(big)
    w.read(ledger.add('read into a grown buffer'), server, bigView)
    w.readFull(ledger.add('readFull into a detached buffer'), server, (() => {
      const v = new Uint8Array(4)
      setTimeout(() => detach(v), 10)
      return v
    })())
    await sleep(30)
    big.resize(64)
    w.write(ledger.add('w'), client, Buffer.from('0123456789abcdef'))
    await settle(poller, ledger)
    // 'kept' arrived first and went to the first read.
    t.is(ledger.results.get('read into a shrunk buffer')!.error?.code, 'ERR_BUFFER_DETACHED')
    const grown = ledger.results.get('read into a grown buffer')!
    t.is(grown.error, null)
    t.true(isReadInto(grown, bigView))
    t.is(Buffer.from(bigView.subarray(0, grown.size)).toString(), '0123456789abcdef'.slice(0, grown.size))
    t.is(ledger.results.get('readFull into a detached buffer')!.error?.code, 'ERR_BUFFER_DETACHED')

    // The connection still carries data.
    w.write(ledger.add('w2'), client, Buffer.from('fine'))
    const fine = new Uint8Array(4)
    w.readFull(ledger.add('fine'), server, fine)
    w.readTimeout(ledger.add('drain'), server, null, Date.now() + 100)
    await settle(poller, ledger)
    t.is(ledger.results.get('fine')!.error, null)
    t.deepEqual(ledger.problems, [])
  })

  test(`[${mode}] buffers of 2 GiB and more: a read takes what comes; readFull and write throw RangeError, queueing nothing`, async (t) => {
    const { w, poller, client, server } = await pair(t, mode)
    // calloc'd by V8: the pages never touched cost nothing.
    const huge = new Uint8Array(2 ** 31 + 16)
    const limit = new Uint8Array(2 ** 31) // one byte over the limit of 2^31 - 1
    t.throws(() => w.readFull('x', server, huge), { instanceOf: RangeError, message: /at most 2147483647/ })
    t.throws(() => w.readFull('x', server, limit), { instanceOf: RangeError })
    t.throws(() => w.write('x', client, huge), { instanceOf: RangeError, message: /split it/ })
    t.throws(() => w.writeTimeout('x', client, limit, Date.now() + 1000), { instanceOf: RangeError })
    const ledger = new Ledger<string>()
    w.read(ledger.add('huge read'), server, huge)
    w.readTimeout(ledger.add('huge readTimeout'), server, limit, Date.now() + 200)
    w.write(ledger.add('w1'), client, Buffer.from('into a huge buffer'))
    await settle(poller, ledger)
    const read = ledger.results.get('huge read')!
    t.is(read.error, null)
    t.true(isReadInto(read, huge))
    t.is(Buffer.from(huge.subarray(0, read.size)).toString(), 'into a huge buffer'.slice(0, read.size))
    const second = ledger.results.get('huge readTimeout')!
    t.true(second.error === null || second.error.code === 'ERR_DEADLINE', `${second.error?.code}`)
    // Nothing else was queued by the calls that threw.
    t.is(ledger.submitted, 3)
    t.deepEqual(ledger.problems, [])
  })

  test(`[${mode}] out-of-range deadlines: Infinity and far dates never fire early; -Infinity, 0 and dates long past fire at once`, async (t) => {
    const { w, poller, client, server } = await pair(t, mode)
    const ledger = new Ledger<string>()
    const far = [Infinity, Number.MAX_VALUE, 1e300, Number.MAX_SAFE_INTEGER, new Date(8.64e15), Date.now() + 2 ** 40]
    far.forEach((d, i) => w.readTimeout(ledger.add(`far ${i}`), server, new Uint8Array(1), d))
    const past = [-Infinity, -Number.MAX_VALUE, 0, -0, new Date(-8.64e15)]
    past.forEach((d, i) => w.writeTimeout(ledger.add(`past ${i}`), client, Buffer.alloc(1), d))
    // Nothing may end the far reads early: wait a while, taking whatever comes.
    for (const until = Date.now() + 300; Date.now() < until; ) (await poller.next(Math.max(1, until - Date.now())))?.forEach((r) => ledger.settle(r))
    for (let i = 0; i < far.length; i++) {
      const r = ledger.results.get(`far ${i}`)
      t.true(r === undefined || r.error === null, `far ${i}: ${r?.error?.code}`)
    }
    // Enough bytes for every far read: each completes with its byte, none with ERR_DEADLINE.
    w.write(ledger.add('more bytes'), client, Buffer.alloc(far.length))
    await settle(poller, ledger)
    for (let i = 0; i < past.length; i++) {
      const code = ledger.results.get(`past ${i}`)!.error?.code ?? 'ok'
      t.true(code === 'ok' || code === 'ERR_DEADLINE', `past ${i}: ${code}`)
    }
    for (let i = 0; i < far.length; i++) t.is(ledger.results.get(`far ${i}`)!.error, null, `far ${i}`)
    // A read with a deadline long past and nothing to read: ERR_DEADLINE at once, so no
    // later than a read due 100 ms after it (an order, not a time: emulators are slow).
    const quiet = await gaioPair(w)
    w.readTimeout(ledger.add('past read'), client, null, -Infinity) // nothing was written to the client
    w.readTimeout(ledger.add('read due in 100 ms'), quiet.server, null, Date.now() + 100)
    const batchOf = new Map<string, number>()
    await settle(poller, ledger, 5000, (context, batch) => batchOf.set(context, batch))
    t.is(ledger.results.get('past read')!.error?.code, 'ERR_DEADLINE')
    t.is(ledger.results.get('read due in 100 ms')!.error?.code, 'ERR_DEADLINE')
    t.true(batchOf.get('past read')! <= batchOf.get('read due in 100 ms')!, 'the past deadline came no later than one 100 ms ahead')
    t.deepEqual(ledger.problems, [])
  })

  test(`[${mode}] a panic inside native code is caught at the export as an Error (ERR_INTERNAL_PANIC); a watcher with requests in flight carries on`, async (t) => {
    const { w, poller, client, server } = await pair(t, mode)
    const native = loadAddon<{ _panic: (...args: unknown[]) => unknown }>().binding
    const ledger = new Ledger<string>()
    const into = new Uint8Array(5)
    w.readFull(ledger.add('in flight'), server, into)
    w.readTimeout(ledger.add('deadline'), client, null, Date.now() + 200)
    for (let i = 0; i < 5; i++) {
      const e = t.throws(() => native._panic(i), { instanceOf: Error }) as NodeJS.ErrnoException
      if (e?.code !== 'ERR_INTERNAL_PANIC' || !/deliberate panic/.test(e.message)) t.fail(`panic ${i}: ${e?.code} ${e?.message}`)
    }
    w.write(ledger.add('write'), client, Buffer.from('after'))
    await settle(poller, ledger)
    t.is(ledger.results.get('in flight')!.error, null)
    t.is(Buffer.from(into).toString(), 'after')
    t.is(ledger.results.get('deadline')!.error?.code, 'ERR_DEADLINE', 'the deadline still fired')
    t.deepEqual(ledger.problems, [])
  })
}
