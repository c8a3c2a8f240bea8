/**
 * NUT-00 hash_to_curve and the few secp256k1 helpers the payment path needs,
 * on the native libsecp256k1 binding (npm `secp256k1`): a point multiply there
 * costs ~0.05 ms against ~5 ms in pure JS, which is what makes offline tick
 * verification fast enough (DESIGN.md §4).
 *
 * Points are 33-byte compressed SEC1 encodings throughout, scalars 32-byte
 * big-endian, as Cashu puts them on the wire (hex).
 */
import secp from 'secp256k1'
import { createHash, randomBytes } from 'node:crypto'

/** `Secp256k1_HashToCurve_Cashu_`, the NUT-00 domain separator. */
const DOMAIN_SEPARATOR = Buffer.from('Secp256k1_HashToCurve_Cashu_', 'utf8')
const MAX_COUNTER = 2 ** 16

function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest()
}

/**
 * Y = hash_to_curve(message): sha256(domain || message), then the first
 * counter (uint32, little endian) for which 0x02 || sha256(hash || counter) is
 * a point on the curve. Returns the 33-byte compressed point.
 */
export function hashToCurve(message: Uint8Array): Uint8Array {
  const msgHash = sha256(DOMAIN_SEPARATOR, message)
  const counter = Buffer.alloc(4)
  const candidate = Buffer.alloc(33)
  candidate[0] = 0x02
  for (let i = 0; i < MAX_COUNTER; i++) {
    counter.writeUInt32LE(i, 0)
    sha256(msgHash, counter).copy(candidate, 1)
    // publicKeyVerify checks that x is on the curve (a square root exists).
    if (secp.publicKeyVerify(candidate)) return Uint8Array.from(candidate)
  }
  // Probability 2^-65536; kept so the function is total.
  throw new Error('hash_to_curve found no point on the curve')
}

/** Y for a proof's secret (UTF-8 bytes of the secret string, as NUT-00 says). */
export function secretToY(secret: string): Uint8Array {
  return hashToCurve(Buffer.from(secret, 'utf8'))
}

/** Y as lowercase hex: the key mints (NUT-07) and our ReceivedStore use. */
export function secretToYHex(secret: string): string {
  return Buffer.from(secretToY(secret)).toString('hex')
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

export { sha256 }
