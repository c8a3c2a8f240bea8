/**
 * Blinded outputs a wallet makes itself (NUT-00): blinding a chosen secret —
 * a plain random one, or a NUT-11 P2PK lock from p2pk.ts's makeP2PKSecret —
 * and unblinding the mint's signature into a proof that keeps the NUT-12 DLEQ
 * proof with its blinding factor. The customer's wallet and the provider's
 * redeemer both make their outputs here (rather than letting cashu-ts do it
 * inside a request) so their secrets and blinding factors can be journaled
 * before the mint sees them.
 *
 * Why not cashu-ts's OutputData.createP2PKData for locks: it writes `locktime`
 * as a JSON number, and nutshell then treats the proof as unlocked (see p2pk.ts).
 *
 * The curve arithmetic is src/crypto/secp256k1.ts's, on the native libsecp256k1 binding.
 */
import type { MintKeys, Proof, SerializedBlindedSignature } from '@cashu/cashu-ts'
import { bytesToHex, hexToBytes, randomBytes } from '@noble/hashes/utils.js'
import { add, mul, mulG, randomScalar, sub } from '../crypto/secp256k1.js'
import { secretToY } from './hash-to-curve.js'

export { sameXOnly } from './p2pk.js'

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

/** Blind one secret for one amount in one keyset. */
export function blindSecret(secret: string, amount: number, keysetId: string): BlindedOutput {
  const r = randomScalar()
  const B_ = add(secretToY(secret), mulG(r))
  return { amount, id: keysetId, B_: bytesToHex(B_), r: bytesToHex(r), secret }
}

/** A plain (unlocked) output with a fresh random secret, as NUT-00 wallets make them. */
export function randomOutput(amount: number, keysetId: string): BlindedOutput {
  return blindSecret(bytesToHex(randomBytes(32)), amount, keysetId)
}

/** A proof from unblinding: a DLEQ proof, when the mint gave one, carries our r. */
export interface UnblindedProof {
  id: string
  amount: number
  secret: string
  C: string
  dleq?: { e: string; s: string; r: string }
}

/**
 * Unblind the mint's signature with the mint's public key K for its amount:
 * C = C_ - r·K. The DLEQ proof (NUT-12) is kept with our blinding factor r so
 * anyone we hand the proof to can check it offline.
 */
export function unblindWithKey(output: BlindedOutput, sig: Pick<SerializedBlindedSignature, 'id' | 'amount' | 'C_' | 'dleq'>, K: Uint8Array): UnblindedProof {
  const r = hexToBytes(output.r)
  const C = sub(hexToBytes(sig.C_), mul(K, r))
  return {
    id: sig.id,
    amount: sig.amount,
    secret: output.secret,
    C: bytesToHex(C),
    ...(sig.dleq ? { dleq: { e: sig.dleq.e, s: sig.dleq.s, r: output.r } } : {}),
  }
}

/** unblindWithKey with K looked up in the keyset the mint signed with. */
export function unblind(output: BlindedOutput, sig: SerializedBlindedSignature, keys: MintKeys): Proof {
  const K = keys.keys[sig.amount]
  if (!K) throw new Error(`mint signed amount ${sig.amount}, for which keyset ${keys.id} has no key`)
  return unblindWithKey(output, sig, hexToBytes(K))
}
