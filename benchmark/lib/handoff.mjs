// How fast this machine hands control from one thread to a sleeping other and
// back: two threads taking turns through a futex (Atomics.wait / notify), no
// sockets, no gaio. Thread mode wakes the JS thread from the poller thread for
// every message (through an eventfd; either way a sleeping thread is woken),
// so on a machine where that is slow its in-process ping-pong is slow
// too, and so is rust-engine's; run.mjs prints the rate with every run so that a
// table can be read against its day.

import { Worker } from 'node:worker_threads'

const WORKER = `
const { workerData: turn } = require('node:worker_threads')
for (;;) {
  Atomics.wait(turn, 0, 0) // asleep until it is this thread's turn
  if (turn[1] === 1) break
  Atomics.store(turn, 0, 0)
  Atomics.notify(turn, 0)
}
`

/** Round trips per second between two threads that sleep while the other runs. */
export async function handoffsPerSecond(ms = 500) {
  // turn[0]: 1 while the worker's turn, 0 while this thread's; turn[1]: 1 to stop.
  const turn = new Int32Array(new SharedArrayBuffer(8))
  const worker = new Worker(WORKER, { eval: true, workerData: turn })
  await new Promise((resolve, reject) => worker.once('online', resolve).once('error', reject))
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  let trips = 0
  const start = performance.now()
  let elapsed = 0
  while (elapsed < ms) {
    for (let i = 0; i < 64; i++, trips++) {
      Atomics.store(turn, 0, 1)
      Atomics.notify(turn, 0)
      if (Atomics.wait(turn, 0, 1, 5000) === 'timed-out') throw new Error('handoff: the worker stopped answering')
    }
    elapsed = performance.now() - start
  }
  turn[1] = 1
  Atomics.store(turn, 0, 1)
  Atomics.notify(turn, 0)
  await exited
  return (trips / elapsed) * 1000
}
