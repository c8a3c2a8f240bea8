import type { Job, Processor } from '../processors/types.js'
import { MAX_CHUNK_TEXT, type ControlMessage } from '../wire/protocol.js'
import type { PaidSession } from './paid-session.js'

class Stop extends Error {
  constructor(readonly status: 'budget' | 'cancelled' | 'error', message: string) {
    super(message)
  }
}

/**
 * Runs one P2P job and streams its output, never ahead of payment: in a job
 * session each sat buys `chunksPerTick` chunks and the runner pauses (sending
 * `due`) until the next tick; in a time session output flows while paid.
 */
export class JobRunner {
  sent = 0
  private readonly abort = new AbortController()
  private waiter: (() => void) | null = null
  private stopReason: Stop | null = null

  constructor(
    private readonly opts: {
      job: Job
      session: PaidSession
      processor: Processor
      send: (m: ControlMessage) => boolean
      graceMs: number
      timeoutMs: number
    },
  ) {}

  creditChanged(): void {
    const w = this.waiter
    this.waiter = null
    w?.()
  }

  cancel(reason: string): void {
    this.stopReason ??= new Stop('cancelled', reason)
    this.abort.abort()
    this.creditChanged()
  }

  private paidFor(n: number): boolean {
    const s = this.opts.session
    return s.terms.mode === 'job' ? n <= s.chunksPaid : s.isPaid()
  }

  /** Wait until chunk number `n` (1-based) is paid for, or stop. */
  private async gate(n: number): Promise<void> {
    const s = this.opts.session
    if (s.terms.mode === 'job' && n > s.chunkBudget) throw new Stop('budget', `the budget of ${s.terms.budget} sats is used up`)
    if (this.paidFor(n)) return
    this.opts.send({ type: 'due', job: this.opts.job.id, chunks: this.sent })
    const deadline = Date.now() + this.opts.graceMs
    while (!this.paidFor(n)) {
      if (this.stopReason) throw this.stopReason
      const left = deadline - Date.now()
      if (left <= 0) throw new Stop('budget', 'payment stopped; output paused and the job ended')
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiter = () => (clearTimeout(t), resolve())
      })
    }
  }

  private *pieces(chunk: string | Uint8Array): Generator<{ data: string; encoding?: 'base64' }> {
    if (typeof chunk === 'string') {
      for (let i = 0; i < chunk.length; i += MAX_CHUNK_TEXT / 4) yield { data: chunk.slice(i, i + MAX_CHUNK_TEXT / 4) }
    } else {
      const step = (MAX_CHUNK_TEXT / 4) * 3
      for (let i = 0; i < chunk.byteLength; i += step) yield { data: Buffer.from(chunk.subarray(i, i + step)).toString('base64'), encoding: 'base64' }
    }
  }

  async run(): Promise<void> {
    const { job, processor, send } = this.opts
    const timer = setTimeout(() => {
      this.stopReason ??= new Stop('error', `job exceeded its ${Math.round(this.opts.timeoutMs / 1000)} s time limit`)
      this.abort.abort()
      this.creditChanged()
    }, this.opts.timeoutMs)
    try {
      await this.gate(1)
      for await (const chunk of processor.run(job, this.abort.signal)) {
        if (this.stopReason) throw this.stopReason
        for (const piece of this.pieces(chunk)) {
          await this.gate(this.sent + 1)
          if (this.stopReason) throw this.stopReason
          send({ type: 'chunk', job: job.id, seq: this.sent, ...piece })
          this.sent += 1
          this.opts.session.chunksSent += 1
        }
      }
      if (this.stopReason) throw this.stopReason
      send({ type: 'done', job: job.id, status: 'success', chunks: this.sent })
    } catch (err) {
      const stop = err instanceof Stop ? err : this.stopReason ?? new Stop('error', (err as Error).message)
      this.abort.abort()
      send({ type: 'done', job: job.id, status: stop.status, chunks: this.sent, error: stop.message })
    } finally {
      clearTimeout(timer)
    }
  }
}
