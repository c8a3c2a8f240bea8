import { nowSeconds } from '../nostr/events.js'
import { HEARTBEAT_IDENTIFIER, HEARTBEAT_KIND, isAvailable, parseHeartbeat, type Heartbeat } from '../nostr/heartbeat.js'
import { HANDLER_KIND, parseHandler, type Handler } from '../nostr/nip89.js'
import type { RelayPool } from '../nostr/relay-client.js'

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
