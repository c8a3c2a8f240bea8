import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import type { ControlMessage, MessageOf, WireProof } from '../wire/protocol.js'
import type { WireStream } from '../wire/stream.js'
import type { Peer } from '../wire/peer.js'
import type { SkillDescriptor } from '../skills/descriptor.js'
import type { SessionFunds } from './session-funds.js'
import { sameMintSafe } from '../payments/mint-url.js'

export interface SessionOptions {
  peer: Peer
  skill: SkillDescriptor
  kind: number
  mode: 'session' | 'job'
  /** the most this session may cost, sats */
  budget: number
  funds: SessionFunds
  /** refuse a provider asking more than this per minute (sessions) */
  maxPerMinute?: number
  /** refuse a provider giving fewer than this many chunks per sat (jobs) */
  minChunksPerSat?: number
  /** locktime of locked proofs, seconds from now */
  lockSeconds?: number
  /** most ticks locked in one swap; the rest is locked as the session goes */
  batchTicks?: number
  /** how long the session is expected to last (ms), so a short one locks no more than it needs */
  expectedMs?: number
  timeoutMs?: number
  /** end the session when a tick is not answered within this (default max(5 s, 2 ticks)) */
  ackTimeoutMs?: number
  sessionId?: string
}

export interface SessionSummary {
  session: string
  /** sats the provider acknowledged */
  spent: number
  /** proofs locked to the provider but never sent: back to us after `refundAt` */
  lockedUnsent: number
  refundAt: number | null
  reason: string
  /** the provider went away (connection lost, payments unanswered): a reconnect may resume the session */
  providerGone: boolean
}

type Pending = { proof: WireProof; resolve: (ok: boolean) => void; timer: NodeJS.Timeout }

/**
 * This provider will not do, though another might: it refused the session
 * (`code` from its `refuse`: busy, backend-down, …) or its terms are outside
 * the customer's limits (`code` 'terms'). Nothing was locked or paid.
 */
export class ProviderUnsuitable extends Error {
  override name = 'ProviderUnsuitable'
  constructor(readonly code: string, message: string) {
    super(message)
  }
}

/**
 * The customer's end of a paid session: opens it, checks the terms against the
 * skill it was shown and its own limits, locks proofs in batches and sends one
 * per tick, counts acknowledgements, and ends cleanly with an account of every sat.
 */
export class SessionClient extends EventEmitter {
  readonly id: string
  accept: MessageOf<'accept'> | null = null
  spent = 0
  sent = 0
  paidUntil = 0
  ended = false
  private unsent: WireProof[] = []
  private inflight: Pending[] = []
  private lockedTotal = 0
  private locktime = 0
  private timer: NodeJS.Timeout | null = null
  private locking: Promise<void> | null = null
  private peer: Peer
  private readonly onMessageBound = (m: ControlMessage) => this.onMessage(m)
  private readonly onCloseBound = () => this.onPeerClose()

  constructor(private readonly opts: SessionOptions) {
    super()
    this.id = opts.sessionId ?? randomBytes(12).toString('hex')
    this.peer = opts.peer
    this.attach(this.peer)
  }

  private attach(peer: Peer): void {
    peer.on('message', this.onMessageBound)
    peer.on('close', this.onCloseBound)
  }

  private detach(peer: Peer): void {
    peer.off('message', this.onMessageBound)
    peer.off('close', this.onCloseBound)
  }

  get mode(): 'session' | 'job' {
    return this.opts.mode
  }

  get budgetLeft(): number {
    return this.opts.budget - this.sent
  }

  /** Ask for the session and check its terms; resolves with them or rejects with the provider's or our reason. */
  async open(): Promise<MessageOf<'accept'>> {
    const { skill, budget, mode } = this.opts
    if (mode === 'session' && this.opts.maxPerMinute !== undefined && skill.pricing.perMinute > this.opts.maxPerMinute) {
      throw new ProviderUnsuitable('terms', `provider asks ${skill.pricing.perMinute} sats/minute, more than your limit of ${this.opts.maxPerMinute}`)
    }
    const reply = this.waitFor((m) => (m.type === 'accept' || m.type === 'refuse') && m.session === this.id)
    this.peer.send({ type: 'open', session: this.id, kind: this.opts.kind, mode, budget })
    const m = await reply
    if (m.type === 'refuse') throw new ProviderUnsuitable(m.code, `provider refused the session: ${m.reason}`)
    const accept = m as MessageOf<'accept'>
    // the skill we were shown is the price we agreed to; a session may not cost more
    const agreedTickMs = Math.floor(60_000 / skill.pricing.perMinute)
    if (mode === 'session' && accept.tickMs < agreedTickMs) {
      throw new ProviderUnsuitable('terms', `provider's session terms (${accept.tickMs} ms per sat) are dearer than its advertised ${skill.pricing.perMinute} sats/minute; not paying`)
    }
    if (mode === 'job' && accept.chunksPerTick < Math.max(skill.pricing.chunksPerSat, this.opts.minChunksPerSat ?? 1)) {
      throw new ProviderUnsuitable('terms', `provider's job terms (${accept.chunksPerTick} chunks per sat) are worse than advertised or allowed; not paying`)
    }
    if (!accept.mints.some((m) => sameMintSafe(m, this.opts.funds.mintUrl))) {
      throw new ProviderUnsuitable('terms', `provider accepts ecash from ${accept.mints.join(', ')}; your wallet's mint is ${this.opts.funds.mintUrl}`)
    }
    this.accept = accept
    if (budget < 1) throw new Error('budget must be at least 1 sat')
    return accept
  }

  /** Time-based session: send the first tick now and then one per paid interval. */
  startTicking(): void {
    if (!this.accept) throw new Error('open the session first')
    const schedule = () => {
      if (this.ended) return
      if (this.budgetLeft <= 0) {
        // the last paid interval runs out; then the session is over
        const left = Math.max(0, this.paidUntil - Date.now())
        this.timer = setTimeout(() => this.end('budget exhausted'), left)
        return
      }
      this.payOne()
        .then((ok) => {
          if (!ok || this.ended) return
          // next tick shortly before the paid time runs out, so service never pauses
          const lead = Math.min(this.accept!.tickMs / 2, 250)
          const wait = Math.max(0, this.paidUntil - Date.now() - lead)
          this.timer = setTimeout(schedule, Math.min(wait, this.accept!.tickMs))
        })
        .catch((err: Error) => this.end(`payment failed: ${err.message}`))
    }
    schedule()
  }

  /** How many proofs the next swap locks: never past the budget, small at first so the first tick goes out fast. */
  private nextBatchSize(): number {
    const accept = this.accept!
    const remaining = this.opts.budget - this.lockedTotal
    const base = this.opts.batchTicks ?? defaultBatch(accept, this.opts.mode)
    // A session's first swap takes a whole budget of up to MAX_BATCH at once (one mint
    // round trip for a short session); a bigger budget starts with a small swap so the
    // first tick is quick. A job's length is unknown and its budget often far above its
    // cost: it starts with two proofs and doubles what it has locked as it goes (up to a
    // batch), so a small job leaves a sat or two locked until the locktime, not a batch.
    let size: number
    if (this.opts.mode === 'job') size = Math.min(base, Math.max(JOB_FIRST_BATCH, this.lockedTotal))
    else size = this.lockedTotal === 0 ? (this.opts.budget <= MAX_BATCH ? this.opts.budget : Math.min(base, FIRST_BATCH)) : base
    if (this.opts.expectedMs) size = Math.min(size, Math.ceil(this.opts.expectedMs / accept.tickMs) + 1 - this.lockedTotal)
    // with proofs all sent and budget left, lock at least one whatever the estimate said
    return Math.min(remaining, Math.max(size, this.unsent.length === 0 ? 1 : 0))
  }

  /** One swap locking the next batch to the provider; concurrent callers share it. */
  private lockNext(): Promise<void> {
    this.locking ??= (async () => {
      const accept = this.accept!
      const want = this.nextBatchSize()
      if (want <= 0) return
      const lockSeconds = this.opts.lockSeconds ?? 20 * 60
      const locktime = Math.max(Math.ceil(Date.now() / 1000) + lockSeconds, accept.minLocktime)
      const proofs = await this.opts.funds.lock(want, accept.paymentPubkey, locktime)
      this.unsent.push(...proofs)
      this.lockedTotal += proofs.length
      this.locktime = Math.max(this.locktime, locktime)
      this.emit('locked', { count: proofs.length, locktime })
    })().finally(() => (this.locking = null))
    return this.locking
  }

  /** Have a proof ready to send, and lock the next batch in the background before this one runs out. */
  private async ensureProofs(): Promise<void> {
    if (this.unsent.length === 0) await this.lockNext()
    // sessions keep ~5 s of ticks ready; a job pays per batch of chunks and locks more when down to its last proof
    const lowWater = this.opts.mode === 'job' ? 1 : Math.max(2, Math.ceil(5_000 / this.accept!.tickMs))
    if (this.unsent.length <= lowWater && !this.locking && this.lockedTotal < this.opts.budget) {
      this.lockNext().catch((err: Error) => this.emit('lock-error', { error: err.message }))
    }
  }

  /** Send one 1-sat proof; resolves true when acknowledged, false when refused. */
  async payOne(): Promise<boolean> {
    if (this.ended || this.budgetLeft <= 0) return false
    await this.ensureProofs()
    const proof = this.unsent.shift()
    if (!proof) return false
    this.sent += 1
    // a provider that stops answering payments is gone, whatever the connection says
    const ackTimeoutMs = this.opts.ackTimeoutMs ?? Math.max(5_000, 2 * (this.accept?.tickMs ?? 0))
    const acked = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => this.end('provider stopped acknowledging payments', false, true), ackTimeoutMs)
      this.inflight.push({ proof, resolve, timer })
    })
    this.peer.send({ type: 'tick', session: this.id, mint: this.opts.funds.mintUrl, proof })
    this.emit('tick', { sent: this.sent })
    return acked
  }

  private onMessage(m: ControlMessage): void {
    if ('session' in m && m.session !== this.id) return
    switch (m.type) {
      case 'ack': {
        const p = this.inflight.shift()
        if (!p) return
        clearTimeout(p.timer)
        // Counted here, not taken from the ack's `paid`: a provider that restarted
        // and resumed the session counts from zero again, but what we paid before stays paid.
        this.spent += p.proof.amount
        this.paidUntil = m.paidUntil
        this.queueSpent(p.proof)
        this.emit('ack', { paid: this.spent, paidUntil: m.paidUntil })
        p.resolve(true)
        return
      }
      case 'refuse': {
        // with no tick in flight it answers our open, which open() reports
        const p = this.inflight.shift()
        if (!p) return
        this.emit('refuse', { code: m.code, reason: m.reason })
        clearTimeout(p.timer)
        // not spent: it stays ours, reclaimable after its locktime
        this.sent -= 1
        p.resolve(false)
        this.end(`provider refused payment: ${m.reason}`)
        return
      }
      case 'end':
        this.end(`provider ended the session: ${m.reason}`, false)
        return
    }
  }

  private spentQueue: WireProof[] = []
  private spentTimer: NodeJS.Timeout | null = null

  /**
   * Record acknowledged proofs as the provider's, batched (one wallet write a
   * second, not one per tick). A crash before the write loses nothing: a later
   * reclaim asks the mint and finds those proofs already spent.
   */
  private queueSpent(proof: WireProof): void {
    this.spentQueue.push(proof)
    this.spentTimer ??= setTimeout(() => void this.flushSpent(), 1000)
  }

  private spentWrites: Promise<void> = Promise.resolve()

  /**
   * Resolves when no wallet work of this session is running: a lock swap
   * started in the background and the writes of acknowledged proofs. A CLI
   * awaits it before exiting, so the wallet is never left mid-swap.
   */
  async settle(): Promise<void> {
    await this.locking?.catch(() => {})
    await this.flushSpent()
  }

  /**
   * Write what is queued; resolves when every write queued so far is done,
   * including one an earlier caller started (end() starts one without
   * waiting): a CLI that exits right after must not lose it.
   */
  flushSpent(): Promise<void> {
    if (this.spentTimer) clearTimeout(this.spentTimer)
    this.spentTimer = null
    const batch = this.spentQueue.splice(0)
    if (batch.length) {
      this.spentWrites = this.spentWrites.then(() =>
        this.opts.funds.markSpent(batch).catch((err: Error) => void this.emit('lock-error', { error: err.message })),
      )
    }
    return this.spentWrites
  }

  private onPeerClose(): void {
    if (!this.ended) this.end('provider connection lost', false, true)
  }

  /** Move the session to a new connection to the same provider (after a reconnect) and resume it. */
  async resume(peer: Peer): Promise<void> {
    this.detach(this.peer)
    this.peer = peer
    this.attach(peer)
    // Ticks in flight at the drop were settled by end(): not resent (the provider may
    // have stored them, and a replay would be refused); its next ack's `paid` says
    // which counted, and reclaim after locktime returns any that did not.
    this.ended = false
    await this.open()
  }

  /** Open a tunnel stream paid for by this session. */
  openStream(): WireStream {
    if (this.ended) throw new Error('session has ended')
    return this.peer.openStream(this.id)
  }

  send(m: ControlMessage): boolean {
    return this.peer.send(m)
  }

  get connection(): Peer {
    return this.peer
  }

  private waitFor(pred: (m: ControlMessage) => boolean): Promise<ControlMessage> {
    const timeoutMs = this.opts.timeoutMs ?? 15_000
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => done(new Error(`provider did not answer within ${timeoutMs / 1000} s`)), timeoutMs)
      const onMsg = (m: ControlMessage) => pred(m) && done(null, m)
      const onClose = () => done(new Error('provider closed the connection'))
      const done = (err: Error | null, m?: ControlMessage) => {
        clearTimeout(t)
        this.peer.off('message', onMsg)
        this.peer.off('close', onClose)
        if (err) reject(err)
        else resolve(m!)
      }
      this.peer.on('message', onMsg)
      this.peer.on('close', onClose)
    })
  }

  /** End the session: stop paying, tell the provider, and account for every locked sat. */
  end(reason: string, notify = true, providerGone = false): SessionSummary {
    const summary = this.summary(reason, providerGone)
    if (this.ended) return summary
    this.ended = true
    if (this.timer) clearTimeout(this.timer)
    if (notify && !this.peer.isClosed) this.peer.send({ type: 'end', session: this.id, reason, paid: this.spent })
    for (const p of this.inflight.splice(0)) {
      clearTimeout(p.timer)
      p.resolve(false)
    }
    void this.flushSpent()
    this.emit('end', summary)
    return summary
  }

  summary(reason = '', providerGone = false): SessionSummary {
    // in-flight proofs may or may not have been stored by the provider; reclaim will find out
    const lockedUnsent = this.lockedTotal - this.spent
    return { session: this.id, spent: this.spent, lockedUnsent, refundAt: lockedUnsent > 0 ? this.locktime : null, reason, providerGone }
  }
}

/** proofs in the first swap of a session: enough to start, quick to make */
const FIRST_BATCH = 8
/** proofs in a job's first swap: the sat paid up front and one more */
const JOB_FIRST_BATCH = 2
const MAX_BATCH = 100

function defaultBatch(accept: MessageOf<'accept'>, mode: 'session' | 'job'): number {
  // about a minute of session time (at most MAX_BATCH, a swap well under a second),
  // or 10 payments of job output: small leftovers, few swaps
  const n = mode === 'session' ? Math.ceil(60_000 / accept.tickMs) : 10
  return Math.max(1, Math.min(n, MAX_BATCH))
}
