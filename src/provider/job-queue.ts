/**
 * Run at most `concurrency` jobs at once and hold at most `maxQueued` more.
 * A job aborted while it waits leaves the queue without ever running.
 *
 * A place can be reserved ahead (`reserve`), e.g. before a job is paid for:
 * the reservation counts as held from then on, so a job that was promised a
 * place is never turned away as busy when it finally comes to run.
 */
export class QueueFullError extends Error {
  override name = 'QueueFullError'
}

interface Waiter {
  start: () => void
  signal?: AbortSignal
  onAbort?: () => void
}

/** A place in the queue, held until the job runs (`run`) or gives it back (`release`). */
export interface QueueSlot {
  /** Give the place back unused; does nothing once the job ran or after a first release. */
  release(): void
}

interface SlotState extends QueueSlot {
  live: boolean
}

export class JobQueue {
  private running = 0
  private reserved = 0
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

  /** Places promised to jobs that have not come to run yet. */
  get reservedSlots(): number {
    return this.reserved
  }

  /** Slots free right now (for the heartbeat). */
  get free(): number {
    return Math.max(0, this.concurrency - this.running)
  }

  /** Whether one more job (reserved or not) fits now. */
  get accepting(): boolean {
    return this.running + this.waiting.length + this.reserved < this.concurrency + this.maxQueued
  }

  /** Promise a place to a job that will run later; undefined when the queue is full. */
  reserve(): QueueSlot | undefined {
    if (!this.accepting) return undefined
    this.reserved++
    const slot: SlotState = {
      live: true,
      release: () => {
        if (!slot.live) return
        slot.live = false
        this.reserved--
      },
    }
    return slot
  }

  /**
   * Run `task` when a slot is free. Without a reserved `slot` it throws
   * QueueFullError at once when the queue is full; with one it never does.
   * Throws the signal's reason if it aborts while waiting.
   */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal, slot?: QueueSlot): Promise<T> {
    const held = slot as SlotState | undefined
    try {
      signal?.throwIfAborted()
    } catch (err) {
      held?.release()
      throw err
    }
    // A live reservation is already counted among the held jobs: it turns into a running or queued one.
    if (held?.live) held.release()
    else if (!this.accepting) throw new QueueFullError(`busy: ${this.running} jobs running and ${this.waiting.length} queued; try again later`)
    if (this.running >= this.concurrency) {
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
