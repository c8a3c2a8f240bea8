import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { EncryptionScheme } from '../nostr/encryption.js'
import { writeFileAtomic } from '../util/atomic-file.js'

/**
 * The provider's durable record of what paid relay jobs owe their customers,
 * so a refund is neither lost nor paid twice across crashes and restarts.
 * One JSON file (relay-refunds.json in the data dir), rewritten atomically on
 * every change; it only holds jobs in flight, refunds not yet settled and the
 * last few settled ones, so it stays small.
 *
 * An entry's life:
 *   invoiced  an invoice was given for the job and is not paid yet. Becomes
 *             `paid` when it is; if the job ends first, a payment that
 *             arrives later (until the invoice expires) makes it `owed`.
 *   paid      the payment was received and verified; the job runs. Removed
 *             when its result is published. Found at start: the previous
 *             process died mid-job, so the job is owed back.
 *   owed      the job ended without a result; no token made yet (or the
 *             wallet could not make one: mint down, balance short).
 *   issued    the token exists and is stored here BEFORE it is published, so
 *             a retry republishes this very token and never makes a second.
 *   refunded  a relay took the feedback carrying it; the token is dropped.
 */
export type RefundState = 'invoiced' | 'paid' | 'owed' | 'issued' | 'refunded'

export interface RefundEntry {
  /** the job request's id */
  id: string
  /** hex pubkey the refund is encrypted to */
  customer: string
  /** what was received and verified for the job, and so what is given back */
  sats: number
  /** how the refund token is encrypted (the request's scheme, NIP-44 for plain requests) */
  scheme: EncryptionScheme
  /** the request's `relays`: where the customer reads replies, so a refund made after a restart goes there too */
  relays?: string[]
  state: RefundState
  paidAt: number
  updatedAt: number
  /** why the job failed */
  reason?: string
  /** the refund token while `issued` */
  token?: string
  /** while `invoiced`: the mint quote behind the invoice, and when it expires (epoch ms, if known) */
  quote?: string
  expiresAt?: number
  /** failed attempts at making the token, and the last error: for the operator */
  attempts?: number
  lastError?: string
}

export const REFUND_LEDGER_FILE = 'relay-refunds.json'
/** settled refunds kept for the operator to look at */
const KEEP_REFUNDED = 100
/** unpaid invoices watched for a late payment; beyond this the oldest are let go (requests are rate limited, but unpaid ones cost nothing to send) */
const KEEP_INVOICED = 1000

interface LedgerFile {
  v: 1
  entries: RefundEntry[]
}

export class RefundLedger {
  private readonly entries = new Map<string, RefundEntry>()
  private chain: Promise<void> = Promise.resolve()
  /** a write queued but not started: later changes join it (one fsync for many) */
  private queued: Promise<void> | undefined

  private constructor(readonly path: string) {}

  /** Open (or start) the ledger in `dataDir`. Throws when the file exists but cannot be read: it records money owed, so it is never silently replaced. */
  static async open(dataDir: string, fileName = REFUND_LEDGER_FILE): Promise<RefundLedger> {
    const ledger = new RefundLedger(join(dataDir, fileName))
    let text: string | undefined
    try {
      text = await readFile(ledger.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read the refund ledger ${ledger.path}: ${(err as Error).message}`)
    }
    if (text !== undefined) {
      let file: LedgerFile
      try {
        file = JSON.parse(text) as LedgerFile
        if (file.v !== 1 || !Array.isArray(file.entries)) throw new Error('not a version 1 ledger')
      } catch (err) {
        throw new Error(
          `the refund ledger ${ledger.path} is unreadable (${(err as Error).message}); it lists refunds owed to customers, so it is not overwritten: repair it or move it aside`,
        )
      }
      for (const e of file.entries) ledger.entries.set(e.id, e)
    }
    return ledger
  }

  get(id: string): RefundEntry | undefined {
    return this.entries.get(id)
  }

  inState(...states: RefundState[]): RefundEntry[] {
    return [...this.entries.values()].filter((e) => states.includes(e.state))
  }

  /** Record an invoice given for a job, before anyone can pay it. */
  invoiced(e: Pick<RefundEntry, 'id' | 'customer' | 'sats' | 'scheme' | 'relays' | 'quote' | 'expiresAt'>): Promise<void> {
    if (this.entries.has(e.id)) return Promise.resolve()
    const now = Date.now()
    this.entries.set(e.id, { ...e, state: 'invoiced', paidAt: now, updatedAt: now })
    const invoiced = this.inState('invoiced').sort((a, b) => a.updatedAt - b.updatedAt)
    for (const old of invoiced.slice(0, Math.max(0, invoiced.length - KEEP_INVOICED))) this.entries.delete(old.id)
    return this.persist()
  }

  /** Record a received payment before the job runs (an invoiced job's entry becomes paid). */
  paid(e: Pick<RefundEntry, 'id' | 'customer' | 'sats' | 'scheme' | 'relays'>): Promise<void> {
    const current = this.entries.get(e.id)
    if (current && current.state !== 'invoiced') return Promise.resolve()
    const now = Date.now()
    this.entries.set(e.id, { ...e, state: 'paid', paidAt: now, updatedAt: now })
    return this.persist()
  }

  /** An invoice that expired unpaid: nothing was paid, nothing is owed. */
  forgetInvoice(id: string): Promise<void> {
    if (this.entries.get(id)?.state !== 'invoiced') return Promise.resolve()
    this.entries.delete(id)
    return this.persist()
  }

  /** The result went out: nothing is owed (also when the payment's own record failed to be written and the entry still reads invoiced). */
  delivered(id: string): Promise<void> {
    const state = this.entries.get(id)?.state
    if (state !== 'paid' && state !== 'invoiced') return Promise.resolve()
    this.entries.delete(id)
    return this.persist()
  }

  /** Change an entry; the change is on disk when this resolves. */
  update(id: string, change: Partial<Omit<RefundEntry, 'id'>>): Promise<void> {
    const e = this.entries.get(id)
    if (!e) return Promise.reject(new Error(`no refund entry for job ${id}`))
    Object.assign(e, change, { updatedAt: Date.now() })
    if (e.state === 'refunded') {
      delete e.token
      this.pruneRefunded()
    }
    return this.persist()
  }

  /** Write the current entries, after any write in progress; changes made meanwhile share one write. */
  private persist(): Promise<void> {
    if (this.queued) return this.queued
    const write = this.chain.then(() => {
      this.queued = undefined
      return writeFileAtomic(this.path, this.serialize())
    })
    this.queued = write
    this.chain = write.catch(() => undefined)
    return write
  }

  /** Settled refunds are only kept for a look: the oldest go beyond KEEP_REFUNDED. */
  private pruneRefunded(): void {
    const refunded = this.inState('refunded').sort((a, b) => a.updatedAt - b.updatedAt)
    for (const e of refunded.slice(0, Math.max(0, refunded.length - KEEP_REFUNDED))) this.entries.delete(e.id)
  }

  private serialize(): string {
    const file: LedgerFile = { v: 1, entries: [...this.entries.values()] }
    return JSON.stringify(file, null, 1) + '\n'
  }
}
