/**
 * secp256k1 point and scalar helpers on the native libsecp256k1 binding (npm
 * `secp256k1`), shared by payments (Cashu blinding, DLEQ, P2PK), Nostr event
 * signatures and the wire identity proof. A point multiply there costs
 * ~0.05 ms against ~0.4 ms in WASM and ~5 ms in pure JS (DESIGN.md §4).
 *
 * Points are 33-byte compressed SEC1 encodings unless said otherwise, scalars
 * 32-byte big-endian, as Cashu puts them on the wire (hex).
 */
import secp from 'secp256k1'
import { createHash, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'

/**
 * Whether the compiled libsecp256k1 binding loaded. The package quietly falls
 * back to `elliptic` (pure JS, ~100x slower) when it cannot, which is correct
 * but not fast; callers that pick a backend on speed ask here.
 */
export const nativeSecp256k1: boolean = (() => {
  try {
    createRequire(import.meta.url)('secp256k1/bindings')
    return true
  } catch {
    return false
  }
})()

export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest()
}

const HEX_RE = /^[0-9a-fA-F]*$/

/** Decode hex of an exact byte length, or return undefined (callers turn that into a refusal). */
export function hexBytes(hex: unknown, length: number): Buffer | undefined {
  if (typeof hex !== 'string' || hex.length !== length * 2 || !HEX_RE.test(hex)) return undefined
  return Buffer.from(hex, 'hex')
}

/** A 33-byte compressed point from hex if it lies on the curve, else undefined. */
export function pointFromHex(hex: unknown): Buffer | undefined {
  const b = hexBytes(hex, 33)
  if (!b || (b[0] !== 0x02 && b[0] !== 0x03) || !secp.publicKeyVerify(b)) return undefined
  return b
}

/** A scalar in [1, n-1] from 64 hex characters, else undefined. */
export function scalarFromHex(hex: unknown): Buffer | undefined {
  const b = hexBytes(hex, 32)
  if (!b || !secp.privateKeyVerify(b)) return undefined
  return b
}

/** A fresh random scalar in [1, n-1] (e.g. a blinding factor). */
export function randomScalar(): Buffer {
  for (;;) {
    const k = randomBytes(32)
    if (secp.privateKeyVerify(k)) return k
  }
}

/** k·G (compressed unless told otherwise). Throws on an invalid scalar. */
export function mulG(k: Uint8Array, compressed = true): Uint8Array {
  return secp.publicKeyCreate(k, compressed)
}

/** k·P. Throws if k is out of range. */
export function mul(P: Uint8Array, k: Uint8Array, compressed = true): Uint8Array {
  return secp.publicKeyTweakMul(P, k, compressed)
}

/** P + Q. Throws if the sum is the point at infinity. */
export function add(P: Uint8Array, Q: Uint8Array, compressed = true): Uint8Array {
  return secp.publicKeyCombine([P, Q], compressed)
}

/** P − Q. Throws if the difference is the point at infinity. */
export function sub(P: Uint8Array, Q: Uint8Array, compressed = true): Uint8Array {
  return secp.publicKeyCombine([P, secp.publicKeyNegate(Q, true)], compressed)
}

/** Re-encode a point (e.g. to the 65-byte uncompressed form hash_e wants). */
export function convert(P: Uint8Array, compressed: boolean): Uint8Array {
  return secp.publicKeyConvert(P, compressed)
}

/** A private key (32 bytes, or 64 hex characters) as a valid scalar, or a clear error naming `what`. */
export function privateKeyBytes(privkey: Uint8Array | string, what = 'the private key'): Buffer {
  const sk = scalarFromHex(typeof privkey === 'string' ? privkey.trim() : Buffer.from(privkey).toString('hex'))
  if (!sk) throw new Error(`${what} is not a valid secp256k1 private key (64 hex characters, non-zero, below the curve order)`)
  return sk
}
