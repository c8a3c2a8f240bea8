import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { CashuMint, CashuWallet } from '@cashu/cashu-ts'
import { mulG } from '../src/crypto/secp256k1.js'
import { secretToYHex } from '../src/payments/hash-to-curve.js'
import { randomOutput } from '../src/payments/lock.js'
import { SchnorrSigner, type P2PKLock } from '../src/payments/p2pk.js'
import { loadOrCreatePaymentKey, paymentKeyFromPrivkey, type PaymentKey } from '../src/payments/payment-key.js'
import { MintKeyCache } from '../src/payments/mint-keys.js'
import { ReceivedStore } from '../src/payments/received-store.js'
import { TickVerifier } from '../src/payments/tick-verifier.js'
import { Redeemer, type RedeemedProof } from '../src/payments/redeemer.js'
import { startMint, type RunningMint } from '../src/devnet/mint.js'
import { Wallet } from '../src/payments/wallet.js'
import { storePath, type WalletFile } from '../src/payments/proof-store.js'
import { devnet } from './helpers/devnet.js'
import { fundedWallet, lockSwap, nowSec, useTempDirs, type Proof } from './helpers/cashu.js'

const tmp = useTempDirs('dvm-redeem-')

/** The customer side, on cashu-ts: fund from the FakeWallet mint, then one lock swap into 1-sat P2PK proofs. */
async function lockedTicks(mintUrl: string, count: number, lock: P2PKLock): Promise<Proof[]> {
  const { wallet, proofs } = await fundedWallet(mintUrl, count)
  return lockSwap(wallet, proofs, count, 1, lock)
}

const refused = () => new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) })

/** fetch that records every call (the mint round trips) and can be told to misbehave. */
function countingFetch(opts: { onSwap?: 'lose-response' | 'fail-before-send' | 'refuse-connection' | 'oversized-answer'; trimRestore?: number } = {}) {
  const calls: string[] = []
  let onSwap = opts.onSwap
  const f = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input)
    calls.push(new URL(url).pathname)
    if (url.endsWith('/v1/swap') && onSwap) {
      const mode = onSwap
      onSwap = undefined
      if (mode === 'fail-before-send') throw new TypeError('fetch failed', { cause: new Error('socket hang up') })
      if (mode === 'refuse-connection') throw refused()
      const res = await fetch(input, init) // the mint does the swap …
      if (mode === 'oversized-answer') {
        // … and answers with its signatures padded to 5 MiB
        const body = (await res.json()) as Record<string, unknown>
        return new Response(JSON.stringify({ ...body, pad: 'x'.repeat(5 << 20) }), { status: 200, headers: { 'content-type': 'application/json' } })
      }
      throw new TypeError('fetch failed', { cause: new Error('socket hang up') }) // … and the answer is lost
    }
    if (url.endsWith('/v1/restore') && opts.trimRestore) {
      // a mint that returns fewer signatures than it made
      const res = await fetch(input, init)
      const body = (await res.json()) as { outputs: unknown[]; signatures: unknown[]; promises?: unknown[] }
      const n = opts.trimRestore
      const trimmed = { outputs: body.outputs.slice(n), signatures: body.signatures.slice(n), ...(body.promises ? { promises: body.promises.slice(n) } : {}) }
      return new Response(JSON.stringify(trimmed), { status: res.status, headers: { 'content-type': 'application/json' } })
    }
    return fetch(input, init)
  }) as typeof fetch
  return { fetch: f, calls }
}

/**
 * fetch whose first swap request is held back: the caller sees a timeout, and
 * the request reaches the mint only when `land()` is called (a slow mint or a
 * proxy that delivers late).
 */
function heldSwapFetch() {
  let held: { url: string; body: string } | undefined
  const f = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input)
    if (url.endsWith('/v1/swap') && !held) {
      held = { url, body: String(init?.body) }
      throw new DOMException('The operation was aborted due to timeout', 'TimeoutError')
    }
    return fetch(input, init)
  }) as typeof fetch
  const land = async () => {
    if (!held) throw new Error('no swap was held')
    const res = await fetch(held.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: held.body })
    expect(res.status).toBe(200)
  }
  return { fetch: f, land }
}

const sum = (proofs: ReadonlyArray<{ amount: number }>) => proofs.reduce((n, p) => n + p.amount, 0)

interface Provider {
  dir: string
  key: PaymentKey
  keys: MintKeyCache
  store: ReceivedStore
  verifier: TickVerifier
  wallet: RedeemedProof[]
  deposit: (mint: string, proofs: RedeemedProof[]) => Promise<void>
}

async function provider(mintUrl: string, dir?: string): Promise<Provider> {
  const d = dir ?? (await tmp())
  const key = await loadOrCreatePaymentKey(d)
  const keys = new MintKeyCache({ dataDir: d, mints: [mintUrl] })
  await keys.start()
  const store = await ReceivedStore.open(d)
  const verifier = new TickVerifier({ paymentPubkey: key.pubkey, keys, minLocktimeMarginSec: 600, store })
  const wallet: RedeemedProof[] = []
  // Idempotent by secret, as the real Wallet.addProofs must be.
  const deposit = async (_mint: string, proofs: RedeemedProof[]) => {
    for (const p of proofs) if (!wallet.some((w) => w.secret === p.secret)) wallet.push(p)
  }
  return { dir: d, key, keys, store, verifier, wallet, deposit }
}

async function acceptAll(p: Provider, session: string, ticks: Proof[], mintUrl: string, now?: number): Promise<void> {
  for (const t of ticks) expect(await p.verifier.accept(session, t, mintUrl, now)).toMatchObject({ ok: true })
}

/** The mint's view: are the deposited proofs real, unspent ecash worth `amount`? */
async function assertSpendable(mintUrl: string, proofs: RedeemedProof[], amount: number): Promise<void> {
  expect(proofs.reduce((n: number, p) => n + p.amount, 0)).toBe(amount)
  const res = await fetch(`${mintUrl}/v1/checkstate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ Ys: proofs.map((p) => secretToYHex(p.secret)) }),
  })
  const { states } = (await res.json()) as { states: { state: string }[] }
  expect(states.every((s) => s.state === 'UNSPENT')).toBe(true)
  // And they can be swapped (the signatures are valid).
  const w = new CashuWallet(new CashuMint(mintUrl), { unit: 'sat' })
  await w.loadMint()
  const { send } = await w.swap(amount, proofs as Proof[])
  expect((send as Proof[]).reduce((n, p) => n + p.amount, 0)).toBe(amount)
}

describe('Redeemer on the shared devnet mint', () => {
  let mintUrl: string
  const customer = paymentKeyFromPrivkey(randomBytes(32))
  beforeAll(() => {
    mintUrl = devnet().mint
  })

  it('turns 100 held ticks into 100 sats with at most 3 mint round trips', async () => {
    const p = await provider(mintUrl)
    const ticks = await lockedTicks(mintUrl, 100, { pubkey: p.key.pubkey, locktime: nowSec() + 3600, refundKeys: [customer.pubkey] })
    await acceptAll(p, 'session-100', ticks, mintUrl)
    expect(p.store.counts().held).toBe(100)
    const { fetch: f, calls } = countingFetch()
    const r = new Redeemer({ store: p.store, keys: p.keys, paymentPrivkey: p.key.privkey, depositTo: p.deposit, fetch: f })
    const [report] = await r.sessionEnded('session-100')
    expect(report).toMatchObject({ redeemedProofs: 100, redeemedAmount: 100, lostProofs: 0, remainingProofs: 0 })
    expect(calls.length).toBeLessThanOrEqual(3)
    expect(calls).toEqual(['/v1/swap'])
    expect(p.store.counts()).toMatchObject({ held: 0, redeeming: 0, redeemed: 100 })
    await assertSpendable(mintUrl, p.wallet, 100)
    // A replay after redemption is still refused offline.
    expect(p.verifier.verify(ticks[0], mintUrl)).toMatchObject({ ok: false, code: 'replayed' })
    await p.store.close()
  })

  it('end to end with the Wallet on both sides: lockForPayee → verify → redeem → provider balance +100', async () => {
    const customerWallet = new Wallet({ dataDir: await tmp('dvm-cust-'), mintUrl })
    await customerWallet.load()
    await customerWallet.fund(150, { pollMs: 50 })
    const p = await provider(mintUrl)
    const providerWallet = new Wallet({ dataDir: p.dir, mintUrl })
    await providerWallet.load()
    const ticks = await customerWallet.lockForPayee({ amount: 100, payeePubkey: p.key.pubkey, locktime: nowSec() + 3600, refundPubkey: customer.pubkey })
    expect(ticks).toHaveLength(100)
    await acceptAll(p, 'e2e', ticks as Proof[], mintUrl)
    const { fetch: f, calls } = countingFetch()
    const r = new Redeemer({ store: p.store, keys: p.keys, paymentPrivkey: p.key.privkey, depositTo: async (_m, proofs) => void (await providerWallet.addProofs(proofs)), fetch: f })
    const [report] = await r.sessionEnded('e2e')
    expect(report).toMatchObject({ redeemedAmount: 100, remainingProofs: 0 })
    expect(calls.length).toBeLessThanOrEqual(3)
    expect((await providerWallet.balance()).balance).toBe(100)
    await p.store.close()
  })

  it('recovers after a crash whose swap reached the mint but whose answer was lost (NUT-09 restore)', async () => {
    const p = await provider(mintUrl)
    const ticks = await lockedTicks(mintUrl, 30, { pubkey: p.key.pubkey, locktime: nowSec() + 3600, refundKeys: [customer.pubkey] })
    await acceptAll(p, 's', ticks, mintUrl)
    const bad = countingFetch({ onSwap: 'lose-response' })
    const r1 = new Redeemer({ store: p.store, keys: p.keys, paymentPrivkey: p.key.privkey, depositTo: p.deposit, fetch: bad.fetch })
    const [rep1] = await r1.redeemAll()
    expect(rep1?.error).toBeTruthy()
    expect(p.store.counts()).toMatchObject({ redeeming: 30, pendingBatches: 1 })
    expect(p.wallet).toHaveLength(0)
    // "Crash": drop everything in memory, reopen from disk.
    await p.store.close()
    const p2 = await provider(mintUrl, p.dir)
    expect(p2.store.pendingRedeems()).toHaveLength(1)
    const good = countingFetch()
    const r2 = new Redeemer({ store: p2.store, keys: p2.keys, paymentPrivkey: p2.key.privkey, depositTo: p2.deposit, fetch: good.fetch })
    const [rep2] = await r2.redeemAll()
    expect(rep2).toMatchObject({ redeemedProofs: 30, redeemedAmount: 30, remainingProofs: 0 })
    // restore finds the new proofs; checkstate makes sure none was deposited (and spent) before the crash
    expect(good.calls).toEqual(['/v1/restore', '/v1/checkstate'])
    expect(p2.store.counts()).toMatchObject({ redeemed: 30, pendingBatches: 0 })
    await assertSpendable(mintUrl, p2.wallet, 30)
    await p2.store.close()
  })

  it('recovers after a crash between journalling and sending (NUT-07 check, then swap again)', async () => {
    const p = await provider(mintUrl)
    const ticks = await lockedTicks(mintUrl, 20, { pubkey: p.key.pubkey, locktime: nowSec() + 3600, refundKeys: [customer.pubkey] })
    await acceptAll(p, 's', ticks, mintUrl)
    const bad = countingFetch({ onSwap: 'fail-before-send' })
    const r1 = new Redeemer({ store: p.store, keys: p.keys, paymentPrivkey: p.key.privkey, depositTo: p.deposit, fetch: bad.fetch })
    await r1.redeemAll()
    expect(p.store.counts()).toMatchObject({ redeeming: 20, pendingBatches: 1 })
    await p.store.close()
    const p2 = await provider(mintUrl, p.dir)
    const good = countingFetch()
    const r2 = new Redeemer({ store: p2.store, keys: p2.keys, paymentPrivkey: p2.key.privkey, depositTo: p2.deposit, fetch: good.fetch })
    const [rep] = await r2.redeemAll()
    expect(rep).toMatchObject({ redeemedProofs: 20, redeemedAmount: 20, remainingProofs: 0 })
    expect(good.calls).toEqual(['/v1/restore', '/v1/checkstate', '/v1/swap'])
    // the undone batch's outputs were kept until the new swap spent its inputs
    expect(p2.store.counts()).toMatchObject({ redeemed: 20, pendingBatches: 0, retiredBatches: 0 })
    await assertSpendable(mintUrl, p2.wallet, 20)
    await p2.store.close()
  })

  it('marks a tick the customer took back with its refund key as lost, and redeems the rest', async () => {
    const p = await provider(mintUrl)
    const refundKey = paymentKeyFromPrivkey(randomBytes(32))
    const lt = nowSec() + 2
    const ticks = await lockedTicks(mintUrl, 5, { pubkey: p.key.pubkey, locktime: lt, refundKeys: [refundKey.pubkey] })
    // Accepted "long ago", when the locktime was still far off.
    await acceptAll(p, 's', ticks, mintUrl, lt - 3600)
    await new Promise((r) => setTimeout(r, 3000))
    // The customer spends one tick via the refund path (locktime has passed).
    const t = ticks[0] as Proof
    const ks = p.keys.activeKeyset(mintUrl)!
    const out = randomOutput(1, ks.id)
    const res = await fetch(`${mintUrl}/v1/swap`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ amount: 1, id: t.id, secret: t.secret, C: t.C, witness: new SchnorrSigner(refundKey.privkey).witness(t.secret) }],
        outputs: [{ amount: 1, id: ks.id, B_: out.B_ }],
      }),
    })
    expect(res.status).toBe(200)
    const { fetch: f, calls } = countingFetch()
    const r = new Redeemer({ store: p.store, keys: p.keys, paymentPrivkey: p.key.privkey, depositTo: p.deposit, fetch: f })
    const [rep] = await r.redeemAll()
    expect(rep).toMatchObject({ redeemedProofs: 4, redeemedAmount: 4, lostProofs: 1, remainingProofs: 0 })
    expect(calls).toEqual(['/v1/swap', '/v1/restore', '/v1/checkstate', '/v1/swap'])
    expect(p.store.counts()).toMatchObject({ redeemed: 4, lost: 1 })
    await p.store.close()
  })

  it('one proof the mint refuses does not hold back the others: they are redeemed, it stays held', async () => {
    const p = await provider(mintUrl)
    const ticks = await lockedTicks(mintUrl, 9, { pubkey: p.key.pubkey, locktime: nowSec() + 3600, refundKeys: [customer.pubkey] })
    // a proof whose signature the mint never made: first in line, so every full batch contains it
    const t0 = ticks[0]!
    const forged = { amount: t0.amount, id: t0.id, secret: t0.secret, C: Buffer.from(mulG(randomBytes(32))).toString('hex') }
    expect(await p.store.accept('session-bad', forged, mintUrl, { y: secretToYHex(forged.secret), locktime: nowSec() + 3600 })).toMatchObject({ ok: true })
    await acceptAll(p, 'session-bad', ticks.slice(1), mintUrl)
    const r = new Redeemer({ store: p.store, keys: p.keys, paymentPrivkey: p.key.privkey, depositTo: p.deposit })
    const [report] = await r.sessionEnded('session-bad')
    expect(report).toMatchObject({ redeemedAmount: 8, lostProofs: 0, remainingProofs: 1 })
    expect(report!.error).toMatch(/refused 1 held proof/)
    expect(p.store.counts()).toMatchObject({ held: 1, redeemed: 8 })
    await assertSpendable(mintUrl, p.wallet, 8)
    await p.store.close()
  })

  it('redeems automatically once the count threshold is reached', async () => {
    const p = await provider(mintUrl)
    const ticks = await lockedTicks(mintUrl, 12, { pubkey: p.key.pubkey, locktime: nowSec() + 3600, refundKeys: [customer.pubkey] })
    const r = new Redeemer({ store: p.store, keys: p.keys, paymentPrivkey: p.key.privkey, depositTo: p.deposit, countThreshold: 10 })
    r.start()
    await acceptAll(p, 's', ticks, mintUrl)
    for (let i = 0; i < 100 && p.store.counts().redeemed < 10; i++) await new Promise((res) => setTimeout(res, 50))
    expect(p.store.counts().redeemed).toBeGreaterThanOrEqual(10)
    // The automatic run may already have taken all 12; redeemAll does whatever is left.
    const reps = await r.redeemAll()
    expect(reps.every((rep) => rep.remainingProofs === 0 && !rep.error)).toBe(true)
    expect(p.store.counts().redeemed).toBe(12)
    await r.stop()
    await assertSpendable(mintUrl, p.wallet, 12)
    await p.store.close()
  })
  it('a swap that timed out but reached the mint later is recovered from its kept outputs, across restarts', async () => {
    const p = await provider(mintUrl)
    const ticks = await lockedTicks(mintUrl, 30, { pubkey: p.key.pubkey, locktime: nowSec() + 3600, refundKeys: [customer.pubkey] })
    await acceptAll(p, 's', ticks, mintUrl)
    const slow = heldSwapFetch()
    const r1 = new Redeemer({ store: p.store, keys: p.keys, paymentPrivkey: p.key.privkey, depositTo: p.deposit, fetch: slow.fetch })
    const [rep1] = await r1.redeemAll()
    expect(rep1?.error).toBeTruthy()
    expect(p.store.counts()).toMatchObject({ redeeming: 30, pendingBatches: 1 })

    // Next start: the mint has not seen that swap yet, so its inputs look unspent
    // and are tried again; this attempt never leaves (connection refused).
    await p.store.close()
    const p2 = await provider(mintUrl, p.dir)
    const r2 = new Redeemer({ store: p2.store, keys: p2.keys, paymentPrivkey: p2.key.privkey, depositTo: p2.deposit, fetch: countingFetch({ onSwap: 'refuse-connection' }).fetch })
    const [rep2] = await r2.redeemAll()
    expect(rep2?.error).toMatch(/not reachable/)
    expect(p2.store.counts()).toMatchObject({ held: 30, lost: 0, pendingBatches: 0, retiredBatches: 1 })

    // Now the first request reaches the mint after all …
    await slow.land()
    await p2.store.close()
    // … and the start after that finds its outputs instead of calling the ticks lost.
    const p3 = await provider(mintUrl, p.dir)
    const r3 = new Redeemer({ store: p3.store, keys: p3.keys, paymentPrivkey: p3.key.privkey, depositTo: p3.deposit, fetch: countingFetch().fetch })
    const [rep3] = await r3.redeemAll()
    expect(rep3).toMatchObject({ redeemedAmount: 30, lostProofs: 0, remainingProofs: 0 })
    expect(p3.store.counts()).toMatchObject({ redeemed: 30, lost: 0, held: 0, pendingBatches: 0, retiredBatches: 0 })
    await assertSpendable(mintUrl, p3.wallet, 30)
    await p3.store.close()
  })

  it('after a crash between deposit and `fin`, proofs the wallet already spent and pruned are not deposited again', async () => {
    const p = await provider(mintUrl)
    const w = new Wallet({ dataDir: p.dir, mintUrl })
    await w.load()
    const ticks = await lockedTicks(mintUrl, 20, { pubkey: p.key.pubkey, locktime: nowSec() + 3600, refundKeys: [customer.pubkey] })
    await acceptAll(p, 's', ticks, mintUrl)
    // The process dies right after the deposit, before the batch is marked finished.
    const dies = async (_m: string, proofs: RedeemedProof[]) => {
      await w.addProofs(proofs)
      throw new Error('killed after the deposit')
    }
    await new Redeemer({ store: p.store, keys: p.keys, paymentPrivkey: p.key.privkey, depositTo: dies }).redeemAll()
    expect(p.store.counts()).toMatchObject({ redeeming: 20, pendingBatches: 1 })
    expect((await w.balance()).balance).toBe(20)
    // The wallet pays the 20 sats away, and (a day later) prunes the spent records.
    const other = new Wallet({ dataDir: await tmp('dvm-other-'), mintUrl })
    await other.load()
    expect(await other.receive(await w.send(20))).toMatchObject({ amount: 20 })
    const file = storePath(p.dir, mintUrl)
    const data = JSON.parse(await readFile(file, 'utf8')) as WalletFile
    await writeFile(file, JSON.stringify({ ...data, proofs: data.proofs.filter((x) => x.state !== 'spent') }))

    await p.store.close()
    const p2 = await provider(mintUrl, p.dir)
    const w2 = new Wallet({ dataDir: p.dir, mintUrl })
    await w2.load()
    const { fetch: f, calls } = countingFetch()
    const r2 = new Redeemer({ store: p2.store, keys: p2.keys, paymentPrivkey: p2.key.privkey, depositTo: async (_m, proofs) => void (await w2.addProofs(proofs)), fetch: f })
    const [rep] = await r2.redeemAll()
    expect(rep).toMatchObject({ redeemedProofs: 20, redeemedAmount: 0, lostProofs: 0, remainingProofs: 0 })
    expect(calls).toEqual(['/v1/restore', '/v1/checkstate'])
    expect(await w2.balance()).toEqual({ balance: 0, pending: 0, locked: 0 })
    expect(p2.store.counts()).toMatchObject({ redeemed: 20, pendingBatches: 0 })
    await p2.store.close()
  })

  it('a partial NUT-09 restore settles only what came back; the rest stays journaled and is recovered later', async () => {
    const p = await provider(mintUrl)
    const ticks = await lockedTicks(mintUrl, 30, { pubkey: p.key.pubkey, locktime: nowSec() + 3600, refundKeys: [customer.pubkey] })
    await acceptAll(p, 's', ticks, mintUrl)
    await new Redeemer({ store: p.store, keys: p.keys, paymentPrivkey: p.key.privkey, depositTo: p.deposit, fetch: countingFetch({ onSwap: 'lose-response' }).fetch }).redeemAll()
    expect(p.store.counts()).toMatchObject({ redeeming: 30, pendingBatches: 1 })
    await p.store.close()

    // 30 = 16 + 8 + 4 + 2: the mint returns the signatures of only three of the four outputs
    const p2 = await provider(mintUrl, p.dir)
    const logs: string[] = []
    const r2 = new Redeemer({ store: p2.store, keys: p2.keys, paymentPrivkey: p2.key.privkey, depositTo: p2.deposit, fetch: countingFetch({ trimRestore: 1 }).fetch, log: (m) => logs.push(m) })
    await r2.redeemAll()
    const first = sum(p2.wallet)
    expect(first).toBeGreaterThan(0)
    expect(first).toBeLessThan(30)
    expect(p2.store.counts()).toMatchObject({ redeemed: 30, pendingBatches: 1 })
    expect(logs.join('\n')).toMatch(/restored only 3 of 4/)
    await p2.store.close()

    // after a restart the mint answers in full
    const p3 = await provider(mintUrl, p.dir)
    const [rep3] = await new Redeemer({ store: p3.store, keys: p3.keys, paymentPrivkey: p3.key.privkey, depositTo: p3.deposit }).redeemAll()
    expect(rep3?.error).toBeUndefined()
    expect(p3.store.counts()).toMatchObject({ redeemed: 30, pendingBatches: 0 })
    await assertSpendable(mintUrl, [...p2.wallet, ...p3.wallet], 30)
    await p3.store.close()
  })

  it('refuses a swap answer larger than the cap, clearly, and finds out from the mint what happened', async () => {
    const p = await provider(mintUrl)
    const ticks = await lockedTicks(mintUrl, 10, { pubkey: p.key.pubkey, locktime: nowSec() + 3600, refundKeys: [customer.pubkey] })
    await acceptAll(p, 's', ticks, mintUrl)
    const logs: string[] = []
    const r = new Redeemer({ store: p.store, keys: p.keys, paymentPrivkey: p.key.privkey, depositTo: p.deposit, fetch: countingFetch({ onSwap: 'oversized-answer' }).fetch, log: (m) => logs.push(m) })
    const [rep] = await r.redeemAll()
    expect(logs.join('\n')).toMatch(/larger than 4 MiB/)
    expect(rep).toMatchObject({ redeemedAmount: 10, lostProofs: 0, remainingProofs: 0 })
    await assertSpendable(mintUrl, p.wallet, 10)
    await p.store.close()
  })
})

describe('Redeemer while the mint is down', () => {
  let mint: RunningMint | undefined
  afterAll(async () => {
    await mint?.stop()
  })

  it('keeps verifying ticks offline, keeps the proofs, and redeems once the mint is back', async () => {
    const mintDir = await tmp('dvm-mintdown-')
    mint = await startMint({ dataDir: mintDir })
    const { url, port } = mint
    const customer = paymentKeyFromPrivkey(randomBytes(32))
    const p = await provider(url)
    const ticks = await lockedTicks(url, 20, { pubkey: p.key.pubkey, locktime: nowSec() + 3600, refundKeys: [customer.pubkey] })
    await mint.kill()
    mint = undefined

    // A provider restarted while the mint is down verifies from its persisted keys.
    await p.store.close()
    const p2 = await provider(url, p.dir)
    await acceptAll(p2, 'offline', ticks, url)
    const { fetch: f, calls } = countingFetch()
    const logs: string[] = []
    const r = new Redeemer({ store: p2.store, keys: p2.keys, paymentPrivkey: p2.key.privkey, depositTo: p2.deposit, fetch: f, log: (m) => logs.push(m), backoffInitialMs: 50 })
    const [down] = await r.redeemAll()
    expect(down?.error).toMatch(/not reachable/)
    expect(down?.remainingProofs).toBe(20)
    expect(p2.store.counts()).toMatchObject({ held: 20, redeeming: 0, pendingBatches: 0 })
    expect(calls).toEqual(['/v1/swap'])
    expect(r.stats().failures).toBe(1)

    mint = await startMint({ dataDir: mintDir, port })
    const [up] = await r.redeemAll()
    expect(up).toMatchObject({ redeemedProofs: 20, redeemedAmount: 20, remainingProofs: 0 })
    await assertSpendable(url, p2.wallet, 20)
    await p2.store.close()
  })
})
