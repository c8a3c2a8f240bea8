/**
 * What `npm run demo` shows: event lines, a live status (one line redrawn in
 * a terminal, a line every few seconds in a log, a JSON object per second
 * with --json), and the final accounting.
 */

export interface LiveFigures {
  /** ticks the provider acknowledged (= sats spent) */
  ticks: number
  /** sats of the budget not yet sent */
  budgetLeft: number
  /** bytes through the local proxy, both ways */
  bytes: number
  /** sats the provider's wallet gained from redemptions since the demo started */
  redeemed: number
  elapsedMs: number
}

export interface FinalAccount {
  reason: string
  durationMs: number
  /** sats the provider acknowledged: the customer's spend */
  spent: number
  /** sats the provider redeemed at the mint since the demo started */
  redeemed: number
  /** spent === redeemed */
  balanced: boolean
  /** sats locked to the provider and never sent (this run's, and an earlier run's not yet back) */
  lockedUnsent: number
  /** unix seconds after which all of those can be reclaimed with the refund key */
  refundAt: number | null
  wallet: {
    /** spendable + locked when the session started, before funding */
    before: number
    funded: number
    /** spendable now */
    balance: number
    /** still locked to payees (any session's) */
    locked: number
  }
  bytes: { up: number; down: number }
}

export interface ReportSink {
  write(text: string): unknown
  isTTY?: boolean
}

export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`
  if (n < 1_000_000) return `${(n / 1000).toFixed(1)} kB`
  if (n < 1_000_000_000) return `${(n / 1_000_000).toFixed(1)} MB`
  return `${(n / 1_000_000_000).toFixed(2)} GB`
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

const CLEAR_LINE = '\r\x1b[2K'

export class DemoReporter {
  private readonly live: boolean
  private statusShown = false
  private lastStatusAt = 0

  constructor(
    private readonly json: boolean,
    private readonly out: ReportSink,
    /** human notes in --json mode go here, so stdout stays one JSON object per line */
    private readonly err: ReportSink,
    /** how often a non-terminal, non-JSON run prints a status line */
    private readonly logEveryMs = 5_000,
  ) {
    this.live = !json && Boolean(out.isTTY)
  }

  /** An event: a JSON line with --json, a human line otherwise. */
  event(type: string, data: Record<string, unknown>, human: string): void {
    if (this.json) {
      this.out.write(JSON.stringify({ type, ...data }) + '\n')
      return
    }
    this.clearStatus()
    this.out.write(human + '\n')
  }

  /** A human-only note (progress, hints); with --json it goes to stderr. */
  note(human: string): void {
    if (this.json) {
      this.err.write(human + '\n')
      return
    }
    this.clearStatus()
    this.out.write(human + '\n')
  }

  status(f: LiveFigures): void {
    if (this.json) {
      this.out.write(JSON.stringify({ type: 'status', ...f }) + '\n')
      return
    }
    const text = `ticks paid ${f.ticks} · ${f.budgetLeft} sats left · ${formatBytes(f.bytes)} tunnelled · provider redeemed ${f.redeemed} sats · ${formatDuration(f.elapsedMs)}`
    if (this.live) {
      this.out.write(`${CLEAR_LINE}  ${text}`)
      this.statusShown = true
      return
    }
    const now = Date.now()
    if (now - this.lastStatusAt < this.logEveryMs) return
    this.lastStatusAt = now
    this.out.write(`  ${text}\n`)
  }

  /** How often status() is worth calling in this mode. */
  get statusEveryMs(): number {
    return this.live ? 500 : 1_000
  }

  final(a: FinalAccount, now = Date.now()): void {
    if (this.json) {
      this.out.write(JSON.stringify({ type: 'final', ...a }) + '\n')
      return
    }
    this.clearStatus()
    const lines = [
      '',
      `demo over (${a.reason}) after ${formatDuration(a.durationMs)}: the final accounting`,
      `  spent       ${a.spent} sats: ticks the provider acknowledged`,
      `  redeemed    ${a.redeemed} sats: what the provider swapped at the mint  ${a.balanced ? '✓ spent = redeemed' : `✗ differs from spent by ${a.redeemed - a.spent}`}`,
    ]
    if (a.lockedUnsent > 0 && a.refundAt !== null) {
      const wait = a.refundAt * 1000 - now
      const when = new Date(a.refundAt * 1000).toLocaleTimeString()
      lines.push(
        wait > 0
          ? `  locked      ${a.lockedUnsent} sats locked to the provider but never sent: yours again after ${when} (in ${formatDuration(wait)}); the next \`npm run demo\` reclaims them`
          : `  locked      ${a.lockedUnsent} sats locked to the provider but never sent; their locktime has passed, the next \`npm run demo\` reclaims them`,
      )
    } else {
      lines.push('  locked      nothing left locked to the provider')
    }
    const total = a.wallet.balance + a.wallet.locked
    const expected = a.wallet.before + a.wallet.funded - a.spent
    lines.push(
      `  wallet      ${a.wallet.balance} spendable + ${a.wallet.locked} locked = ${total} sats; ` +
        `started with ${a.wallet.before}${a.wallet.funded ? ` + ${a.wallet.funded} funded` : ''} − ${a.spent} spent = ${expected}  ${total === expected ? '✓' : '✗'}`,
      `  tunnelled   ${formatBytes(a.bytes.up + a.bytes.down)} (${formatBytes(a.bytes.up)} up, ${formatBytes(a.bytes.down)} down)`,
    )
    this.out.write(lines.join('\n') + '\n')
  }

  private clearStatus(): void {
    if (!this.statusShown) return
    this.out.write(CLEAR_LINE)
    this.statusShown = false
  }
}
