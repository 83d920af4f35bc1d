// Leaks and long runs: a million echo round trips over 1,000 connections per
// driving mode (each one a write and its reads on the client, a read and a
// write on the server), every byte checked, with the heap and resident memory
// sampled after each tenth. After the warm-up (the first fifth of the run)
// neither may grow by more than HEAP_BOUND / RSS_BOUND; after close() the
// descriptor count is back to its baseline.
//
// Measured on 2 cores: about 9 s per mode for the million (110,000 round
// trips/s), heap within 1 MiB and RSS within 3 MiB of the warm-up sample, so
// `npm test` runs the full million. `npm run soak` runs ten times as many.
// GAIO_SOAK_OPS, GAIO_SOAK_CONNS and GAIO_SOAK_MODES (comma-separated) override.
import test from 'ava'
import { Conn, OpType, Watcher } from '../index'
import { collectGarbage, pattern, scaled, startEchoServer } from './helpers'
import { fdsSettle, fdSummary, openFds, Poller } from './reliability'

const OPS = Number(process.env.GAIO_SOAK_OPS ?? 1_000_000)
const CONNS = Number(process.env.GAIO_SOAK_CONNS ?? 1000)
const MODES = (process.env.GAIO_SOAK_MODES ?? 'thread,inline').split(',') as ('thread' | 'inline')[]
const MiB = 1 << 20
/** Growth allowed between the end of the warm-up and the end of the run. */
const HEAP_BOUND = 8 * MiB
const RSS_BOUND = 32 * MiB

const SIZES = [1, 16, 100, 512, 1400, 4096]
const PATTERNS = Array.from({ length: 64 }, (_, k) => pattern(k, 4096))

interface Peer {
  i: number
  conn: Conn | null
  round: number
  tx: Buffer
  got: number
  own: Uint8Array
  ownRead: boolean
}

interface Sample {
  ops: number
  heap: number
  rss: number
  external: number
}

for (const mode of MODES) {
  test.serial(`[${mode}] soak: ${OPS.toLocaleString('en')} echo round trips over ${CONNS} connections; every byte checked, heap and RSS flat after warm-up, descriptors back to baseline`, async (t) => {
    t.timeout(scaled(Math.max(120_000, OPS / 5)))
    await collectGarbage()
    const baseFds = openFds()
    const server = startEchoServer({ mode }, { accepts: 256 })
    const w = new Watcher({ mode })
    t.teardown(() => server.stop())
    t.teardown(() => w.close())
    const p = new Poller(w)
    const peers: Peer[] = []
    const problems: string[] = []
    let connecting = 0
    let started = 0 // round trips started
    let completed = 0
    const samples: Sample[] = []
    let nextSample = OPS / 5
    const begin = Date.now()

    const connectMore = () => {
      for (; connecting < 256 && peers.length < CONNS; connecting++) {
        const peer: Peer = { i: peers.length, conn: null, round: 0, tx: PATTERNS[0], got: 0, own: new Uint8Array(4096), ownRead: false }
        peers.push(peer)
        w.connect(peer, { host: '127.0.0.1', port: server.port })
      }
    }
    const send = (peer: Peer) => {
      started++
      const size = SIZES[(peer.i + peer.round) % SIZES.length]
      peer.tx = PATTERNS[(peer.i * 7 + peer.round) % PATTERNS.length].subarray(0, size)
      peer.got = 0
      w.write(peer, peer.conn!, peer.tx)
    }
    const read = (peer: Peer) => {
      // Every fourth round reads into a buffer of its own, the rest use the swap buffer.
      peer.ownRead = peer.round % 4 === 3
      w.read(peer, peer.conn!, peer.ownRead ? peer.own : null)
    }

    connectMore()
    while (completed < OPS && problems.length === 0) {
      const batch = await p.next(10_000)
      if (batch === null) {
        problems.push(`nothing for 10 s at ${completed} round trips`)
        break
      }
      for (const res of batch) {
        const peer = res.context as Peer
        if (res.error) {
          problems.push(`${OpType[res.operation]} on connection ${peer.i}: ${res.error.code}`)
          continue
        }
        switch (res.operation) {
          case OpType.Connect:
            connecting--
            peer.conn = res.conn as Conn
            connectMore()
            if (started < OPS) send(peer)
            break
          case OpType.Write:
            read(peer)
            break
          case OpType.Read: {
            const bytes = res.buffer!.subarray(0, res.size)
            if (peer.ownRead !== !res.isSwapBuffer) problems.push(`connection ${peer.i}: wrong kind of buffer`)
            if (peer.got + res.size > peer.tx.length || !Buffer.from(bytes.buffer, bytes.byteOffset, res.size).equals(peer.tx.subarray(peer.got, peer.got + res.size))) {
              problems.push(`connection ${peer.i} round ${peer.round}: echoed bytes differ`)
              break
            }
            peer.got += res.size
            if (peer.got < peer.tx.length) {
              read(peer)
              break
            }
            completed++
            peer.round++
            if (started < OPS) send(peer)
            break
          }
        }
      }
      if (completed >= nextSample || completed >= OPS) {
        nextSample += OPS / 10
        await collectGarbage(2)
        const m = process.memoryUsage()
        samples.push({ ops: completed, heap: m.heapUsed, rss: m.rss, external: m.external })
      }
    }
    const elapsed = Date.now() - begin
    t.deepEqual(problems.slice(0, 10), [])
    t.is(completed, OPS)
    t.is(server.stats.accepted, CONNS)

    const mb = (n: number) => `${(n / MiB).toFixed(1)}`
    t.log(`${completed.toLocaleString('en')} round trips in ${(elapsed / 1000).toFixed(1)} s (${Math.round(completed / (elapsed / 1000)).toLocaleString('en')}/s)`)
    t.log(`samples (ops: heap/rss/external MiB): ${samples.map((s) => `${s.ops}: ${mb(s.heap)}/${mb(s.rss)}/${mb(s.external)}`).join(', ')}`)
    const warm = samples[0]
    const last = samples[samples.length - 1]
    const heapPeak = Math.max(...samples.map((s) => s.heap))
    const rssPeak = Math.max(...samples.map((s) => s.rss))
    t.true(samples.length >= 5, `${samples.length} samples`)
    t.true(heapPeak - warm.heap <= HEAP_BOUND, `heap grew ${mb(heapPeak - warm.heap)} MiB after the warm-up (bound ${mb(HEAP_BOUND)})`)
    t.true(rssPeak - warm.rss <= RSS_BOUND, `RSS grew ${mb(rssPeak - warm.rss)} MiB after the warm-up (bound ${mb(RSS_BOUND)})`)
    t.log(`after warm-up: heap ${mb(last.heap - warm.heap)} MiB (peak +${mb(heapPeak - warm.heap)}), RSS ${mb(last.rss - warm.rss)} MiB (peak +${mb(rssPeak - warm.rss)})`)

    for (const peer of peers) w.free(peer.conn!)
    w.close()
    await server.stop()
    const fds = await fdsSettle(baseFds, 5000)
    t.true(fds <= baseFds, `${fds} descriptors open after close, ${baseFds} before (${fdSummary()})`)
  })
}
