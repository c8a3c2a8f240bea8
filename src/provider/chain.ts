import { LruMap } from '../nostr/bounded.js'
import type { Event } from '../nostr/events.js'
import { addressedProviders, isJobRequestKind, isJobResultKind, parseFeedback, parseResult, JOB_FEEDBACK_KIND } from '../nostr/nip90.js'
import type { RelayPool } from '../nostr/relay-client.js'

/**
 * Job chaining (NIP-90 appendix 1): an input `["i", "<job id>", "job"]` is the
 * output of an earlier job. The resolver waits for that output:
 * - from this provider's own recent results (no relay round trip);
 * - otherwise from the relays: the earlier request (to learn which providers
 *   it addressed) and results tagging it. Only a result by a provider the
 *   earlier request named is taken (anyone can publish a "result"); when it
 *   named none, any provider's result is taken.
 * An earlier job that ends in `error` fails the chained one at once.
 */
export class ChainError extends Error {
  override name = 'ChainError'
}

interface LocalOutcome {
  ok: boolean
  /** result content, or the error reason */
  text: string
  customer: string
  encrypted: boolean
}

export class ChainResolver {
  private readonly local: LruMap<string, LocalOutcome>
  private readonly waiters = new Map<string, Set<(o: LocalOutcome) => void>>()

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
    const ws = this.waiters.get(requestId)
    if (ws) for (const w of ws) w(outcome)
  }

  /**
   * The output of job `jobId`, for a chained request by `customer`.
   * Rejects with ChainError on failure, or the signal's reason.
   */
  wait(jobId: string, customer: string, signal: AbortSignal): Promise<string> {
    const known = this.local.get(jobId)
    if (known) return Promise.resolve(this.accept(known, customer))
    return new Promise<string>((resolve, reject) => {
      let request: Event | undefined
      const candidates: Event[] = []
      const done = (fn: () => void): void => {
        cleanup()
        try {
          fn()
        } catch (err) {
          reject(err)
        }
      }
      const onLocal = (o: LocalOutcome): void => done(() => resolve(this.accept(o, customer)))
      const consider = (): void => {
        if (!request) return
        const allowed = addressedProviders(request)
        for (const ev of candidates) {
          if (allowed.length > 0 && !allowed.includes(ev.pubkey)) continue
          if (ev.pubkey === this.me) continue // our own results arrive through record()
          if (isJobResultKind(ev.kind)) {
            const r = parseResult(ev)
            if (!r.ok) continue
            if (r.value.encrypted) return done(() => reject(new ChainError(`the result of job ${jobId} is encrypted for its customer; this provider cannot use it as input`)))
            return done(() => resolve(r.value.content))
          }
          const fb = parseFeedback(ev)
          if (fb.ok && fb.value.status === 'error') {
            return done(() => reject(new ChainError(`job ${jobId}, which this one builds on, failed: ${fb.value.extra ?? 'no reason given'}`)))
          }
        }
        candidates.length = 0
      }
      const sub = this.pool.subscribe([{ ids: [jobId], limit: 1 }, { '#e': [jobId] }], {
        onevent: (ev) => {
          if (ev.id === jobId) {
            if (isJobRequestKind(ev.kind)) request = ev
          } else if (isJobResultKind(ev.kind) || ev.kind === JOB_FEEDBACK_KIND) {
            if (candidates.length < 100) candidates.push(ev)
          }
          consider()
        },
      })
      const onAbort = (): void => done(() => reject(signal.reason))
      const cleanup = (): void => {
        sub.close()
        signal.removeEventListener('abort', onAbort)
        const ws = this.waiters.get(jobId)
        ws?.delete(onLocal)
        if (ws?.size === 0) this.waiters.delete(jobId)
      }
      if (signal.aborted) return onAbort()
      signal.addEventListener('abort', onAbort, { once: true })
      let ws = this.waiters.get(jobId)
      if (!ws) this.waiters.set(jobId, (ws = new Set()))
      ws.add(onLocal)
    })
  }

  private accept(o: LocalOutcome, customer: string): string {
    // The plaintext of an encrypted job belongs to its customer only.
    if (o.encrypted && o.customer !== customer) throw new ChainError('the job this one builds on was encrypted for another customer')
    if (!o.ok) throw new ChainError(`the job this one builds on failed: ${o.text}`)
    return o.text
  }
}
