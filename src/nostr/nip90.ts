import type { JobInput } from '../processors/types.js'
import { detectScheme, type EncryptionScheme } from './encryption.js'
import { firstTag, tagValue, type Event, type EventTemplate } from './events.js'

/**
 * NIP-90 (Data Vending Machines): build, parse and validate job requests,
 * feedback and results. Pure functions: no keys, no network. Everything read
 * from the wire is checked against the limits below and rejected with a reason
 * a customer can act on.
 */

export const JOB_REQUEST_MIN_KIND = 5000
export const JOB_REQUEST_MAX_KIND = 5999
export const JOB_FEEDBACK_KIND = 7000
export const DELETION_KIND = 5

export const NIP90_LIMITS = {
  /** whole request event, JSON-encoded */
  maxRequestBytes: 64 * 1024,
  maxInputs: 20,
  /** one `i` value (text inputs carry the prompt) */
  maxInputBytes: 32 * 1024,
  maxParams: 32,
  maxParamKeyChars: 64,
  /** large enough for a Cashu token of a few dozen locked proofs */
  maxParamValueBytes: 16 * 1024,
  maxRelays: 8,
  maxRelayUrlChars: 256,
  maxProviders: 16,
  maxOutputChars: 128,
  /** a result's content; NIP-44 v2 carries at most 65,535 bytes, and relays commonly cap events near 64-128 kB */
  maxResultBytes: 60_000,
  /** one `partial` feedback's content */
  maxPartialBytes: 16 * 1024,
} as const

export type FeedbackStatus = 'payment-required' | 'processing' | 'partial' | 'success' | 'error'
const STATUSES: readonly FeedbackStatus[] = ['payment-required', 'processing', 'partial', 'success', 'error']
const INPUT_TYPES: readonly JobInput['type'][] = ['text', 'url', 'event', 'job']
const HEX64 = /^[0-9a-f]{64}$/

export function isJobRequestKind(kind: number): boolean {
  return Number.isInteger(kind) && kind >= JOB_REQUEST_MIN_KIND && kind <= JOB_REQUEST_MAX_KIND
}

export function resultKindFor(requestKind: number): number {
  if (!isJobRequestKind(requestKind)) throw new RangeError(`${requestKind} is not a job request kind (5000-5999)`)
  return requestKind + 1000
}

export function isJobResultKind(kind: number): boolean {
  return isJobRequestKind(kind - 1000)
}

/** The request's private part: `i`, `param` and the rest, as the encrypted content carries them. */
export type Tag = string[]

export interface JobRequest {
  id: string
  kind: number
  /** hex pubkey of the customer */
  customer: string
  createdAt: number
  inputs: JobInput[]
  params: Record<string, string>
  output?: string
  bidMsats?: number
  /** where the customer wants responses published, besides the relays it came from */
  relays: string[]
  /** providers the customer addressed (`p` tags); empty means anyone */
  providers: string[]
  /** NIP-40 expiration, seconds */
  expiration?: number
  /** set when the inputs and params came encrypted */
  encryption?: EncryptionScheme
  /** the signed request as received */
  event: Event
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: string }

export interface RequestDraft {
  kind: number
  inputs: JobInput[]
  params?: Record<string, string>
  output?: string
  bidMsats?: number
  relays?: string[]
  providers?: string[]
  expiration?: number
  /** extra public tags, e.g. `t` */
  tags?: Tag[]
}

/** The tags that say what the job is (and so are encrypted for an encrypted request). */
export function privateRequestTags(draft: Pick<RequestDraft, 'inputs' | 'params' | 'output' | 'bidMsats'>): Tag[] {
  const tags: Tag[] = []
  for (const i of draft.inputs) {
    const tag = ['i', i.value, i.type]
    if (i.relay !== undefined || i.marker !== undefined) tag.push(i.relay ?? '')
    if (i.marker !== undefined) tag.push(i.marker)
    tags.push(tag)
  }
  for (const [k, v] of Object.entries(draft.params ?? {})) tags.push(['param', k, v])
  if (draft.output) tags.push(['output', draft.output])
  return tags
}

/**
 * A job request template. With `encryptTags` (a function of the plaintext that
 * returns ciphertext for the single provider in `providers`), the `i`,
 * `param` and `output` tags move into the encrypted content and the event
 * carries `encrypted` and `p` only, as NIP-90 describes.
 */
export function buildJobRequest(draft: RequestDraft, createdAt: number, encryptTags?: (plaintext: string) => string): EventTemplate {
  if (!isJobRequestKind(draft.kind)) throw new RangeError(`--kind must be 5000-5999 for a job request, got ${draft.kind}`)
  const priv = privateRequestTags(draft)
  const pub: Tag[] = []
  for (const p of draft.providers ?? []) pub.push(['p', p])
  if (draft.bidMsats !== undefined) pub.push(['bid', String(draft.bidMsats)])
  if (draft.relays && draft.relays.length > 0) pub.push(['relays', ...draft.relays])
  if (draft.expiration !== undefined) pub.push(['expiration', String(draft.expiration)])
  pub.push(...(draft.tags ?? []))
  if (encryptTags) {
    if ((draft.providers ?? []).length !== 1) throw new Error('an encrypted request needs exactly one provider (--provider) to encrypt to')
    return { kind: draft.kind, created_at: createdAt, content: encryptTags(JSON.stringify(priv)), tags: [...pub, ['encrypted']] }
  }
  return { kind: draft.kind, created_at: createdAt, content: '', tags: [...priv, ...pub] }
}

export function isEncryptedRequest(event: Pick<Event, 'tags'>): boolean {
  return firstTag(event, 'encrypted') !== undefined
}

/** Every pubkey in the request's `p` tags. */
export function addressedProviders(event: Pick<Event, 'tags'>): string[] {
  return event.tags.filter((t) => t[0] === 'p' && typeof t[1] === 'string').map((t) => t[1]!.toLowerCase())
}

/** Parse the decrypted content of an encrypted request: a JSON array of string arrays. */
export function parsePrivateTags(plaintext: string): ParseResult<Tag[]> {
  let value: unknown
  try {
    value = JSON.parse(plaintext)
  } catch {
    return { ok: false, reason: 'the encrypted content is not JSON; it must be a JSON array of tags like [["i","…","text"]]' }
  }
  if (!Array.isArray(value) || !value.every((t) => Array.isArray(t) && t.length > 0 && t.length <= 64 && t.every((x) => typeof x === 'string'))) {
    return { ok: false, reason: 'the encrypted content must be a JSON array of tags (arrays of strings)' }
  }
  if (value.length > 200) return { ok: false, reason: `the encrypted content has ${value.length} tags, limit 200` }
  return { ok: true, value: value as Tag[] }
}

/**
 * Validate and parse a signed job request. `privateTags` are the decrypted
 * tags of an encrypted request (the caller decrypts: it holds the key).
 * The signature is not checked here: the relay client already did.
 */
export function parseJobRequest(event: Event, privateTags?: Tag[], eventBytes?: number): ParseResult<JobRequest> {
  const fail = (reason: string): ParseResult<JobRequest> => ({ ok: false, reason })
  if (!isJobRequestKind(event.kind)) return fail(`kind ${event.kind} is not a job request kind (5000-5999)`)
  const size = eventBytes ?? Buffer.byteLength(JSON.stringify(event))
  if (size > NIP90_LIMITS.maxRequestBytes) return fail(`request is ${size} bytes, limit ${NIP90_LIMITS.maxRequestBytes}`)

  const encrypted = isEncryptedRequest(event)
  if (encrypted && !privateTags) return fail('request is encrypted but was not decrypted')
  const tags: Tag[] = encrypted ? [...event.tags, ...(privateTags ?? [])] : event.tags

  const inputs: JobInput[] = []
  const params: Record<string, string> = {}
  let output: string | undefined
  let bidMsats: number | undefined
  let expiration: number | undefined
  const relays: string[] = []
  const providers: string[] = []

  for (const tag of tags) {
    const [name, a, b, c, d] = tag
    switch (name) {
      case 'i': {
        if (a === undefined) return fail('an "i" tag has no value')
        const type = (b ?? 'text') as JobInput['type']
        if (!INPUT_TYPES.includes(type)) return fail(`input type "${b}" is not one of text, url, event, job`)
        if (Buffer.byteLength(a) > NIP90_LIMITS.maxInputBytes) return fail(`an input is ${Buffer.byteLength(a)} bytes, limit ${NIP90_LIMITS.maxInputBytes}`)
        if ((type === 'event' || type === 'job') && !HEX64.test(a)) return fail(`a "${type}" input must be a 64-hex event id, got "${a.slice(0, 80)}"`)
        if (type === 'url' && !isHttpUrl(a)) return fail(`a "url" input must be an http(s) URL, got "${a.slice(0, 80)}"`)
        const input: JobInput = { type, value: a }
        if (c) {
          if (!isRelayUrl(c)) return fail(`the relay hint of an input is not a ws(s) URL: "${c.slice(0, 80)}"`)
          input.relay = c
        }
        if (d !== undefined) input.marker = d.slice(0, 64)
        inputs.push(input)
        if (inputs.length > NIP90_LIMITS.maxInputs) return fail(`more than ${NIP90_LIMITS.maxInputs} inputs`)
        break
      }
      case 'param': {
        if (a === undefined || b === undefined) return fail('a "param" tag needs a name and a value')
        if (a.length === 0 || a.length > NIP90_LIMITS.maxParamKeyChars) return fail(`param name "${a.slice(0, 80)}" must be 1-${NIP90_LIMITS.maxParamKeyChars} characters`)
        if (a === '__proto__' || a === 'constructor' || a === 'prototype') return fail(`"${a}" is not an acceptable param name`)
        if (Buffer.byteLength(b) > NIP90_LIMITS.maxParamValueBytes) return fail(`param "${a}" is ${Buffer.byteLength(b)} bytes, limit ${NIP90_LIMITS.maxParamValueBytes}`)
        if (Object.hasOwn(params, a)) return fail(`param "${a}" is given twice`)
        params[a] = b
        if (Object.keys(params).length > NIP90_LIMITS.maxParams) return fail(`more than ${NIP90_LIMITS.maxParams} params`)
        break
      }
      case 'output':
        if (a === undefined || a.length === 0 || a.length > NIP90_LIMITS.maxOutputChars) return fail(`"output" must be a MIME type of at most ${NIP90_LIMITS.maxOutputChars} characters`)
        output = a
        break
      case 'bid': {
        const n = a !== undefined && /^[0-9]{1,19}$/.test(a) ? Number(a) : NaN
        if (!Number.isSafeInteger(n)) return fail(`"bid" must be a whole number of millisats, got "${String(a).slice(0, 40)}"`)
        bidMsats = n
        break
      }
      case 'relays':
        for (const url of tag.slice(1)) {
          if (!isRelayUrl(url)) return fail(`"${url.slice(0, 80)}" in "relays" is not a ws:// or wss:// URL`)
          if (!relays.includes(url)) relays.push(url)
        }
        if (relays.length > NIP90_LIMITS.maxRelays) return fail(`more than ${NIP90_LIMITS.maxRelays} relays in "relays"`)
        break
      case 'p':
        if (a === undefined || !HEX64.test(a)) return fail(`a "p" tag must hold a 64-hex pubkey, got "${String(a).slice(0, 80)}"`)
        if (!providers.includes(a)) providers.push(a)
        if (providers.length > NIP90_LIMITS.maxProviders) return fail(`more than ${NIP90_LIMITS.maxProviders} "p" tags`)
        break
      case 'expiration': {
        const n = a !== undefined && /^[0-9]{1,12}$/.test(a) ? Number(a) : NaN
        if (!Number.isSafeInteger(n)) return fail(`"expiration" must be a unix time in seconds, got "${String(a).slice(0, 40)}"`)
        expiration = n
        break
      }
      default:
        // Other tags (t, alt, client, encrypted …) carry nothing we act on.
        break
    }
  }
  if (encrypted && providers.length === 0) return fail('an encrypted request must name its provider in a "p" tag')

  const request: JobRequest = { id: event.id, kind: event.kind, customer: event.pubkey, createdAt: event.created_at, inputs, params, relays, providers, event }
  if (output !== undefined) request.output = output
  if (bidMsats !== undefined) request.bidMsats = bidMsats
  if (expiration !== undefined) request.expiration = expiration
  if (encrypted) request.encryption = detectScheme(event.content) ?? 'nip44'
  return { ok: true, value: request }
}

export function isRelayUrl(url: string): boolean {
  if (url.length > NIP90_LIMITS.maxRelayUrlChars) return false
  try {
    const u = new URL(url)
    return (u.protocol === 'ws:' || u.protocol === 'wss:') && u.hostname.length > 0
  } catch {
    return false
  }
}

function isHttpUrl(url: string): boolean {
  try {
    const u = new URL(url)
    return u.protocol === 'http:' || u.protocol === 'https:'
  } catch {
    return false
  }
}

// ---------------------------------------------------------------- feedback

export interface FeedbackDraft {
  status: FeedbackStatus
  /** human-readable extra info, the status tag's third element */
  extra?: string
  /** for `partial`: the new output since the previous partial */
  content?: string
  amountMsats?: number
  bolt11?: string
  /** order of `partial` events for one job (created_at has one-second resolution) */
  seq?: number
  /** for `error`: money given back (see RefundTag) */
  refund?: RefundTag
}

/**
 * `["refund", msats, ciphertext]` on a closing `error`: the job was paid and
 * ended without a result, so the payment comes back as a Cashu token. The
 * ciphertext is the token encrypted to the customer (NIP-44 v2, or the
 * request's own scheme for encrypted jobs): anyone reading the relay could
 * otherwise redeem it first. The amount stays readable so any client can
 * follow the job; the token is what counts.
 */
export interface RefundTag {
  msats: number
  ciphertext: string
}

/** What a refunding provider appends to the error's reason, for clients that do not read the tag. */
export function refundNote(sats: number): string {
  return `; refunded ${sats} sats (a Cashu token in the "refund" tag, encrypted to you)`
}

/** The reason without the note above (a client that reads the tag says it in its own words). */
export function withoutRefundNote(reason: string): string {
  return reason.replace(/; refunded \d+ sats \(a Cashu token in the "refund" tag, encrypted to you\)$/, '')
}

/** a token of a few dozen proofs, encrypted, fits with room to spare */
const MAX_REFUND_CIPHERTEXT_CHARS = 32 * 1024

/** Encrypts a reply's content for the customer, when the request was encrypted. */
export type ReplyEncryptor = (plaintext: string) => string

function replyTags(request: Pick<JobRequest, 'id' | 'customer'>, relayHint?: string): Tag[] {
  return [relayHint ? ['e', request.id, relayHint] : ['e', request.id], ['p', request.customer]]
}

/**
 * A kind 7000 feedback event. For encrypted jobs the content (partial output,
 * details) is encrypted and tagged `encrypted`; the status stays readable so
 * clients can follow the job.
 */
export function buildFeedback(request: Pick<JobRequest, 'id' | 'customer'>, draft: FeedbackDraft, createdAt: number, encrypt?: ReplyEncryptor, relayHint?: string): EventTemplate {
  const status = draft.extra ? ['status', draft.status, draft.extra] : ['status', draft.status]
  const tags: Tag[] = [status, ...replyTags(request, relayHint)]
  if (draft.amountMsats !== undefined) tags.push(draft.bolt11 ? ['amount', String(draft.amountMsats), draft.bolt11] : ['amount', String(draft.amountMsats)])
  if (draft.seq !== undefined) tags.push(['seq', String(draft.seq)])
  if (draft.refund) tags.push(['refund', String(draft.refund.msats), draft.refund.ciphertext])
  let content = draft.content ?? ''
  if (encrypt && content.length > 0) {
    content = encrypt(content)
    tags.push(['encrypted'])
  }
  return { kind: JOB_FEEDBACK_KIND, created_at: createdAt, content, tags }
}

export interface JobFeedback {
  id: string
  requestId: string
  provider: string
  customer: string
  status: FeedbackStatus
  extra?: string
  amountMsats?: number
  bolt11?: string
  seq?: number
  /** a refund on an `error` (still encrypted: only the customer can read the token) */
  refund?: RefundTag
  /** as published: ciphertext when `encrypted` */
  content: string
  encrypted: boolean
  createdAt: number
}

export function parseFeedback(event: Event): ParseResult<JobFeedback> {
  if (event.kind !== JOB_FEEDBACK_KIND) return { ok: false, reason: `kind ${event.kind} is not job feedback (7000)` }
  const status = firstTag(event, 'status')
  if (!status || !STATUSES.includes(status[1] as FeedbackStatus)) return { ok: false, reason: `unknown or missing status "${String(status?.[1]).slice(0, 40)}"` }
  const refs = common(event)
  if (!refs.ok) return refs
  const fb: JobFeedback = {
    id: event.id,
    requestId: refs.value.requestId,
    provider: event.pubkey,
    customer: refs.value.customer,
    status: status[1] as FeedbackStatus,
    content: event.content,
    encrypted: firstTag(event, 'encrypted') !== undefined,
    createdAt: event.created_at,
  }
  if (status[2]) fb.extra = status[2].slice(0, 1000)
  const amount = parseAmount(event)
  if (amount === null) return { ok: false, reason: 'the "amount" tag is not a whole number of millisats' }
  if (amount) {
    fb.amountMsats = amount.msats
    if (amount.bolt11) fb.bolt11 = amount.bolt11
  }
  const seq = tagValue(event, 'seq')
  if (seq !== undefined && /^[0-9]{1,9}$/.test(seq)) fb.seq = Number(seq)
  // A malformed refund is left out rather than failing the feedback: the job's ending still counts.
  const refund = firstTag(event, 'refund')
  const [, msats, ciphertext] = refund ?? []
  if (msats && /^[0-9]{1,19}$/.test(msats) && Number.isSafeInteger(Number(msats)) && ciphertext && ciphertext.length <= MAX_REFUND_CIPHERTEXT_CHARS && detectScheme(ciphertext)) {
    fb.refund = { msats: Number(msats), ciphertext }
  }
  return { ok: true, value: fb }
}

// ---------------------------------------------------------------- results

export interface ResultDraft {
  content: string
  amountMsats?: number
  bolt11?: string
}

/**
 * A kind+1000 result. It carries the request (stringified), `e`, `p`, the
 * original `i` tags (left out when encrypted, as NIP-90 asks) and `amount`
 * when the job was paid for.
 */
export function buildResult(request: JobRequest, draft: ResultDraft, createdAt: number, encrypt?: ReplyEncryptor, relayHint?: string): EventTemplate {
  const tags: Tag[] = [['request', JSON.stringify(request.event)], ...replyTags(request, relayHint)]
  if (!request.encryption) {
    for (const i of request.inputs) tags.push(i.relay ? ['i', i.value, i.type, i.relay] : ['i', i.value, i.type])
  }
  if (draft.amountMsats !== undefined) tags.push(draft.bolt11 ? ['amount', String(draft.amountMsats), draft.bolt11] : ['amount', String(draft.amountMsats)])
  let content = draft.content
  if (encrypt && request.encryption) {
    content = content.length > 0 ? encrypt(content) : ''
    tags.push(['encrypted'])
  }
  return { kind: resultKindFor(request.kind), created_at: createdAt, content, tags }
}

export interface JobResult {
  id: string
  requestId: string
  requestKind: number
  provider: string
  customer: string
  content: string
  encrypted: boolean
  amountMsats?: number
  bolt11?: string
  createdAt: number
}

export function parseResult(event: Event): ParseResult<JobResult> {
  if (!isJobResultKind(event.kind)) return { ok: false, reason: `kind ${event.kind} is not a job result kind (6000-6999)` }
  const refs = common(event)
  if (!refs.ok) return refs
  const r: JobResult = {
    id: event.id,
    requestId: refs.value.requestId,
    requestKind: event.kind - 1000,
    provider: event.pubkey,
    customer: refs.value.customer,
    content: event.content,
    encrypted: firstTag(event, 'encrypted') !== undefined,
    createdAt: event.created_at,
  }
  const amount = parseAmount(event)
  if (amount === null) return { ok: false, reason: 'the "amount" tag is not a whole number of millisats' }
  if (amount) {
    r.amountMsats = amount.msats
    if (amount.bolt11) r.bolt11 = amount.bolt11
  }
  return { ok: true, value: r }
}

function common(event: Event): ParseResult<{ requestId: string; customer: string }> {
  const e = tagValue(event, 'e')
  if (!e || !HEX64.test(e)) return { ok: false, reason: 'missing or malformed "e" tag (the request id)' }
  const p = tagValue(event, 'p')
  if (!p || !HEX64.test(p)) return { ok: false, reason: 'missing or malformed "p" tag (the customer)' }
  return { ok: true, value: { requestId: e, customer: p } }
}

/** undefined: no amount tag; null: a malformed one. */
function parseAmount(event: Event): { msats: number; bolt11?: string } | undefined | null {
  const tag = firstTag(event, 'amount')
  if (!tag) return undefined
  const v = tag[1]
  if (v === undefined || !/^[0-9]{1,19}$/.test(v) || !Number.isSafeInteger(Number(v))) return null
  const bolt11 = tag[2]
  return bolt11 && /^ln[a-z0-9]+$/i.test(bolt11) && bolt11.length < 4096 ? { msats: Number(v), bolt11 } : { msats: Number(v) }
}

// ---------------------------------------------------------------- cancellation

/** A NIP-09 deletion of the customer's own request: NIP-90's way to cancel a job. */
export function buildCancellation(request: Pick<JobRequest, 'id' | 'kind'>, createdAt: number, reason = 'cancelled'): EventTemplate {
  return { kind: DELETION_KIND, created_at: createdAt, content: reason, tags: [['e', request.id], ['k', String(request.kind)]] }
}

/** Request ids a kind 5 deletion names (only the author's own requests count; the caller checks the author). */
export function cancelledRequestIds(event: Event): string[] {
  if (event.kind !== DELETION_KIND) return []
  return event.tags.filter((t) => t[0] === 'e' && typeof t[1] === 'string' && HEX64.test(t[1])).map((t) => t[1]!).slice(0, 100)
}
