/**
 * TickVerifier: decides, offline, whether one 1-sat proof pays for one tick.
 *
 * Checks, cheapest first, each with its own refusal code:
 *  1. shape and size               malformed
 *  2. mint is one we accept        unknown-mint
 *  3. keyset known, our unit, fee-free
 *                                  unknown-keyset / wrong-unit / keyset-has-fees
 *  4. amount is exactly one tick   wrong-amount
 *  5. secret is NUT-11 P2PK, locked to our payment key alone, SIG_INPUTS,
 *     n_sigs 1                     not-locked / wrong-key / bad-conditions / malformed
 *  6. locktime leaves us time to redeem
 *                                  no-locktime / locktime-too-close
 *  7. Y never seen before          replayed
 *  8. DLEQ proves the mint signed it (NUT-12)
 *                                  bad-dleq
 * Only a proof that passes all of them can be redeemed by us alone before
 * anyone else (the customer's refund key) can take it back.
 */
import { pointFromHex } from '../crypto/secp256k1.js'
import { secretToY } from './hash-to-curve.js'
import { verifyProofDleq, type ProofLike } from './dleq.js'
import { MAX_SECRET_LENGTH, parseP2PKSecret } from './p2pk.js'
import type { MintKeyCache } from './mint-keys.js'
import type { ReceivedStore } from './received-store.js'

export type TickRefusalCode =
  | 'malformed'
  | 'unknown-mint'
  | 'unknown-keyset'
  | 'wrong-unit'
  | 'keyset-has-fees'
  | 'wrong-amount'
  | 'not-locked'
  | 'wrong-key'
  | 'bad-conditions'
  | 'no-locktime'
  | 'locktime-too-close'
  | 'replayed'
  | 'bad-dleq'

export type TickVerdict =
  | { ok: true; y: string; locktime: number; mintUrl: string }
  | { ok: false; code: TickRefusalCode; reason: string }

export interface TickVerifierOptions {
  /** The provider's payment public key, 33-byte compressed hex ('02…'). */
  paymentPubkey: string
  keys: MintKeyCache
  /** A proof's locktime must be at least this far in the future: our time to redeem it. */
  minLocktimeMarginSec: number
  /** Where accepted ticks go; also the replay index. Without it, verify() cannot see replays and accept() is unavailable. */
  store?: ReceivedStore
  /** Sats per tick. */
  tickAmount?: number
}

const HEX64 = /^[0-9a-fA-F]{64}$/
const HEX66 = /^[0-9a-fA-F]{66}$/
const KEYSET_ID = /^[0-9A-Za-z+/=_-]{1,66}$/

function refuse(code: TickRefusalCode, reason: string): TickVerdict {
  return { ok: false, code, reason }
}

export class TickVerifier {
  readonly #pubkey: string
  readonly #keys: MintKeyCache
  readonly #margin: number
  readonly #store: ReceivedStore | undefined
  readonly #tick: number

  constructor(opts: TickVerifierOptions) {
    if (!pointFromHex(opts.paymentPubkey)) throw new Error(`payment pubkey "${opts.paymentPubkey}" is not a 33-byte compressed secp256k1 key in hex`)
    if (!(opts.minLocktimeMarginSec >= 0)) throw new Error('minLocktimeMarginSec must be a non-negative number of seconds')
    this.#pubkey = opts.paymentPubkey.toLowerCase()
    this.#keys = opts.keys
    this.#margin = opts.minLocktimeMarginSec
    this.#store = opts.store
    this.#tick = opts.tickAmount ?? 1
  }

  /** Verify one proof offline. Pure apart from reading the key cache and replay index. */
  verify(proof: unknown, mintUrl: string, nowSec: number = Math.floor(Date.now() / 1000)): TickVerdict {
    // 1. shape
    if (typeof proof !== 'object' || proof === null || Array.isArray(proof)) return refuse('malformed', 'a tick must be one proof object {amount, id, secret, C, dleq}')
    const p = proof as Record<string, unknown>
    if (typeof p.amount !== 'number' || !Number.isSafeInteger(p.amount) || p.amount <= 0) return refuse('malformed', 'proof.amount must be a positive whole number')
    if (typeof p.id !== 'string' || !KEYSET_ID.test(p.id)) return refuse('malformed', 'proof.id must be a keyset id')
    if (typeof p.secret !== 'string' || p.secret.length === 0) return refuse('malformed', 'proof.secret must be a non-empty string')
    if (p.secret.length > MAX_SECRET_LENGTH) return refuse('malformed', `proof.secret is longer than ${MAX_SECRET_LENGTH} characters, which mints refuse`)
    if (typeof p.C !== 'string' || !HEX66.test(p.C)) return refuse('malformed', 'proof.C must be a 33-byte point in hex')
    const d = p.dleq as Record<string, unknown> | undefined
    if (typeof d !== 'object' || d === null) return refuse('malformed', 'proof.dleq is missing: without a DLEQ proof (NUT-12, with r) the tick cannot be verified offline — keep the DLEQ when swapping')
    if (typeof d.e !== 'string' || !HEX64.test(d.e) || typeof d.s !== 'string' || !HEX64.test(d.s) || typeof d.r !== 'string' || !HEX64.test(d.r)) {
      return refuse('malformed', 'proof.dleq must have e, s and r, each 32 bytes in hex')
    }
    if (typeof mintUrl !== 'string' || mintUrl.length > 512) return refuse('malformed', 'the mint URL must be a string')

    // 2–3. mint and keyset
    const ks = this.#keys.lookup(mintUrl, p.id)
    if (!ks.ok) return refuse(ks.code, ks.reason)
    const mint = this.#keys.accepted(mintUrl) as string

    // 4. amount
    if (p.amount !== this.#tick) return refuse('wrong-amount', `a tick is exactly ${this.#tick} sat; this proof is worth ${p.amount}`)

    // 5. lock
    const parsed = parseP2PKSecret(p.secret)
    if (!parsed.ok) return refuse(parsed.code, parsed.reason)
    const s = parsed.secret
    if (s.pubkey.toLowerCase() !== this.#pubkey) return refuse('wrong-key', `the proof is locked to ${s.pubkey}, not to this provider's payment key ${this.#pubkey}`)
    if (s.extraPubkeys.length > 0) return refuse('bad-conditions', 'the proof has a "pubkeys" tag: other keys could spend it too')
    if (s.nSigs !== 1) return refuse('bad-conditions', `the proof needs n_sigs=${s.nSigs} signatures; ticks must be spendable with the payment key alone (n_sigs 1)`)
    if (s.sigflag !== 'SIG_INPUTS') return refuse('bad-conditions', `sigflag ${s.sigflag} is not accepted; ticks must use SIG_INPUTS so they can be redeemed together`)

    // 6. locktime
    if (s.locktime === undefined) return refuse('no-locktime', 'the proof has no locktime; ticks need one (with a refund key) so unspent ones go back to the customer')
    if (s.locktime < nowSec + this.#margin) {
      return refuse('locktime-too-close', `the proof's locktime ${s.locktime} is ${s.locktime - nowSec}s away; this provider needs at least ${this.#margin}s to redeem it before the refund key can take it back`)
    }

    // 7. replay
    const Y = secretToY(p.secret)
    const y = Buffer.from(Y).toString('hex')
    if (this.#store?.has(y)) return refuse('replayed', `this proof (Y=${y.slice(0, 16)}…) was already received`)

    // 8. DLEQ
    const A = this.#keys.publicKey(mint, p.id, p.amount)
    if (!A) return refuse('unknown-keyset', `keyset ${p.id} of ${mint} has no key for amount ${p.amount}`)
    if (!verifyProofDleq(p as unknown as ProofLike, A, Y)) return refuse('bad-dleq', `the DLEQ proof does not show that mint ${mint} (keyset ${p.id}) signed this proof: forged or corrupted`)

    return { ok: true, y, locktime: s.locktime, mintUrl: mint }
  }

  /**
   * Verify, then store durably. Resolve ok only after the proof is fsynced:
   * acknowledge the tick then. An unknown keyset triggers one rate-limited
   * key refresh (the mint may have rotated keys) and a second try.
   */
  async accept(sessionId: string, proof: unknown, mintUrl: string, nowSec?: number): Promise<TickVerdict> {
    const store = this.#store
    if (!store) throw new Error('TickVerifier.accept needs the ReceivedStore passed as `store` to the constructor')
    let v = this.verify(proof, mintUrl, nowSec)
    if (!v.ok && v.code === 'unknown-keyset' && (await this.#keys.refresh(mintUrl))) v = this.verify(proof, mintUrl, nowSec)
    if (!v.ok) return v
    const r = await store.accept(sessionId, proof as ProofLike, v.mintUrl, { y: v.y, locktime: v.locktime })
    if (!r.ok) return refuse(r.code, r.reason)
    return v
  }
}
