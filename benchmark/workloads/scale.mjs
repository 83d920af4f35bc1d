// Scaling across cores: chat (64-byte ping-pong) through N servers on one port
// (benchmark/scale-server.mjs says how each system gets N), with 500 x N
// connections from N Rust client processes, client i talking to 127.0.0.(i+1).
// The kernel spreads connections over reusePort listeners by a hash of their
// addresses and ports (gaio); a cluster's primary hands them out in turn
// (node:net). Reported per N: msgs/s and msgs per CPU-second of the server
// process(es), and msgs/s at N against N = 1 of the same system.
import { join } from 'node:path'
import { ROOT, child, listening, sleep } from '../lib/common.mjs'
import { chatClient, stop, window } from './chat.mjs'

const PER_SERVER = 500

const startScaleServer = (system, n) =>
  listening(child(process.execPath, [join(ROOT, 'benchmark', 'scale-server.mjs'), system, String(n)], { label: `${system} x${n} server` }))

/** One N: msgs/s and msgs/cpu-s of the servers, with N client processes. */
async function measureAt(system, n, mode) {
  const server = await startScaleServer(system, n)
  const clients = []
  try {
    for (let i = 0; i < n; i++) clients.push(await chatClient(server, PER_SERVER, { host: `127.0.0.${i + 1}`, holds: PER_SERVER * (i + 1) }))
    await sleep(mode.chatWarmMs)
    const w = await window(server, mode.chatMs)
    await stop(clients, PER_SERVER * n, w.messages)
    return w
  } finally {
    for (const c of clients) await c.end()
    await server.end()
  }
}

export const scale = {
  id: 'scale',
  title: (mode) =>
    `chat through N = ${mode.scale.join(', ')} servers on one port (gaio: N thread-mode watchers on one JS thread; gaio-inline: N worker_threads; node:net: a cluster of N), ${PER_SERVER} x N connections from N Rust client processes, ${mode.chatMs / 1000} s after ${mode.chatWarmMs / 1000} s warm-up`,
  systems: ['gaio', 'gaio-inline', 'node-net', 'node-net-fast'],
  needs: ['rust-engine'],
  metrics: (mode) => [
    ...mode.scale.flatMap((n) => [
      { metric: `msgs/s N=${n}`, unit: 'msg/s', better: 'higher' },
      { metric: `msgs/cpu-s N=${n}`, unit: 'msg/cpu-s', better: 'higher' },
    ]),
    ...mode.scale.slice(1).map((n) => ({ metric: `msgs/s N=${n} / N=1`, unit: 'x', better: 'higher' })),
  ],
  // Eight servers should carry six times one's load (only where N = 8 runs: a machine with the
  // cores); judged for gaio-inline, the one with a JS thread per server (gaio's N watchers share one).
  targets: [{ metric: 'msgs/s N=8 / N=1', at_least: 6, systems: ['gaio-inline'] }],
  run: async (system, mode) => {
    const result = {}
    for (const n of mode.scale) {
      const w = await measureAt(system, n, mode)
      result[`msgs/s N=${n}`] = w.perSecond
      result[`msgs/cpu-s N=${n}`] = w.perCpuSecond
      if (n > 1) result[`msgs/s N=${n} / N=1`] = w.perSecond / result['msgs/s N=1']
    }
    return result
  },
}
