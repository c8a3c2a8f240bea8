import type { Event, EventTemplate } from './events.js'
import type { ParseResult } from './nip90.js'

/** NIP-01 kind 0 metadata: the provider's public profile. */
export const PROFILE_KIND = 0
export const MAX_PROFILE_BYTES = 16 * 1024

export interface Profile {
  name: string
  about?: string
  picture?: string
  website?: string
  /** lightning address, if the operator has one */
  lud16?: string
  /** free-form marker clients can use to spot bots (NIP-24 `bot`) */
  bot?: boolean
}

const FIELDS = ['name', 'about', 'picture', 'website', 'lud16'] as const

export function buildProfile(profile: Profile, createdAt: number): EventTemplate {
  const content: Record<string, unknown> = {}
  for (const f of FIELDS) if (profile[f] !== undefined) content[f] = profile[f]
  if (profile.bot !== undefined) content.bot = profile.bot
  const json = JSON.stringify(content)
  if (Buffer.byteLength(json) > MAX_PROFILE_BYTES) throw new Error(`the profile is ${Buffer.byteLength(json)} bytes, limit ${MAX_PROFILE_BYTES}; shorten "about"`)
  return { kind: PROFILE_KIND, created_at: createdAt, content: json, tags: [] }
}

export function parseProfile(event: Event): ParseResult<Profile & { pubkey: string }> {
  if (event.kind !== PROFILE_KIND) return { ok: false, reason: `kind ${event.kind} is not a profile (0)` }
  if (Buffer.byteLength(event.content) > MAX_PROFILE_BYTES) return { ok: false, reason: 'profile is too large' }
  let c: Record<string, unknown>
  try {
    const v: unknown = JSON.parse(event.content)
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return { ok: false, reason: 'profile content is not a JSON object' }
    c = v as Record<string, unknown>
  } catch {
    return { ok: false, reason: 'profile content is not JSON' }
  }
  const out: Profile & { pubkey: string } = { name: typeof c.name === 'string' ? c.name.slice(0, 200) : '', pubkey: event.pubkey }
  for (const f of ['about', 'picture', 'website', 'lud16'] as const) {
    const v = c[f]
    if (typeof v === 'string') out[f] = v.slice(0, 4000)
  }
  if (typeof c.bot === 'boolean') out.bot = c.bot
  return { ok: true, value: out }
}
