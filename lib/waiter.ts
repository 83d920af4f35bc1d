// The one waitIO() a watcher may have in progress: its promise, the signal
// that may abort it, and what keeps the watcher alive while it waits.

/**
 * Watchers with a waitIO() in progress: like a goroutine blocked in WaitIO,
 * waiting keeps the watcher alive even if nothing else refers to it.
 */
const waiting = new Set<object>()

export function abortError(signal: AbortSignal): Error {
  const error = new Error('The operation was aborted', { cause: signal.reason }) as Error & { code: string }
  error.name = 'AbortError'
  error.code = 'ABORT_ERR'
  return error
}

export class PendingWait<T> {
  private settle: { resolve: (value: T) => void; reject: (e: Error) => void } | null = null

  /** `holder`: what is kept alive while a wait is in progress. */
  constructor(private readonly holder: object) {}

  get active(): boolean {
    return this.settle !== null
  }

  /** Waits for resolve() or reject(); an abort of `signal` rejects with an AbortError and ends the wait. */
  begin(signal: AbortSignal | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (!signal) {
        this.settle = { resolve, reject }
      } else {
        const onAbort = () => {
          if (this.settle === settle) this.end()!.reject(abortError(signal))
        }
        const settle = {
          resolve: (value: T) => (signal.removeEventListener('abort', onAbort), resolve(value)),
          reject: (e: Error) => (signal.removeEventListener('abort', onAbort), reject(e)),
        }
        this.settle = settle
        signal.addEventListener('abort', onAbort, { once: true })
      }
      waiting.add(this.holder)
    })
  }

  resolve(value: T): void {
    this.end()?.resolve(value)
  }

  reject(error: Error): void {
    this.end()?.reject(error)
  }

  private end(): { resolve: (value: T) => void; reject: (e: Error) => void } | null {
    const settle = this.settle
    this.settle = null
    waiting.delete(this.holder)
    return settle
  }
}
