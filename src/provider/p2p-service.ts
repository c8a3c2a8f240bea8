import { EventEmitter } from 'node:events'
import type Hyperswarm from 'hyperswarm'
import type { NoiseSecretStream } from 'hyperswarm'
import type { KeyPair } from 'hyperdht'
import type { Identity } from '../identity/nostr-key.js'
import { Peer } from '../wire/peer.js'
import { createSwarm } from '../wire/swarm.js'
import { topicForKind } from '../wire/topic.js'
import type { ControlMessage, MessageOf, WireProof } from '../wire/protocol.js'
import type { WireStream } from '../wire/stream.js'
import type { SkillDescriptor } from '../skills/descriptor.js'
import type { Processor } from '../processors/types.js'
import { tickMs, type Pricing } from './pricing.js'
import { PaidSession } from './paid-session.js'
import { JobRunner } from './job-runner.js'
import type { BackendProbe } from '../tunnel/backend-probe.js'

export type TickResult = { ok: true; y: string } | { ok: false; code: string; reason: string }

/** How the service turns a proof into credit: verify offline, store durably, then resolve. */
export interface TickAcceptor {
  accept(session: string, proof: WireProof, mint: string): Promise<TickResult>
  /** a session ended: its proofs may be redeemed now */
  sessionEnded(session: string): void
}

/** Where paid tunnel streams go (the HTTP gateway to the backend). */
export interface StreamHandler {
  handle(stream: WireStream, session: { id: string; isPaid: () => boolean }): void
  closeSession(id: string): void
  streamCount(id: string): number
}

/** Whether the tunnel's backend accepts connections: a bounded probe, cached briefly. */
export type BackendHealth = Pick<BackendProbe, 'check'>

export interface P2PServiceOptions {
  identity: Identity
  swarmKeyPair: KeyPair
  bootstrap?: Array<{ host: string; port: number }>
  kinds: number[]
  skill: () => SkillDescriptor
  pricing: Pricing
  paymentPubkey: string
  mints: string[]
  acceptor: TickAcceptor
  processor: Processor
  tunnel?: StreamHandler
  /** with a tunnel: refuse time sessions while the backend is down, end them when it stays down */
  backend?: BackendHealth
  /** end time sessions once the backend has not answered for this long (default 15 s) */
  backendDownEndMs?: number
  maxSessions: number
  /** how long a session may go unpaid (after its paid time) before it ends */
  graceMs: number
  /** proofs must stay locked to us at least this long from now (s) */
  minLocktimeSec: number
  jobTimeoutMs?: number
}

interface SessionEntry {
  session: PaidSession
  peer: Peer
  /** ticks are credited one at a time, in order */
  queue: Promise<void>
  /** ticks queued behind `queue`, not yet being checked */
  waiting: number
  jobs: Map<string, JobRunner>
}

const MAX_TICKS_IN_FLIGHT = 64
const MAX_STREAMS_PER_SESSION = 256
const IDLE_WITHOUT_SESSION_MS = 60_000
/** long enough for a backend to restart, short enough that a customer pays for seconds, not minutes */
const BACKEND_DOWN_END_MS = 15_000

/**
 * The provider's P2P side: joins one topic per kind, proves its identity on
 * each connection, opens paid sessions, credits verified ticks, runs P2P jobs
 * paid per chunk and hands paid streams to the tunnel.
 */
export class P2PService extends EventEmitter {
  readonly swarm: Hyperswarm
  private readonly sessions = new Map<string, SessionEntry>()
  private readonly peers = new Set<Peer>()
  private sweepTimer: NodeJS.Timeout | null = null
  private backendCheck: Promise<void> | null = null
  /** opens waiting for the backend probe, as `customer:session`: an `end` meanwhile cancels one */
  private readonly probing = new Set<string>()
  private stopped = false

  constructor(private readonly opts: P2PServiceOptions) {
    super()
    this.swarm = createSwarm({ keyPair: opts.swarmKeyPair, bootstrap: opts.bootstrap, maxPeers: Math.max(64, opts.maxSessions * 2) })
    this.swarm.on('connection', (conn: NoiseSecretStream) => this.onConnection(conn))
  }

  get swarmPublicKey(): string {
    return this.swarm.keyPair.publicKey.toString('hex')
  }

  async start(): Promise<void> {
    await Promise.all(this.opts.kinds.map((k) => this.swarm.join(topicForKind(k), { server: true, client: false }).flushed()))
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(1000, Math.max(100, this.opts.graceMs / 4)))
    this.sweepTimer.unref()
  }

  get activeSessions(): number {
    return this.sessions.size
  }

  get freeCapacity(): number {
    return Math.max(0, this.opts.maxSessions - this.sessions.size)
  }

  sessionStats(): Array<{ id: string; customer: string; paid: number; mode: string }> {
    return [...this.sessions.values()].map(({ session }) => ({ id: session.id, customer: session.terms.customer, paid: session.paid, mode: session.terms.mode }))
  }

  private onConnection(conn: NoiseSecretStream): void {
    conn.on('error', () => {}) // surfaced through the Peer's close
    const peer: Peer = new Peer(conn, {
      identity: this.opts.identity,
      role: 'provider',
      onStream: (stream): boolean => this.onStream(peer, stream),
    })
    this.peers.add(peer)
    peer.ready.then(
      () => {
        peer.send({ type: 'skill', skill: this.opts.skill() as unknown as Record<string, unknown> })
        // a connection that never opens a session only takes up a slot
        const idle = setTimeout(() => {
          if (![...this.sessions.values()].some((e) => e.peer === peer)) peer.close()
        }, IDLE_WITHOUT_SESSION_MS)
        idle.unref()
        peer.once('close', () => clearTimeout(idle))
      },
      () => {},
    )
    peer.on('message', (msg: ControlMessage) => this.onMessage(peer, msg))
    peer.on('close', () => {
      this.peers.delete(peer)
      for (const entry of this.sessions.values()) {
        // the customer may reconnect within the grace; the sweep ends it otherwise
        if (entry.peer === peer) for (const job of entry.jobs.values()) job.cancel('customer disconnected')
      }
    })
  }

  private onMessage(peer: Peer, msg: ControlMessage): void {
    switch (msg.type) {
      case 'open': return this.onOpen(peer, msg)
      case 'tick': return this.onTick(peer, msg)
      case 'job': return this.onJob(peer, msg)
      case 'cancel': return this.onCancel(peer, msg)
      case 'end': return this.endSession(msg.session, 'customer ended the session', peer)
      case 'skill': return // the customer's descriptor: informative only
      case 'error': return void this.emit('peer-error', { peer: peer.remotePubkey, message: msg.message })
      default:
        void peer.send({ type: 'error', code: 'unexpected', message: `a provider does not accept ${msg.type} messages` })
    }
  }

  private owned(peer: Peer, id: string): SessionEntry | null {
    const entry = this.sessions.get(id)
    if (!entry || entry.session.terms.customer !== peer.remotePubkey) {
      peer.send({ type: 'refuse', session: id, code: 'unknown-session', reason: 'no such session on this provider; open one first' })
      return null
    }
    // a reconnecting customer takes its session with it
    entry.peer = peer
    return entry
  }

  private onOpen(peer: Peer, msg: MessageOf<'open'>): void {
    const { backend } = this.opts
    // A time session pays for the tunnel: check its backend answers before the
    // customer locks a sat. Job sessions pay per chunk of output, and a resumed
    // session is watched by the sweep already.
    if (!backend || msg.mode !== 'session' || this.sessions.has(msg.session)) return this.openNow(peer, msg)
    const key = `${peer.remotePubkey}:${msg.session}`
    this.probing.add(key)
    void backend.check().then((state) => {
      // the customer gave up (sent `end`) while we looked
      if (!this.probing.delete(key) || peer.isClosed) return
      if (state.up || this.sessions.has(msg.session)) return this.openNow(peer, msg)
      const reason = `the provider's backend is not answering (${state.error}), so no session was opened and nothing was paid; try again later or choose another provider`
      peer.send({ type: 'refuse', session: msg.session, code: 'backend-down', reason })
      this.emit('open-refused', { session: msg.session, customer: peer.remotePubkey, code: 'backend-down', reason: `the backend does not accept connections (${state.error}); start it` })
    })
  }

  private openNow(peer: Peer, msg: MessageOf<'open'>): void {
    const refuse = (code: string, reason: string): void => void peer.send({ type: 'refuse', session: msg.session, code, reason })
    if (this.stopped) return refuse('shutting-down', 'provider is shutting down')
    if (!this.opts.kinds.includes(msg.kind)) return refuse('unsupported-kind', `this provider serves kinds ${this.opts.kinds.join(', ')}, not ${msg.kind}`)
    const existing = this.sessions.get(msg.session)
    if (existing) {
      if (existing.session.terms.customer !== peer.remotePubkey) return refuse('session-taken', 'that session id belongs to someone else')
      existing.peer = peer // resume after reconnect
    } else {
      if (this.sessions.size >= this.opts.maxSessions) return refuse('busy', `provider is at its limit of ${this.opts.maxSessions} sessions; try later or another provider`)
      const session = new PaidSession({
        id: msg.session,
        customer: peer.remotePubkey!,
        kind: msg.kind,
        mode: msg.mode,
        budget: msg.budget,
        tickMs: tickMs(this.opts.pricing),
        chunksPerTick: this.opts.pricing.chunksPerSat,
        graceMs: this.opts.graceMs,
      })
      this.sessions.set(msg.session, { session, peer, queue: Promise.resolve(), waiting: 0, jobs: new Map() })
      this.emit('session-open', { id: msg.session, customer: peer.remotePubkey, mode: msg.mode, budget: msg.budget })
    }
    peer.send({
      type: 'accept',
      session: msg.session,
      paymentPubkey: this.opts.paymentPubkey,
      mints: this.opts.mints,
      tickMs: tickMs(this.opts.pricing),
      chunksPerTick: this.opts.pricing.chunksPerSat,
      graceMs: this.opts.graceMs,
      minLocktime: Math.ceil(Date.now() / 1000) + this.opts.minLocktimeSec,
    })
  }

  private onTick(peer: Peer, msg: MessageOf<'tick'>): void {
    const entry = this.owned(peer, msg.session)
    if (!entry) return
    // an honest customer has a tick or two in flight; a flood must not queue without bound
    if (entry.waiting >= MAX_TICKS_IN_FLIGHT) {
      return void peer.send({ type: 'refuse', session: msg.session, code: 'too-many-ticks', reason: `more than ${MAX_TICKS_IN_FLIGHT} ticks unanswered; wait for acknowledgements` })
    }
    entry.waiting += 1
    entry.queue = entry.queue.finally(() => (entry.waiting -= 1)).then(async () => {
      const { session } = entry
      if (session.ended) return void peer.send({ type: 'refuse', session: session.id, code: 'ended', reason: 'session has ended' })
      if (!session.canTakeTick) return void peer.send({ type: 'refuse', session: session.id, code: 'over-budget', reason: `the session's budget of ${session.terms.budget} sats is used up` })
      let result: TickResult
      try {
        result = await this.opts.acceptor.accept(session.id, msg.proof, msg.mint)
      } catch (err) {
        result = { ok: false, code: 'store-failed', reason: `provider could not store the proof (${(err as Error).message})` }
      }
      if (!result.ok) {
        this.emit('tick-refused', { session: session.id, code: result.code, reason: result.reason })
        return void peer.send({ type: 'refuse', session: session.id, code: result.code, reason: result.reason })
      }
      session.credit()
      // written before acknowledged: accept() resolved only once the proof was durable
      entry.peer.send({ type: 'ack', session: session.id, y: result.y, paid: session.paid, paidUntil: session.paidUntil })
      this.emit('tick', { session: session.id, paid: session.paid })
      for (const job of entry.jobs.values()) job.creditChanged()
    })
  }

  private onJob(peer: Peer, msg: MessageOf<'job'>): void {
    const entry = this.owned(peer, msg.session)
    if (!entry) return
    if (!this.opts.kinds.includes(msg.kind)) {
      return void peer.send({ type: 'done', job: msg.job, status: 'error', chunks: 0, error: `this provider does not serve kind ${msg.kind}` })
    }
    if (entry.jobs.has(msg.job)) return void peer.send({ type: 'done', job: msg.job, status: 'error', chunks: 0, error: 'a job with that id is already running' })
    const runner = new JobRunner({
      job: { id: msg.job, kind: msg.kind, input: msg.input, params: msg.params, output: msg.output, customer: peer.remotePubkey! },
      session: entry.session,
      processor: this.opts.processor,
      send: (m) => entry.peer.send(m),
      graceMs: this.opts.graceMs,
      timeoutMs: this.opts.jobTimeoutMs ?? 10 * 60_000,
    })
    entry.jobs.set(msg.job, runner)
    this.emit('job-start', { session: entry.session.id, job: msg.job })
    runner.run().finally(() => {
      entry.jobs.delete(msg.job)
      this.emit('job-end', { session: entry.session.id, job: msg.job, chunks: runner.sent })
    })
  }

  private onCancel(peer: Peer, msg: MessageOf<'cancel'>): void {
    for (const entry of this.sessions.values()) {
      if (entry.session.terms.customer !== peer.remotePubkey) continue
      entry.jobs.get(msg.job)?.cancel('cancelled by the customer')
    }
  }

  isSessionPaid(id: string): boolean {
    const entry = this.sessions.get(id)
    return entry !== undefined && !entry.session.ended && entry.session.isPaid()
  }

  private onStream(peer: Peer, stream: WireStream): boolean {
    const entry = this.sessions.get(stream.session)
    if (!this.opts.tunnel || !entry || entry.session.terms.customer !== peer.remotePubkey) return false
    // a browser needs tens of connections, not thousands
    if (this.opts.tunnel.streamCount(entry.session.id) >= MAX_STREAMS_PER_SESSION) return false
    this.opts.tunnel.handle(stream, { id: entry.session.id, isPaid: () => this.isSessionPaid(entry.session.id) })
    return true
  }

  private sweep(): void {
    const now = Date.now()
    this.watchBackend()
    for (const { session, jobs, peer } of this.sessions.values()) {
      if (session.terms.mode === 'session' && session.isLapsed(now)) this.endSession(session.id, 'no payment within the grace period')
      else if (session.terms.mode === 'job' && jobs.size === 0) {
        // a job session lives while its customer is connected (and a minute idle at most)
        const idleFor = now - Math.max(session.lastTickAt, session.openedAt)
        if (peer.isClosed ? idleFor > this.opts.graceMs : idleFor > this.opts.graceMs + 60_000) this.endSession(session.id, 'customer gone or idle')
      }
    }
  }

  /**
   * While time sessions run, probe the backend (the probe's cache makes this
   * one connect a second at most) and end the sessions it has been down for
   * too long, so their customers stop paying for a tunnel that leads nowhere.
   */
  private watchBackend(): void {
    const { backend } = this.opts
    if (!backend || this.backendCheck || ![...this.sessions.values()].some((e) => e.session.terms.mode === 'session')) return
    const limit = this.opts.backendDownEndMs ?? BACKEND_DOWN_END_MS
    this.backendCheck = backend.check().then((state) => {
      this.backendCheck = null
      if (state.up || this.stopped) return
      const now = Date.now()
      for (const { session } of [...this.sessions.values()]) {
        // down since before the session opened counts only from its opening
        if (session.terms.mode !== 'session' || now - Math.max(state.since, session.openedAt) < limit) continue
        const secs = Math.round((now - state.since) / 1000)
        this.endSession(session.id, `the provider's backend stopped answering ${secs} s ago (${state.error}); the session was ended so you stop paying. Start a new one later or choose another provider`)
      }
    })
  }

  endSession(id: string, reason: string, by?: Peer): void {
    if (by) this.probing.delete(`${by.remotePubkey}:${id}`)
    const entry = this.sessions.get(id)
    if (!entry || (by && entry.session.terms.customer !== by.remotePubkey)) return
    entry.session.ended = true
    this.sessions.delete(id)
    for (const job of entry.jobs.values()) job.cancel(reason)
    this.opts.tunnel?.closeSession(id)
    if (!entry.peer.isClosed) entry.peer.send({ type: 'end', session: id, reason, paid: entry.session.paid })
    // redemption is not waited for: proofs are already durable
    entry.queue.finally(() => this.opts.acceptor.sessionEnded(id))
    this.emit('session-end', { id, reason, paid: entry.session.paid })
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    for (const id of [...this.sessions.keys()]) this.endSession(id, 'provider shutting down')
    await Promise.allSettled([...this.sessions.values()].map((e) => e.queue))
    for (const p of this.peers) p.close()
    await this.swarm.destroy()
  }
}
