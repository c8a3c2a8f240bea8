import type { Identity } from '../identity/nostr-key.js'
import { nowSeconds, type NostrCrypto } from '../nostr/events.js'
import { buildHeartbeat } from '../nostr/heartbeat.js'
import { buildHandler, type HandlerInfo } from '../nostr/nip89.js'
import { buildProfile, type Profile } from '../nostr/profile.js'
import type { PublishOutcome, RelayPool } from '../nostr/relay-client.js'

/**
 * Keeps a provider visible on the relays: its kind 0 profile and one NIP-89
 * handler per kind at start, a heartbeat every `intervalMs` with the free
 * capacity of the moment, and a last `offline` heartbeat on stop.
 */
export interface AnnouncerOptions {
  identity: Identity
  pool: RelayPool
  crypto: NostrCrypto
  handlers: HandlerInfo[]
  profile?: Profile
  /** free and total job/session slots right now */
  capacity: () => { free: number; max: number }
  intervalMs?: number
  onError?: (what: string, reason: string) => void
}

export class Announcer {
  private timer: NodeJS.Timeout | undefined
  private readonly intervalMs: number
  private stopped = false
  /** created_at of the last heartbeat: each must be newer, or a relay keeps the old one */
  private lastBeatAt = 0

  constructor(private readonly opts: AnnouncerOptions) {
    this.intervalMs = opts.intervalMs ?? 60_000
    if (!(this.intervalMs >= 1000)) throw new RangeError('the heartbeat interval must be at least 1 s')
  }

  /** Publish profile, handlers and a first heartbeat; resolves once the relays answered. */
  async start(): Promise<void> {
    const now = nowSeconds()
    const jobs: Array<Promise<void>> = []
    if (this.opts.profile) jobs.push(this.publish('profile', buildProfile(this.opts.profile, now)))
    for (const h of this.opts.handlers) jobs.push(this.publish(`handler for kind ${h.kind}`, buildHandler(h, now)))
    jobs.push(this.beat('online'))
    await Promise.all(jobs)
    this.timer = setInterval(() => void this.beat('online'), this.intervalMs)
    this.timer.unref()
  }

  /** Publish a heartbeat now (e.g. when capacity changed a lot). */
  beat(status: 'online' | 'offline' = 'online'): Promise<void> {
    const { free, max } = this.opts.capacity()
    const kinds = [...new Set(this.opts.handlers.map((h) => h.kind))]
    // Replaceable events with equal created_at are decided by id, not order
    // (NIP-01): an `offline` beat in the same second as the last `online`
    // one could lose. So every beat is at least a second newer.
    this.lastBeatAt = Math.max(nowSeconds(), this.lastBeatAt + 1)
    const template = buildHeartbeat({ status, kinds, free: status === 'offline' ? 0 : free, max, intervalSeconds: Math.round(this.intervalMs / 1000) }, this.lastBeatAt)
    return this.publish('heartbeat', template)
  }

  /** Say offline and stop beating. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearInterval(this.timer)
    await this.beat('offline')
  }

  private async publish(what: string, template: Parameters<NostrCrypto['sign']>[0]): Promise<void> {
    const ev = this.opts.crypto.sign(template, this.opts.identity.secretKey)
    let outcomes: PublishOutcome[]
    try {
      outcomes = await this.opts.pool.publish(ev)
    } catch (err) {
      this.opts.onError?.(what, (err as Error).message)
      return
    }
    if (!outcomes.some((o) => o.ok)) this.opts.onError?.(what, outcomes.map((o) => `${o.relay}: ${o.message}`).join('; '))
  }
}
