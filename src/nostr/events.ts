import { initNostrWasm } from 'nostr-wasm'
import { finalizeEvent as pureFinalize, verifyEvent as pureVerify, type Event, type EventTemplate } from 'nostr-tools/pure'
import { hexBytes, nativeSecp256k1, sha256 } from '../crypto/secp256k1.js'
import { SchnorrSigner, verifySchnorr } from '../crypto/schnorr.js'

export type { Event, EventTemplate } from 'nostr-tools/pure'

/**
 * Signing and signature verification for Nostr events.
 *
 * Verification is the hot path of a relay job provider (every inbound event is
 * checked), so it runs on native libsecp256k1 (npm `secp256k1`, through
 * src/crypto/schnorr.ts) when its binding loads. On this project's 2-core
 * machine, 2,000 job-request events, id hash included: about 11,500
 * verifications/s native, 2,850/s with libsecp256k1 compiled to WASM
 * (`nostr-wasm`), 500/s with the pure-JS curve; signing an event takes
 * 0.06 ms native, 0.45 ms WASM, 2.9 ms pure JS. Without the binding,
 * nostr-wasm is used, and if that cannot load either, pure JS. Every backend
 * checks both the id hash and the signature.
 */
export interface NostrCrypto {
  /** true when `event.id` is the hash of its fields and `event.sig` is a valid signature by `event.pubkey` */
  verify(event: Event): boolean
  /** fill in pubkey, id and sig; returns a new event */
  sign(template: EventTemplate, secretKey: Uint8Array): Event
  readonly backend: 'native' | 'wasm' | 'js'
}

const pureCrypto: NostrCrypto = {
  backend: 'js',
  verify(event) {
    // Copy first: nostr-tools caches a verified flag on the object, and we
    // never want a cached answer for an event a peer handed us.
    return pureVerify({ ...stripSymbols(event) })
  },
  sign(template, secretKey) {
    return stripSymbols(pureFinalize(template, secretKey))
  },
}

const LOWER_HEX64 = /^[0-9a-f]{64}$/

/**
 * The NIP-01 id (sha256 of the JSON array [0, pubkey, created_at, kind, tags,
 * content]), or undefined if the fields are not of the types nostr-tools'
 * validateEvent insists on: JSON.stringify of anything else would hash a
 * different text than other clients refuse to, so we refuse too.
 */
function eventId(e: Pick<Event, 'pubkey' | 'created_at' | 'kind' | 'tags' | 'content'>): Buffer | undefined {
  if (typeof e.kind !== 'number' || typeof e.created_at !== 'number' || typeof e.content !== 'string') return undefined
  if (typeof e.pubkey !== 'string' || !LOWER_HEX64.test(e.pubkey) || !Array.isArray(e.tags)) return undefined
  for (const tag of e.tags as unknown[]) {
    if (!Array.isArray(tag)) return undefined
    for (const v of tag as unknown[]) if (typeof v !== 'string') return undefined
  }
  // JSON.stringify escapes exactly as NIP-01 asks (and as nostr-tools does).
  return sha256(Buffer.from(JSON.stringify([0, e.pubkey, e.created_at, e.kind, e.tags, e.content]), 'utf8'))
}

/**
 * An agent signs everything with one key, and deriving the signer (a k·G and
 * BigInt conversions) would cost about as much again as the signature. Keyed
 * on the caller's array so it goes when the caller drops the key; the bytes
 * are compared in case the array was overwritten since.
 */
const signers = new WeakMap<Uint8Array, { key: Buffer; signer: SchnorrSigner }>()

function signerFor(secretKey: Uint8Array): SchnorrSigner {
  const hit = signers.get(secretKey)
  if (hit && hit.key.equals(secretKey)) return hit.signer
  const signer = new SchnorrSigner(secretKey)
  if (secretKey instanceof Uint8Array) signers.set(secretKey, { key: Buffer.from(secretKey), signer })
  return signer
}

const nativeCrypto: NostrCrypto = {
  backend: 'native',
  verify(event) {
    try {
      const id = eventId(event)
      if (!id || typeof event.id !== 'string' || id.toString('hex') !== event.id) return false
      const sig = hexBytes(event.sig, 64)
      return sig !== undefined && verifySchnorr(sig, id, Buffer.from(event.pubkey, 'hex'))
    } catch {
      // Hostile objects (getters, toJSON, cycles) end here, not in the caller.
      return false
    }
  },
  sign(template, secretKey) {
    const signer = signerFor(secretKey)
    const ev = { kind: template.kind, created_at: template.created_at, tags: template.tags, content: template.content, pubkey: signer.xOnly.toString('hex') }
    const id = eventId(ev)
    if (!id) throw new Error("can't serialize event with wrong or missing properties")
    return { ...ev, id: id.toString('hex'), sig: signer.sign(id).toString('hex') }
  },
}

/**
 * The WASM instance is immutable crypto code: sharing one per process is safe
 * across agents (no per-agent state lives in it), and loading it once avoids
 * compiling 300 kB of WASM per agent.
 */
let wasmLoading: Promise<NostrCrypto> | undefined

/** The fastest backend this process can load: native, else WASM, else pure JS. */
export function loadNostrCrypto(): Promise<NostrCrypto> {
  return nativeSecp256k1 ? Promise.resolve(nativeCrypto) : loadWasmNostrCrypto()
}

/** The nostr-wasm backend (pure JS if it cannot load), e.g. to compare against. */
export function loadWasmNostrCrypto(): Promise<NostrCrypto> {
  wasmLoading ??= initNostrWasm().then(
    (nw): NostrCrypto => ({
      backend: 'wasm',
      verify(event) {
        try {
          nw.verifyEvent(stripSymbols(event))
          return true
        } catch {
          return false
        }
      },
      sign(template, secretKey) {
        const ev = { kind: template.kind, created_at: template.created_at, tags: template.tags, content: template.content, id: '', pubkey: '', sig: '' }
        nw.finalizeEvent(ev, secretKey)
        return ev
      },
    }),
    () => pureCrypto,
  )
  return wasmLoading
}

/** The native backend, or undefined when the libsecp256k1 binding did not load. */
export function nativeNostrCrypto(): NostrCrypto | undefined {
  return nativeSecp256k1 ? nativeCrypto : undefined
}

/** The pure-JS implementation, for callers that cannot await. */
export function pureNostrCrypto(): NostrCrypto {
  return pureCrypto
}

function stripSymbols(event: Event): Event {
  return { id: event.id, pubkey: event.pubkey, created_at: event.created_at, kind: event.kind, tags: event.tags, content: event.content, sig: event.sig }
}

export interface ShapeLimits {
  /** JSON-encoded size of the whole event */
  maxBytes: number
  maxTags: number
  /** elements per tag */
  maxTagLength: number
}

export const DEFAULT_SHAPE_LIMITS: ShapeLimits = { maxBytes: 128 * 1024, maxTags: 2000, maxTagLength: 64 }

const HEX64 = /^[0-9a-f]{64}$/
const HEX128 = /^[0-9a-f]{128}$/

/**
 * Check that an untrusted value is shaped like a NIP-01 event before anything
 * touches its fields (signature checks included). Returns why not, or
 * undefined when it is well formed. `bytes` is its encoded size if known.
 */
export function eventShapeProblem(value: unknown, limits: ShapeLimits = DEFAULT_SHAPE_LIMITS, bytes?: number): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'not a JSON object'
  const e = value as Record<string, unknown>
  if (typeof e.id !== 'string' || !HEX64.test(e.id)) return 'id is not 64 lowercase hex characters'
  if (typeof e.pubkey !== 'string' || !HEX64.test(e.pubkey)) return 'pubkey is not 64 lowercase hex characters'
  if (typeof e.sig !== 'string' || !HEX128.test(e.sig)) return 'sig is not 128 lowercase hex characters'
  if (!Number.isSafeInteger(e.kind) || (e.kind as number) < 0 || (e.kind as number) > 65535) return 'kind is not an integer 0-65535'
  if (!Number.isSafeInteger(e.created_at) || (e.created_at as number) < 0) return 'created_at is not a non-negative integer'
  if (typeof e.content !== 'string') return 'content is not a string'
  if (!Array.isArray(e.tags)) return 'tags is not an array'
  if (e.tags.length > limits.maxTags) return `too many tags (${e.tags.length}, limit ${limits.maxTags})`
  for (const tag of e.tags) {
    if (!Array.isArray(tag) || tag.length === 0) return 'a tag is not a non-empty array'
    if (tag.length > limits.maxTagLength) return `a tag has too many elements (${tag.length}, limit ${limits.maxTagLength})`
    for (const v of tag) if (typeof v !== 'string') return 'a tag element is not a string'
  }
  const size = bytes ?? Buffer.byteLength(JSON.stringify(value))
  if (size > limits.maxBytes) return `event is ${size} bytes, limit ${limits.maxBytes}`
  return undefined
}

/** Seconds since the epoch, as Nostr timestamps are. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000)
}

/** First tag named `name`, if any. */
export function firstTag(event: Pick<Event, 'tags'>, name: string): string[] | undefined {
  return event.tags.find((t) => t[0] === name)
}

/** Second element of the first tag named `name`. */
export function tagValue(event: Pick<Event, 'tags'>, name: string): string | undefined {
  return firstTag(event, name)?.[1]
}
