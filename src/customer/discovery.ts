import { loadNostrCrypto, nowSeconds } from '../nostr/events.js'
import { HEARTBEAT_IDENTIFIER, HEARTBEAT_KIND, isAvailable, parseHeartbeat, type Heartbeat } from '../nostr/heartbeat.js'
import { HANDLER_KIND, parseHandler, type Handler } from '../nostr/nip89.js'
import { RelayPool } from '../nostr/relay-client.js'
import { sameMintSafe } from '../payments/mint-url.js'
import { isJobRequestKind } from '../nostr/nip90.js'

/**
 * Find providers for a job kind: their NIP-89 handlers (kind 31990, `#k`
 * filter) and their heartbeats (kind 30333). Best first: available (online,
 * fresh, with a free slot), then online ones, then more free slots, then the
 * freshest beat. Providers with a handler but no heartbeat come last.
 */
export interface ProviderCandidate {
  pubkey: string
  handler: Handler
  heartbeat?: Heartbeat
  available: boolean
}

export interface DiscoveryOptions {
  timeoutMs?: number
  /** only these pubkeys (hex) */
  authors?: string[]
  /** at most this many handlers are read */
  maxHandlers?: number
}

export async function discoverProviders(pool: RelayPool, kind: number, options: DiscoveryOptions = {}): Promise<ProviderCandidate[]> {
  const timeoutMs = options.timeoutMs ?? 3000
  await pool.waitConnected(timeoutMs, pool.relays.length)
  const handlerEvents = await pool.query(
    [{ kinds: [HANDLER_KIND], '#k': [String(kind)], ...(options.authors ? { authors: options.authors } : {}) }],
    { timeoutMs, maxEvents: options.maxHandlers ?? 500 },
  )
  const handlers = new Map<string, Handler>()
  for (const ev of handlerEvents) {
    const h = parseHandler(ev)
    if (!h.ok || h.value.kind !== kind) continue
    const prev = handlers.get(ev.pubkey)
    if (!prev || prev.createdAt < h.value.createdAt) handlers.set(ev.pubkey, h.value)
  }
  if (handlers.size === 0) return []

  const beats = await pool.query([{ kinds: [HEARTBEAT_KIND], authors: [...handlers.keys()], '#d': [HEARTBEAT_IDENTIFIER] }], { timeoutMs, maxEvents: handlers.size * 4 })
  const heartbeats = new Map<string, Heartbeat>()
  for (const ev of beats) {
    const hb = parseHeartbeat(ev)
    if (!hb.ok) continue
    const prev = heartbeats.get(ev.pubkey)
    if (!prev || prev.createdAt < hb.value.createdAt) heartbeats.set(ev.pubkey, hb.value)
  }

  const now = nowSeconds()
  const out: ProviderCandidate[] = [...handlers.values()].map((handler) => {
    const heartbeat = heartbeats.get(handler.pubkey)
    const c: ProviderCandidate = { pubkey: handler.pubkey, handler, available: heartbeat !== undefined && isAvailable(heartbeat, now) && heartbeat.kinds.includes(kind) }
    if (heartbeat) c.heartbeat = heartbeat
    return c
  })
  return out.sort(
    (a, b) =>
      Number(b.available) - Number(a.available) ||
      Number(b.heartbeat?.status === 'online') - Number(a.heartbeat?.status === 'online') ||
      (b.heartbeat?.free ?? -1) - (a.heartbeat?.free ?? -1) ||
      (b.heartbeat?.createdAt ?? 0) - (a.heartbeat?.createdAt ?? 0),
  )
}

/**
 * The job kinds each of `pubkeys` announces NIP-89 handlers for, whatever the
 * kind. Any 31990 event counts, ours or another DVM's, by its `k` tags in
 * the job range (an app's handler for kind 1 says nothing about jobs). A
 * provider that announces no job kind is absent from the map: it may still
 * serve, so callers must not conclude anything about it.
 */
export async function announcedKinds(pool: RelayPool, pubkeys: string[], timeoutMs = 3000): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>()
  if (pubkeys.length === 0) return out
  const events = await pool.query([{ kinds: [HANDLER_KIND], authors: pubkeys }], { timeoutMs, maxEvents: 100 * pubkeys.length })
  for (const ev of events) {
    if (!pubkeys.includes(ev.pubkey)) continue
    const kinds = ev.tags.filter((t) => t[0] === 'k').map((t) => Number(t[1])).filter(isJobRequestKind)
    if (kinds.length === 0) continue
    out.set(ev.pubkey, [...new Set([...(out.get(ev.pubkey) ?? []), ...kinds])].sort((a, b) => a - b))
  }
  return out
}

/** A named provider does not serve the kind asked for; `kinds` are those it does. */
export class KindNotServedError extends Error {
  override name = 'KindNotServedError'
  constructor(
    readonly provider: string,
    readonly kinds: number[],
    readonly kind: number,
    /** what to change instead of the kind, when `--kind` is not the flag that set it (a chain step) */
    hint = `pass --kind=${kinds[0]}`,
  ) {
    super(`provider ${shortKey(provider)} serves ${kinds.length === 1 ? 'kind' : 'kinds'} ${kinds.join(', ')}, not ${kind}; pick a provider of kind ${kind} or ${hint}`)
  }
}

/** Enough of a hex key to recognise it in a message. */
export function shortKey(hex: string): string {
  return `${hex.slice(0, 8)}…`
}

export interface ChooseOptions {
  providerPubkey?: string
  maxPerMinute?: number
  /** only providers whose handler lists this mint (the customer's wallet) */
  mint?: string
  /** providers already passed over */
  exclude?: ReadonlyMap<string, string>
  timeoutMs?: number
}

export interface Chosen {
  pubkey: string
  swarmKey: string
  /** when its newest heartbeat says it went offline (unix s) */
  offlineSince?: number
}

/**
 * Pick a provider from the relays: the best available NIP-89 handler for the
 * kind (online, free capacity, within the price limit). Its swarm key lets us
 * dial it directly. Null when the relays have none or cannot be reached.
 * Throws KindNotServedError when the named provider announces only other
 * kinds: it will not be on this kind's topic, so looking there is pointless.
 */
export async function chooseFromRelays(relays: string[], kind: number, opts: ChooseOptions = {}): Promise<Chosen | null> {
  const timeoutMs = opts.timeoutMs ?? 3000
  const pool = new RelayPool({ crypto: await loadNostrCrypto(), relays, connectTimeoutMs: timeoutMs })
  try {
    const found = await discoverProviders(pool, kind, { timeoutMs, ...(opts.providerPubkey ? { authors: [opts.providerPubkey] } : {}) })
    if (opts.providerPubkey && found.length === 0) {
      const kinds = (await announcedKinds(pool, [opts.providerPubkey], timeoutMs)).get(opts.providerPubkey)
      if (kinds && !kinds.includes(kind)) throw new KindNotServedError(opts.providerPubkey, kinds, kind)
    }
    const ok = found.filter(
      (c) =>
        (opts.providerPubkey ? true : c.available) &&
        (opts.maxPerMinute === undefined || (c.handler.pricing.perMinute ?? Infinity) <= opts.maxPerMinute) &&
        (opts.mint === undefined || c.handler.mints.length === 0 || c.handler.mints.some((m) => sameMintSafe(m, opts.mint!))) &&
        !opts.exclude?.has(c.pubkey),
    )
    const best = ok[0]
    if (!best) return null
    const offline = best.heartbeat?.status === 'offline' ? { offlineSince: best.heartbeat.createdAt } : {}
    return { pubkey: best.pubkey, swarmKey: best.handler.swarmKey, ...offline }
  } catch (err) {
    if (err instanceof KindNotServedError) throw err
    return null
  } finally {
    pool.close()
  }
}
