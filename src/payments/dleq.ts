/**
 * NUT-12 DLEQ verification on the native curve library.
 *
 * The mint proves, for each blind signature C_ = a·B_, that the same `a` is
 * behind its public key A = a·G: it publishes e = hash(R1, R2, A, C_) and
 * s = p + e·a. The receiver of a proof (NUT-12 "Carol") also gets the blinding
 * factor r and rebuilds B_ = Y + r·G and C_ = C + r·A from the unblinded
 * proof. That lets a provider check offline that a proof really carries the
 * mint's signature — nothing forged gets credited — without asking the mint.
 *
 * hash(...) is sha256 over the ASCII string of the concatenated *uncompressed*
 * hex encodings (nutshell `hash_e`, cashu-ts `hashE`).
 */
import secp from 'secp256k1'
import { convert, hexBytes, mul, mulG, pointFromHex, scalarFromHex, sha256 } from '../crypto/secp256k1.js'
import { secretToY } from './hash-to-curve.js'

export interface DleqProof {
  e: string
  s: string
  /** Blinding factor, present on proofs (not on blind signatures). */
  r?: string
}

/** The proof fields the verifier needs (NUT-00 Proof with a NUT-12 `dleq`). */
export interface ProofLike {
  amount: number
  id: string
  secret: string
  C: string
  dleq?: DleqProof
  witness?: string
}

/** e' = sha256(hex(R1) || hex(R2) || hex(A) || hex(C_)), all points uncompressed (65 bytes). */
function hashE(R1: Uint8Array, R2: Uint8Array, A: Uint8Array, C_: Uint8Array): Buffer {
  const hex = Buffer.concat([R1, R2, A, C_]).toString('hex')
  return sha256(Buffer.from(hex, 'ascii'))
}

/**
 * Mint keys are verified against again and again: keep their uncompressed
 * form (parsing a compressed point costs a square root). Keyed by the Buffer
 * object MintKeyCache hands out, so it is per cache, not global state.
 */
const uncompressedCache = new WeakMap<Uint8Array, Uint8Array>()
function uncompressed(P: Uint8Array): Uint8Array {
  if (P.length === 65) return P
  let u = uncompressedCache.get(P)
  if (!u) {
    u = convert(P, false)
    uncompressedCache.set(P, u)
  }
  return u
}

/** n − k for a valid scalar k (k·P + (n−k)·Q saves a point negation). */
function negScalar(k: Uint8Array): Uint8Array {
  return secp.privateKeyNegate(Buffer.from(k))
}

/**
 * Alice-side check: given B_, C_, e, s and the mint key A, recompute
 * R1 = s·G − e·A and R2 = s·B_ − e·C_ and compare the hash with e. Any
 * arithmetic failure (a point at infinity, a scalar out of range) means the
 * proof is invalid, never a crash. Intermediates stay uncompressed: that
 * skips a square root per step and is what hash_e wants anyway.
 */
export function verifyDleqPoints(B_: Uint8Array, C_: Uint8Array, e: Uint8Array, s: Uint8Array, A: Uint8Array): boolean {
  try {
    const Au = uncompressed(A)
    const Cu = C_.length === 65 ? C_ : convert(C_, false)
    const negE = negScalar(e)
    const R1 = secp.publicKeyCombine([mulG(s, false), mul(Au, negE, false)], false)
    const R2 = secp.publicKeyCombine([mul(B_, s, false), mul(Cu, negE, false)], false)
    return hashE(R1, R2, Au, Cu).equals(e)
  } catch {
    return false
  }
}

/** Alice-side check on hex fields, as a mint's swap/restore response carries them. */
export function verifyBlindSignatureDleq(B_hex: string, C_hex: string, dleq: { e: string; s: string }, A: Uint8Array): boolean {
  const B_ = pointFromHex(B_hex)
  const C_ = pointFromHex(C_hex)
  const e = hexBytes(dleq.e, 32)
  const s = scalarFromHex(dleq.s)
  if (!B_ || !C_ || !e || !s) return false
  return verifyDleqPoints(B_, C_, e, s, A)
}

/**
 * Carol-side check of a proof {secret, C, dleq:{e,s,r}} against the mint's
 * public key A for the proof's amount: B_ = Y + r·G, C_ = C + r·A, then the
 * Alice check. Pass `Y` when the caller already has hash_to_curve(secret)
 * (the verifier needs it for replay checks anyway).
 *
 * Cost: four arbitrary point multiplies and two generator multiplies.
 */
export function verifyProofDleq(proof: ProofLike, A: Uint8Array, Y?: Uint8Array): boolean {
  const d = proof.dleq
  if (!d || typeof d !== 'object') return false
  // e is a hash output, s and r are scalars; C is parsed (and checked to be
  // on the curve) by the point addition below.
  const C = hexBytes(proof.C, 33)
  const e = hexBytes(d.e, 32)
  const s = scalarFromHex(d.s)
  const r = scalarFromHex(d.r)
  if (!C || (C[0] !== 2 && C[0] !== 3) || !e || !s || !r) return false
  try {
    const Au = uncompressed(A)
    const y = Y ?? secretToY(proof.secret)
    const C_ = secp.publicKeyCombine([C, mul(Au, r, false)], false)
    const B_ = secp.publicKeyCombine([y, mulG(r, false)], false)
    return verifyDleqPoints(B_, C_, e, s, Au)
  } catch {
    return false
  }
}
