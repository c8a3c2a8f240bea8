/**
 * Run at most `concurrency` jobs at once and hold at most `maxQueued` waiting.
 * A job aborted while it waits leaves the queue without ever running.
 */
export class QueueFullError extends Error {
  override name = 'QueueFullError'
}

interface Waiter {
  start: () => void
  signal?: AbortSignal
  onAbort?: () => void
}

export class JobQueue {
  private running = 0
  private readonly waiting: Waiter[] = []

  constructor(
    readonly concurrency: number,
    readonly maxQueued: number,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`--max-jobs must be a whole number of at least 1, got ${concurrency}`)
    if (!Number.isInteger(maxQueued) || maxQueued < 0) throw new RangeError(`maxQueued must be a whole number, got ${maxQueued}`)
  }

  get active(): number {
    return this.running
  }

  get queued(): number {
    return this.waiting.length
  }

  /** Slots free right now (for the heartbeat). */
  get free(): number {
    return Math.max(0, this.concurrency - this.running)
  }

  /** Whether `run` would accept one more job now. */
  get accepting(): boolean {
    return this.running < this.concurrency || this.waiting.length < this.maxQueued
  }

  /**
   * Run `task` when a slot is free. Throws QueueFullError at once when the
   * queue is full, and the signal's reason if it aborts while waiting.
   */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted()
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.maxQueued) {
        throw new QueueFullError(`busy: ${this.running} jobs running and ${this.waiting.length} queued; try again later`)
      }
      await new Promise<void>((resolve, reject) => {
        const w: Waiter = { start: resolve, signal }
        if (signal) {
          w.onAbort = () => {
            const i = this.waiting.indexOf(w)
            if (i >= 0) this.waiting.splice(i, 1)
            reject(signal.reason)
          }
          signal.addEventListener('abort', w.onAbort, { once: true })
        }
        this.waiting.push(w)
      })
    } else {
      this.running++
    }
    try {
      return await task()
    } finally {
      this.release()
    }
  }

  private release(): void {
    const next = this.waiting.shift()
    if (next) {
      // The slot passes straight to the next job: `running` stays the same.
      if (next.onAbort) next.signal?.removeEventListener('abort', next.onAbort)
      next.start()
    } else {
      this.running--
    }
  }
}
