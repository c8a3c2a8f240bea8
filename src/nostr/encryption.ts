import { nip04, nip44 } from 'nostr-tools'

/**
 * Payload encryption between two Nostr keys: NIP-44 v2 first (authenticated,
 * padded), NIP-04 accepted because older NIP-90 clients still send it. A reply
 * uses the scheme its request used, so either kind of client can read it.
 */
export type EncryptionScheme = 'nip44' | 'nip04'

/**
 * NIP-44 v2 carries at most 65,535 bytes of plaintext; its base64 payload is
 * then at most about 87.5 kB. We refuse to decrypt anything larger before doing
 * any work, for either scheme.
 */
export const MAX_PLAINTEXT_BYTES = 65_535
export const MAX_CIPHERTEXT_CHARS = 90_000

export class EncryptionError extends Error {
  override name = 'EncryptionError'
}

/** NIP-04 payloads are `base64?iv=base64`; NIP-44 v2 payloads are plain base64 starting with version byte 2. */
export function detectScheme(payload: string): EncryptionScheme | undefined {
  if (/^[A-Za-z0-9+/]+={0,2}\?iv=[A-Za-z0-9+/]{22}==$/.test(payload)) return 'nip04'
  if (payload.startsWith('A') && /^[A-Za-z0-9+/]+={0,2}$/.test(payload)) return 'nip44'
  return undefined
}

export function encryptFor(secretKey: Uint8Array, pubkey: string, plaintext: string, scheme: EncryptionScheme = 'nip44'): string {
  const bytes = Buffer.byteLength(plaintext)
  if (bytes === 0) throw new EncryptionError('nothing to encrypt: NIP-44 cannot carry an empty message')
  if (bytes > MAX_PLAINTEXT_BYTES) {
    throw new EncryptionError(`message is ${bytes} bytes; encrypted messages carry at most ${MAX_PLAINTEXT_BYTES}`)
  }
  if (scheme === 'nip04') return nip04.encrypt(secretKey, pubkey, plaintext)
  return nip44.v2.encrypt(plaintext, nip44.v2.utils.getConversationKey(secretKey, pubkey))
}

/** Decrypt a payload from `pubkey`, whichever scheme it uses; throws EncryptionError saying why it could not. */
export function decryptFrom(secretKey: Uint8Array, pubkey: string, payload: string): { plaintext: string; scheme: EncryptionScheme } {
  if (payload.length > MAX_CIPHERTEXT_CHARS) {
    throw new EncryptionError(`encrypted payload is ${payload.length} characters, limit ${MAX_CIPHERTEXT_CHARS}`)
  }
  const scheme = detectScheme(payload)
  if (!scheme) throw new EncryptionError('content is neither NIP-44 v2 nor NIP-04 ciphertext')
  try {
    const plaintext =
      scheme === 'nip04'
        ? nip04.decrypt(secretKey, pubkey, payload)
        : nip44.v2.decrypt(payload, nip44.v2.utils.getConversationKey(secretKey, pubkey))
    return { plaintext, scheme }
  } catch (err) {
    throw new EncryptionError(`cannot decrypt the ${scheme === 'nip04' ? 'NIP-04' : 'NIP-44'} content (${(err as Error).message}); was it encrypted to this key?`)
  }
}

/**
 * Characters of ciphertext `encryptFor` produces for `plaintextBytes` bytes,
 * without encrypting: lets a sender know beforehand whether an encrypted
 * reply will fit an event. NIP-44 v2 pads (its calc_padded_len) and adds a
 * version byte, a 32-byte nonce, a 2-byte length and a 32-byte MAC, all in
 * base64; NIP-04 is AES-CBC in base64 plus `?iv=` and a base64 IV.
 */
export function ciphertextChars(plaintextBytes: number, scheme: EncryptionScheme = 'nip44'): number {
  if (scheme === 'nip04') return 4 * Math.ceil(((Math.floor(plaintextBytes / 16) + 1) * 16) / 3) + 4 + 24
  const len = Math.max(1, plaintextBytes)
  let padded = 32
  if (len > 32) {
    const nextPower = 2 ** (Math.floor(Math.log2(len - 1)) + 1)
    const chunk = nextPower <= 256 ? 32 : nextPower / 8
    padded = chunk * (Math.floor((len - 1) / chunk) + 1)
  }
  return 4 * Math.ceil((1 + 32 + 2 + padded + 32) / 3)
}
