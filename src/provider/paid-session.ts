/**
 * The provider's ledger for one session: what has been paid and until when.
 * Pure bookkeeping; the service decides what to do with it.
 */
export interface PaidSessionTerms {
  id: string
  customer: string
  kind: number
  mode: 'session' | 'job'
  budget: number
  tickMs: number
  chunksPerTick: number
  graceMs: number
}

export class PaidSession {
  paid = 0
  /** ms since epoch up to which time is paid; 0 until the first tick */
  paidUntil = 0
  lastTickAt = 0
  chunksSent = 0
  ended = false
  readonly openedAt: number

  constructor(readonly terms: PaidSessionTerms, now = Date.now()) {
    this.openedAt = now
  }

  get id(): string {
    return this.terms.id
  }

  /** Room for another tick under the customer's own budget. */
  get canTakeTick(): boolean {
    return this.paid < this.terms.budget
  }

  /** Credit one verified 1-sat tick. Time is prepaid: it extends from now or from the end of paid time. */
  credit(now = Date.now()): void {
    this.paid += 1
    this.lastTickAt = now
    this.paidUntil = Math.max(now, this.paidUntil) + this.terms.tickMs
  }

  /** Nothing is served before the first verified tick; after paid time, only the grace. */
  isPaid(now = Date.now()): boolean {
    return this.paid > 0 && now <= this.paidUntil + this.terms.graceMs
  }

  /** Whether the session should end for lack of payment (no tick in time, including grace). */
  isLapsed(now = Date.now()): boolean {
    if (this.paid === 0) return now - this.openedAt > this.terms.graceMs
    return now > this.paidUntil + this.terms.graceMs
  }

  /** Job output chunks the customer has paid for. */
  get chunksPaid(): number {
    return this.paid * this.terms.chunksPerTick
  }

  get chunkBudget(): number {
    return this.terms.budget * this.terms.chunksPerTick
  }
}
