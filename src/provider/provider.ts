import { EventEmitter } from 'node:events'
import type { Identity } from '../identity/nostr-key.js'
import { deriveSwarmKeyPair } from '../identity/swarm-key.js'
import type { Processor, ProcessorInfo } from '../processors/types.js'
import { buildSkill, type SkillDescriptor } from '../skills/descriptor.js'
import { loadOrCreatePaymentKey, type PaymentKey } from '../payments/payment-key.js'
import { MintKeyCache } from '../payments/mint-keys.js'
import { ReceivedStore } from '../payments/received-store.js'
import { TickVerifier } from '../payments/tick-verifier.js'
import { Redeemer, type RedeemedProof } from '../payments/redeemer.js'
import { Wallet } from '../payments/wallet.js'
import { createGateway, type Gateway } from '../tunnel/gateway.js'
import { BackendProbe } from '../tunnel/backend-probe.js'
import type { PathPolicyOptions } from '../tunnel/path-policy.js'
import { P2PService, type TickAcceptor } from './p2p-service.js'
import { RelayJobService } from './relay-jobs.js'
import { Announcer } from './announce.js'
import { loadNostrCrypto } from '../nostr/events.js'
import { RelayPool } from '../nostr/relay-client.js'
import { validatePricing, type Pricing } from './pricing.js'

export interface ProviderOptions {
  dataDir: string
  identity: Identity
  kinds: number[]
  processor: Processor
  pricing: Pricing
  /** mints whose ecash is accepted; the first also holds the provider's redeemed sats */
  mints: string[]
  bootstrap?: Array<{ host: string; port: number }>
  /** HTTP origin exposed to paying sessions through the tunnel */
  backend?: string
  pathPolicy?: PathPolicyOptions
  /** end time sessions once the backend has not accepted connections for this long (ms, default 15 s) */
  backendDownEndMs?: number
  maxSessions?: number
  graceMs?: number
  /** a tick's proof must stay locked to us at least this long (s); must exceed the redeemer's safety margin */
  minLocktimeSec?: number
  /** redeem once this many proofs are held */
  redeemCount?: number
  /** redeem proofs held this long (ms) */
  redeemAgeMs?: number
  skill?: SkillDescriptor
  about?: string
  /** display name in the profile and handlers (default: the skill's name) */
  name?: string
  /** Nostr relays: NIP-90 jobs are served and the provider is announced there; none = P2P only */
  relays?: string[]
  /** relay jobs running at once */
  maxJobs?: number
  /** let relay requests name loopback/private relays for replies: only for a provider on the devnet (relay-targets.ts) */
  privateRequestRelays?: boolean
  /** relay jobs priced below this many sats are free */
  minPrice?: number
  /** heartbeat interval (ms) */
  heartbeatMs?: number
  log?: (msg: string) => void
}

/**
 * One provider: the P2P service, the payment chain behind it (offline
 * verifier → durable store → batched redeemer → wallet) and the tunnel
 * gateway. Relay (NIP-90) jobs and announcements are attached by the caller.
 */
export class Provider extends EventEmitter {
  readonly p2p: P2PService
  readonly wallet: Wallet
  readonly paymentKey: PaymentKey
  readonly redeemer: Redeemer
  readonly store: ReceivedStore
  readonly gateway: Gateway | null
  /** whether the tunnel's backend accepts connections; null without a backend */
  readonly backendProbe: BackendProbe | null
  readonly skill: SkillDescriptor
  private readonly verifier: TickVerifier
  relayJobs: RelayJobService | null = null
  announcer: Announcer | null = null
  private pool: RelayPool | null = null
  private constructor(
    readonly opts: ProviderOptions,
    parts: { wallet: Wallet; paymentKey: PaymentKey; redeemer: Redeemer; store: ReceivedStore; gateway: Gateway | null; skill: SkillDescriptor; verifier: TickVerifier },
  ) {
    super()
    this.wallet = parts.wallet
    this.paymentKey = parts.paymentKey
    this.redeemer = parts.redeemer
    this.store = parts.store
    this.gateway = parts.gateway
    this.backendProbe = parts.gateway ? new BackendProbe({ origin: parts.gateway.origin }) : null
    this.skill = parts.skill
    this.verifier = parts.verifier
    const { verifier, redeemer, gateway } = parts
    const acceptor: TickAcceptor = {
      accept: (session, proof, mint) => verifier.accept(session, proof, mint),
      sessionEnded: (session) => {
        redeemer.sessionEnded(session).then(
          (reports) => this.emit('redeemed', reports),
          (err: Error) => opts.log?.(`redeem after session ${session} failed, will retry: ${err.message}`),
        )
      },
    }
    this.p2p = new P2PService({
      identity: opts.identity,
      swarmKeyPair: deriveSwarmKeyPair(opts.identity.secretKey),
      bootstrap: opts.bootstrap,
      kinds: opts.kinds,
      skill: () => this.skill,
      pricing: opts.pricing,
      paymentPubkey: parts.paymentKey.pubkey,
      mints: opts.mints,
      acceptor,
      processor: opts.processor,
      tunnel: gateway
        ? { handle: (stream, s) => gateway.handleStream(stream, s.id), closeSession: (id) => void gateway.closeSession(id), streamCount: (id) => gateway.streamCount(id) }
        : undefined,
      backend: this.backendProbe ?? undefined,
      backendDownEndMs: opts.backendDownEndMs,
      maxSessions: opts.maxSessions ?? 100,
      graceMs: opts.graceMs ?? 5_000,
      minLocktimeSec: opts.minLocktimeSec ?? 16 * 60,
    })
  }

  /** Build everything and check it can work: the processor starts, the mints' keys are known. */
  static async create(opts: ProviderOptions): Promise<Provider> {
    if (opts.mints.length === 0) throw new Error('no mint configured: say whose ecash you accept with --mint=<url> (repeatable) or DVM_MINT, or use --devnet=<dir> for the local network')
    validatePricing(opts.pricing)
    await opts.processor.start()
    const info: ProcessorInfo = await opts.processor.describe()
    const paymentKey = await loadOrCreatePaymentKey(opts.dataDir)
    const keys = new MintKeyCache({ dataDir: opts.dataDir, mints: opts.mints, log: opts.log })
    await keys.load()
    await keys.start()
    if (keys.mints().length === 0) {
      throw new Error(`none of the mints (${opts.mints.join(', ')}) could be reached and none is cached; start the mint or check --mint`)
    }
    const store = await ReceivedStore.open(opts.dataDir, { log: opts.log })
    const wallet = new Wallet({ dataDir: opts.dataDir, mintUrl: opts.mints[0]! })
    await wallet.load().catch((err: Error) => opts.log?.(`wallet: ${err.message}`))
    const wallets = new Map<string, Wallet>([[opts.mints[0]!, wallet]])
    const walletFor = async (mintUrl: string): Promise<Wallet> => {
      let w = wallets.get(mintUrl)
      if (!w) {
        w = new Wallet({ dataDir: opts.dataDir, mintUrl })
        await w.load()
        wallets.set(mintUrl, w)
      }
      return w
    }
    const redeemer = new Redeemer({
      store,
      keys,
      paymentPrivkey: paymentKey.privkey,
      depositTo: async (mintUrl: string, proofs: RedeemedProof[]) => {
        await (await walletFor(mintUrl)).addProofs(proofs)
      },
      countThreshold: opts.redeemCount ?? 500,
      maxHeldAgeMs: opts.redeemAgeMs ?? 10 * 60_000,
      log: opts.log,
    })
    const verifier = new TickVerifier({ paymentPubkey: paymentKey.pubkey, keys, minLocktimeMarginSec: opts.minLocktimeSec ?? 16 * 60, store })
    // the gateway asks per request whether the session is paid; the P2P service (built later) knows
    let p2p: P2PService | null = null
    const gateway = opts.backend
      ? createGateway({ backend: opts.backend, isPaid: (id) => p2p?.isSessionPaid(id) ?? false, policy: opts.pathPolicy })
      : null
    const skill = opts.skill ?? buildSkill({ info, kinds: opts.kinds, pricing: opts.pricing, mints: opts.mints, tunnel: Boolean(opts.backend), about: opts.about })
    const provider = new Provider(opts, { wallet, paymentKey, redeemer, store, gateway, skill, verifier })
    p2p = provider.p2p
    return provider
  }

  get swarmPublicKey(): string {
    return this.p2p.swarmPublicKey
  }

  async start(): Promise<void> {
    this.redeemer.start()
    // proofs held from before a crash or restart are redeemed now
    this.redeemer.redeemAll().then(
      (reports) => reports.length && this.emit('redeemed', reports),
      () => {},
    )
    await this.p2p.start()
    // the first heartbeat already tells whether sessions can be served (bounded: one connect, ≤ 1 s)
    await this.backendProbe?.check()
    if (this.opts.relays?.length) await this.startRelays(this.opts.relays)
  }

  /**
   * Free session slots for the heartbeat: none while the backend does not
   * answer, so customers choosing from the relays skip this provider. Asks
   * again for the next heartbeat (the probe's cache makes that one connect).
   */
  private freeForHeartbeat(): number {
    if (!this.backendProbe) return this.p2p.freeCapacity
    void this.backendProbe.check()
    return this.backendProbe.state?.up === false ? 0 : this.p2p.freeCapacity
  }

  /**
   * NIP-90 jobs and announcements. Never blocks or breaks the P2P side: a
   * relay that is down is retried by the pool, and P2P sessions go on.
   */
  private async startRelays(relays: string[]): Promise<void> {
    const log = (m: string) => this.opts.log?.(m)
    const crypto = await loadNostrCrypto()
    this.pool = new RelayPool({ crypto, relays })
    const { pricing, kinds, identity } = this.opts
    const name = this.opts.name ?? this.skill.name
    const about = this.opts.about ?? this.skill.about ?? `dvm-agent provider for kinds ${kinds.join(', ')}`
    this.relayJobs = new RelayJobService({
      identity,
      relays: this.pool,
      kinds,
      processor: this.opts.processor,
      crypto,
      pricing: { perJob: pricing.perJob },
      minPrice: this.opts.minPrice ?? 1,
      wallet: this.wallet,
      // the refund ledger for paid relay jobs lives beside the wallet
      dataDir: this.opts.dataDir,
      mintUrl: this.opts.mints[0],
      acceptedMints: this.opts.mints,
      paymentPrivkey: this.paymentKey.privkey,
      offlineProofs: this.verifier,
      onOfflineProofs: (jobId) => void this.redeemer.sessionEnded(jobId).catch(() => {}),
      maxJobs: this.opts.maxJobs ?? 4,
      privateRequestRelays: this.opts.privateRequestRelays === true,
      log,
    })
    this.announcer = new Announcer({
      identity,
      pool: this.pool,
      crypto,
      handlers: kinds.map((kind) => ({
        kind,
        name,
        about,
        skill: this.skill as unknown as Record<string, unknown>,
        pricing: { perMinute: pricing.perMinute, perRequest: pricing.perJob, perChunk: 1 / pricing.chunksPerSat },
        mints: this.opts.mints,
        swarmKey: this.swarmPublicKey,
      })),
      profile: { name, about, bot: true },
      capacity: () => ({ free: this.freeForHeartbeat(), max: this.opts.maxSessions ?? 100 }),
      intervalMs: this.opts.heartbeatMs ?? 60_000,
      onError: (what, reason) => log(`could not publish ${what}: ${reason}`),
    })
    this.relayJobs.start().catch((err: Error) => log(`relay jobs did not start: ${err.message}`))
    this.announcer.start().catch((err: Error) => log(`announcing failed: ${err.message}`))
  }

  async stop(): Promise<void> {
    // say offline first, while the relays are still connected; a relay that is down gets 2 s, not its full timeout
    const bounded = (p: Promise<unknown> | undefined) => Promise.race([p?.catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())])
    await bounded(this.announcer?.stop())
    await bounded(this.relayJobs?.stop())
    this.pool?.close()
    await this.p2p.stop()
    await this.gateway?.close()
    await this.redeemer.redeemAll().catch(() => [])
    await this.redeemer.stop()
    await this.store.close()
    await this.opts.processor.stop?.()
  }
}
