// A connection is itself and nothing else: its requests reach its own
// socket, whatever failed, was dropped or was collected before it, and one
// bad request of a batch never takes the others down with it.
import test from 'ava'
import { type Conn, OpType, Watcher, type OpResult } from '../index'
import { collectGarbage, collectUntil, netServer, receiveBytes, REFUSED_PORT, within } from './helpers'

const modes = ['thread', 'inline'] as const

/** Connects and lets the result go: only the collector can see the Conn afterwards. */
async function failedConnectForgotten(w: Watcher, port: number): Promise<string | undefined> {
  w.connect('refused', { host: '127.0.0.1', port })
  const [result] = await collectUntil(w, (rs) => rs.length > 0, 5000, 'refused connect')
  return result.error?.code
}

for (const mode of modes) {
  test(`[${mode}] a failed connect, dropped and collected, never makes two later connections share an identity`, async (t) => {
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    t.is(await failedConnectForgotten(w, REFUSED_PORT), 'ECONNREFUSED')
    await collectGarbage(5)

    // Each peer echoes what it gets: a connection's read must return its own bytes.
    const peers = await netServer((socket) => socket.pipe(socket))
    t.teardown(() => peers.close())
    for (const name of ['a', 'b']) w.connect(name, { host: '127.0.0.1', port: peers.port })
    const connected = await collectUntil(w, (rs) => rs.length >= 2, 5000, 'two connects')
    const conns = new Map(connected.map((r) => [r.context as string, r.conn as Conn]))
    t.deepEqual(connected.map((r) => r.error), [null, null])
    t.not(conns.get('a'), conns.get('b'))
    for (const [name, conn] of conns) {
      w.read(`read ${name}`, conn)
      w.write(`write ${name}`, conn, Buffer.from(`bytes of ${name}`))
    }
    const results = await collectUntil(w, (rs) => rs.filter((r) => r.operation === OpType.Read).length >= 2, 5000, 'echoes')
    for (const name of ['a', 'b']) {
      const read = results.find((r) => r.context === `read ${name}`)!
      t.is(read.error, null, `read ${name}`)
      t.is(Buffer.from(read.buffer!).toString(), `bytes of ${name}`, `${name} reads its own bytes`)
      t.is(read.conn, conns.get(name)!)
    }
  })

  test(`[${mode}] one unusable address in a batch fails on its own; the rest of the batch completes`, async (t) => {
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    const server = await netServer((socket) => socket.pipe(socket))
    t.teardown(() => server.close())
    // All in one tick, so all in one batch: the scoped address names no interface here.
    w.connect('good before', { host: '127.0.0.1', port: server.port })
    w.connect('no such interface', { host: 'fe80::1%gaio-nonexistent0', port: server.port })
    w.connect('good after', { host: '127.0.0.1', port: server.port })
    const results = await collectUntil(w, (rs) => rs.length >= 3, 5000, 'the batch')
    const byContext = new Map<unknown, OpResult>(results.map((r) => [r.context, r]))
    t.is(byContext.get('no such interface')!.error?.code, 'ENODEV')
    t.is(byContext.get('good before')!.error, null)
    t.is(byContext.get('good after')!.error, null)
    // And the good ones work.
    const conn = byContext.get('good after')!.conn as Conn
    w.write('w', conn, Buffer.from('still fine'))
    w.read('r', conn)
    const echoed = await collectUntil(w, (rs) => rs.some((r) => r.context === 'r'), 5000, 'echo')
    t.is(Buffer.from(echoed.find((r) => r.context === 'r')!.buffer!).toString(), 'still fine')
  })

  test(`[${mode}] IPv6 scope ids: an interface name or index after '%' is accepted`, async (t) => {
    const w = new Watcher({ mode })
    t.teardown(() => w.close())
    let listener
    try {
      listener = w.listen({ host: '::1', port: 0 })
    } catch (e) {
      // No IPv6 loopback on this machine: nothing to connect to.
      t.is((e as NodeJS.ErrnoException).code, 'EADDRNOTAVAIL')
      return
    }
    for (let i = 0; i < 2; i++) w.accept(`accept ${i}`, listener)
    w.connect('by name', { host: '::1%lo', port: listener.port })
    w.connect('by index', { host: '::1%1', port: listener.port })
    const results = await collectUntil(w, (rs) => rs.length >= 4, 5000, 'scoped connects')
    t.deepEqual(results.map((r) => r.error), [null, null, null, null])
  })
}

test('a peer of a reused slot hears nothing meant for its predecessor', async (t) => {
  // The same check from the peers' side, with many failed connects collected between.
  const w = new Watcher()
  t.teardown(() => w.close())
  for (let i = 0; i < 20; i++) t.is(await failedConnectForgotten(w, REFUSED_PORT), 'ECONNREFUSED')
  await collectGarbage(5)
  const server = await netServer(() => {})
  t.teardown(() => server.close())
  const names = ['first', 'second', 'third']
  for (const name of names) w.connect(name, { host: '127.0.0.1', port: server.port })
  const connected = await collectUntil(w, (rs) => rs.length >= names.length, 5000, 'connects')
  await within(5000, 'accepted', (async () => { while (server.sockets.length < names.length) await new Promise((r) => setTimeout(r, 10)) })())
  const received = server.sockets.map((s) => receiveBytes(s, 16))
  for (const r of connected) w.write(null, r.conn as Conn, Buffer.from(String(r.context).padEnd(16, '.')))
  const got = (await within(5000, 'peers receive', Promise.all(received))).map((b) => b.toString().replace(/\.+$/, ''))
  t.deepEqual([...got].sort(), [...names].sort(), 'each peer received exactly one connection’s bytes')
})
