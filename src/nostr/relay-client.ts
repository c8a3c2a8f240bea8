import WebSocket from 'ws'
import { matchFilters, type Filter } from 'nostr-tools/filter'
import { BoundedSet } from './bounded.js'
import { eventShapeProblem, type Event, type NostrCrypto, type ShapeLimits } from './events.js'

export type { Filter } from 'nostr-tools/filter'

/**
 * A small relay pool over `ws`, written for a service that must not miss or
 * double-handle events:
 * - every event is shape-checked, matched against the subscription's filters
 *   and signature-verified before anyone sees it; invalid ones are counted and
 *   dropped;
 * - each subscription sees an event id once, whichever relays deliver it
 *   (bounded memory: the oldest ids are forgotten first);
 * - a dropped relay is redialled with backoff (250 ms doubling to 10 s), and
 *   every open subscription is re-sent with `since` moved up to the newest
 *   event already seen (minus a few seconds of slack for clock skew, which
 *   dedupe absorbs);
 * - a subscription the relay ends (CLOSED) is asked for again 10 s later;
 * - `publish` waits for each relay's OK (NIP-01 / NIP-20), re-sending after a
 *   reconnect, and reports per relay;
 * - inbound frames are capped (`maxMessageBytes`) by the socket itself.
 *
 * nostr-tools' SimplePool was not used because its reconnect waits 10 s at
 * first, never retries a relay that was down at start, and has no frame cap.
 */

export interface RelayPoolOptions {
  crypto: NostrCrypto
  /** relays every subscription and publish uses unless told otherwise */
  relays: string[]
  /** largest WebSocket frame accepted from a relay; larger ones close that connection */
  maxMessageBytes?: number
  /** per subscription, how many event ids to remember for dedupe */
  maxSeenIds?: number
  shapeLimits?: ShapeLimits
  publishTimeoutMs?: number
  connectTimeoutMs?: number
  reconnectMinMs?: number
  reconnectMaxMs?: number
  /** most relay connections open at once (pool relays plus extra publish targets) */
  maxConnections?: number
  /** how long an extra relay (a request's `relays`) stays open after its last use */
  extraRelayIdleMs?: number
  onStatus?: (status: RelayStatus) => void
}

export interface RelayStatus {
  relay: string
  state: 'connected' | 'disconnected'
  reason?: string
}

export interface SubscriptionHandlers {
  onevent: (event: Event, relay: string) => void
  /** once per relay per (re)subscription */
  oneose?: (relay: string) => void
  /** a relay refused or ended the subscription (CLOSED) */
  onclosed?: (relay: string, reason: string) => void
  /** an event failed shape, filter or signature checks */
  oninvalid?: (relay: string, reason: string) => void
}

export interface SubscribeOptions {
  relays?: string[]
  /** seconds subtracted from the newest seen `created_at` when resubscribing */
  sinceSlack?: number
}

export interface PoolSubscription {
  readonly id: string
  close(): void
}

export interface PublishOutcome {
  relay: string
  ok: boolean
  message: string
}

const DEFAULTS = {
  maxMessageBytes: 512 * 1024,
  maxSeenIds: 20_000,
  publishTimeoutMs: 10_000,
  connectTimeoutMs: 5_000,
  reconnectMinMs: 250,
  reconnectMaxMs: 10_000,
  maxConnections: 32,
  extraRelayIdleMs: 60_000,
}

/** Normalise a relay URL so the same relay written two ways is one connection. */
export function normalizeRelayUrl(url: string): string {
  const u = new URL(url)
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error(`"${url}" is not a relay URL (ws:// or wss://)`)
  u.hash = ''
  let s = u.toString()
  if (s.endsWith('/') && u.pathname === '/' && !u.search) s = s.slice(0, -1)
  return s
}

interface SubState {
  id: string
  filters: Filter[]
  handlers: SubscriptionHandlers
  relays: Set<string>
  seen: BoundedSet<string>
  /** newest created_at seen, for `since` on resubscribe */
  newest?: number
  sinceSlack: number
  closed: boolean
}

interface PendingPublish {
  event: Event
  resolve: (o: PublishOutcome) => void
  timer: NodeJS.Timeout
}

type Settings = Required<Omit<RelayPoolOptions, 'relays' | 'crypto' | 'shapeLimits' | 'onStatus'>>

/** One relay: a socket that comes back when it drops. */
class RelayConnection {
  private ws: WebSocket | undefined
  private open = false
  private closedByUs = false
  private attempts = 0
  private reconnectTimer: NodeJS.Timeout | undefined
  private pingTimer: NodeJS.Timeout | undefined
  private idleTimer: NodeJS.Timeout | undefined
  private readonly waiters = new Set<() => void>()
  readonly pending = new Map<string, PendingPublish>()
  /** subscriptions sent on the current socket */
  private readonly live = new Set<string>()

  constructor(
    readonly url: string,
    private readonly pool: RelayPool,
    private readonly settings: Settings,
    readonly extra: boolean,
  ) {}

  get connected(): boolean {
    return this.open
  }

  start(): void {
    this.closedByUs = false
    if (!this.ws) this.dial()
  }

  private dial(): void {
    this.reconnectTimer = undefined
    let ws: WebSocket
    try {
      ws = new WebSocket(this.url, { maxPayload: this.settings.maxMessageBytes, handshakeTimeout: this.settings.connectTimeoutMs })
    } catch (err) {
      this.scheduleReconnect((err as Error).message)
      return
    }
    this.ws = ws
    ws.on('open', () => {
      if (this.ws !== ws) return
      this.open = true
      this.attempts = 0
      this.pool.status({ relay: this.url, state: 'connected' })
      this.startPing(ws)
      for (const sub of this.pool.subsFor(this.url)) this.sendReq(sub)
      for (const p of this.pending.values()) this.sendRaw(JSON.stringify(['EVENT', p.event]))
      for (const w of this.waiters) w()
      this.waiters.clear()
    })
    ws.on('message', (data, isBinary) => {
      if (this.ws !== ws || isBinary) return
      this.pool.onMessage(this, data.toString())
    })
    ws.on('pong', () => {
      ;(ws as WebSocket & { alive?: boolean }).alive = true
    })
    ws.on('error', () => {
      // 'close' follows and carries the decision; this only keeps the error from being thrown.
    })
    ws.on('close', (code, reason) => {
      if (this.ws !== ws) return
      this.ws = undefined
      const wasOpen = this.open
      this.open = false
      this.live.clear()
      clearInterval(this.pingTimer)
      const why = reason.toString() || `code ${code}`
      if (wasOpen) this.pool.status({ relay: this.url, state: 'disconnected', reason: why })
      if (!this.closedByUs) this.scheduleReconnect(why)
    })
  }

  private startPing(ws: WebSocket): void {
    // A relay that vanished without a FIN is only noticed by a missing pong.
    const w = ws as WebSocket & { alive?: boolean }
    w.alive = true
    this.pingTimer = setInterval(() => {
      if (!w.alive) {
        ws.terminate()
        return
      }
      w.alive = false
      ws.ping()
    }, 20_000)
    this.pingTimer.unref()
  }

  private scheduleReconnect(_why: string): void {
    if (this.closedByUs || this.reconnectTimer) return
    const base = Math.min(this.settings.reconnectMaxMs, this.settings.reconnectMinMs * 2 ** this.attempts)
    this.attempts++
    const delay = base / 2 + Math.random() * (base / 2)
    this.reconnectTimer = setTimeout(() => this.dial(), delay)
  }

  /** Resolve once open, or false after `ms`. */
  waitOpen(ms: number): Promise<boolean> {
    if (this.open) return Promise.resolve(true)
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t)
        this.waiters.delete(done)
        resolve(true)
      }
      const t = setTimeout(() => {
        this.waiters.delete(done)
        resolve(false)
      }, ms)
      this.waiters.add(done)
    })
  }

  sendRaw(text: string): boolean {
    if (!this.open || !this.ws) return false
    this.ws.send(text)
    return true
  }

  sendReq(sub: SubState): void {
    const filters = sub.filters.map((f) => {
      if (f.since === undefined || sub.newest === undefined) return f
      return { ...f, since: Math.max(f.since, sub.newest - sub.sinceSlack) }
    })
    if (this.sendRaw(JSON.stringify(['REQ', sub.id, ...filters]))) this.live.add(sub.id)
  }

  /**
   * The relay ended a subscription (CLOSED: too many subscriptions, rate
   * limits, a restart in progress …): ask again later, while it is still wanted.
   */
  closedByRelay(subId: string): void {
    this.live.delete(subId)
    const t = setTimeout(() => {
      const sub = this.pool.subsFor(this.url).find((s) => s.id === subId)
      if (sub && this.open && !this.live.has(subId)) this.sendReq(sub)
    }, 10_000)
    t.unref()
  }

  sendClose(subId: string): void {
    if (this.live.delete(subId)) this.sendRaw(JSON.stringify(['CLOSE', subId]))
  }

  publish(event: Event, timeoutMs: number): Promise<PublishOutcome> {
    this.touch()
    const existing = this.pending.get(event.id)
    if (existing) return new Promise((resolve) => {
      const prev = existing.resolve
      existing.resolve = (o) => {
        prev(o)
        resolve(o)
      }
    })
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(event.id)
        resolve({ relay: this.url, ok: false, message: this.open ? 'no OK from the relay in time' : 'relay unreachable' })
      }, timeoutMs)
      this.pending.set(event.id, { event, resolve, timer })
      // If the socket is down, the open handler sends everything pending.
      this.sendRaw(JSON.stringify(['EVENT', event]))
    })
  }

  settle(id: string, ok: boolean, message: string): void {
    const p = this.pending.get(id)
    if (!p) return
    clearTimeout(p.timer)
    this.pending.delete(id)
    p.resolve({ relay: this.url, ok, message })
  }

  /** Extra relays close after a quiet spell; pool relays stay. */
  private touch(): void {
    if (!this.extra) return
    clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => {
      if (this.pending.size === 0) this.pool.dropExtra(this.url)
    }, this.settings.extraRelayIdleMs)
    this.idleTimer.unref()
  }

  close(): void {
    this.closedByUs = true
    clearTimeout(this.reconnectTimer)
    clearTimeout(this.idleTimer)
    clearInterval(this.pingTimer)
    this.reconnectTimer = undefined
    for (const p of this.pending.values()) {
      clearTimeout(p.timer)
      p.resolve({ relay: this.url, ok: false, message: 'pool closed' })
    }
    this.pending.clear()
    for (const w of this.waiters) w()
    this.waiters.clear()
    const ws = this.ws
    this.ws = undefined
    this.open = false
    if (ws) {
      ws.removeAllListeners('message')
      ws.on('error', () => {})
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate()
      else ws.close()
    }
  }
}

export class RelayPool {
  private readonly settings: Settings
  private readonly conns = new Map<string, RelayConnection>()
  private readonly subs = new Map<string, SubState>()
  private readonly defaultRelays: string[]
  private serial = 0
  private closed = false
  /** events dropped because they failed checks, by reason class */
  readonly stats = { received: 0, duplicates: 0, invalid: 0, verified: 0 }

  constructor(private readonly opts: RelayPoolOptions) {
    this.settings = {
      maxMessageBytes: opts.maxMessageBytes ?? DEFAULTS.maxMessageBytes,
      maxSeenIds: opts.maxSeenIds ?? DEFAULTS.maxSeenIds,
      publishTimeoutMs: opts.publishTimeoutMs ?? DEFAULTS.publishTimeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      reconnectMinMs: opts.reconnectMinMs ?? DEFAULTS.reconnectMinMs,
      reconnectMaxMs: opts.reconnectMaxMs ?? DEFAULTS.reconnectMaxMs,
      maxConnections: opts.maxConnections ?? DEFAULTS.maxConnections,
      extraRelayIdleMs: opts.extraRelayIdleMs ?? DEFAULTS.extraRelayIdleMs,
    }
    if (opts.relays.length === 0) throw new Error('no relays given; pass at least one relay URL (or use --devnet)')
    this.defaultRelays = [...new Set(opts.relays.map(normalizeRelayUrl))]
    for (const url of this.defaultRelays) this.connection(url, false)
  }

  get relays(): string[] {
    return [...this.defaultRelays]
  }

  /** Relays with an open socket now. */
  connectedRelays(): string[] {
    return [...this.conns.values()].filter((c) => c.connected).map((c) => c.url)
  }

  /** Resolve when at least `count` of the pool's relays are connected, or false after `ms`. */
  async waitConnected(ms = this.settings.connectTimeoutMs, count = 1): Promise<boolean> {
    const deadline = Date.now() + ms
    const want = Math.min(count, this.defaultRelays.length)
    while (this.defaultRelays.filter((u) => this.conns.get(u)?.connected).length < want) {
      const left = deadline - Date.now()
      if (left <= 0) return false
      await Promise.race(this.defaultRelays.map((u) => this.conns.get(u)!.waitOpen(left)))
      if (this.defaultRelays.filter((u) => this.conns.get(u)?.connected).length < want) await new Promise((r) => setTimeout(r, 20))
    }
    return true
  }

  subscribe(filters: Filter[], handlers: SubscriptionHandlers, options: SubscribeOptions = {}): PoolSubscription {
    if (this.closed) throw new Error('the relay pool is closed')
    const relays = options.relays ? options.relays.map(normalizeRelayUrl) : this.defaultRelays
    const sub: SubState = {
      id: `dvm${(this.serial++).toString(36)}`,
      filters: filters.map((f) => ({ ...f })),
      handlers,
      relays: new Set(relays),
      seen: new BoundedSet(this.settings.maxSeenIds),
      sinceSlack: options.sinceSlack ?? 5,
      closed: false,
    }
    this.subs.set(sub.id, sub)
    for (const url of sub.relays) {
      const conn = this.connection(url, !this.defaultRelays.includes(url))
      if (conn) conn.sendReq(sub)
    }
    return {
      id: sub.id,
      close: () => {
        if (sub.closed) return
        sub.closed = true
        this.subs.delete(sub.id)
        for (const url of sub.relays) this.conns.get(url)?.sendClose(sub.id)
      },
    }
  }

  /**
   * Stored events matching `filters`: resolves once every connected relay has
   * sent EOSE, or at `timeoutMs` with what came so far. Verified and deduped
   * like any subscription; at most `maxEvents` are kept.
   */
  query(filters: Filter[], options: { timeoutMs?: number; maxEvents?: number; relays?: string[] } = {}): Promise<Event[]> {
    const timeoutMs = options.timeoutMs ?? this.settings.connectTimeoutMs
    const maxEvents = options.maxEvents ?? 1000
    return new Promise((resolve) => {
      const events: Event[] = []
      const eosed = new Set<string>()
      let sub: PoolSubscription | undefined
      let finished = false
      const finish = (): void => {
        if (finished) return
        finished = true
        clearTimeout(timer)
        sub?.close()
        resolve(events)
      }
      const timer = setTimeout(finish, timeoutMs)
      const targets = options.relays ? options.relays.map(normalizeRelayUrl) : this.defaultRelays
      const allDone = (): boolean => {
        const connected = targets.filter((u) => this.conns.get(u)?.connected)
        return connected.length > 0 && connected.every((u) => eosed.has(u))
      }
      sub = this.subscribe(filters, {
        onevent: (ev) => {
          if (events.length < maxEvents) events.push(ev)
          if (events.length >= maxEvents) finish()
        },
        oneose: (relay) => {
          eosed.add(relay)
          if (allDone()) finish()
        },
        onclosed: (relay) => {
          eosed.add(relay)
          if (allDone()) finish()
        },
      }, options.relays ? { relays: options.relays } : {})
    })
  }

  /**
   * Publish to the pool's relays plus `extraRelays` (e.g. a request's `relays`
   * tag). Resolves when every relay has answered or timed out.
   */
  async publish(event: Event, options: { extraRelays?: string[]; relays?: string[]; timeoutMs?: number } = {}): Promise<PublishOutcome[]> {
    if (this.closed) throw new Error('the relay pool is closed')
    const targets = new Set(options.relays ? options.relays.map(normalizeRelayUrl) : this.defaultRelays)
    for (const r of options.extraRelays ?? []) {
      try {
        targets.add(normalizeRelayUrl(r))
      } catch {
        // a malformed hint is the customer's problem; skip it
      }
    }
    const timeoutMs = options.timeoutMs ?? this.settings.publishTimeoutMs
    return Promise.all(
      [...targets].map((url) => {
        const conn = this.connection(url, !this.defaultRelays.includes(url))
        if (!conn) return Promise.resolve({ relay: url, ok: false, message: `not connecting: already ${this.settings.maxConnections} relay connections` })
        return conn.publish(event, timeoutMs)
      }),
    )
  }

  /** Publish and throw unless at least one relay accepted it. */
  async publishOrThrow(event: Event, options: { extraRelays?: string[]; relays?: string[]; timeoutMs?: number } = {}): Promise<PublishOutcome[]> {
    const outcomes = await this.publish(event, options)
    if (!outcomes.some((o) => o.ok)) {
      throw new Error(`no relay accepted the event: ${outcomes.map((o) => `${o.relay} (${o.message})`).join(', ')}; check the relay URLs or try again`)
    }
    return outcomes
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.subs.clear()
    for (const c of this.conns.values()) c.close()
    this.conns.clear()
  }

  // ------------------------------------------------------------ internals

  /** @internal */
  status(s: RelayStatus): void {
    this.opts.onStatus?.(s)
  }

  /** @internal subscriptions that should be live on `url` */
  subsFor(url: string): SubState[] {
    return [...this.subs.values()].filter((s) => s.relays.has(url))
  }

  /** @internal */
  dropExtra(url: string): void {
    const c = this.conns.get(url)
    if (!c || !c.extra || this.subsFor(url).length > 0) return
    c.close()
    this.conns.delete(url)
  }

  private connection(url: string, extra: boolean): RelayConnection | undefined {
    let c = this.conns.get(url)
    if (c) return c
    if (this.conns.size >= this.settings.maxConnections) return undefined
    c = new RelayConnection(url, this, this.settings, extra)
    this.conns.set(url, c)
    c.start()
    return c
  }

  /** @internal one text frame from a relay */
  onMessage(conn: RelayConnection, text: string): void {
    let msg: unknown
    try {
      msg = JSON.parse(text)
    } catch {
      return
    }
    if (!Array.isArray(msg) || typeof msg[0] !== 'string') return
    switch (msg[0]) {
      case 'EVENT': {
        const sub = typeof msg[1] === 'string' ? this.subs.get(msg[1]) : undefined
        if (!sub || sub.closed) return
        this.onEvent(conn.url, sub, msg[2], text.length)
        return
      }
      case 'EOSE': {
        const sub = typeof msg[1] === 'string' ? this.subs.get(msg[1]) : undefined
        sub?.handlers.oneose?.(conn.url)
        return
      }
      case 'OK': {
        if (typeof msg[1] === 'string' && typeof msg[2] === 'boolean') conn.settle(msg[1], msg[2], typeof msg[3] === 'string' ? msg[3].slice(0, 500) : '')
        return
      }
      case 'CLOSED': {
        const sub = typeof msg[1] === 'string' ? this.subs.get(msg[1]) : undefined
        if (!sub) return
        conn.closedByRelay(sub.id)
        sub.handlers.onclosed?.(conn.url, typeof msg[2] === 'string' ? msg[2].slice(0, 500) : '')
        return
      }
      default:
        // NOTICE, AUTH, COUNT: nothing we act on.
        return
    }
  }

  private onEvent(relay: string, sub: SubState, raw: unknown, frameBytes: number): void {
    this.stats.received++
    const id = raw !== null && typeof raw === 'object' ? (raw as { id?: unknown }).id : undefined
    // Only ids of events that passed verification are remembered, so a forged
    // copy arriving first cannot shadow the real event.
    if (typeof id === 'string' && sub.seen.has(id)) {
      this.stats.duplicates++
      return
    }
    const problem = eventShapeProblem(raw, this.opts.shapeLimits, frameBytes)
    if (problem) return this.invalid(relay, sub, problem)
    const event = raw as Event
    if (!matchFilters(sub.filters, event)) return this.invalid(relay, sub, 'event does not match the subscription')
    if (!this.opts.crypto.verify(event)) return this.invalid(relay, sub, `bad signature or id on event ${event.id}`)
    this.stats.verified++
    sub.seen.add(event.id)
    if (sub.newest === undefined || event.created_at > sub.newest) sub.newest = Math.min(event.created_at, Math.floor(Date.now() / 1000) + 60)
    sub.handlers.onevent(event, relay)
  }

  private invalid(relay: string, sub: SubState, reason: string): void {
    this.stats.invalid++
    sub.handlers.oninvalid?.(relay, reason)
  }
}
