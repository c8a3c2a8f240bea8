/**
 * NUT-00 hash_to_curve: the one curve operation specific to Cashu. The point
 * and scalar helpers it (and the rest of payments) builds on live in
 * src/crypto/secp256k1.ts, on the native libsecp256k1 binding.
 */
import secp from 'secp256k1'
import { sha256 } from '../crypto/secp256k1.js'

/** `Secp256k1_HashToCurve_Cashu_`, the NUT-00 domain separator. */
const DOMAIN_SEPARATOR = Buffer.from('Secp256k1_HashToCurve_Cashu_', 'utf8')
const MAX_COUNTER = 2 ** 16

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
