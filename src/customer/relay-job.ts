import type { Identity } from '../identity/nostr-key.js'
import type { JobInput } from '../processors/types.js'
import { decryptFrom, encryptFor } from '../nostr/encryption.js'
import { nowSeconds, type Event, type NostrCrypto } from '../nostr/events.js'
import {
  buildCancellation,
  buildJobRequest,
  JOB_FEEDBACK_KIND,
  parseFeedback,
  parseResult,
  resultKindFor,
  withoutRefundNote,
  type JobFeedback,
  type RequestDraft,
} from '../nostr/nip90.js'
import type { PoolSubscription, PublishOutcome, RelayPool } from '../nostr/relay-client.js'
import { bolt11AmountMsats } from './bolt11.js'
import { announcedKinds, KindNotServedError } from './discovery.js'

/**
 * The customer side of a NIP-90 job over relays: publish a request, follow its
 * feedback (partial output in order, payment requests checked against the
 * bid and paid once), and resolve with the result. Several requests can be
 * followed at once, which is how a chain runs.
 */
export interface JobSpec {
  kind: number
  inputs: JobInput[]
  params?: Record<string, string>
  output?: string
  /** hex pubkey; required to encrypt */
  provider?: string
  /** the most this job may cost, in millisats; also sent as the `bid` tag */
  bidMsats?: number
  encrypt?: boolean
  /** NIP-40 expiration, seconds from now */
  expiresInSeconds?: number
}

export type CustomerEvent =
  | { type: 'published'; step: number; id: string; outcomes: PublishOutcome[] }
  | { type: 'feedback'; step: number; id: string; provider: string; status: JobFeedback['status']; extra?: string }
  | { type: 'partial'; step: number; id: string; provider: string; text: string }
  | { type: 'payment-required'; step: number; id: string; provider: string; amountMsats: number; bolt11: string }
  | { type: 'paid'; step: number; id: string; provider: string; amountMsats: number }
  /** the mint says the invoice is paid already (a devnet FakeWallet pays its own invoices): nothing was spent, the job goes on */
  | { type: 'already-paid'; step: number; id: string; provider: string; reason: string }
  | { type: 'ignored'; step: number; id: string; provider: string; reason: string }
  /** the job failed after it was paid and the provider's refund token is in the wallet: `sats` received, `amountMsats` as the provider's tag says */
  | { type: 'refunded'; step: number; id: string; provider: string; sats: number; amountMsats: number }
  /** a refund came but is not in the wallet (no wallet, another mint, the mint refused it): keep `token` to receive it by hand */
  | { type: 'refund-unclaimed'; step: number; id: string; provider: string; amountMsats: number; token: string; reason: string }

export interface JobOutcome {
  id: string
  provider: string
  content: string
  /** millisats paid for this job */
  paidMsats: number
  /** what the result's `amount` tag says */
  amountMsats?: number
}

/** Pay a bolt11 (by melting ecash at the customer's mint). */
export type PayInvoice = (bolt11: string, amountMsats: number) => Promise<void>

export interface RunOptions {
  identity: Identity
  pool: RelayPool
  crypto: NostrCrypto
  /** no result by then: the job is cancelled (kind 5) and the promise rejects */
  timeoutMs: number
  pay?: PayInvoice
  onEvent?: (e: CustomerEvent) => void
  signal?: AbortSignal
  /**
   * Put a refund token (from a paid job that failed) into the wallet;
   * resolves the sats received, throws saying why it could not. Without it a
   * refund is reported as `refund-unclaimed`, token included.
   */
  receiveRefund?: (token: string) => Promise<number>
  /** after cancelling a job that was paid, how long to wait for its refund (default 5 s) */
  refundWaitMs?: number
}

export class JobError extends Error {
  override name = 'JobError'
  constructor(
    message: string,
    readonly requestId?: string,
    readonly provider?: string,
    /** sats that came back into the wallet from failed or cancelled steps */
    readonly refundedSats = 0,
  ) {
    super(message)
  }
}

const REFUND_WAIT_MS = 5000

/** Run one job. */
export async function runRelayJob(spec: JobSpec, options: RunOptions): Promise<JobOutcome> {
  const [outcome] = await runChain([spec], options)
  return outcome!
}

/**
 * Run jobs where each step after the first takes the previous step's output as
 * its input (`["i", "<previous id>", "job"]`, NIP-90 job chaining). All
 * requests are published at once; providers wait for the step before theirs.
 * Resolves with every step's outcome once the last one has its result.
 */
export async function runChain(steps: JobSpec[], options: RunOptions): Promise<JobOutcome[]> {
  if (steps.length === 0) throw new Error('nothing to run')
  await refuseKindsNotServed(steps, options)
  const createdAt = nowSeconds()
  const events: Event[] = []
  for (const [n, spec] of steps.entries()) {
    const inputs = n === 0 ? spec.inputs : [{ type: 'job' as const, value: events[n - 1]!.id }, ...spec.inputs]
    events.push(signRequest({ ...spec, inputs }, createdAt, options))
  }
  const followers = events.map((ev, n) => new JobFollower(ev, steps[n]!, n, options))
  const deadline = AbortSignal.timeout(options.timeoutMs)
  const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline
  try {
    for (const f of followers) f.listen()
    await Promise.all(
      events.map(async (ev, n) => {
        const outcomes = await options.pool.publish(ev)
        options.onEvent?.({ type: 'published', step: n, id: ev.id, outcomes })
        if (!outcomes.some((o) => o.ok)) {
          throw new JobError(`no relay accepted the request: ${outcomes.map((o) => `${o.relay} (${o.message})`).join(', ')}; check --relay`, ev.id)
        }
      }),
    )
    return await new Promise<JobOutcome[]>((resolve, reject) => {
      const onAbort = (): void => {
        const why = deadline.aborted
          ? `no result within ${Math.round(options.timeoutMs / 1000)} s${followers.some((f) => f.heardFrom) ? '' : ` and no provider answered; is one running for ${kindList(steps)} on these relays?`}`
          : 'cancelled'
        reject(new JobError(why))
      }
      if (signal.aborted) return onAbort()
      signal.addEventListener('abort', onAbort, { once: true })
      Promise.all(followers.map((f) => f.done)).then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
    })
  } catch (err) {
    // Whatever went wrong, tell the providers to stop working on it.
    const open = followers.filter((f) => !f.finished)
    await Promise.all(open.map((f) => f.cancel()))
    // A step that was paid gets its money back in the provider's closing `error`: wait a moment for it.
    const owed = open.filter((f) => f.mayBeRefunded)
    if (owed.length > 0) await settledWithin(owed.map((f) => f.done), options.refundWaitMs ?? REFUND_WAIT_MS)
    throw withRefunds(err, followers.reduce((n, f) => n + f.refundedSats, 0))
  } finally {
    for (const f of followers) f.close()
  }
}

/** How long to look for the named providers' handlers before publishing; a slow relay must not hold the job up much. */
const HANDLER_CHECK_MS = 3000

/**
 * A step sent to a provider whose NIP-89 handlers list other kinds, not the
 * step's, would only wait out the timeout: say so before anything is
 * published or paid. A provider that announces nothing may still serve, so
 * its steps go ahead; so does everything when the relays cannot tell.
 */
async function refuseKindsNotServed(steps: JobSpec[], options: RunOptions): Promise<void> {
  const named = [...new Set(steps.flatMap((s) => (s.provider ? [s.provider] : [])))]
  if (named.length === 0) return
  const announced = await announcedKinds(options.pool, named, Math.min(HANDLER_CHECK_MS, options.timeoutMs)).catch(() => new Map<string, number[]>())
  for (const [n, spec] of steps.entries()) {
    const kinds = spec.provider ? announced.get(spec.provider) : undefined
    if (!kinds || kinds.includes(spec.kind)) continue
    // the first step's kind is --kind; a later one's comes from its --chain step
    const err = n === 0 ? new KindNotServedError(spec.provider!, kinds, spec.kind) : new KindNotServedError(spec.provider!, kinds, spec.kind, `change step ${n + 1} of the chain to a kind it serves`)
    throw new JobError(err.message, undefined, spec.provider)
  }
}

function kindList(steps: JobSpec[]): string {
  const kinds = [...new Set(steps.map((s) => s.kind))]
  return `${kinds.length === 1 ? 'kind' : 'kinds'} ${kinds.join(', ')}`
}

/** Wait for all of `promises` to settle, or `ms`, whichever is first. */
async function settledWithin(promises: Array<Promise<unknown>>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([Promise.allSettled(promises), new Promise((r) => (timer = setTimeout(r, ms)))])
  clearTimeout(timer)
}

/** The error, saying also what came back from the other steps (cancelled ones). */
function withRefunds(err: unknown, total: number): unknown {
  if (!(err instanceof JobError) || total <= err.refundedSats) return err
  const more = total - err.refundedSats
  const what = err.refundedSats > 0 ? `${more} more sats were refunded for the cancelled steps` : `${more} sats were refunded to your wallet`
  return new JobError(`${err.message}; ${what}`, err.requestId, err.provider, total)
}

function signRequest(spec: JobSpec, createdAt: number, options: RunOptions): Event {
  const draft: RequestDraft = { kind: spec.kind, inputs: spec.inputs }
  if (spec.params) draft.params = spec.params
  if (spec.output) draft.output = spec.output
  if (spec.bidMsats !== undefined) draft.bidMsats = spec.bidMsats
  if (spec.provider) draft.providers = [spec.provider]
  if (spec.expiresInSeconds) draft.expiration = createdAt + spec.expiresInSeconds
  draft.relays = options.pool.relays
  let encrypt: ((text: string) => string) | undefined
  if (spec.encrypt) {
    if (!spec.provider) throw new JobError('--encrypt needs a provider to encrypt to; pass --provider=npub… (or let discovery find one)')
    const provider = spec.provider
    encrypt = (text) => encryptFor(options.identity.secretKey, provider, text, 'nip44')
  }
  return options.crypto.sign(buildJobRequest(draft, createdAt, encrypt), options.identity.secretKey)
}

/** Follows one request's feedback and result. */
class JobFollower {
  readonly done: Promise<JobOutcome>
  private resolve!: (o: JobOutcome) => void
  private reject!: (e: Error) => void
  private sub: PoolSubscription | undefined
  /** the provider this job is with: the addressed one, or the first to answer */
  private provider: string | undefined
  private paying = false
  private paidMsats = 0
  /** the devnet's mint paid the invoice itself: the provider counts the job as paid */
  private alreadyPaid = false
  /** the closing `error` is being handled (its refund received): later events change nothing */
  private ending = false
  refundedSats = 0
  private nextSeq = 0
  private readonly early = new Map<number, string>()
  heardFrom = false
  finished = false

  /** Whether the provider may hold a payment for this job, to be refunded if it does not deliver. */
  get mayBeRefunded(): boolean {
    return this.heardFrom && (this.paidMsats > 0 || this.paying || this.alreadyPaid || this.spec.params?.cashu !== undefined)
  }

  constructor(
    private readonly request: Event,
    private readonly spec: JobSpec,
    private readonly step: number,
    private readonly options: RunOptions,
  ) {
    this.provider = spec.provider
    this.done = new Promise((res, rej) => {
      this.resolve = res
      this.reject = rej
    })
    // A step that is never awaited on its own must not raise an unhandled rejection.
    this.done.catch(() => {})
  }

  listen(): void {
    this.sub = this.options.pool.subscribe(
      [{ kinds: [JOB_FEEDBACK_KIND, resultKindFor(this.spec.kind)], '#e': [this.request.id], since: this.request.created_at - 5 }],
      { onevent: (ev) => this.onEvent(ev) },
    )
  }

  close(): void {
    this.sub?.close()
  }

  async cancel(): Promise<void> {
    const ev = this.options.crypto.sign(buildCancellation({ id: this.request.id, kind: this.spec.kind }, nowSeconds()), this.options.identity.secretKey)
    await this.options.pool.publish(ev, { timeoutMs: 3000 }).catch(() => undefined)
  }

  private emit(e: CustomerEvent): void {
    this.options.onEvent?.(e)
  }

  private finish(err: Error | undefined, outcome?: JobOutcome): void {
    if (this.finished) return
    this.finished = true
    this.close()
    if (err) this.reject(err)
    else this.resolve(outcome!)
  }

  private decrypt(content: string, encrypted: boolean, from: string): string {
    if (!encrypted || content.length === 0) return content
    return decryptFrom(this.options.identity.secretKey, from, content).plaintext
  }

  private onEvent(ev: Event): void {
    if (this.finished || this.ending) return
    const id = this.request.id
    if (this.provider && ev.pubkey !== this.provider) {
      return this.emit({ type: 'ignored', step: this.step, id, provider: ev.pubkey, reason: 'not the provider this job is with' })
    }
    if (ev.kind === JOB_FEEDBACK_KIND) return this.onFeedback(ev)
    const r = parseResult(ev)
    if (!r.ok || r.value.requestId !== id || r.value.customer !== this.options.identity.pubkey) {
      return this.emit({ type: 'ignored', step: this.step, id, provider: ev.pubkey, reason: r.ok ? 'result for another request' : r.reason })
    }
    this.provider = ev.pubkey
    this.heardFrom = true
    let content: string
    try {
      content = this.decrypt(r.value.content, r.value.encrypted, ev.pubkey)
    } catch (err) {
      return this.finish(new JobError(`the result could not be read: ${(err as Error).message}`, id, ev.pubkey))
    }
    const outcome: JobOutcome = { id, provider: ev.pubkey, content, paidMsats: this.paidMsats }
    if (r.value.amountMsats !== undefined) outcome.amountMsats = r.value.amountMsats
    this.finish(undefined, outcome)
  }

  private onFeedback(ev: Event): void {
    const id = this.request.id
    const parsed = parseFeedback(ev)
    if (!parsed.ok || parsed.value.requestId !== id) {
      return this.emit({ type: 'ignored', step: this.step, id, provider: ev.pubkey, reason: parsed.ok ? 'feedback for another request' : parsed.reason })
    }
    const fb = parsed.value
    // The first provider to answer an open request is the one we deal with.
    this.provider ??= ev.pubkey
    this.heardFrom = true
    const base = { step: this.step, id, provider: ev.pubkey }
    switch (fb.status) {
      case 'partial': {
        let text: string
        try {
          text = this.decrypt(fb.content, fb.encrypted, ev.pubkey)
        } catch {
          return this.emit({ ...base, type: 'ignored', reason: 'unreadable partial output' })
        }
        this.onPartial(fb.seq, text)
        return
      }
      case 'payment-required':
        this.emit({ ...base, type: 'feedback', status: fb.status, ...(fb.extra ? { extra: fb.extra } : {}) })
        void this.onPaymentRequired(fb)
        return
      case 'error':
        this.emit({ ...base, type: 'feedback', status: fb.status, ...(fb.extra ? { extra: fb.extra } : {}) })
        this.ending = true
        void this.onError(fb)
        return
      default:
        this.emit({ ...base, type: 'feedback', status: fb.status, ...(fb.extra ? { extra: fb.extra } : {}) })
    }
  }

  /** The job failed: take its refund, if it carries one, then end with an error saying both. */
  private async onError(fb: JobFeedback): Promise<void> {
    const reason = fb.refund ? withoutRefundNote(fb.extra ?? '') : fb.extra
    let note = ''
    if (fb.refund) note = await this.takeRefund(fb, fb.refund.msats, fb.refund.ciphertext)
    this.finish(new JobError(`the provider reported an error: ${reason || 'no reason given'}${note}`, this.request.id, fb.provider, this.refundedSats))
  }

  /** Decrypt the refund token and put it in the wallet; returns what the error should add. */
  private async takeRefund(fb: JobFeedback, amountMsats: number, ciphertext: string): Promise<string> {
    const base = { step: this.step, id: this.request.id, provider: fb.provider, amountMsats }
    const sats = Math.floor(amountMsats / 1000)
    let token: string
    try {
      token = decryptFrom(this.options.identity.secretKey, fb.provider, ciphertext).plaintext.trim()
    } catch (err) {
      return `; the provider sent a refund of ${sats} sats that cannot be decrypted (${(err as Error).message})`
    }
    if (!/^cashu[AB][A-Za-z0-9_=+/-]+$/.test(token)) return `; the provider's refund of ${sats} sats is not a Cashu token`
    const unclaimed = (reason: string): string => {
      this.emit({ ...base, type: 'refund-unclaimed', token, reason })
      return `; the provider refunded ${sats} sats, but the token is not in your wallet: ${reason}`
    }
    if (!this.options.receiveRefund) return unclaimed('no wallet to receive it into; keep the token and receive it by hand')
    try {
      const got = await this.options.receiveRefund(token)
      this.refundedSats += got
      this.emit({ ...base, type: 'refunded', sats: got })
      return `; ${got} sats were refunded to your wallet`
    } catch (err) {
      return unclaimed((err as Error).message)
    }
  }

  /** Emit partial output in `seq` order, whatever order the relays deliver it in. */
  private onPartial(seq: number | undefined, text: string): void {
    const base = { type: 'partial' as const, step: this.step, id: this.request.id, provider: this.provider! }
    if (seq === undefined) return this.emit({ ...base, text })
    if (seq < this.nextSeq || this.early.has(seq) || this.early.size > 1000) return
    this.early.set(seq, text)
    for (let t = this.early.get(this.nextSeq); t !== undefined; t = this.early.get(this.nextSeq)) {
      this.early.delete(this.nextSeq)
      this.nextSeq++
      this.emit({ ...base, text: t })
    }
  }

  private async onPaymentRequired(fb: JobFeedback): Promise<void> {
    const id = this.request.id
    const fail = (msg: string): void => this.finish(new JobError(msg, id, fb.provider))
    if (this.paying || this.paidMsats > 0) return // one payment per job
    if (fb.amountMsats === undefined || !fb.bolt11) return fail('the provider asked for payment without an amount and invoice')
    let invoiceMsats: number | undefined
    try {
      invoiceMsats = bolt11AmountMsats(fb.bolt11)
    } catch (err) {
      return fail(`the provider's invoice is unreadable (${(err as Error).message})`)
    }
    if (invoiceMsats === undefined) return fail('the provider sent an invoice without an amount; refusing to pay an open amount')
    if (invoiceMsats !== fb.amountMsats) return fail(`the invoice asks ${invoiceMsats} msats but the provider's amount tag says ${fb.amountMsats}; not paying`)
    if (this.spec.bidMsats === undefined) return fail(`the provider asks ${fb.amountMsats} msats; pass --bid=${fb.amountMsats} (or more) to pay for jobs`)
    if (fb.amountMsats > this.spec.bidMsats) return fail(`the provider asks ${fb.amountMsats} msats, more than your bid of ${this.spec.bidMsats}; not paying`)
    if (!this.options.pay) return fail(`the provider asks ${fb.amountMsats} msats and no wallet is set up to pay`)
    this.emit({ type: 'payment-required', step: this.step, id, provider: fb.provider, amountMsats: fb.amountMsats, bolt11: fb.bolt11 })
    this.paying = true
    try {
      await this.options.pay(fb.bolt11, fb.amountMsats)
      this.paidMsats = fb.amountMsats
      this.emit({ type: 'paid', step: this.step, id, provider: fb.provider, amountMsats: fb.amountMsats })
    } catch (err) {
      const message = (err as Error).message
      if (/already paid/i.test(message)) {
        this.alreadyPaid = true
        this.emit({ type: 'already-paid', step: this.step, id, provider: fb.provider, reason: message })
      } else {
        fail(`paying the provider's invoice failed: ${message}`)
      }
    } finally {
      this.paying = false
    }
  }
}
