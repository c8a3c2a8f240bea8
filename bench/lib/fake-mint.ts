/**
 * A bench-only mint key for amount 1: signs 1-sat P2PK-locked proofs with a
 * NUT-12 DLEQ proof in-process (native libsecp256k1), so the scale run can
 * pay tens of thousands of ticks without waiting for nutshell (which signs
 * about 300 outputs a second here). A provider accepts it like any mint
 * whose keys it has cached: writeKeyCache() puts the keyset into the
 * provider's mint-keys.json. The provider verifies these proofs exactly as
 * it verifies nutshell's (keyset, amount, lock, locktime, replay, DLEQ);
 * only redemption cannot happen (nobody answers at the URL).
 */
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { add, convert, mul, mulG, sha256, sub } from '../../src/crypto/secp256k1.js'
import { secretToY } from '../../src/payments/hash-to-curve.js'
import { makeP2PKSecret } from '../../src/payments/p2pk.js'
import { MINT_KEYS_FILE, deriveKeysetIdV00 } from '../../src/payments/mint-keys.js'
import type { WireProof } from '../../src/wire/protocol.js'

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const big = (b: Uint8Array) => BigInt('0x' + hex(b))
const b32 = (x: bigint) => Buffer.from(x.toString(16).padStart(64, '0'), 'hex')

function scalar(): Buffer {
  for (;;) {
    const k = randomBytes(32)
    const v = big(k)
    if (v > 0n && v < N) return k
  }
}

export interface FakeMintKey {
  /** private key, hex */
  a: string
  /** public key for amount 1, compressed hex */
  A: string
  /** public keys for amounts 2, 4, … (nobody signs with them: the bench only issues 1-sat proofs) */
  others: Record<string, string>
  /** keyset id (version 00, derived from the keys) */
  id: string
}

export function newFakeMintKey(): FakeMintKey {
  const a = scalar()
  const A = hex(mulG(a))
  // keys for the other amounts too (only 1 signs here), so the keyset looks like a mint's
  const others: Record<string, string> = {}
  for (let amount = 2; amount <= 2 ** 20; amount *= 2) others[String(amount)] = hex(mulG(scalar()))
  return { a: hex(a), A, others, id: deriveKeysetIdV00({ '1': A, ...others }) }
}

/** Put the keyset into `<dataDir>/mint-keys.json`, as if the provider had fetched it from `mintUrl`. */
export async function writeKeyCache(dataDir: string, mintUrl: string, key: FakeMintKey): Promise<void> {
  const keysets = { [key.id]: { id: key.id, unit: 'sat', active: true, inputFeePpk: 0, keys: { '1': key.A, ...key.others } } }
  await writeFile(join(dataDir, MINT_KEYS_FILE), JSON.stringify({ version: 1, mints: { [mintUrl]: { url: mintUrl, fetchedAt: Date.now(), keysets } } }))
}

/** Issues 1-sat proofs locked to one payee, as a customer's lock swap would return them. */
export class FakeMint {
  private readonly a: Buffer
  private readonly A: Uint8Array
  private readonly Au: Uint8Array

  constructor(readonly key: FakeMintKey) {
    this.a = Buffer.from(key.a, 'hex')
    this.A = Buffer.from(key.A, 'hex')
    this.Au = convert(this.A, false)
  }

  issueLocked(lock: { payee: string; locktime: number; refund: string }): WireProof {
    const secret = makeP2PKSecret({ pubkey: lock.payee, locktime: lock.locktime, refundKeys: [lock.refund] })
    const r = scalar()
    const B_ = add(secretToY(secret), mulG(r))
    const C_ = mul(B_, this.a)
    const p = scalar()
    const R1 = mulG(p, false)
    const R2 = mul(B_, p, false)
    const e = sha256(Buffer.from(Buffer.concat([R1, R2, this.Au, convert(C_, false)]).toString('hex'), 'ascii'))
    const s = (big(p) + big(e) * big(this.a)) % N
    const C = sub(C_, mul(this.A, r))
    return { amount: 1, id: this.key.id, secret, C: hex(C), dleq: { e: hex(e), s: hex(b32(s)), r: hex(r) } } as WireProof
  }
}
