// Helpers for the reliability specs (faults, model, soak, boundary): counting
// descriptors, and checking that every request completes exactly once.
import { readdirSync, readlinkSync } from 'node:fs'
import { GaioError, type OpResult, type Watcher } from '../index'
import { collectGarbage, sleep } from './helpers'

/** How many descriptors this process has open. */
export function openFds(): number {
  return readdirSync('/proc/self/fd').length
}

/** What the open descriptors are (socket:[…], anon_inode:[eventpoll], …), counted, for messages. */
export function fdSummary(): string {
  const kinds = new Map<string, number>()
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`).replace(/\[\d+\]$/, '')
    } catch {
      continue // closed meanwhile (the directory's own descriptor, say)
    }
    kinds.set(target, (kinds.get(target) ?? 0) + 1)
  }
  return [...kinds].map(([k, n]) => `${n}× ${k}`).join(', ')
}

/**
 * Collects garbage and waits until at most `target` descriptors are open, or
 * `ms` pass (Node closes a destroyed net.Socket's descriptor a turn later; a
 * closed watcher's last descriptor goes when the Watcher object is collected).
 * Resolves with the last count.
 */
export async function fdsSettle(target: number, ms = 5000): Promise<number> {
  const until = Date.now() + ms
  for (;;) {
    await collectGarbage(2)
    const n = openFds()
    if (n <= target || Date.now() > until) return n
    await sleep(25)
  }
}

/**
 * A descriptor baseline taken after Node has opened what it opens lazily:
 * `warmUp` runs first (say, one watcher made, used and closed).
 */
export async function fdBaseline(warmUp?: () => Promise<void>): Promise<number> {
  if (warmUp) await warmUp()
  await collectGarbage(3)
  return openFds()
}

/**
 * Every request's context is registered here; each result must name one that
 * is registered and not yet completed. `problems` lists what went wrong.
 */
export class Ledger<C = unknown> {
  private readonly open = new Set<C>()
  readonly results = new Map<C, OpResult>()
  readonly problems: string[] = []
  submitted = 0

  /** Registers a context (use a fresh object per request). */
  add(context: C): C {
    this.open.add(context)
    this.submitted++
    return context
  }

  /** Records a result; false if it was unexpected (unknown or already completed). */
  settle(res: OpResult): boolean {
    const context = res.context as C
    if (this.results.has(context)) {
      this.problems.push(`completed twice: ${describe(context)} (${res.error?.code ?? 'ok'} after ${this.results.get(context)!.error?.code ?? 'ok'})`)
      return false
    }
    if (!this.open.delete(context)) {
      this.problems.push(`a result for a request never made: ${describe(context)}`)
      return false
    }
    this.results.set(context, res)
    return true
  }

  /** Requests not yet completed. */
  get outstanding(): number {
    return this.open.size
  }

  pending(): C[] {
    return [...this.open]
  }
}

function describe(context: unknown): string {
  try {
    return typeof context === 'object' ? JSON.stringify(context)?.slice(0, 120) ?? String(context) : String(context)
  } catch {
    return String(context)
  }
}

/**
 * After close(): takes batches until waitIO() rejects with ERR_WATCHER_CLOSED
 * (which it must, within `ms`), handing each result to `onResult`.
 */
export async function drainClosed(p: Poller, onResult: (res: OpResult) => void, ms = 10_000): Promise<void> {
  const until = Date.now() + ms
  for (;;) {
    const left = until - Date.now()
    let batch: OpResult[] | null
    try {
      batch = left > 0 ? await p.next(left) : null
    } catch (e) {
      if (e instanceof GaioError && e.code === 'ERR_WATCHER_CLOSED') return
      throw e
    }
    if (batch === null) throw new Error(`waitIO() did not reject within ${ms} ms of close()`)
    batch.forEach(onResult)
  }
}

/**
 * Waits for results with a time limit, without ever having two waitIO() calls
 * pending: a wait that times out is kept and resumed by the next call.
 */
export class Poller {
  private wait: Promise<OpResult[]> | null = null
  private failure: unknown = null
  constructor(private readonly w: Watcher) {}

  /** The next batch, or null if none came within `ms` (ERR_WATCHER_CLOSED rejects). */
  async next(ms: number): Promise<OpResult[] | null> {
    if (this.failure) {
      const failure = this.failure
      this.failure = null
      this.wait = null
      // A wait that close() ended says nothing of requests made since, on the closed
      // watcher: those complete with ERR_WATCHER_CLOSED, and a new waitIO() hands them over.
      if (!(failure instanceof GaioError && failure.code === 'ERR_WATCHER_CLOSED')) throw failure
    }
    if (!this.wait) {
      const wait = (this.wait = this.w.waitIO())
      // Observed at once, so a rejection while nobody awaits it is not "unhandled".
      wait.catch((e) => {
        if (this.wait === wait) this.failure = e
      })
    }
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)))
    try {
      const batch = await Promise.race([this.wait, timeout])
      if (batch !== null) this.wait = null
      return batch
    } catch (e) {
      this.wait = null
      this.failure = null
      throw e
    } finally {
      clearTimeout(timer)
    }
  }

  /** Whether a waitIO() is pending or its batch not yet taken. */
  get waiting(): boolean {
    return this.wait !== null
  }
}

/** A small, fast, seedable PRNG (mulberry32). */
export function rng(seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    /** [0, 1) */
    next,
    /** An integer in [lo, hi]. */
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p: number) => next() < p,
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)],
    /** Picks a key with probability proportional to its weight. */
    weighted: <K extends string>(weights: Record<K, number>): K => {
      const entries = Object.entries(weights) as [K, number][]
      let x = next() * entries.reduce((s, [, w]) => s + w, 0)
      for (const [k, w] of entries) {
        if ((x -= w) < 0) return k
      }
      return entries[entries.length - 1][0]
    },
  }
}
export type Rng = ReturnType<typeof rng>

/** Detaches a view's ArrayBuffer (as transferring it to a worker would). */
export function detach(view: ArrayBufferView): void {
  structuredClone(view.buffer, { transfer: [view.buffer as ArrayBuffer] })
}
