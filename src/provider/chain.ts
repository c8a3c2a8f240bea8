import { LruMap } from '../nostr/bounded.js'
import type { Event } from '../nostr/events.js'
import { addressedProviders, isJobRequestKind, isJobResultKind, parseFeedback, parseResult, JOB_FEEDBACK_KIND } from '../nostr/nip90.js'
import type { PoolSubscription, RelayPool } from '../nostr/relay-client.js'

/**
 * Job chaining (NIP-90 appendix 1): an input `["i", "<job id>", "job"]` is the
 * output of an earlier job. The resolver waits for that output:
 * - from this provider's own recent results (no relay round trip);
 * - otherwise from the relays: the earlier request (to learn which providers
 *   it addressed) and results tagging it. Only a result by a provider the
 *   earlier request named is taken (anyone can publish a "result"); when it
 *   named none, any provider's result is taken.
 * An earlier job that ends in `error` fails the chained one at once.
 *
 * All waits share one relay subscription (relays cap subscriptions per
 * connection), re-sent shortly after the set of awaited ids changes.
 */
export class ChainError extends Error {
  override name = 'ChainError'
}

export interface LocalOutcome {
  ok: boolean
  /** result content, or the error reason */
  text: string
  customer: string
  encrypted: boolean
}

interface Waiter {
  customer: string
  resolve: (text: string) => void
  reject: (err: Error) => void
}

interface Awaited {
  waiters: Set<Waiter>
  request?: Event
  /** results and feedback seen before the request itself */
  candidates: Event[]
}

export class ChainResolver {
  private readonly local: LruMap<string, LocalOutcome>
  private readonly awaited = new Map<string, Awaited>()
  private sub: PoolSubscription | undefined
  private resubscribeTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly pool: RelayPool,
    private readonly me: string,
    maxRemembered = 2000,
  ) {
    this.local = new LruMap(maxRemembered)
  }

  /** The service reports each of its own jobs as it ends. */
  record(requestId: string, outcome: LocalOutcome): void {
    this.local.set(requestId, outcome)
    const a = this.awaited.get(requestId)
    if (!a) return
    for (const w of [...a.waiters]) this.settle(requestId, w, () => accept(outcome, w.customer))
  }

  /** The output of job `jobId`, for a chained request by `customer`. Rejects with ChainError, or the signal's reason. */
  wait(jobId: string, customer: string, signal: AbortSignal): Promise<string> {
    const known = this.local.get(jobId)
    if (known) {
      try {
        return Promise.resolve(accept(known, customer))
      } catch (err) {
        return Promise.reject(err)
      }
    }
    signal.throwIfAborted()
    return new Promise<string>((resolve, reject) => {
      const onAbort = (): void => {
        this.remove(jobId, w)
        reject(signal.reason)
      }
      const w: Waiter = {
        customer,
        resolve: (text) => {
          signal.removeEventListener('abort', onAbort)
          resolve(text)
        },
        reject: (err) => {
          signal.removeEventListener('abort', onAbort)
          reject(err)
        },
      }
      signal.addEventListener('abort', onAbort, { once: true })
      let a = this.awaited.get(jobId)
      if (!a) {
        a = { waiters: new Set(), candidates: [] }
        this.awaited.set(jobId, a)
        this.scheduleResubscribe()
      }
      a.waiters.add(w)
    })
  }

  /** Stop listening (the service is stopping). */
  close(): void {
    clearTimeout(this.resubscribeTimer)
    this.sub?.close()
    this.sub = undefined
  }

  private settle(jobId: string, w: Waiter, outcome: () => string): void {
    this.remove(jobId, w)
    try {
      w.resolve(outcome())
    } catch (err) {
      w.reject(err as Error)
    }
  }

  private remove(jobId: string, w: Waiter): void {
    const a = this.awaited.get(jobId)
    if (!a) return
    a.waiters.delete(w)
    if (a.waiters.size === 0) {
      this.awaited.delete(jobId)
      this.scheduleResubscribe()
    }
  }

  private scheduleResubscribe(): void {
    if (this.resubscribeTimer) return
    this.resubscribeTimer = setTimeout(() => {
      this.resubscribeTimer = undefined
      this.sub?.close()
      this.sub = undefined
      const ids = [...this.awaited.keys()]
      if (ids.length === 0) return
      this.sub = this.pool.subscribe([{ ids }, { '#e': ids }], { onevent: (ev) => this.onEvent(ev) })
    }, 50)
  }

  private onEvent(ev: Event): void {
    if (this.awaited.has(ev.id)) {
      if (isJobRequestKind(ev.kind)) this.awaited.get(ev.id)!.request = ev
      this.consider(ev.id)
      return
    }
    if (!isJobResultKind(ev.kind) && ev.kind !== JOB_FEEDBACK_KIND) return
    // Our own results arrive through record(), with the plaintext.
    if (ev.pubkey === this.me) return
    for (const t of ev.tags) {
      if (t[0] !== 'e' || !t[1]) continue
      const a = this.awaited.get(t[1])
      if (!a) continue
      if (a.candidates.length < 100) a.candidates.push(ev)
      this.consider(t[1])
    }
  }

  private consider(jobId: string): void {
    const a = this.awaited.get(jobId)
    if (!a?.request) return
    const allowed = addressedProviders(a.request)
    const candidates = a.candidates.splice(0)
    for (const ev of candidates) {
      if (allowed.length > 0 && !allowed.includes(ev.pubkey)) continue
      let outcome: (() => string) | undefined
      if (isJobResultKind(ev.kind)) {
        const r = parseResult(ev)
        if (!r.ok || r.value.requestId !== jobId) continue
        const content = r.value.content
        outcome = r.value.encrypted
          ? () => {
              throw new ChainError(`the result of job ${jobId} is encrypted for its customer; this provider cannot use it as input`)
            }
          : () => content
      } else {
        const fb = parseFeedback(ev)
        if (!fb.ok || fb.value.requestId !== jobId || fb.value.status !== 'error') continue
        const why = fb.value.extra ?? 'no reason given'
        outcome = () => {
          throw new ChainError(`job ${jobId}, which this one builds on, failed: ${why}`)
        }
      }
      for (const w of [...a.waiters]) this.settle(jobId, w, outcome)
      return
    }
  }
}

function accept(o: LocalOutcome, customer: string): string {
  // The plaintext of an encrypted job belongs to its customer only.
  if (o.encrypted && o.customer !== customer) throw new ChainError('the job this one builds on was encrypted for another customer')
  if (!o.ok) throw new ChainError(`the job this one builds on failed: ${o.text}`)
  return o.text
}
