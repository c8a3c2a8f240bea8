import { tagValue, type Event, type EventTemplate } from './events.js'
import { isJobRequestKind, type ParseResult } from './nip90.js'

/**
 * NIP-89 handler information (kind 31990): how a provider announces the job
 * kinds it serves. One handler per kind, addressable by `d` = `dvm-agent:<kind>`
 * so a new announcement replaces the old one, with one `k` tag for the kind
 * (the tag customers filter on with `#k`). The content is a JSON object:
 *
 *   { "v": 1, "name", "about", "skill": {…}, "pricing": {…},
 *     "mints": ["https://mint…"], "swarmKey": "<64 hex>" }
 *
 * `swarmKey` is the provider's Hyperswarm public key (derived from its Nostr
 * key), so a customer can dial it directly and check who answers.
 */
export const HANDLER_KIND = 31990
export const HANDLER_CONTENT_VERSION = 1
export const MAX_HANDLER_CONTENT_BYTES = 32 * 1024

/** Prices in sats; which apply depends on how the job is sold (session minutes, a relay request, streamed chunks). */
export interface HandlerPricing {
  perMinute?: number
  perRequest?: number
  perChunk?: number
}

export interface HandlerInfo {
  kind: number
  name: string
  about: string
  /** the skill descriptor the provider also sends over P2P; opaque JSON here */
  skill: Record<string, unknown>
  pricing: HandlerPricing
  /** mint URLs the provider accepts ecash from */
  mints: string[]
  /** 64-hex Hyperswarm public key */
  swarmKey: string
}

export interface Handler extends HandlerInfo {
  pubkey: string
  eventId: string
  createdAt: number
}

export function handlerIdentifier(kind: number): string {
  return `dvm-agent:${kind}`
}

export function buildHandler(info: HandlerInfo, createdAt: number): EventTemplate {
  if (!isJobRequestKind(info.kind)) throw new RangeError(`a handler announces a job kind (5000-5999), got ${info.kind}`)
  const content = JSON.stringify({
    v: HANDLER_CONTENT_VERSION,
    name: info.name,
    about: info.about,
    skill: info.skill,
    pricing: info.pricing,
    mints: info.mints,
    swarmKey: info.swarmKey,
  })
  if (Buffer.byteLength(content) > MAX_HANDLER_CONTENT_BYTES) {
    throw new Error(`the handler announcement is ${Buffer.byteLength(content)} bytes, limit ${MAX_HANDLER_CONTENT_BYTES}; shorten the skill descriptor`)
  }
  return {
    kind: HANDLER_KIND,
    created_at: createdAt,
    content,
    tags: [
      ['d', handlerIdentifier(info.kind)],
      ['k', String(info.kind)],
      ['alt', `dvm-agent handler for job kind ${info.kind}`],
    ],
  }
}

const HEX64 = /^[0-9a-f]{64}$/

/**
 * Parse a handler from an untrusted event. Handlers without our content
 * (other NIP-89 apps) are rejected with a reason; callers usually skip them.
 */
export function parseHandler(event: Event): ParseResult<Handler> {
  const fail = (reason: string): ParseResult<Handler> => ({ ok: false, reason })
  if (event.kind !== HANDLER_KIND) return fail(`kind ${event.kind} is not a handler (31990)`)
  if (Buffer.byteLength(event.content) > MAX_HANDLER_CONTENT_BYTES) return fail('handler content is too large')
  const kTags = event.tags.filter((t) => t[0] === 'k').map((t) => Number(t[1]))
  const d = tagValue(event, 'd') ?? ''
  const kind = kTags.find(isJobRequestKind) ?? Number(d.replace(/^dvm-agent:/, ''))
  if (!isJobRequestKind(kind)) return fail('no "k" tag with a job kind (5000-5999)')
  let c: Record<string, unknown>
  try {
    const v: unknown = JSON.parse(event.content)
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return fail('handler content is not a JSON object')
    c = v as Record<string, unknown>
  } catch {
    return fail('handler content is not JSON')
  }
  const name = typeof c.name === 'string' ? c.name.slice(0, 200) : ''
  const about = typeof c.about === 'string' ? c.about.slice(0, 4000) : ''
  const skill = c.skill !== null && typeof c.skill === 'object' && !Array.isArray(c.skill) ? (c.skill as Record<string, unknown>) : {}
  const pricing = parsePricing(c.pricing)
  if (!pricing) return fail('"pricing" must be an object of non-negative sat amounts')
  const mints = Array.isArray(c.mints) ? c.mints.filter((m): m is string => typeof m === 'string' && isHttpUrl(m)).slice(0, 16) : []
  const swarmKey = typeof c.swarmKey === 'string' ? c.swarmKey.toLowerCase() : ''
  if (!HEX64.test(swarmKey)) return fail('"swarmKey" is not a 64-hex public key')
  return {
    ok: true,
    value: { kind, name, about, skill, pricing, mints, swarmKey, pubkey: event.pubkey, eventId: event.id, createdAt: event.created_at },
  }
}

function parsePricing(v: unknown): HandlerPricing | undefined {
  if (v === undefined) return {}
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined
  const out: HandlerPricing = {}
  for (const key of ['perMinute', 'perRequest', 'perChunk'] as const) {
    const n = (v as Record<string, unknown>)[key]
    if (n === undefined) continue
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) return undefined
    out[key] = n
  }
  return out
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s)
    return u.protocol === 'http:' || u.protocol === 'https:'
  } catch {
    return false
  }
}
