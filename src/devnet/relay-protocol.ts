import type { Event, Filter, IncomingMessage, OutgoingMessage } from '@nostr-relay/common'

/**
 * Shape checks for NIP-01 client messages. The relay library trusts its
 * input ("validate before calling handleMessage"), so everything from the
 * socket passes through here first. Signatures are checked later, by the
 * library, on the validated event.
 */
export type ParsedClientMessage =
  | { ok: true; message: IncomingMessage }
  | { ok: false; reply: OutgoingMessage }

export const LIMITS = {
  subscriptionIdLength: 64,
  filtersPerReq: 20,
  valuesPerFilterField: 1000,
  tagsPerEvent: 2000,
} as const

const HEX64 = /^[0-9a-f]{64}$/
const HEX128 = /^[0-9a-f]{128}$/
const TAG_FILTER = /^[#&][a-zA-Z]$/

function isNonNegativeInt(v: unknown, max = Number.MAX_SAFE_INTEGER): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max
}

/** Why `e` is not a NIP-01 event, or undefined when it is one. */
export function eventShapeError(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return 'event must be a JSON object'
  const o = e as Record<string, unknown>
  if (typeof o.id !== 'string' || !HEX64.test(o.id)) return 'id must be 64 lowercase hex characters'
  if (typeof o.pubkey !== 'string' || !HEX64.test(o.pubkey)) return 'pubkey must be 64 lowercase hex characters'
  if (typeof o.sig !== 'string' || !HEX128.test(o.sig)) return 'sig must be 128 lowercase hex characters'
  if (!isNonNegativeInt(o.created_at)) return 'created_at must be a non-negative integer (seconds)'
  if (!isNonNegativeInt(o.kind, 65535)) return 'kind must be an integer between 0 and 65535'
  if (typeof o.content !== 'string') return 'content must be a string'
  if (!Array.isArray(o.tags) || o.tags.length > LIMITS.tagsPerEvent) return `tags must be an array of at most ${LIMITS.tagsPerEvent} tags`
  for (const tag of o.tags) {
    if (!Array.isArray(tag) || tag.length === 0 || !tag.every((v) => typeof v === 'string')) {
      return 'every tag must be a non-empty array of strings'
    }
  }
  return undefined
}

/** Why `f` is not a filter this relay serves, or undefined when it is one. */
export function filterShapeError(f: unknown): string | undefined {
  if (typeof f !== 'object' || f === null || Array.isArray(f)) return 'filter must be a JSON object'
  for (const [key, value] of Object.entries(f as Record<string, unknown>)) {
    const isList = Array.isArray(value) && value.length <= LIMITS.valuesPerFilterField
    switch (key) {
      case 'ids':
      case 'authors':
        if (!isList || !(value as unknown[]).every((v) => typeof v === 'string' && HEX64.test(v))) {
          return `${key} must be a list of at most ${LIMITS.valuesPerFilterField} 64-hex strings`
        }
        break
      case 'kinds':
        if (!isList || !(value as unknown[]).every((v) => isNonNegativeInt(v, 65535))) {
          return `kinds must be a list of at most ${LIMITS.valuesPerFilterField} integers 0-65535`
        }
        break
      case 'since':
      case 'until':
      case 'limit':
        if (!isNonNegativeInt(value)) return `${key} must be a non-negative integer`
        break
      case 'search':
        if (typeof value !== 'string') return 'search must be a string'
        break
      default:
        if (!TAG_FILTER.test(key)) return `unknown filter field "${key}"`
        if (!isList || !(value as unknown[]).every((v) => typeof v === 'string')) {
          return `${key} must be a list of at most ${LIMITS.valuesPerFilterField} strings`
        }
    }
  }
  return undefined
}

function isSubscriptionId(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= LIMITS.subscriptionIdLength
}

const notice = (text: string): ParsedClientMessage => ({ ok: false, reply: ['NOTICE', text] })

/** Parse one text frame into a message the relay library may handle. */
export function parseClientMessage(text: string): ParsedClientMessage {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    return notice('invalid: message is not JSON')
  }
  if (!Array.isArray(data) || typeof data[0] !== 'string') {
    return notice('invalid: message must be a JSON array starting with its type, e.g. ["REQ", ...]')
  }
  const [type, ...rest] = data as [string, ...unknown[]]
  switch (type) {
    case 'EVENT':
    case 'AUTH': {
      const event = rest[0]
      const why = rest.length !== 1 ? `${type} takes exactly one event` : eventShapeError(event)
      if (why) {
        const id = (event as { id?: unknown } | null)?.id
        // NIP-01: an EVENT is always answered with OK when its id is known.
        return typeof id === 'string' && HEX64.test(id)
          ? { ok: false, reply: ['OK', id, false, `invalid: ${why}`] }
          : notice(`invalid: ${why}`)
      }
      return { ok: true, message: [type, event as Event] }
    }
    case 'REQ': {
      const [subId, ...filters] = rest
      if (!isSubscriptionId(subId)) {
        return notice(`invalid: REQ needs a subscription id of 1-${LIMITS.subscriptionIdLength} characters`)
      }
      if (filters.length === 0 || filters.length > LIMITS.filtersPerReq) {
        return { ok: false, reply: ['CLOSED', subId, `invalid: REQ needs 1-${LIMITS.filtersPerReq} filters`] }
      }
      for (const f of filters) {
        const why = filterShapeError(f)
        if (why) return { ok: false, reply: ['CLOSED', subId, `invalid: ${why}`] }
      }
      return { ok: true, message: ['REQ', subId, ...(filters as Filter[])] }
    }
    case 'CLOSE': {
      const subId = rest[0]
      if (rest.length !== 1 || !isSubscriptionId(subId)) return notice('invalid: CLOSE takes one subscription id')
      return { ok: true, message: ['CLOSE', subId] }
    }
    default:
      return notice(`invalid: unknown message type "${type.slice(0, 32)}"; this relay speaks EVENT, REQ, CLOSE`)
  }
}
