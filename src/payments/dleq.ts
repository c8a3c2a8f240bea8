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
import { add, convert, hexBytes, mul, mulG, pointFromHex, scalarFromHex, secretToY, sha256, sub } from './hash-to-curve.js'

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

/** e' = sha256(hex(R1) || hex(R2) || hex(A) || hex(C_)), all points uncompressed. */
function hashE(R1: Uint8Array, R2: Uint8Array, A: Uint8Array, C_: Uint8Array): Buffer {
  const hex = Buffer.concat([R1, R2, A, C_]).toString('hex')
  return sha256(Buffer.from(hex, 'ascii'))
}

/**
 * Alice-side check: given B_, C_ (compressed), e, s (32-byte scalars) and the
 * mint key A, recompute R1 = s·G − e·A, R2 = s·B_ − e·C_ and compare the hash.
 * Any arithmetic failure (a point at infinity, a scalar out of range) means the
 * proof is invalid, never a crash.
 */
export function verifyDleqPoints(B_: Uint8Array, C_: Uint8Array, e: Uint8Array, s: Uint8Array, A: Uint8Array): boolean {
  try {
    const R1 = sub(mulG(s), mul(A, e), false)
    const R2 = sub(mul(B_, s), mul(C_, e), false)
    const h = hashE(R1, R2, convert(A, false), convert(C_, false))
    return h.equals(e)
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
 * public key A for the proof's amount. Pass `Y` when the caller already has
 * hash_to_curve(secret) (the verifier needs it for replay checks anyway).
 *
 * Cost: four arbitrary point multiplies and two generator multiplies.
 */
export function verifyProofDleq(proof: ProofLike, A: Uint8Array, Y?: Uint8Array): boolean {
  const d = proof.dleq
  if (!d || typeof d !== 'object') return false
  const C = pointFromHex(proof.C)
  // e is a hash output: any 32 bytes; s and r must be valid non-zero scalars.
  const e = hexBytes(d.e, 32)
  const s = scalarFromHex(d.s)
  const r = scalarFromHex(d.r)
  if (!C || !e || !s || !r) return false
  try {
    const y = Y ?? secretToY(proof.secret)
    const C_ = add(C, mul(A, r))
    const B_ = add(y, mulG(r))
    return verifyDleqPoints(B_, C_, e, s, A)
  } catch {
    return false
  }
}
