// The seed's claim of amortized context switches for frequent tiny messages:
// connections each ping-pong 64-byte messages (one in flight per connection)
// for a fixed time. The server runs in a process of its own so its CPU time is
// measurable; the client is the same for every system (the Rust ceiling's
// chat-client, which checks every echo's content and order).
//   chat:      1000 busy connections.
//   idle-busy: 100 busy connections, measured alone and then with 10,000 idle
//              ones added (does the cost per message grow with idle connections?).
import { CEILING, ECHO_SYSTEMS, HOST, child, pace, sleep, withServer } from '../lib/common.mjs'

const SIZE = 64

/**
 * Starts a chat client with `conns` connections to `host` and waits until the
 * server holds `holds` connections in all (the client's connects complete at
 * the accept queue; a busy server accepts later). The client ignores the
 * `accepted` lines.
 */
export async function chatClient(server, conns, { host = HOST, holds = conns } = {}) {
  const client = child(CEILING, ['chat-client', '--host', host, '--port', String(server.port), '--conns', String(conns), '--size', String(SIZE)], { label: 'chat client' })
  try {
    await client.next(60_000)
    await pace(server, client, 0, (s) => s.conns === holds)
  } catch (e) {
    await client.kill()
    throw e
  }
  return client
}

/** Messages the server echoed in `ms`, per second and per server CPU-second. */
export async function window(server, ms) {
  const a = await server.ask('stats')
  await sleep(ms)
  const b = await server.ask('stats')
  const messages = (b.bytes - a.bytes) / SIZE
  if (!(messages > 0)) throw new Error('no messages in the window')
  return { messages, conns: b.conns, perSecond: messages / ((b.ns - a.ns) / 1e9), perCpuSecond: messages / ((b.cpuUs - a.cpuUs) / 1e6) }
}

/**
 * Stops the clients and checks that together they verified as many round
 * trips as the server echoed (less one in flight per connection).
 */
export async function stop(clients, conns, messages) {
  for (const client of clients) client.proc.stdin.end()
  let roundTrips = 0
  for (const client of clients) roundTrips += (await client.next()).roundTrips
  if (roundTrips < messages - conns) throw new Error(`the server echoed ${messages} messages in the windows but the clients checked only ${roundTrips}`)
}

export const chat = {
  id: 'chat',
  title: (mode) => `1000 connections ping-ponging ${SIZE}-byte messages, ${mode.chatMs / 1000} s after ${mode.chatWarmMs / 1000} s warm-up; server in its own process, one Rust client process for all`,
  systems: ECHO_SYSTEMS,
  needs: ['rust-engine'],
  metrics: [
    { metric: 'msgs/s', unit: 'msg/s', better: 'higher' },
    { metric: 'msgs/cpu-s', unit: 'msg/cpu-s', better: 'higher' },
  ],
  targets: [
    { metric: 'msgs/s', ratio: 1.5 },
    { metric: 'msgs/cpu-s', ratio: 2 },
  ],
  run: (system, mode) =>
    withServer(system, 'echo', async (server) => {
      const conns = 1000
      const client = await chatClient(server, conns)
      try {
        await sleep(mode.chatWarmMs)
        const w = await window(server, mode.chatMs)
        await stop([client], conns, w.messages)
        if (w.conns !== conns) throw new Error(`the server holds ${w.conns} connections, not ${conns}`)
        return { 'msgs/s': w.perSecond, 'msgs/cpu-s': w.perCpuSecond }
      } finally {
        await client.end()
      }
    }),
}

export const idleBusy = {
  id: 'idle-busy',
  title: (mode) => `100 connections ping-ponging ${SIZE} B for ${mode.chatMs / 1000} s, alone and then beside 10,000 idle connections (each with a read submitted); server in its own process`,
  systems: ECHO_SYSTEMS,
  needs: ['rust-engine'],
  metrics: [
    { metric: 'msgs/cpu-s alone', unit: 'msg/cpu-s', better: 'higher' },
    { metric: 'msgs/cpu-s with idle', unit: 'msg/cpu-s', better: 'higher' },
    { metric: 'cpu per msg, idle/alone', unit: 'x', better: 'lower' },
  ],
  run: (system, mode) =>
    withServer(system, 'echo', async (server) => {
      const busy = 100
      const idle = 10_000
      const client = await chatClient(server, busy)
      let holder = null
      try {
        await sleep(mode.chatWarmMs)
        const alone = await window(server, mode.chatMs)
        // The count before the client starts (see pace()).
        const base = (await server.ask('stats')).accepts
        holder = child(CEILING, ['hold', '--port', String(server.port), '--conns', String(idle)], { label: 'idle client' })
        await pace(server, holder, base, (s) => s.conns === busy + idle)
        await sleep(mode.chatWarmMs)
        const crowded = await window(server, mode.chatMs)
        await stop([client], busy, alone.messages + crowded.messages)
        return {
          'msgs/cpu-s alone': alone.perCpuSecond,
          'msgs/cpu-s with idle': crowded.perCpuSecond,
          'cpu per msg, idle/alone': alone.perCpuSecond / crowded.perCpuSecond,
        }
      } finally {
        await client.end()
        await holder?.end()
      }
    }),
}
