import type { Chunk, Job, JobInput } from '../processors/types.js'
import { BoundedSet, LruMap } from '../nostr/bounded.js'
import { decryptFrom, encryptFor, EncryptionError, type EncryptionScheme } from '../nostr/encryption.js'
import { loadNostrCrypto, nowSeconds, tagValue, type Event, type NostrCrypto } from '../nostr/events.js'
import {
  addressedProviders,
  cancelledRequestIds,
  DELETION_KIND,
  isEncryptedRequest,
  isJobRequestKind,
  NIP90_LIMITS,
  parseJobRequest,
  parsePrivateTags,
  type FeedbackDraft,
  type JobRequest,
  type ReplyEncryptor,
} from '../nostr/nip90.js'
import { RelayPool, type PoolSubscription } from '../nostr/relay-client.js'
import { inlineSigner, threadedSigner, type EventSigner } from '../nostr/signer.js'
import { ChainError, ChainResolver } from './chain.js'
import { JobQueue, QueueFullError, type QueueSlot } from './job-queue.js'
import { PaymentRefused, WalletJobPayments, type JobPayments } from './job-payments.js'
import { JobReplies } from './job-replies.js'
import { PubkeyRateLimiter, TokenBucket, type RateLimitOptions } from './rate-limit.js'
import type { JobActivity, RelayJobServiceOptions } from './relay-job-options.js'
import { RelayTargets } from './relay-targets.js'
import { jobCacheKey, ResultCache, withoutPaymentParams } from './result-cache.js'
import { ResultSizeMeter, resultTooLargeMessage } from './result-event.js'
import { PartialStream } from './partial-stream.js'
import { RefundLedger } from './refund-ledger.js'
import { Refunds, type PublishRefund, type RefundJob, type RefundOutcome } from './refunds.js'

/**
 * The provider's NIP-90 service: takes job requests from relays, runs them
 * through the processor, and answers with feedback (kind 7000) and results
 * (kind + 1000). See docs/nip90.md for the behaviour customers can rely on.
 * Options and activity types: relay-job-options.ts; replies: job-replies.ts.
 */
export type { JobActivity, RelayJobServiceOptions } from './relay-job-options.js'

interface ActiveJob {
  request: JobRequest
  abort: AbortController
  encrypt?: ReplyEncryptor
  /** its place in the queue, taken on arrival */
  slot: QueueSlot
  /** any feedback sent: then the job also ends with `success` */
  feedbackSent: boolean
  processingSent: boolean
  /** the processor ran (or the cache answered) */
  started: boolean
  paidMsats?: number
  seq: number
  /** extra relays (the request's `relays`) its replies also go to, once checked */
  replyRelays?: Promise<string[]>
  done?: Promise<void>
}

class JobFailure extends Error {
  override name = 'JobFailure'
}

class Cancelled extends Error {
  override name = 'Cancelled'
  constructor() {
    super('cancelled by the customer')
  }
}

const DEFAULTS = {
  maxJobs: 4,
  maxQueued: 128,
  maxWaiting: 64,
  jobTimeoutMs: 5 * 60_000,
  paymentTimeoutMs: 10 * 60_000,
  chainTimeoutMs: 10 * 60_000,
  processingFeedbackAfterMs: 300,
  partialIntervalMs: 250,
  resultPublishDeadlineMs: 60_000,
  rateLimit: { perMinute: 120, burst: 30 } satisfies RateLimitOptions,
  errorReplyLimit: { perMinute: 600, burst: 100 },
  /** an error reason is cut to this many characters (clients read at most 1000) */
  maxReasonChars: 1000,
  stopGraceMs: 3000,
  refundRetryMs: 60_000,
}

export class RelayJobService {
  private readonly opts: RelayJobServiceOptions
  private readonly me: string
  private readonly ownsPool: boolean
  private pool: RelayPool | undefined
  private crypto: NostrCrypto | undefined
  private signer: EventSigner | undefined
  private readonly queue: JobQueue
  private readonly limiter: PubkeyRateLimiter | undefined
  private readonly errorReplies: TokenBucket | undefined
  private replies: JobReplies | undefined
  private readonly cache: ResultCache | undefined
  private chain: ChainResolver | undefined
  private payments: JobPayments | undefined
  /** refunds for paid jobs that end without a result; absent without a ledger dir */
  private refunds: Refunds | undefined
  private refundTimer: NodeJS.Timeout | undefined
  private refundRetry: Promise<void> | undefined
  private readonly jobs = new Map<string, ActiveJob>()
  /** every request id seen, so a second relay's copy (or a resubscribe) is not handled twice */
  private readonly handled = new BoundedSet<string>(100_000)
  /** deletions that arrived before their request: id -> author */
  private readonly earlyCancels = new LruMap<string, string>(10_000)
  private waiting = 0
  private subs: PoolSubscription[] = []
  private outputIsText = true
  private started = false
  private stopped = false

  constructor(opts: RelayJobServiceOptions) {
    for (const k of opts.kinds) if (!isJobRequestKind(k)) throw new RangeError(`--kind ${k} is not a job request kind (5000-5999)`)
    if (opts.kinds.length === 0) throw new Error('no job kinds given; pass --kind=5050 (or another 5000-5999 kind)')
    this.opts = opts
    this.me = opts.identity.pubkey
    this.ownsPool = Array.isArray(opts.relays)
    this.queue = new JobQueue(opts.maxJobs ?? DEFAULTS.maxJobs, opts.maxQueued ?? DEFAULTS.maxQueued)
    const rl = opts.rateLimit === undefined ? DEFAULTS.rateLimit : opts.rateLimit
    this.limiter = rl ? new PubkeyRateLimiter(rl) : undefined
    const er = opts.errorReplyLimit === undefined ? DEFAULTS.errorReplyLimit : opts.errorReplyLimit
    this.errorReplies = er ? new TokenBucket(er) : undefined
    this.cache = opts.resultCache === false ? undefined : new ResultCache(opts.resultCache)
    if (this.pricePerJob() > 0 && !opts.payments && !(opts.wallet && opts.mintUrl)) {
      throw new Error(`jobs cost ${this.pricePerJob()} sats but no wallet and mint were given to take payment; pass --mint (or set the price below --min-price)`)
    }
  }

  /** Slots free right now, for the heartbeat. */
  get capacity(): { free: number; max: number; queued: number } {
    return { free: this.queue.free, max: this.queue.concurrency, queued: this.queue.queued }
  }

  /** The pool in use (available after start). */
  get relayPool(): RelayPool {
    if (!this.pool) throw new Error('the relay job service is not started')
    return this.pool
  }

  async start(): Promise<void> {
    if (this.started) throw new Error('the relay job service was already started')
    this.started = true
    // Requests from the moment start() was called on; earlier ones are not ours to serve.
    const since = nowSeconds()
    this.crypto = this.opts.crypto ?? (await loadNostrCrypto())
    const threaded = this.opts.signingThread ?? this.crypto.backend !== 'native'
    this.signer = threaded
      ? await threadedSigner(this.crypto, this.opts.identity.secretKey, this.opts.log)
      : inlineSigner(this.crypto, this.opts.identity.secretKey)
    this.pool = Array.isArray(this.opts.relays) ? new RelayPool({ crypto: this.crypto, relays: this.opts.relays }) : this.opts.relays
    this.chain = new ChainResolver(this.pool, this.me)
    const pool = this.pool
    this.replies = new JobReplies({
      pool,
      signer: this.signer,
      secretKey: this.opts.identity.secretKey,
      targets: new RelayTargets({ ownRelays: () => pool.relays, allowPrivate: this.opts.privateRequestRelays === true }),
      requestRelays: this.opts.requestRelays !== false,
      errorReplies: this.errorReplies,
      resultPublishDeadlineMs: this.opts.resultPublishDeadlineMs ?? DEFAULTS.resultPublishDeadlineMs,
      stopped: () => this.stopped,
      activity: (a) => this.activity(a),
    })
    this.payments =
      this.opts.payments ??
      (this.opts.wallet && this.opts.mintUrl
        ? new WalletJobPayments({
            mintUrl: this.opts.mintUrl,
            wallet: this.opts.wallet,
            ...(this.opts.acceptedMints ? { acceptedMints: this.opts.acceptedMints } : {}),
            ...(this.opts.paymentPrivkey ? { paymentPrivkey: this.opts.paymentPrivkey } : {}),
            ...(this.opts.offlineProofs ? { offline: this.opts.offlineProofs } : {}),
            ...(this.opts.onOfflineProofs ? { onOfflineAccepted: this.opts.onOfflineProofs } : {}),
            invoiceTimeoutMs: this.opts.paymentTimeoutMs ?? DEFAULTS.paymentTimeoutMs,
          })
        : undefined)
    await this.openRefunds()
    const info = await this.opts.processor.describe()
    this.outputIsText = /^text\/|json|xml|yaml/.test(info.output)
    this.subs.push(
      this.pool.subscribe([{ kinds: this.opts.kinds, since }], {
        onevent: (ev) => this.onRequest(ev),
      }),
      // NIP-09 asks deletions to carry `k` tags; that lets us hear only ours.
      this.pool.subscribe([{ kinds: [DELETION_KIND], '#k': this.opts.kinds.map(String), since }], {
        onevent: (ev) => this.onDeletion(ev),
      }),
    )
    // Refunds owed from before (a crash, a mint that was down) go out now and then on a timer.
    if (this.refunds && this.opts.wallet) {
      this.retryRefunds()
      this.refundTimer = setInterval(() => this.retryRefunds(), this.opts.refundRetryMs ?? DEFAULTS.refundRetryMs)
      this.refundTimer.unref()
    }
  }

  /** Open the refund ledger; jobs a crashed process left paid but unfinished are owed back. */
  private async openRefunds(): Promise<void> {
    const dir = this.opts.dataDir ?? walletDir(this.opts.wallet)
    if (!dir) return
    const log = this.opts.log ?? (() => undefined)
    this.refunds = new Refunds({
      ledger: await RefundLedger.open(dir),
      wallet: this.opts.wallet,
      secretKey: this.opts.identity.secretKey,
      log,
      onRefunded: (id, sats) => this.activity({ type: 'refunded', id, sats }),
      onOwed: (id, sats, reason) => this.activity({ type: 'refund-owed', id, sats, reason }),
    })
    // A request this provider invoiced or took money for before a restart is not served
    // again (a quick restart's subscription can reach back to it): its refund is what is owed.
    for (const id of this.refunds.jobIds()) this.handled.add(id)
    const orphans = await this.refunds.adoptOrphans()
    if (orphans > 0) log(`${orphans} paid relay job${orphans > 1 ? 's were' : ' was'} cut off by the last stop or crash; refunding`)
  }

  /** One pass over refunds not yet made or published (never two passes at once). */
  private retryRefunds(): void {
    const refunds = this.refunds
    if (!refunds || this.refundRetry || this.stopped || refunds.pending === 0) return
    const late = this.payments?.lateInvoice?.bind(this.payments)
    const publish: PublishRefund = (e, tag, note) =>
      this.replies!.standaloneFeedback({ id: e.id, customer: e.customer, relays: e.relays ?? [] }, { status: 'error', extra: withNote(e.reason ?? 'the job failed', note), refund: tag })
    this.refundRetry = (async () => {
      // Invoices paid after their job ended become refunds owed, made in the same pass.
      if (late) await refunds.lateInvoices(late, (id) => this.jobs.has(id))
      await refunds.retry(publish)
    })()
      .catch((err: Error) => this.opts.log?.(`retrying refunds failed: ${err.message}`))
      .finally(() => (this.refundRetry = undefined))
  }

  /** Stop taking requests, cancel running jobs (they get an `error` feedback), close the pool if we opened it. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearInterval(this.refundTimer)
    for (const s of this.subs) s.close()
    this.subs = []
    const running = [...this.jobs.values()]
    // Aborting also ends their invoice watches: nothing polls the mint for them afterwards.
    for (const j of running) j.abort.abort(new JobFailure('the provider is shutting down'))
    // Give the error feedback a moment to go out, but not forever.
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.allSettled([...running.map((j) => j.done), this.refundRetry]),
      new Promise((r) => (timer = setTimeout(r, DEFAULTS.stopGraceMs))),
    ])
    clearTimeout(timer)
    this.chain?.close()
    await this.signer?.close()
    if (this.ownsPool) this.pool?.close()
  }

  // ------------------------------------------------------------ intake

  private onRequest(event: Event): void {
    if (this.stopped || !this.handled.add(event.id)) return
    const ignore = (reason: string): void => this.activity({ type: 'ignored', id: event.id, reason })
    const providers = addressedProviders(event)
    if (providers.length > 0 && !providers.includes(this.me)) return ignore('addressed to other providers')
    if (providers.length === 0 && this.opts.acceptUnaddressed === false) return ignore('addressed to no provider')
    const exp = Number(tagValue(event, 'expiration'))
    if (Number.isFinite(exp) && exp > 0 && exp <= nowSeconds()) return ignore('expired')
    const cancelledBy = this.earlyCancels.peek(event.id)
    if (cancelledBy === event.pubkey) return ignore('cancelled before it arrived')
    if (this.limiter) {
      const d = this.limiter.take(event.pubkey)
      if (!d.ok) {
        if (d.notify) this.rejectRaw(event, `rate limited: too many requests from your key; retry in ${Math.ceil(d.retryAfterMs / 1000)} s`)
        return ignore('rate limited')
      }
    }

    let privateTags: string[][] | undefined
    let scheme: EncryptionScheme | undefined
    if (isEncryptedRequest(event)) {
      try {
        const { plaintext, scheme: s } = decryptFrom(this.opts.identity.secretKey, event.pubkey, event.content)
        scheme = s
        const parsed = parsePrivateTags(plaintext)
        if (!parsed.ok) return this.rejectRaw(event, parsed.reason, s)
        privateTags = parsed.value
      } catch (err) {
        return this.rejectRaw(event, err instanceof EncryptionError ? err.message : `cannot decrypt the request (${(err as Error).message})`)
      }
    }
    const parsed = parseJobRequest(event, privateTags)
    if (!parsed.ok) return this.rejectRaw(event, parsed.reason, scheme)
    const request = parsed.value
    if (request.inputs.length === 0) return this.rejectRaw(event, 'the request has no input; add an "i" tag', scheme)

    // Capacity is decided here, before any payment is asked for: the job keeps
    // this place until it runs, so once paid it is never refused as busy.
    const slot = this.queue.reserve()
    if (!slot) return this.rejectRaw(event, `busy: ${this.jobs.size} jobs in hand; try again later`, scheme)

    const job: ActiveJob = { request, abort: new AbortController(), slot, feedbackSent: false, processingSent: false, started: false, seq: 0 }
    if (scheme) {
      const sk = this.opts.identity.secretKey
      job.encrypt = (text) => encryptFor(sk, request.customer, text, scheme)
    }
    this.jobs.set(request.id, job)
    this.activity({ type: 'request', id: request.id, customer: request.customer, kind: request.kind, encrypted: Boolean(scheme) })
    // runJob answers its own failures; anything escaping it (a signer closed
    // under it at stop) is logged, never an unhandled rejection that ends the process
    job.done = this.runJob(job)
      .catch((err: Error) => this.opts.log?.(`job ${request.id}: ${err.message}`))
      .finally(() => {
        job.slot.release()
        this.jobs.delete(request.id)
      })
  }

  private onDeletion(event: Event): void {
    for (const id of cancelledRequestIds(event)) {
      const job = this.jobs.get(id)
      if (job) {
        // Only the customer who asked can cancel.
        if (job.request.customer === event.pubkey && !job.abort.signal.aborted) job.abort.abort(new Cancelled())
      } else if (!this.handled.has(id)) {
        this.earlyCancels.set(id, event.pubkey)
      }
    }
  }

  // ------------------------------------------------------------ one job

  private async runJob(job: ActiveJob): Promise<void> {
    const { request } = job
    const signal = job.abort.signal
    try {
      const input = await this.resolveInputs(job)
      // the token pays; it is not an input, and must reach neither the processor nor its backend
      const work: Job = { id: request.id, kind: request.kind, input, params: withoutPaymentParams(request.params), customer: request.customer }
      if (request.output !== undefined) work.output = request.output
      // Checked before any payment: a paid job is not refused for expiring while it waited its turn.
      if (request.expiration !== undefined && request.expiration <= nowSeconds()) throw new JobFailure('the request expired before it could run')
      await this.takePayment(job, work)
      signal.throwIfAborted()

      const key = this.cache ? jobCacheKey(work) : undefined
      const cached = key ? this.cache!.get(key) : undefined
      let content: string
      if (cached !== undefined) {
        job.started = true
        job.slot.release()
        this.activity({ type: 'started', id: request.id, cached: true })
        content = cached
      } else {
        content = await this.queue.run(() => this.execute(job, work), signal, job.slot)
        if (key) this.cache!.set(key, content)
      }
      const result = await this.replies!.result(job, content)
      if (!result.ok) throw new JobFailure(result.reason)
      // A customer that followed the job's feedback sees it close with
      // `success` before the result arrives (its client stops listening then).
      if (job.feedbackSent) await this.feedback(job, { status: 'success' })
      // A result no relay took never reaches the customer: that job is refunded like a failed one.
      if (!(await this.replies!.publishResult(job, result.event, content))) {
        throw new JobFailure(this.stopped ? 'the provider stopped before a relay took the result' : 'no relay took the result in time')
      }
      await this.refunds?.delivered(request.id)
      this.chain!.record(request.id, { ok: true, text: content, customer: request.customer, encrypted: Boolean(request.encryption) })
    } catch (err) {
      const reason = this.reasonOf(err, signal)
      this.chain!.record(request.id, { ok: false, text: reason, customer: request.customer, encrypted: Boolean(request.encryption) })
      if (signal.reason instanceof Cancelled) this.activity({ type: 'cancelled', id: request.id })
      else this.activity({ type: 'failed', id: request.id, reason })
      // A job that was paid for, ran, or was already answered is owed its ending;
      // one refused before any of that (unpayable, malformed chain …) shares the global limit.
      const owed = job.paidMsats !== undefined || job.started || job.feedbackSent
      if (owed || this.replies!.mayAnswerError(request.id)) await this.closeWithError(job, reason)
    }
  }

  /** The closing `error`; a paid job's carries its refund, recorded before it is published. */
  private async closeWithError(job: ActiveJob, reason: string): Promise<void> {
    const refund = job.paidMsats !== undefined ? await this.settleRefund(job, reason) : undefined
    let ok = false
    try {
      ok = await this.feedback(job, { status: 'error', extra: withNote(reason, refund?.note ?? ''), ...(refund?.tag ? { refund: refund.tag } : {}) })
    } catch (err) {
      this.activity({ type: 'publish-failed', id: job.request.id, what: 'error', reason: (err as Error).message })
    } finally {
      // Not published (no relay, or the signer closed mid-stop): the same token goes out on the next retry.
      if (refund?.tag) await this.refunds!.published(job.request.id, ok)
    }
  }

  private async settleRefund(job: ActiveJob, reason: string): Promise<RefundOutcome> {
    if (!this.refunds) {
      this.opts.log?.(`job ${job.request.id} was paid ${job.paidMsats! / 1000} sats and failed, but this service has no refund ledger (no dataDir or wallet); it is not refunded`)
      return { note: '; the payment is not refunded automatically; ask the provider' }
    }
    return this.refunds.settle(job.request.id, reason)
  }

  private reasonOf(err: unknown, signal: AbortSignal): string {
    let reason: string
    if (signal.aborted && signal.reason instanceof Error) reason = signal.reason.message
    else if (err instanceof JobFailure || err instanceof PaymentRefused || err instanceof ChainError || err instanceof QueueFullError) reason = err.message
    // Processor and mint errors are passed on: they are written to be read.
    else reason = err instanceof Error ? `the job failed: ${err.message}` : 'the job failed'
    // A processor's message can be any size; the feedback event must stay small.
    return reason.length > DEFAULTS.maxReasonChars ? `${reason.slice(0, DEFAULTS.maxReasonChars - 1)}…` : reason
  }

  private async resolveInputs(job: ActiveJob): Promise<JobInput[]> {
    const { request } = job
    if (!request.inputs.some((i) => i.type === 'job')) return request.inputs
    const timeoutMs = this.opts.chainTimeoutMs ?? DEFAULTS.chainTimeoutMs
    return this.whileWaiting(() => withTimeout(job.abort.signal, timeoutMs, 'the earlier job in the chain gave no result in time', (signal) =>
      Promise.all(
        request.inputs.map(async (i) => {
          if (i.type !== 'job') return i
          const text = await this.chain!.wait(i.value, request.customer, signal)
          const resolved: JobInput = { type: 'text', value: text }
          if (i.marker !== undefined) resolved.marker = i.marker
          return resolved
        }),
      ),
    ))
  }

  /** Sats this provider charges for one relay job. */
  private pricePerJob(): number {
    const p = this.opts.pricing?.perJob ?? this.opts.pricing?.perRequest ?? 0
    return Number.isFinite(p) && p > 0 ? Math.ceil(p) : 0
  }

  private async takePayment(job: ActiveJob, work: Job): Promise<void> {
    const sats = this.pricePerJob()
    if (sats === 0 || sats < (this.opts.minPrice ?? 0)) return
    const msats = sats * 1000
    const { request } = job
    const owedTo = refundJob(request)
    if (request.bidMsats !== undefined && request.bidMsats < msats) {
      throw new JobFailure(`this job costs ${msats} msats; your bid of ${request.bidMsats} msats is below it`)
    }
    const payments = this.payments
    if (!payments) throw new JobFailure('this provider cannot take payments right now')
    const token = request.params.cashu
    if (token !== undefined) {
      // The whole token is taken (change is not given back): customers send the price exactly.
      const got = await payments.acceptToken(token, sats, request.id).catch(async (err: unknown) => {
        // Part of it was taken before it fell short: that part is refunded like a failed job.
        if (err instanceof PaymentRefused && err.receivedSats > 0) {
          job.paidMsats = err.receivedSats * 1000
          await this.refunds?.paid(owedTo, err.receivedSats)
        }
        throw err
      })
      job.paidMsats = got * 1000
      await this.refunds?.paid(owedTo, got)
      this.activity({ type: 'paid', id: request.id, sats: got, via: 'cashu' })
      await this.feedback(job, { status: 'processing', extra: `paid ${got} sats in ecash` })
      job.processingSent = true
      return
    }
    // No point waiting for a payment past the request's own expiration.
    const untilExpiry = request.expiration !== undefined ? request.expiration * 1000 - Date.now() : Infinity
    const paymentTimeoutMs = Math.min(this.opts.paymentTimeoutMs ?? DEFAULTS.paymentTimeoutMs, untilExpiry)
    const unpaid = paymentTimeoutMs === untilExpiry ? 'the invoice was not paid before the request expired' : 'the invoice was not paid in time'
    await this.whileWaiting(() => withTimeout(job.abort.signal, paymentTimeoutMs, unpaid, async (signal) => {
      const invoice = await payments.invoice(sats, signal)
      await this.refunds?.invoiced(owedTo, sats, invoice.quote, invoice.expiresAt)
      if (!signal.aborted) {
        this.activity({ type: 'payment-required', id: request.id, sats, bolt11: invoice.bolt11 })
        await this.feedback(job, { status: 'payment-required', amountMsats: msats, bolt11: invoice.bolt11, extra: `pay ${sats} sats to start the job` })
      }
      // Even when the job is already over, this takes one last look: money that did
      // arrive resolves it, is recorded as paid below, and goes back as a refund.
      await invoice.settled(signal)
    }))
    job.paidMsats = msats
    await this.refunds?.paid(owedTo, sats)
    this.activity({ type: 'paid', id: request.id, sats, via: 'invoice' })
    await this.feedback(job, { status: 'processing', extra: 'payment received' })
    job.processingSent = true
  }

  /** Bound the number of jobs parked on a payment or a chain. */
  private async whileWaiting<T>(fn: () => Promise<T>): Promise<T> {
    if (this.waiting >= (this.opts.maxWaiting ?? DEFAULTS.maxWaiting)) throw new JobFailure('busy: too many jobs waiting for payment or earlier jobs; try again later')
    this.waiting++
    try {
      return await fn()
    } finally {
      this.waiting--
    }
  }

  /** Run the processor, streaming `partial` feedback; returns the whole output. */
  private async execute(job: ActiveJob, work: Job): Promise<string> {
    job.started = true
    this.activity({ type: 'started', id: job.request.id, cached: false })
    const timeoutMs = this.opts.jobTimeoutMs ?? DEFAULTS.jobTimeoutMs
    return withTimeout(job.abort.signal, timeoutMs, `the job ran longer than ${Math.round(timeoutMs / 1000)} s`, async (signal) => {
      const processingTimer = job.processingSent
        ? undefined
        : setTimeout(
            () => void this.sendProcessing(job).catch((err: Error) => this.opts.log?.(`job ${job.request.id}: processing feedback failed: ${err.message}`)),
            this.opts.processingFeedbackAfterMs ?? DEFAULTS.processingFeedbackAfterMs,
          )
      const partials = new PartialStream(
        async (piece) => {
          if (!job.processingSent) await this.sendProcessing(job)
          await this.feedback(job, { status: 'partial', content: piece, seq: job.seq++ })
        },
        this.opts.partialIntervalMs ?? DEFAULTS.partialIntervalMs,
        NIP90_LIMITS.maxPartialBytes / 4,
      )
      const decoder = new TextDecoder()
      const parts: string[] = []
      const binary: Uint8Array[] = []
      let bytes = 0
      // Stop as soon as the output cannot fit a result event (escaped or encrypted), not at the end.
      const meter = new ResultSizeMeter(job.encrypt ? job.request.encryption : undefined)
      const check = (): void => {
        if (bytes > NIP90_LIMITS.maxResultBytes) throw new JobFailure(`the output is over ${NIP90_LIMITS.maxResultBytes} bytes, more than a relay event carries; ask for less`)
        if (meter.tooLarge) throw new JobFailure(resultTooLargeMessage(meter.estimatedEventBytes))
      }
      try {
        for await (const chunk of this.opts.processor.run(work, signal) as AsyncIterable<Chunk>) {
          signal.throwIfAborted()
          if (typeof chunk !== 'string' && !this.outputIsText) {
            // Binary output goes out base64-encoded in the result, without partials.
            binary.push(chunk)
            bytes += Math.ceil(chunk.byteLength / 3) * 4
            meter.addAscii(Math.ceil(chunk.byteLength / 3) * 4)
            check()
            continue
          }
          const text = typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true })
          bytes += Buffer.byteLength(text)
          meter.add(text)
          check()
          parts.push(text)
          partials.push(text)
        }
        signal.throwIfAborted()
        if (binary.length > 0) return Buffer.concat(binary).toString('base64')
        const tail = decoder.decode()
        if (tail) {
          parts.push(tail)
          partials.push(tail)
        }
        await partials.finish()
        return parts.join('')
      } finally {
        clearTimeout(processingTimer)
        await partials.cancel()
      }
    })
  }

  private async sendProcessing(job: ActiveJob): Promise<void> {
    if (job.processingSent) return
    job.processingSent = true
    await this.feedback(job, { status: 'processing' })
  }

  // ------------------------------------------------------------ replies

  private feedback(job: ActiveJob, draft: FeedbackDraft): Promise<boolean> {
    return this.replies!.feedback(job, draft)
  }

  /** Answer a request that never became a job; a job chained onto it fails now instead of waiting for a result that will not come. */
  private rejectRaw(event: Event, reason: string, scheme?: EncryptionScheme): void {
    this.activity({ type: 'rejected', id: event.id, reason })
    this.chain?.record(event.id, { ok: false, text: reason, customer: event.pubkey, encrypted: isEncryptedRequest(event) })
    this.replies?.rejectRaw(event, reason, scheme)
  }

  private activity(a: JobActivity): void {
    this.opts.onActivity?.(a)
  }
}

/** The error reason with a refund note after it, within what clients read (1000 characters). */
function withNote(reason: string, note: string): string {
  const room = DEFAULTS.maxReasonChars - note.length
  return (reason.length > room ? `${reason.slice(0, room - 1)}…` : reason) + note
}

/** The data dir of a wallet that has one (the project's Wallet does): the refund ledger's default home. */
function walletDir(wallet: unknown): string | undefined {
  const dir = (wallet as { dataDir?: unknown } | undefined)?.dataDir
  return typeof dir === 'string' ? dir : undefined
}

/**
 * Run `fn` with a signal that aborts with `parent` or after `ms` (reason:
 * JobFailure(message)); the timer, the link to `parent` and the signal itself
 * never outlive `fn`.
 * Linked by hand: AbortSignal.any costs a weak reference and a finalizer per
 * call, which shows at a thousand jobs a second.
 */
async function withTimeout<T>(parent: AbortSignal, ms: number, message: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const c = new AbortController()
  const onParent = (): void => c.abort(parent.reason)
  if (parent.aborted) onParent()
  else parent.addEventListener('abort', onParent, { once: true })
  const t = setTimeout(() => c.abort(new JobFailure(message)), ms)
  try {
    return await fn(c.signal)
  } catch (err) {
    // Whatever the work threw on its way out, the abort is the real reason.
    throw c.signal.aborted ? c.signal.reason : err
  } finally {
    clearTimeout(t)
    parent.removeEventListener('abort', onParent)
    // Whatever `fn` left tied to the signal (an invoice watch, a processor's request) ends with it.
    if (!c.signal.aborted) c.abort(new JobFailure('finished'))
  }
}

/** What the refund ledger keeps of a request. */
function refundJob(request: JobRequest): RefundJob {
  return { id: request.id, customer: request.customer, scheme: request.encryption ?? 'nip44', ...(request.relays.length > 0 ? { relays: request.relays } : {}) }
}
