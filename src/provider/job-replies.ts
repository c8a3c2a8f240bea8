import { encryptFor, type EncryptionScheme } from '../nostr/encryption.js'
import { nowSeconds, type Event } from '../nostr/events.js'
import { buildFeedback, buildResult, type FeedbackDraft, type JobRequest, type ReplyEncryptor } from '../nostr/nip90.js'
import type { PublishOutcome, RelayPool } from '../nostr/relay-client.js'
import type { EventSigner } from '../nostr/signer.js'
import type { TokenBucket } from './rate-limit.js'
import type { RelayTargets } from './relay-targets.js'
import { fitResultEvent, resultTooLargeMessage } from './result-event.js'
import type { JobActivity } from './relay-job-options.js'

/**
 * What the provider's NIP-90 service sends: feedback, results and error
 * answers, signed and published to its relays and (checked, relay-targets.ts)
 * to the relays a request names.
 */
export interface ReplyJob {
  request: JobRequest
  encrypt?: ReplyEncryptor
  /** any feedback sent: then the job also ends with `success` */
  feedbackSent: boolean
  paidMsats?: number
  /** extra relays its replies also go to, once checked */
  replyRelays?: Promise<string[]>
}

/** Where a job's replies go: our relays, and those its request names (checked once, then kept here). */
interface ReplyTarget {
  request: Pick<JobRequest, 'id' | 'relays'>
  replyRelays?: Promise<string[]>
}

export interface JobRepliesOptions {
  pool: RelayPool
  signer: EventSigner
  secretKey: Uint8Array
  targets: RelayTargets
  /** publish to a request's `relays` at all */
  requestRelays: boolean
  /** the global limit on error answers to requests refused before any work */
  errorReplies: TokenBucket | undefined
  resultPublishDeadlineMs: number
  stopped: () => boolean
  activity: (a: JobActivity) => void
}

export class JobReplies {
  constructor(private readonly o: JobRepliesOptions) {}

  /** True when at least one of our relays took it. */
  async feedback(job: ReplyJob, draft: FeedbackDraft): Promise<boolean> {
    job.feedbackSent = true
    const ev = await this.o.signer.sign(buildFeedback(job.request, draft, nowSeconds(), job.encrypt))
    const outcomes = await this.publish(ev, job)
    if (!outcomes.some((o) => o.ok)) {
      this.o.activity({ type: 'publish-failed', id: job.request.id, what: draft.status, reason: outcomes.map((o) => `${o.relay}: ${o.message}`).join('; ') })
      return false
    }
    return true
  }

  /**
   * Feedback for a job no longer held in memory (a refund retried after a
   * restart): to our relays and the request's, which the refund ledger kept.
   */
  async standaloneFeedback(request: { id: string; customer: string; relays: string[] }, draft: FeedbackDraft): Promise<boolean> {
    const ev = await this.o.signer.sign(buildFeedback(request, draft, nowSeconds()))
    const outcomes = await this.publish(ev, { request })
    if (outcomes.some((o) => o.ok)) return true
    this.o.activity({ type: 'publish-failed', id: request.id, what: draft.status, reason: outcomes.map((o) => `${o.relay}: ${o.message}`).join('; ') })
    return false
  }

  /** The signed result within what relays take (result-event.ts), or why it cannot be. */
  async result(job: ReplyJob, content: string): Promise<{ ok: true; event: Event } | { ok: false; reason: string }> {
    const draft = job.paidMsats !== undefined ? { content, amountMsats: job.paidMsats } : { content }
    const fit = fitResultEvent(buildResult(job.request, draft, nowSeconds(), job.encrypt))
    if (!fit.ok) return { ok: false, reason: resultTooLargeMessage(fit.bytes) }
    return { ok: true, event: await this.o.signer.sign(fit.template) }
  }

  /** True once a relay took the result; false when none did before the deadline (or the provider stopped). */
  async publishResult(job: ReplyJob, ev: Event, content: string): Promise<boolean> {
    const deadline = Date.now() + this.o.resultPublishDeadlineMs
    // A result is the thing that was paid for: keep trying through a relay restart.
    for (;;) {
      const outcomes = await this.publish(ev, job)
      const accepted = outcomes.filter((o) => o.ok).length
      if (accepted > 0) {
        this.o.activity({ type: 'result', id: job.request.id, bytes: Buffer.byteLength(content), relays: accepted })
        return true
      }
      if (Date.now() >= deadline || this.o.stopped()) {
        this.o.activity({ type: 'publish-failed', id: job.request.id, what: 'result', reason: outcomes.map((o) => `${o.relay}: ${o.message}`).join('; ') })
        return false
      }
      await new Promise((r) => setTimeout(r, 500))
    }
  }

  /** Whether an error answer to a request refused before any work may go out (the global limit). */
  mayAnswerError(id: string): boolean {
    if (!this.o.errorReplies || this.o.errorReplies.take()) return true
    this.o.activity({ type: 'unanswered', id, reason: 'error replies are rate limited' })
    return false
  }

  /** Answer a request that never became a job (malformed, undecryptable, rate limited, busy), within the global limit. */
  rejectRaw(event: Event, reason: string, scheme?: EncryptionScheme): void {
    if (!this.mayAnswerError(event.id)) return
    const request = { id: event.id, customer: event.pubkey }
    const encrypt = scheme ? (text: string) => encryptFor(this.o.secretKey, event.pubkey, text, scheme) : undefined
    void this.o.signer
      .sign(buildFeedback(request, { status: 'error', extra: reason }, nowSeconds(), encrypt))
      .then((ev) => this.o.pool.publish(ev))
      .then(
        (outcomes) => {
          if (!outcomes.some((o) => o.ok)) this.o.activity({ type: 'publish-failed', id: event.id, what: 'error', reason: outcomes.map((o) => o.message).join('; ') })
        },
        (err: unknown) => this.o.activity({ type: 'publish-failed', id: event.id, what: 'error', reason: (err as Error).message }),
      )
  }

  /**
   * Publish to our relays and wait for them; also send to the relays the
   * request names, without waiting: an unreachable relay chosen by the
   * customer must not stall the job.
   */
  private publish(ev: Event, job: ReplyTarget): Promise<PublishOutcome[]> {
    const extra = this.replyRelays(job)
    if (extra) void extra.then((relays) => (relays.length > 0 ? this.o.pool.publish(ev, { relays }) : undefined)).catch(() => undefined)
    return this.o.pool.publish(ev)
  }

  /** The request's `relays` its replies may also go to, checked once per job. */
  private replyRelays(job: ReplyTarget): Promise<string[]> | undefined {
    if (!this.o.requestRelays || job.request.relays.length === 0) return undefined
    job.replyRelays ??= this.o.targets.choose(job.request.relays).then(
      ({ use, skipped }) => {
        if (skipped.length > 0) this.o.activity({ type: 'relays-skipped', id: job.request.id, relays: skipped })
        return use
      },
      () => [],
    )
    return job.replyRelays
  }
}
