/**
 * Waiting for a mint quote (NUT-04) to be paid, for Wallet.fund: poll until
 * the quote leaves UNPAID, the deadline passes, or the caller's signal aborts.
 * An abort ends the wait at once, mid-sleep or mid-request, because the caller
 * journaled the quote first: nothing depends on this wait finishing.
 */
import { setTimeout as sleep } from 'node:timers/promises'

/** The caller stopped waiting. Named like the platform's AbortError so generic checks (`err.name`) match. */
export class WaitAborted extends Error {
  override name = 'AbortError'
}

export type QuoteWaitEnd = { end: 'state'; state: string } | { end: 'timeout' } | { end: 'aborted' }

export interface QuoteWaitOptions {
  /** the state the quote had when created */
  initial: string
  /** asks the mint for the quote's state */
  check: () => Promise<string>
  pollMs: number
  /** epoch ms */
  deadline: number
  signal?: AbortSignal | undefined
  /** a failed check (mint briefly down) is retried at the next poll */
  onCheckError: (err: unknown) => void
}

/** What the caller gave as the abort reason, for an error message. */
export function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason
  if (r instanceof Error) return r.name === 'AbortError' ? 'aborted by the caller' : r.message
  return r === undefined ? 'aborted by the caller' : String(r)
}

/** `p`, or a rejection as soon as `signal` aborts (a request still in flight is left to its own timeout). */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new WaitAborted(abortReason(signal)))
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

export async function waitWhileUnpaid(o: QuoteWaitOptions): Promise<QuoteWaitEnd> {
  let state = o.initial
  while (state === 'UNPAID') {
    if (o.signal?.aborted) return { end: 'aborted' }
    if (Date.now() > o.deadline) return { end: 'timeout' }
    try {
      await sleep(Math.max(0, Math.min(o.pollMs, o.deadline - Date.now())), undefined, o.signal ? { signal: o.signal } : {})
      state = await abortable(o.check(), o.signal)
    } catch (err) {
      if (o.signal?.aborted) return { end: 'aborted' }
      o.onCheckError(err)
    }
  }
  return { end: 'state', state }
}
