// gaio's Test8k (8192 connections each send 1 KiB once; the server echoes;
// timed from the first connect until every byte is back, and checked) and
// Test4kTiny (4096 connections x 16 bytes), each twice: in-process (client and
// server in one process of the system, as gaio's own tests run them) and
// server-only (the server in its own process, one Rust client for every
// system, server CPU-seconds measured). Each run has a cold and a warm pass.
import { CEILING, ECHO_SYSTEMS, child, drained, measure, pace, withServer } from '../lib/common.mjs'

const PASSES = ['cold', 'warm']

/** The in-process variant: a fresh process runs a cold pass, then a warm one. */
function inProcess(id, conns, size, targets) {
  return {
    id,
    title: () => `${conns} connections x ${size} B echoed once, first connect to last byte back; IN-PROCESS: client and server in one process of the system`,
    systems: ECHO_SYSTEMS,
    metrics: PASSES.map((pass) => ({ metric: `${pass} s`, unit: 's', better: 'lower' })),
    targets,
    async run(system) {
      const { cold, warm } = await measure(system, 'burst', { conns, size })
      return { 'cold s': cold, 'warm s': warm }
    },
  }
}

/** The server-only variant: the ceiling's burst-client in its own process, paced by the server's accepts. */
function serverOnly(id, conns, size) {
  return {
    id,
    title: () => `${conns} connections x ${size} B echoed once; SERVER-ONLY: server in its own process, one Rust client for all; wall seconds and server CPU-seconds`,
    systems: ECHO_SYSTEMS,
    needs: ['rust-engine'],
    metrics: PASSES.flatMap((pass) => [
      { metric: `${pass} s`, unit: 's', better: 'lower' },
      { metric: `${pass} server cpu-s`, unit: 'cpu-s', better: 'lower' },
    ]),
    run: (system) =>
      withServer(system, 'echo', async (server) => {
        // Counted before each pass starts: the client begins its first pass as soon as it runs, and a
        // count taken after the server accepted its first connects would pace it to a standstill.
        let a = await server.ask('stats')
        const client = child(CEILING, ['burst-client', '--port', String(server.port), '--conns', String(conns), '--size', String(size), '--passes', '2'], { label: 'burst client' })
        try {
          const out = {}
          for (const pass of PASSES) {
            let result = null
            client.next(120_000).then((r) => (result = r), (e) => (result = e))
            await pace(server, client, a.accepts, () => result !== null)
            if (result instanceof Error) throw result
            const b = await server.ask('stats')
            if (b.bytes - a.bytes !== conns * size) throw new Error(`the server received ${b.bytes - a.bytes} bytes, not ${conns * size}`)
            out[`${pass} s`] = result.seconds
            out[`${pass} server cpu-s`] = (b.cpuUs - a.cpuUs) / 1e6
            await drained(server)
            a = await server.ask('stats')
            if (pass === 'cold') client.proc.stdin.write('next\n')
          }
          return out
        } finally {
          await client.end()
        }
      }),
  }
}

export const c8k = inProcess('c8k', 8192, 1024, [{ metric: 'warm s', ratio: 0.5 }])
export const tiny = inProcess('tiny', 4096, 16, [{ metric: 'warm s', ratio: 0.6 }])
export const c8kServer = serverOnly('c8k-server', 8192, 1024)
export const tinyServer = serverOnly('tiny-server', 4096, 16)
