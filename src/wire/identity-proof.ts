import { schnorr } from '@noble/curves/secp256k1.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, concatBytes, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js'

const PROOF_TAG = utf8ToBytes('dvm-agent/identity-proof/v1')

/**
 * Both ends of a Noise handshake see the same handshake hash and no one else
 * can make a connection with it, so a Schnorr signature over it by a Nostr key
 * proves that key is on *this* connection (not replayed from another one).
 */
function message(handshakeHash: Uint8Array): Uint8Array {
  return sha256(concatBytes(PROOF_TAG, handshakeHash))
}

export function signHandshake(handshakeHash: Uint8Array, nostrSecretKey: Uint8Array): string {
  return bytesToHex(schnorr.sign(message(handshakeHash), nostrSecretKey))
}

export function verifyHandshake(handshakeHash: Uint8Array, pubkeyHex: string, sigHex: string): boolean {
  try {
    return schnorr.verify(hexToBytes(sigHex), message(handshakeHash), hexToBytes(pubkeyHex))
  } catch {
    return false
  }
}
