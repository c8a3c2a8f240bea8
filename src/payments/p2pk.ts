/**
 * NUT-10 well-known secrets and NUT-11 P2PK: parse what a tick's secret locks
 * to, build lock secrets, and sign a locked proof's secret for redemption.
 *
 * The parser is deliberately stricter than the spec, because what matters is
 * how the *mint* will read the secret when we redeem it. nutshell (the
 * reference mint) reads the secret with pydantic: if anything in it does not
 * fit `["P2PK", {nonce: str, data: str, tags: [[str, ...], ...]}]` it silently
 * treats the proof as an ordinary, unlocked one that anybody holding it can
 * spend. A numeric locktime (`["locktime", 1700000000]`, which cashu-ts 2.5.3's
 * `createP2PKData` writes) is exactly such a case. So a secret is "locked" here
 * only if every field has the type the mint insists on.
 *
 * Redemption signature (checked against nutshell 0.19.2 `cashu/core/p2pk.py` and
 * `mint/conditions.py`): a BIP-340 Schnorr signature over sha256(UTF-8 bytes of
 * `proof.secret`), verified against the x-only form of the lock key, carried as
 * `proof.witness = JSON.stringify({signatures: [hex]})`.
 *
 * This is the one place that builds, reads and signs P2PK secrets, for the
 * customer's wallet (lock and refund) and the provider (verify and redeem)
 * alike; keys and BIP-340 signatures are on the native binding (src/crypto/).
 */
import { randomBytes } from 'node:crypto'
import { mulG, pointFromHex, privateKeyBytes, sha256 } from '../crypto/secp256k1.js'
import { SchnorrSigner as Bip340Signer } from '../crypto/schnorr.js'

export type SigFlag = 'SIG_INPUTS' | 'SIG_ALL'

export interface P2PKSecret {
  nonce: string
  /** The lock key: 33-byte compressed hex, as in `Secret.data`. */
  pubkey: string
  /** Unix seconds; after it the refund keys (or anyone, if none) may spend. */
  locktime?: number
  refundKeys: string[]
  sigflag: SigFlag
  nSigs: number
  nSigsRefund?: number
  /** Extra keys from a `pubkeys` tag: each of them could spend the proof too. */
  extraPubkeys: string[]
  tags: string[][]
}

export type P2PKParse =
  | { ok: true; secret: P2PKSecret }
  | { ok: false; code: 'not-locked' | 'malformed'; reason: string }

/** nutshell's default `mint_max_secret_length`: a longer secret cannot be redeemed there. */
export const MAX_SECRET_LENGTH = 1024

const KNOWN_TAGS = new Set(['sigflag', 'n_sigs', 'locktime', 'refund', 'n_sigs_refund', 'pubkeys'])
const SINGLE_VALUED = new Set(['sigflag', 'n_sigs', 'locktime', 'n_sigs_refund'])
/** Plain decimal only: Python's int() and JS agree on these (not on "1_0", "+1", " 1"). */
const UINT_RE = /^[0-9]{1,15}$/
const PRINTABLE_ASCII_RE = /^[\x20-\x7e]*$/
const PUBKEY_RE = /^0[23][0-9a-f]{64}$/

function fail(code: 'not-locked' | 'malformed', reason: string): P2PKParse {
  return { ok: false, code, reason }
}

/**
 * Parse a proof secret as a NUT-11 P2PK secret. `not-locked` means the mint
 * would let anybody spend it (plain secret, other kind, or a form the mint
 * does not recognise as a spending condition); `malformed` means it is P2PK
 * but with tags we refuse to interpret.
 */
export function parseP2PKSecret(secret: string): P2PKParse {
  if (typeof secret !== 'string') return fail('malformed', 'the secret is not a string')
  if (secret.length > MAX_SECRET_LENGTH) return fail('malformed', `the secret is ${secret.length} characters; mints accept at most ${MAX_SECRET_LENGTH}`)
  // ASCII only: UTF-8 encoding (for Y and for the signature) is then identical
  // in JS and Python, with no lone-surrogate or normalisation surprises.
  if (!PRINTABLE_ASCII_RE.test(secret)) return fail('malformed', 'the secret has non-printable or non-ASCII characters')
  if (secret[0] !== '[') return fail('not-locked', 'the secret is a plain secret, not a NUT-10 spending condition: anyone holding it can spend it')
  let parsed: unknown
  try {
    parsed = JSON.parse(secret)
  } catch {
    return fail('not-locked', 'the secret is not valid JSON, so the mint treats it as a plain, unlocked secret')
  }
  if (!Array.isArray(parsed) || parsed.length !== 2) return fail('not-locked', 'the secret is not a NUT-10 [kind, {…}] pair, so the mint treats it as unlocked')
  const [kind, body] = parsed as [unknown, unknown]
  if (kind !== 'P2PK') return fail('not-locked', `the secret is of kind ${JSON.stringify(kind)}, not P2PK`)
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return fail('not-locked', 'the P2PK secret has no {nonce, data, tags} object')
  const b = body as Record<string, unknown>
  if (typeof b.nonce !== 'string') return fail('not-locked', 'the P2PK secret has no string nonce; nutshell then treats it as unlocked')
  if (typeof b.data !== 'string') return fail('not-locked', 'the P2PK secret has no string data (lock key)')
  const rawTags = b.tags === undefined || b.tags === null ? [] : b.tags
  if (!Array.isArray(rawTags)) return fail('not-locked', 'the P2PK tags are not a list; the mint treats the secret as unlocked')
  const tags: string[][] = []
  for (const t of rawTags) {
    if (!Array.isArray(t) || t.length < 1 || !t.every((x) => typeof x === 'string')) {
      return fail('not-locked', `tag ${JSON.stringify(t)} is not a list of strings (NUT-10); nutshell then treats the whole secret as unlocked — write tag values as strings, e.g. ["locktime","1700000000"]`)
    }
    tags.push(t as string[])
  }
  const seen = new Set<string>()
  for (const t of tags) {
    const name = t[0] as string
    if (!KNOWN_TAGS.has(name)) return fail('malformed', `unknown P2PK tag "${name}" (some mints refuse those at redemption)`)
    if (t.length < 2) return fail('malformed', `tag "${name}" has no value`)
    if (SINGLE_VALUED.has(name)) {
      if (seen.has(name)) return fail('malformed', `tag "${name}" appears twice`)
      if (t.length !== 2) return fail('malformed', `tag "${name}" must have exactly one value`)
    }
    seen.add(name)
  }
  const tag = (name: string): string | undefined => tags.find((t) => t[0] === name)?.[1]
  const all = (name: string): string[] => tags.filter((t) => t[0] === name).flatMap((t) => t.slice(1))

  const sigflagRaw = tag('sigflag')
  if (sigflagRaw !== undefined && sigflagRaw !== 'SIG_INPUTS' && sigflagRaw !== 'SIG_ALL') return fail('malformed', `unknown sigflag "${sigflagRaw}"`)
  const intTag = (name: string): number | undefined | null => {
    const v = tag(name)
    if (v === undefined) return undefined
    return UINT_RE.test(v) ? Number(v) : null
  }
  const locktime = intTag('locktime')
  if (locktime === null) return fail('malformed', `locktime "${tag('locktime')}" is not a plain decimal number of seconds`)
  const nSigs = intTag('n_sigs')
  if (nSigs === null) return fail('malformed', `n_sigs "${tag('n_sigs')}" is not a plain decimal number`)
  const nSigsRefund = intTag('n_sigs_refund')
  if (nSigsRefund === null) return fail('malformed', `n_sigs_refund "${tag('n_sigs_refund')}" is not a plain decimal number`)
  const refundKeys = all('refund')
  const extraPubkeys = all('pubkeys')
  for (const k of [...refundKeys, ...extraPubkeys]) {
    if (!PUBKEY_RE.test(k)) return fail('malformed', `"${k}" in the tags is not a 33-byte compressed public key in lowercase hex`)
  }
  return {
    ok: true,
    secret: {
      nonce: b.nonce,
      pubkey: b.data,
      ...(locktime !== undefined ? { locktime } : {}),
      refundKeys,
      sigflag: (sigflagRaw as SigFlag | undefined) ?? 'SIG_INPUTS',
      nSigs: nSigs ?? 1,
      ...(nSigsRefund !== undefined ? { nSigsRefund } : {}),
      extraPubkeys,
      tags,
    },
  }
}

/**
 * Whether a secret *says* it is P2PK-locked (`["P2PK", {data: "<key>", …}]`),
 * however loosely it is written. Deliberately looser than parseP2PKSecret: the
 * wallet refuses to receive such proofs even when a mint might treat them as
 * unlocked (e.g. cashu-ts's numeric locktime), since they were meant for the
 * holder of the lock key.
 */
export function claimsP2PKLock(secret: string): boolean {
  let parsed: unknown
  try {
    parsed = JSON.parse(secret)
  } catch {
    return false
  }
  if (!Array.isArray(parsed) || parsed[0] !== 'P2PK' || typeof parsed[1] !== 'object' || parsed[1] === null) return false
  return typeof (parsed[1] as { data?: unknown }).data === 'string'
}

/**
 * Accept a compressed secp256k1 key (66 hex, 02/03…) or an x-only key (64 hex,
 * as Nostr prints them; BIP-340 verification ignores parity, so 02 is prefixed).
 * Returns the compressed key in lowercase hex; throws if it is not on the curve.
 */
export function normalizePubkey(key: string, what = 'public key'): string {
  const k = key.trim().toLowerCase()
  const full = /^[0-9a-f]{64}$/.test(k) ? '02' + k : k
  if (!/^0[23][0-9a-f]{64}$/.test(full)) {
    throw new Error(`${what} "${key}" is not a secp256k1 public key (66 hex chars starting 02/03, or 64 hex chars x-only)`)
  }
  if (!pointFromHex(full)) throw new Error(`${what} "${key}" is not a point on secp256k1`)
  return full
}

/** x-only comparison: a key matches whether written with 02 or 03 (BIP-340 ignores parity). */
export function sameXOnly(a: string, b: string): boolean {
  return normalizePubkey(a).slice(2) === normalizePubkey(b).slice(2)
}

export interface P2PKLock {
  /** Lock key (who can spend): compressed hex ('02…' for a NIP-61 / dvm-agent payment key), or x-only hex. */
  pubkey: string
  /** Unix seconds after which the refund keys can take the proof back. */
  locktime?: number
  refundKeys?: string[]
  sigflag?: SigFlag
}

/**
 * Build a P2PK secret string the way every mint reads it: all tag values are
 * strings (see the module comment for why a numeric locktime is dangerous),
 * the sigflag is named explicitly, and every key is checked to be a point on
 * the curve (a lock to a non-key could never be spent by the payee).
 */
export function makeP2PKSecret(lock: P2PKLock, nonce: string = randomBytes(32).toString('hex')): string {
  const tags: string[][] = [['sigflag', lock.sigflag ?? 'SIG_INPUTS']]
  if (lock.locktime !== undefined) {
    if (!Number.isSafeInteger(lock.locktime) || lock.locktime <= 0) throw new Error(`locktime ${lock.locktime} must be a positive whole number of unix seconds`)
    tags.push(['locktime', String(lock.locktime)])
  }
  if (lock.refundKeys && lock.refundKeys.length > 0) tags.push(['refund', ...lock.refundKeys.map((k) => normalizePubkey(k, 'refund key'))])
  return JSON.stringify(['P2PK', { nonce, data: normalizePubkey(lock.pubkey, 'payee key'), tags }])
}

/** Compressed public key (hex) of a private key, as it stands (not even-y normalised). */
export function pubkeyOf(privkey: Uint8Array | string): string {
  return Buffer.from(mulG(privateKeyBytes(privkey))).toString('hex')
}

/**
 * The BIP-340 signer of src/crypto/schnorr.ts (native k·G: ~0.05 ms a
 * signature, where @noble's ~3 ms would block the event loop for seconds
 * when redeeming 1,000 ticks), plus the NUT-11 witness format.
 */
export class SchnorrSigner extends Bip340Signer {
  /** Signature (hex) over a proof secret, as NUT-11 SIG_INPUTS wants it. */
  signSecret(secret: string): string {
    return this.sign(sha256(Buffer.from(secret, 'utf8'))).toString('hex')
  }

  /** The `witness` string for a P2PK-locked proof. */
  witness(secret: string): string {
    return JSON.stringify({ signatures: [this.signSecret(secret)] })
  }
}

/** One-off convenience: hex signature over `secret` with `privkey`. */
export function signP2PKSecret(secret: string, privkey: Uint8Array | string): string {
  return new SchnorrSigner(privkey).signSecret(secret)
}

/** The same proof with a NUT-11 witness by `key` (a signer, or a private key for one proof). */
export function withWitness<P extends { secret: string }>(proof: P, key: SchnorrSigner | Uint8Array | string): P & { witness: string } {
  const signer = key instanceof SchnorrSigner ? key : new SchnorrSigner(key)
  return { ...proof, witness: signer.witness(proof.secret) }
}
