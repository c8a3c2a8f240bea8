// What the provider-side payment tests (tick-verifier, redeemer) share:
// temporary data dirs, and a customer on cashu-ts that funds itself at a
// FakeWallet mint and locks proofs with secrets we write ourselves.
import { afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CashuMint, CashuWallet, OutputData } from '@cashu/cashu-ts'
import { blindSecret } from '../../src/payments/lock.js'
import { makeP2PKSecret, type P2PKLock } from '../../src/payments/p2pk.js'

// cashu-ts 2.5.3's .d.ts re-exports its model types without file extensions, which
// NodeNext resolution drops; this is the shape we use.
export type { Proof } from '@cashu/cashu-ts'
import type { Proof } from '@cashu/cashu-ts'

export const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
export const nowSec = () => Math.floor(Date.now() / 1000)

/** `tmp(prefix?)` makes a fresh temporary directory; all of them go after the test file. */
export function useTempDirs(defaultPrefix: string): (prefix?: string) => Promise<string> {
  const dirs: string[] = []
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })))
  })
  return async (prefix = defaultPrefix) => {
    const d = await mkdtemp(join(tmpdir(), prefix))
    dirs.push(d)
    return d
  }
}

/** A blinded output for a secret we choose (e.g. P2PK with string tags), for cashu-ts to send to the mint. */
export function outputFor(secret: string, amount: number, keysetId: string): OutputData {
  const o = blindSecret(secret, amount, keysetId)
  return new OutputData({ amount, id: keysetId, B_: o.B_ }, BigInt('0x' + o.r), new TextEncoder().encode(secret))
}

/** A funded cashu-ts wallet at `mintUrl` (FakeWallet pays invoices at once). */
export async function fundedWallet(mintUrl: string, amount: number): Promise<{ wallet: CashuWallet; proofs: Proof[] }> {
  const wallet = new CashuWallet(new CashuMint(mintUrl), { unit: 'sat' })
  await wallet.loadMint()
  const quote = await wallet.createMintQuote(amount)
  for (let i = 0; i < 50; i++) {
    const q = await wallet.checkMintQuote(quote.quote)
    if (q.state === 'PAID') break
    await new Promise((r) => setTimeout(r, 100))
  }
  const proofs = await wallet.mintProofs(amount, quote.quote)
  return { wallet, proofs: proofs as Proof[] }
}

/** One swap turning `proofs` into `count` proofs of `each` sats, locked as given (the customer's lock swap). */
export async function lockSwap(wallet: CashuWallet, proofs: Proof[], count: number, each: number, lock: P2PKLock): Promise<Proof[]> {
  const outputs = Array.from({ length: count }, () => outputFor(makeP2PKSecret(lock), each, wallet.keysetId))
  const { send } = await wallet.swap(count * each, proofs, { outputData: { send: outputs } })
  return send as Proof[]
}
