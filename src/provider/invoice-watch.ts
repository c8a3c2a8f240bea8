import { setTimeout as sleep } from 'node:timers/promises'
import { readMintJson } from '../payments/mint-http.js'

/**
 * Waits for one mint quote (NUT-04) to be paid by polling the mint, and stops
 * when told to: a job that was cancelled, timed out or shut down must not
 * leave a poller asking the mint about its invoice for minutes afterwards.
 *
 * Stopping (abort or deadline) ends with one last look at the quote, so an
 * invoice paid in the same instant is still seen as paid rather than lost to
 * the race.
 */
export type WatchOutcome = 'paid' | 'aborted' | 'expired'

export interface QuoteWatchOptions {
  mintUrl: string
  quoteId: string
  pollMs: number
  /** epoch ms after which the invoice is no longer waited for */
  deadline: number
  signal: AbortSignal
  /** bound on one status request */
  requestTimeoutMs?: number
}

/** The quote's NUT-04 state; PAID and ISSUED both mean the money arrived. */
export async function quoteState(mintUrl: string, quoteId: string, signal: AbortSignal): Promise<string> {
  const res = await fetch(`${mintUrl.replace(/\/+$/, '')}/v1/mint/quote/bolt11/${encodeURIComponent(quoteId)}`, { signal })
  if (!res.ok) throw new Error(`the mint answered HTTP ${res.status}`)
  const body = ((await readMintJson(res, `mint ${mintUrl}`)) ?? {}) as { state?: unknown; paid?: unknown }
  if (typeof body.state === 'string') return body.state
  return body.paid === true ? 'PAID' : 'UNPAID'
}

const isPaid = (state: string | undefined): boolean => state === 'PAID' || state === 'ISSUED'

export async function watchQuote(o: QuoteWatchOptions): Promise<WatchOutcome> {
  const requestTimeoutMs = o.requestTimeoutMs ?? 10_000
  for (;;) {
    if (o.signal.aborted || Date.now() >= o.deadline) {
      const last = await quoteState(o.mintUrl, o.quoteId, AbortSignal.timeout(Math.min(requestTimeoutMs, 2000))).catch(() => undefined)
      if (isPaid(last)) return 'paid'
      return o.signal.aborted ? 'aborted' : 'expired'
    }
    // A failed check (mint briefly down) is retried at the next poll.
    const state = await quoteState(o.mintUrl, o.quoteId, AbortSignal.any([o.signal, AbortSignal.timeout(requestTimeoutMs)])).catch(() => undefined)
    if (isPaid(state)) return 'paid'
    const wait = Math.max(0, Math.min(o.pollMs, o.deadline - Date.now()))
    await sleep(wait, undefined, { signal: o.signal }).catch(() => undefined)
  }
}
