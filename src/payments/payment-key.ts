/**
 * The provider's payment key: the key customers lock their 1-sat ticks to
 * (NUT-11 P2PK). It is deliberately *not* the Nostr identity key (NIP-61 says
 * the same): a leaked payment key costs the held ecash, not the identity, and
 * it can be rotated without losing the npub.
 *
 * The key is normalised so its public key has even y ('02…'): NIP-61 asks for
 * the 02 prefix, and BIP-340 signatures only see the x coordinate anyway.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import secp from 'secp256k1'
import { writeFileAtomic } from '../util/atomic-file.js'

export interface PaymentKey {
  /** 32-byte private key, hex. */
  privkey: string
  /** 33-byte compressed public key, hex, always starting with '02'. */
  pubkey: string
}

export const PAYMENT_KEY_FILE = 'payment.key'

/** Derive the (even-y normalised) payment key from 32 private-key bytes. */
export function paymentKeyFromPrivkey(sk: Uint8Array): PaymentKey {
  if (sk.length !== 32 || !secp.privateKeyVerify(sk)) throw new Error('a payment key must be 32 bytes, non-zero and below the secp256k1 order')
  let d = Buffer.from(sk)
  let P = secp.publicKeyCreate(d, true)
  if (P[0] === 0x03) {
    // privateKeyNegate works in place: d is our own copy.
    d = Buffer.from(secp.privateKeyNegate(d))
    P = secp.publicKeyCreate(d, true)
  }
  return { privkey: d.toString('hex'), pubkey: Buffer.from(P).toString('hex') }
}

/**
 * Read `<dataDir>/payment.key` (64 hex characters), creating it with mode 0600
 * on first run. An odd-y key in the file is used in its even-y form (same
 * x-only key, so the same proofs stay spendable).
 */
export async function loadOrCreatePaymentKey(dataDir: string): Promise<PaymentKey> {
  const file = join(dataDir, PAYMENT_KEY_FILE)
  let text: string | undefined
  try {
    text = (await readFile(file, 'utf8')).trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`cannot read the payment key ${file}: ${(err as Error).message}; fix its permissions (it must stay private)`)
    }
  }
  if (text !== undefined) {
    if (!/^[0-9a-fA-F]{64}$/.test(text)) {
      throw new Error(`the payment key file ${file} does not hold 64 hex characters; restore it from a backup — deleting it loses every proof locked to it that is not yet redeemed`)
    }
    return paymentKeyFromPrivkey(Buffer.from(text, 'hex'))
  }
  let sk = randomBytes(32)
  while (!secp.privateKeyVerify(sk)) sk = randomBytes(32)
  const key = paymentKeyFromPrivkey(sk)
  await writeFileAtomic(file, key.privkey + '\n', 0o600)
  return key
}
