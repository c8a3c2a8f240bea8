/**
 * The demo once it runs: the live status, what ends it (Ctrl-C, --duration,
 * the budget running out, the provider gone), and the way out with the
 * final accounting.
 */
import type { RentedSession } from '../customer/session-runner.js'
import type { SessionSummary } from '../customer/session-client.js'
import { reclaimExpiredLocks } from '../customer/wallet-funds.js'
import type { ByteCounter } from './counting-stream.js'
import type { CustomerWallet } from './customer-side.js'
import { waitUntil, type Teardown } from './lifecycle.js'
import type { ProviderSide } from './provider-side.js'
import type { DemoReporter, FinalAccount } from './report.js'

export interface RunningDemo {
  /** what to open in a browser */
  url: string
  /** Settles once the demo has ended for any reason, with the account it printed. */
  finished: Promise<FinalAccount>
  /** End the session, wait for the provider's redemption, stop everything, print the account. */
  stop(reason: string): Promise<FinalAccount>
}

export interface LiveParts {
  url: string
  session: RentedSession
  seller: ProviderSide
  customer: CustomerWallet
  bytes: ByteCounter
  report: DemoReporter
  teardown: Teardown
  durationSec?: number
}

export class LiveDemo implements RunningDemo {
  readonly url: string
  readonly finished: Promise<FinalAccount>
  private resolveFinished!: (a: FinalAccount) => void
  private rejectFinished!: (err: Error) => void
  private stopping: Promise<FinalAccount> | null = null
  private readonly statusTimer: NodeJS.Timeout
  private readonly durationTimer: NodeJS.Timeout | null
  private readonly startedAt = Date.now()
  private redeemed = 0

  constructor(private readonly p: LiveParts) {
    this.url = p.url
    this.finished = new Promise<FinalAccount>((resolve, reject) => {
      this.resolveFinished = resolve
      this.rejectFinished = reject
    })
    // The session can also end by itself: budget spent, provider gone for good.
    p.session.once('end', (s: SessionSummary) => void this.stop(s.reason).catch(() => {}))
    p.seller.provider.on('redeemed', () => void this.refreshRedeemed())
    this.statusTimer = setInterval(() => void this.showStatus(), p.report.statusEveryMs)
    this.durationTimer = p.durationSec !== undefined ? setTimeout(() => void this.stop('duration reached').catch(() => {}), p.durationSec * 1000) : null
    void this.showStatus()
  }

  stop(reason: string): Promise<FinalAccount> {
    this.stopping ??= this.shutdown(reason).then(
      (a) => {
        this.resolveFinished(a)
        return a
      },
      (err: Error) => {
        this.rejectFinished(err)
        throw err
      },
    )
    return this.stopping
  }

  private async refreshRedeemed(): Promise<void> {
    this.redeemed = await this.p.seller.redeemedSoFar().catch(() => this.redeemed)
  }

  private async showStatus(): Promise<void> {
    if (this.stopping) return
    await this.refreshRedeemed()
    if (this.stopping) return
    const c = this.p.session.client
    this.p.report.status({ ticks: c.spent, budgetLeft: c.budgetLeft, bytes: this.p.bytes.up + this.p.bytes.down, redeemed: this.redeemed, elapsedMs: Date.now() - this.startedAt })
  }

  private async shutdown(reason: string): Promise<FinalAccount> {
    const { session, seller, customer, report } = this.p
    const { wallet } = customer
    clearInterval(this.statusTimer)
    if (this.durationTimer) clearTimeout(this.durationTimer)
    report.note(`ending the session (${reason})…`)

    // A tick sent but not yet acknowledged would be the provider's but not
    // counted as spent here; ticks take milliseconds, so wait for the answer
    // and end in the same turn, before the next tick can leave.
    await waitUntil(() => session.client.ended || session.client.sent === session.client.spent, 2_000, 20)
    const summary = await session.stop(reason)
    // Acknowledged ticks are marked paid in the wallet by queued writes; an
    // empty update waits behind them.
    await wallet.markLockedPaid([])

    // The provider redeems a session's ticks when it ends; wait for that, and
    // ask again in case the end message was lost with the connection.
    await waitUntil(async () => {
      await seller.provider.redeemer.redeemAll().catch(() => [])
      await this.refreshRedeemed()
      return this.redeemed >= summary.spent
    }, 15_000, 300)

    // Earlier runs' locks whose time has come go back to the balance now.
    await reclaimExpiredLocks(wallet, customer.refundKey).catch(() => null)
    // The session locks its next batch ahead of need; a swap still running
    // when it ended lands as locked proofs. Let it land, so the figures add up.
    await waitUntil(async () => {
      const b = await wallet.balance()
      return b.pending === b.locked
    }, 5_000)
    const stillLocked = await wallet.lockedProofs({ payeePubkey: seller.provider.paymentKey.pubkey })
    const bal = await wallet.balance()
    const account: FinalAccount = {
      reason: summary.reason || reason,
      durationMs: Date.now() - this.startedAt,
      spent: summary.spent,
      redeemed: this.redeemed,
      balanced: summary.spent === this.redeemed,
      lockedUnsent: stillLocked.reduce((n, l) => n + l.proof.amount, 0),
      refundAt: stillLocked.length > 0 ? Math.max(...stillLocked.map((l) => l.lock.locktime)) : null,
      wallet: { before: customer.before, funded: customer.funded, balance: bal.balance, locked: bal.locked },
      bytes: { up: this.p.bytes.up, down: this.p.bytes.down },
    }
    // everything stops before the account is printed: once it shows, nothing of the demo runs
    await this.p.teardown.run((m) => report.note(m))
    report.final(account)
    return account
  }
}
