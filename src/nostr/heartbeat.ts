import { tagValue, type Event, type EventTemplate } from './events.js'
import { isJobRequestKind, type ParseResult } from './nip90.js'

/**
 * Provider heartbeat: kind 30333, an addressable (parameterized replaceable,
 * NIP-01 30000-39999) event with `d` = `dvm-agent:heartbeat`, so each beat
 * replaces the previous one on the relay and a reader gets only the newest.
 *
 * Tags (readable without parsing content, and filterable with `#k`/`#status`):
 *   ["d", "dvm-agent:heartbeat"]
 *   ["status", "online" | "offline"]
 *   ["k", "<kind>"]                  one per job kind served
 *   ["capacity", "<free>", "<max>"]  free job/session slots right now
 *   ["expiration", "<unix s>"]      NIP-40: about three intervals ahead, so a
 *                                   provider that died without saying goodbye
 *                                   drops out of discovery by itself
 * Content: JSON { "v": 1, "status", "free", "max", "kinds", "interval" } with
 * the same facts, for clients that prefer JSON.
 *
 * A clean shutdown publishes a last beat with status `offline` and free 0.
 */
export const HEARTBEAT_KIND = 30333
export const HEARTBEAT_IDENTIFIER = 'dvm-agent:heartbeat'

export type HeartbeatStatus = 'online' | 'offline'

export interface HeartbeatInfo {
  status: HeartbeatStatus
  kinds: number[]
  free: number
  max: number
  /** seconds between beats */
  intervalSeconds: number
}

export interface Heartbeat extends HeartbeatInfo {
  pubkey: string
  createdAt: number
  expiresAt?: number
}

export function buildHeartbeat(info: HeartbeatInfo, createdAt: number): EventTemplate {
  const free = Math.max(0, Math.min(info.free, info.max))
  const expiration = createdAt + Math.max(30, Math.ceil(info.intervalSeconds * 3))
  return {
    kind: HEARTBEAT_KIND,
    created_at: createdAt,
    content: JSON.stringify({ v: 1, status: info.status, free, max: info.max, kinds: info.kinds, interval: info.intervalSeconds }),
    tags: [
      ['d', HEARTBEAT_IDENTIFIER],
      ['status', info.status],
      ...info.kinds.map((k) => ['k', String(k)]),
      ['capacity', String(free), String(info.max)],
      ['expiration', String(expiration)],
    ],
  }
}

export function parseHeartbeat(event: Event): ParseResult<Heartbeat> {
  if (event.kind !== HEARTBEAT_KIND) return { ok: false, reason: `kind ${event.kind} is not a heartbeat (${HEARTBEAT_KIND})` }
  if (tagValue(event, 'd') !== HEARTBEAT_IDENTIFIER) return { ok: false, reason: 'not a dvm-agent heartbeat (d tag)' }
  const status = tagValue(event, 'status')
  if (status !== 'online' && status !== 'offline') return { ok: false, reason: `unknown heartbeat status "${String(status).slice(0, 20)}"` }
  const kinds = event.tags.filter((t) => t[0] === 'k').map((t) => Number(t[1])).filter(isJobRequestKind).slice(0, 64)
  const cap = event.tags.find((t) => t[0] === 'capacity')
  const free = Number(cap?.[1])
  const max = Number(cap?.[2])
  if (!Number.isSafeInteger(free) || !Number.isSafeInteger(max) || free < 0 || max < 0) return { ok: false, reason: 'malformed "capacity" tag' }
  let intervalSeconds = 0
  try {
    const c = JSON.parse(event.content) as { interval?: unknown }
    if (typeof c.interval === 'number' && Number.isFinite(c.interval) && c.interval > 0) intervalSeconds = c.interval
  } catch {
    // content is informative only; the tags are authoritative
  }
  const exp = Number(tagValue(event, 'expiration'))
  const hb: Heartbeat = { status, kinds, free, max, intervalSeconds, pubkey: event.pubkey, createdAt: event.created_at }
  if (Number.isSafeInteger(exp)) hb.expiresAt = exp
  return { ok: true, value: hb }
}

/** Online, not expired, and with a free slot. */
export function isAvailable(hb: Heartbeat, nowSeconds: number): boolean {
  return hb.status === 'online' && hb.free > 0 && (hb.expiresAt === undefined || hb.expiresAt > nowSeconds)
}
