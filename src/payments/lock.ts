/**
 * Building blocks for outputs the wallet creates itself: blinded messages for
 * plain and NUT-11 P2PK secrets (NUT-00 blinding), unblinding that keeps the
 * NUT-12 DLEQ proof with its blinding factor, the Y point NUT-07/NUT-09 use,
 * and refund-path signatures. The wallet makes its outputs itself (rather than
 * letting cashu-ts do it inside a request) so their secrets and blinding
 * factors can be journaled before the mint sees them.
 *
 * Why not cashu-ts's OutputData.createP2PKData: it writes `locktime` as a JSON
 * number. NUT-10 tags are string arrays, and nutshell (pydantic, List[List[str]])
 * fails to parse such a secret and then treats the proof as having *no* spending
 * condition at all, i.e. anyone holding it could spend it. We write every tag
 * value as a string and name the SIG_INPUTS flag explicitly.
 */
import type { MintKeys, Proof, SerializedBlindedSignature } from '@cashu/cashu-ts'
import { schnorr, secp256k1 as nobleSecp } from '@noble/curves/secp256k1.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, concatBytes, hexToBytes, randomBytes, utf8ToBytes } from '@noble/hashes/utils.js'
// Native libsecp256k1 (ships a prebuild): a point multiply costs ~0.05 ms here
// against ~5 ms in pure JS, and a 1,000-tick budget needs two per proof.
import secp from 'secp256k1'

const HASH_TO_CURVE_DOMAIN = utf8ToBytes('Secp256k1_HashToCurve_Cashu_')

/** NUT-00 hash_to_curve, compressed: Y = '02' || sha256(sha256(domain || x) || counter_le32), first valid counter. */
export function hashToCurve(secret: Uint8Array): Uint8Array {
  const msgHash = sha256(concatBytes(HASH_TO_CURVE_DOMAIN, secret))
  const counter = new Uint8Array(4)
  const view = new DataView(counter.buffer)
  for (let i = 0; i < 2 ** 16; i++) {
    view.setUint32(0, i, true)
    const candidate = concatBytes(new Uint8Array([0x02]), sha256(concatBytes(msgHash, counter)))
    if (secp.publicKeyVerify(candidate)) return candidate
  }
  throw new Error('hash_to_curve found no point for this secret (practically impossible)')
}

/** Y = hash_to_curve(secret), compressed hex: how NUT-07 and NUT-09 name a proof. */
export function proofY(secret: string): string {
  return bytesToHex(hashToCurve(utf8ToBytes(secret)))
}

/**
 * Everything needed to turn a mint signature into a proof, in a form that can be
 * written to the journal before the mint is asked (and restored after a crash).
 */
export interface BlindedOutput {
  amount: number
  /** keyset id the output is addressed to */
  id: string
  /** blinded message B_ = Y + r·G, compressed hex */
  B_: string
  /** blinding factor r, 64 hex chars */
  r: string
  /** the secret x as the proof will carry it */
  secret: string
}

function randomScalar(): Uint8Array {
  for (;;) {
    const r = randomBytes(32)
    if (secp.privateKeyVerify(r)) return r
  }
}

/** Blind one secret for one amount in one keyset. */
export function blindSecret(secret: string, amount: number, keysetId: string): BlindedOutput {
  const r = randomScalar()
  const B_ = secp.publicKeyTweakAdd(hashToCurve(utf8ToBytes(secret)), r, true)
  return { amount, id: keysetId, B_: bytesToHex(B_), r: bytesToHex(r), secret }
}

/** A plain (unlocked) output with a fresh random secret, as NUT-00 wallets make them. */
export function randomOutput(amount: number, keysetId: string): BlindedOutput {
  return blindSecret(bytesToHex(randomBytes(32)), amount, keysetId)
}

/**
 * Unblind the mint's signature into a proof: C = C_ - r·K. The DLEQ proof
 * (NUT-12) is kept with our blinding factor r so anyone we hand the proof to
 * can check it offline.
 */
export function unblind(output: BlindedOutput, sig: SerializedBlindedSignature, keys: MintKeys): Proof {
  const K = keys.keys[sig.amount]
  if (!K) throw new Error(`mint signed amount ${sig.amount}, for which keyset ${keys.id} has no key`)
  const r = hexToBytes(output.r)
  const rK = secp.publicKeyTweakMul(hexToBytes(K), r, true)
  const C = secp.publicKeyCombine([hexToBytes(sig.C_), secp.publicKeyNegate(rK, true)], true)
  return {
    id: sig.id,
    amount: sig.amount,
    secret: output.secret,
    C: bytesToHex(C),
    ...(sig.dleq ? { dleq: { e: sig.dleq.e, s: sig.dleq.s, r: output.r } } : {}),
  }
}

/**
 * Accept a compressed secp256k1 key (66 hex, 02/03…) or an x-only key (64 hex,
 * as Nostr prints them; BIP-340 verification ignores parity, so 02 is prefixed).
 */
export function normalizePubkey(key: string, what = 'public key'): string {
  const k = key.trim().toLowerCase()
  const full = /^[0-9a-f]{64}$/.test(k) ? '02' + k : k
  if (!/^0[23][0-9a-f]{64}$/.test(full)) {
    throw new Error(`${what} "${key}" is not a secp256k1 public key (66 hex chars starting 02/03, or 64 hex chars x-only)`)
  }
  if (!secp.publicKeyVerify(hexToBytes(full))) throw new Error(`${what} "${key}" is not a point on secp256k1`)
  return full
}

export interface P2PKLock {
  /** who can spend: the payee's key (compressed hex) */
  pubkey: string
  /** unix seconds after which the refund key may spend too */
  locktime: number
  /** the customer's own key for taking back what was not spent */
  refundPubkey: string
}

/** A NUT-10/NUT-11 P2PK secret with SIG_INPUTS, locktime and one refund key; all tag values are strings. */
export function p2pkSecret(lock: P2PKLock, nonce: string = bytesToHex(randomBytes(32))): string {
  if (!Number.isSafeInteger(lock.locktime) || lock.locktime <= 0) {
    throw new Error(`locktime ${lock.locktime} must be a positive whole number of unix seconds`)
  }
  return JSON.stringify([
    'P2PK',
    {
      nonce,
      data: normalizePubkey(lock.pubkey, 'payee key'),
      tags: [
        ['sigflag', 'SIG_INPUTS'],
        ['locktime', String(lock.locktime)],
        ['refund', normalizePubkey(lock.refundPubkey, 'refund key')],
      ],
    },
  ])
}

/** The lock in a P2PK secret, or undefined for a plain secret. Only what the wallet needs for refunds. */
export function readP2PKLock(secret: string): { pubkey: string; locktime?: number; refund: string[] } | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(secret)
  } catch {
    return undefined
  }
  if (!Array.isArray(parsed) || parsed[0] !== 'P2PK' || typeof parsed[1] !== 'object' || parsed[1] === null) return undefined
  const body = parsed[1] as { data?: unknown; tags?: unknown }
  if (typeof body.data !== 'string') return undefined
  const tags = Array.isArray(body.tags) ? (body.tags as unknown[]).filter((t): t is string[] => Array.isArray(t)) : []
  const locktimeTag = tags.find((t) => t[0] === 'locktime')?.[1]
  const locktime = locktimeTag === undefined ? undefined : Number(locktimeTag)
  const refund = tags.filter((t) => t[0] === 'refund').flatMap((t) => t.slice(1).map(String))
  return { pubkey: body.data, ...(locktime !== undefined && Number.isFinite(locktime) ? { locktime } : {}), refund }
}

function privkeyBytes(privkey: string | Uint8Array): Uint8Array {
  const bytes = typeof privkey === 'string' ? hexToBytes(privkey.trim()) : privkey
  if (bytes.length !== 32) throw new Error('a private key must be 32 bytes (64 hex chars)')
  return bytes
}

/** Compressed public key of a private key. */
export function pubkeyOf(privkey: string | Uint8Array): string {
  return bytesToHex(nobleSecp.getPublicKey(privkeyBytes(privkey), true))
}

/** NUT-11 witness for one input: a BIP-340 signature over sha256(secret). */
export function signP2PKWitness(secret: string, privkey: string | Uint8Array): string {
  const sig = schnorr.sign(sha256(utf8ToBytes(secret)), privkeyBytes(privkey))
  return JSON.stringify({ signatures: [bytesToHex(sig)] })
}

/** Same proof with a refund/owner signature attached. */
export function withWitness(proof: Proof, privkey: string | Uint8Array): Proof {
  return { ...proof, witness: signP2PKWitness(proof.secret, privkey) }
}

/** x-only comparison: a key matches whether written with 02 or 03 (BIP-340 ignores parity). */
export function sameXOnly(a: string, b: string): boolean {
  return normalizePubkey(a).slice(2) === normalizePubkey(b).slice(2)
}
