import { encryptFor } from '../nostr/encryption.js'
import { refundNote, type RefundTag } from '../nostr/nip90.js'
import type { RefundEntry, RefundLedger } from './refund-ledger.js'

/**
 * Gives a paid relay job's money back when the job ends without a result
 * (processor error, output too large, timeout, cancellation, provider stop or
 * crash). The amount received is sent back as a Cashu token from the
 * provider's wallet, encrypted to the customer, in the job's closing `error`
 * feedback (`["refund", msats, ciphertext]`, see nip90.ts and docs/nip90.md).
 *
 * Every step is written to the ledger (refund-ledger.ts) before the next one,
 * so a crash never loses what is owed and a restart never pays it twice.
 * What cannot be refunded now (the wallet cannot make a token) stays `owed`
 * and is retried by `retry()`, which the service runs at start and on a timer.
 */
export interface RefundWallet {
  /** a token worth exactly `amount` sats, recorded as sent in the wallet before it resolves */
  send(amount: number, opts?: { memo?: string }): Promise<string>
}

export interface RefundsOptions {
  ledger: RefundLedger
  /** absent: obligations are recorded and logged, but no token can be made */
  wallet: RefundWallet | undefined
  /** the provider's Nostr secret key, to encrypt tokens to customers */
  secretKey: Uint8Array
  log: (line: string) => void
  onRefunded?: (id: string, sats: number) => void
  onOwed?: (id: string, sats: number, reason: string) => void
}

/** The job a payment is for, as the ledger keeps it: whom to pay back, how to encrypt to them, where they read replies. */
export type RefundJob = Pick<RefundEntry, 'id' | 'customer' | 'scheme' | 'relays'>

/** What a failed job's closing `error` carries about its payment. */
export interface RefundOutcome {
  /** the tag to publish; absent when no token could be made */
  tag?: RefundTag
  /** appended to the error reason, for clients that do not read the tag */
  note: string
}

/** Publishes a closing `error` with a refund for a job no longer in hand (after a restart); true when a relay took it. */
export type PublishRefund = (entry: RefundEntry, tag: RefundTag, note: string) => Promise<boolean>

/** unpaid invoices asked about per retry pass (one mint request each) */
const LATE_INVOICE_CHECKS_PER_PASS = 50

export class Refunds {
  /** ids being refunded right now: the job's own ending and the retry loop never work on one together */
  private readonly busy = new Set<string>()
  /** where the next pass over unpaid invoices starts */
  private lateCursor = 0

  constructor(private readonly o: RefundsOptions) {}

  get ledgerPath(): string {
    return this.o.ledger.path
  }

  /** An invoice was made for the job: recorded before its bolt11 goes out, so a payment that comes after the job is over is still found. */
  async invoiced(job: RefundJob, sats: number, quote: string, expiresAt: number | undefined): Promise<void> {
    try {
      await this.o.ledger.invoiced({ ...job, sats, quote, ...(expiresAt !== undefined ? { expiresAt } : {}) })
    } catch (err) {
      this.o.log(`could not record the invoice for job ${job.id} in ${this.o.ledger.path}: ${(err as Error).message}; a payment after the job ends would not be refunded automatically`)
    }
  }

  /**
   * Invoices of jobs that are over (`active` says which are not): one paid
   * since becomes owed, and the next retry refunds it; one expired unpaid is
   * forgotten. `check` asks the mint (and mints what was paid).
   */
  async lateInvoices(check: (quote: string, expiresAt: number | undefined) => Promise<'paid' | 'unpaid' | 'expired'>, active: (id: string) => boolean): Promise<void> {
    // A bounded number of mint requests per pass, taking turns over all of them.
    const all = this.o.ledger.inState('invoiced')
    const start = all.length > 0 ? this.lateCursor % all.length : 0
    const turn = [...all.slice(start), ...all.slice(0, start)].slice(0, LATE_INVOICE_CHECKS_PER_PASS)
    this.lateCursor = start + turn.length
    for (const e of turn) {
      if (active(e.id) || this.busy.has(e.id) || !e.quote) continue
      const state = await check(e.quote, e.expiresAt).catch(() => 'unpaid' as const)
      if (state === 'expired') await this.o.ledger.forgetInvoice(e.id)
      else if (state === 'paid') {
        this.o.log(`the invoice for job ${e.id} (${e.sats} sats) was paid after the job had ended; refunding it`)
        await this.o.ledger.update(e.id, { state: 'owed', reason: 'the invoice was paid after the job had ended' })
      }
    }
  }

  /** The payment was received and verified: record what is owed if the job does not deliver. */
  async paid(job: RefundJob, sats: number): Promise<void> {
    try {
      await this.o.ledger.paid({ ...job, sats })
    } catch (err) {
      // The job goes on: it is refunded from memory if it fails now; only a crash would forget it.
      this.o.log(`could not record the payment of ${sats} sats for job ${job.id} in ${this.o.ledger.path}: ${(err as Error).message}`)
    }
  }

  /** The result was published: nothing is owed. */
  async delivered(id: string): Promise<void> {
    await this.o.ledger.delivered(id).catch((err: Error) => this.o.log(`could not clear job ${id} from ${this.o.ledger.path}: ${err.message}`))
  }

  /**
   * The paid job `id` ended without a result: make its refund (recorded as
   * issued before it is returned). Call `published()` once the feedback went out.
   */
  async settle(id: string, reason: string): Promise<RefundOutcome> {
    const e = this.o.ledger.get(id)
    if (!e || e.state === 'refunded') return { note: '' }
    this.busy.add(id)
    try {
      if (e.state === 'paid') await this.o.ledger.update(id, { state: 'owed', reason })
      return await this.issue(e)
    } catch (err) {
      this.busy.delete(id)
      this.o.log(`refund for job ${id} (${e.sats} sats) could not be recorded: ${(err as Error).message}; not sent, so it cannot be paid twice — see ${this.o.ledger.path}`)
      return { note: owedNote(e.sats) }
    }
  }

  /** After `settle()`: whether a relay took the feedback with the refund. */
  async published(id: string, ok: boolean): Promise<void> {
    try {
      const e = this.o.ledger.get(id)
      if (e?.state !== 'issued') return
      if (ok) {
        await this.o.ledger.update(id, { state: 'refunded' })
        this.o.log(`refunded ${e.sats} sats for job ${id}`)
        this.o.onRefunded?.(id, e.sats)
      } else {
        this.o.log(`the refund for job ${id} (${e.sats} sats) reached no relay; the same token is published again later`)
      }
    } catch (err) {
      this.o.log(`could not record the refund for job ${id} as sent: ${(err as Error).message}; it may be published again (the same token, never a second one)`)
    } finally {
      this.busy.delete(id)
    }
  }

  /** At start: jobs a previous process was running when it died are owed back. */
  async adoptOrphans(): Promise<number> {
    const orphans = this.o.ledger.inState('paid')
    for (const e of orphans) await this.o.ledger.update(e.id, { state: 'owed', reason: 'the provider stopped before the job finished' })
    return orphans.length
  }

  /** Every job the ledger knows: invoiced or paid before, whatever became of it. */
  jobIds(): string[] {
    return this.o.ledger.inState('invoiced', 'paid', 'owed', 'issued', 'refunded').map((e) => e.id)
  }

  /** How many refunds are still to be made or published, or invoices watched for a late payment. */
  get pending(): number {
    return this.o.ledger.inState('invoiced', 'owed', 'issued').length
  }

  /** Make and publish what is owed or issued and not in hand. */
  async retry(publish: PublishRefund): Promise<void> {
    for (const e of this.o.ledger.inState('owed', 'issued')) {
      if (this.busy.has(e.id)) continue
      this.busy.add(e.id)
      let handedOver = false
      try {
        const out = await this.issue(e)
        if (!out.tag) continue
        handedOver = true
        await this.published(e.id, await publish(e, out.tag, out.note).catch(() => false))
      } catch (err) {
        this.o.log(`retrying the refund for job ${e.id} failed: ${(err as Error).message}`)
      } finally {
        if (!handedOver) this.busy.delete(e.id)
      }
    }
  }

  /** owed -> issued (the token is on disk before anyone sees it), then the tag. */
  private async issue(e: RefundEntry): Promise<RefundOutcome> {
    if (e.state === 'owed') {
      if (!this.o.wallet) {
        this.owed(e, 'this provider has no wallet to refund from')
        return { note: owedNote(e.sats) }
      }
      let token: string
      try {
        token = await this.o.wallet.send(e.sats, { memo: `refund for job ${e.id.slice(0, 16)}` })
      } catch (err) {
        const why = (err as Error).message
        await this.o.ledger.update(e.id, { attempts: (e.attempts ?? 0) + 1, lastError: why }).catch(() => undefined)
        this.owed(e, `the wallet could not make the refund token (${why})`)
        return { note: owedNote(e.sats) }
      }
      // A crash right here leaves the token in the wallet's sent list, unpublished: the provider's loss, never a double refund.
      await this.o.ledger.update(e.id, { state: 'issued', token })
    }
    if (e.state !== 'issued' || !e.token) return { note: '' }
    return {
      tag: { msats: e.sats * 1000, ciphertext: encryptFor(this.o.secretKey, e.customer, e.token, e.scheme) },
      note: refundNote(e.sats),
    }
  }

  private owed(e: RefundEntry, why: string): void {
    this.o.log(
      `REFUND OWED: job ${e.id} was paid ${e.sats} sats and failed (${e.reason ?? 'no reason'}), but ${why}. ` +
        `The obligation is kept in ${this.o.ledger.path} and retried; fund the wallet or bring its mint back.`,
    )
    this.o.onOwed?.(e.id, e.sats, why)
  }
}

function owedNote(sats: number): string {
  return `; the ${sats} sats paid are owed back to you and will be refunded in a later "error" feedback with a "refund" tag`
}
