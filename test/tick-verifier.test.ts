import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stat, readFile, readdir, appendFile, copyFile, writeFile } from 'node:fs/promises'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { CashuWallet, hasValidDleq } from '@cashu/cashu-ts'
import { schnorr } from '@noble/curves/secp256k1.js'
import { mulG } from '../src/crypto/secp256k1.js'
import { hashToCurve, secretToY, secretToYHex } from '../src/payments/hash-to-curve.js'
import { verifyProofDleq } from '../src/payments/dleq.js'
import { makeP2PKSecret, parseP2PKSecret, SchnorrSigner } from '../src/payments/p2pk.js'
import { loadOrCreatePaymentKey, paymentKeyFromPrivkey } from '../src/payments/payment-key.js'
import { MintKeyCache, deriveKeysetIdV00, normalizeMintUrl } from '../src/payments/mint-keys.js'
import { ReceivedStore, RECEIVED_LOG_VERSION } from '../src/payments/received-store.js'
import { TickVerifier } from '../src/payments/tick-verifier.js'
import { startMint, type RunningMint } from '../src/devnet/mint.js'
import { defaultMintVenv } from '../src/devnet/paths.js'
import { devnet } from './helpers/devnet.js'
import { fundedWallet, hex, lockSwap, nowSec, outputFor, useTempDirs, type Proof } from './helpers/cashu.js'

// cashu-ts 2.5.3's .d.ts re-exports its model types without file extensions, which
// NodeNext resolution drops; these are the shapes we use.
type MintKeys = { id: string; unit: string; keys: Record<number, string> }

const tmp = useTempDirs('dvm-tick-')

function flipBit(h: string, bit = 0): string {
  const b = Buffer.from(h, 'hex')
  const i = b.length - 1 - Math.floor(bit / 8)
  b[i] = (b[i] as number) ^ (1 << bit % 8)
  return b.toString('hex')
}

describe('NUT-00 hash_to_curve', () => {
  it('matches the NUT-00 test vectors', () => {
    const v = (h: string) => hex(hashToCurve(Buffer.from(h, 'hex')))
    expect(v('00'.repeat(32))).toBe('024cce997d3b518f739663b757deaec95bcd9473c30a14ac2fd04023a739d1a725')
    expect(v('00'.repeat(31) + '01')).toBe('022e7158e11c9506f1aa4248bf531298daa7febd6194f003edcd9b93ade6253acf')
    expect(v('00'.repeat(31) + '02')).toBe('026cdbe15362df59cd1dd3c9c11de8aedac2106eca69236ecd9fbe117af897be4f')
  })
})

describe('NUT-12 DLEQ against proofs made by nutshell', () => {
  // nutshell's own b_dhke (the reference implementation) plays mint and wallet.
  const script = `
import json
from cashu.core.crypto.secp import PrivateKey
from cashu.core.crypto.b_dhke import step1_alice, step2_bob, step3_alice
a = PrivateKey(bytes.fromhex("${'7f'.repeat(32)}"))
A = a.public_key
out = []
for i in range(20):
    secret = "nutshell-secret-%d" % i
    B_, r = step1_alice(secret)
    C_, e, s = step2_bob(B_, a)
    C = step3_alice(C_, r, A)
    out.append(dict(amount=1, id="009a1f293253e41e", secret=secret, C=C.format().hex(), dleq=dict(e=e.to_hex(), s=s.to_hex(), r=r.to_hex())))
print(json.dumps(dict(A=A.format().hex(), proofs=out)))
`
  let A: Buffer
  let proofs: Proof[]
  beforeAll(() => {
    const r = spawnSync(join(defaultMintVenv(), 'bin', 'python'), ['-c', script], { encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`nutshell helper failed: ${r.stderr}`)
    const data = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { A: string; proofs: Proof[] }
    A = Buffer.from(data.A, 'hex')
    proofs = data.proofs
  })

  it('accepts every valid proof, as cashu-ts does', () => {
    const keyset = { id: '009a1f293253e41e', unit: 'sat', keys: { 1: A.toString('hex') } } as unknown as MintKeys
    for (const p of proofs) {
      expect(verifyProofDleq(p as never, A)).toBe(true)
      expect(hasValidDleq(p, keyset)).toBe(true)
    }
  })

  it('rejects a flipped bit in e, s, r or C, and a different mint key', () => {
    const p = proofs[0] as Proof & { dleq: { e: string; s: string; r: string } }
    for (const bit of [0, 1, 77, 255]) {
      expect(verifyProofDleq({ ...p, dleq: { ...p.dleq, e: flipBit(p.dleq.e, bit) } } as never, A)).toBe(false)
      expect(verifyProofDleq({ ...p, dleq: { ...p.dleq, s: flipBit(p.dleq.s, bit) } } as never, A)).toBe(false)
      expect(verifyProofDleq({ ...p, dleq: { ...p.dleq, r: flipBit(p.dleq.r, bit) } } as never, A)).toBe(false)
      expect(verifyProofDleq({ ...p, C: flipBit(p.C, bit) } as never, A)).toBe(false)
    }
    expect(verifyProofDleq({ ...p, secret: p.secret + 'x' } as never, A)).toBe(false)
    expect(verifyProofDleq(p as never, Buffer.from(mulG(randomBytes(32))))).toBe(false)
    expect(verifyProofDleq({ ...p, dleq: undefined } as never, A)).toBe(false)
    expect(verifyProofDleq({ ...p, dleq: { ...p.dleq, s: '00'.repeat(32) } } as never, A)).toBe(false)
  })
})

describe('NUT-11 P2PK', () => {
  it('signs BIP-340 exactly (test vector 0) and verifiably for random keys', () => {
    const signer = new SchnorrSigner('00'.repeat(31) + '03')
    const sig = signer.sign(Buffer.alloc(32), Buffer.alloc(32))
    expect(sig.toString('hex').toUpperCase()).toBe(
      'E907831F80848D1069A5371B402410364BDF1C5F8307B0084C55F1CE2DCA821525F66A4A85EA8B71E482A74F382D2CE5EBEEE8FDB2172F477DF4900D310536C0',
    )
    for (let i = 0; i < 20; i++) {
      const sk = randomBytes(32)
      const s = new SchnorrSigner(sk)
      const msg = randomBytes(32)
      expect(schnorr.verify(s.sign(msg), msg, schnorr.getPublicKey(sk))).toBe(true)
    }
  })

  it('produces the witness nutshell verifies (sha256 of the secret, x-only key)', () => {
    const key = paymentKeyFromPrivkey(randomBytes(32))
    const secret = makeP2PKSecret({ pubkey: key.pubkey, locktime: 1_900_000_000, refundKeys: [key.pubkey] })
    const witness = new SchnorrSigner(key.privkey).witness(secret)
    const py = `
import json, sys

from cashu.core.p2pk import verify_schnorr_signature
from cashu.core.crypto.secp import PublicKey
d = json.loads(sys.stdin.read())
sig = json.loads(d["witness"])["signatures"][0]
print(verify_schnorr_signature(d["secret"].encode("utf-8"), PublicKey(bytes.fromhex(d["pubkey"])), bytes.fromhex(sig)))
`
    const r = spawnSync(join(defaultMintVenv(), 'bin', 'python'), ['-c', py], { input: JSON.stringify({ witness, secret, pubkey: key.pubkey }), encoding: 'utf8' })
    expect(r.stdout.trim().split('\n').pop()).toBe('True')
  })

  it('reads only what the mint reads as locked', () => {
    const pk = '02' + '79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798' // G: makeP2PKSecret takes only keys on the curve
    const ok = parseP2PKSecret(makeP2PKSecret({ pubkey: pk, locktime: 1_900_000_000, refundKeys: ['03' + '22'.repeat(32)] }))
    expect(ok.ok && ok.secret.locktime === 1_900_000_000 && ok.secret.refundKeys.length === 1 && ok.secret.sigflag === 'SIG_INPUTS').toBe(true)
    // cashu-ts createP2PKData writes a numeric locktime: nutshell then treats the proof as unlocked.
    const numeric = JSON.stringify(['P2PK', { nonce: 'ab', data: pk, tags: [['locktime', 1_900_000_000]] }])
    expect(parseP2PKSecret(numeric)).toMatchObject({ ok: false, code: 'not-locked' })
    expect(parseP2PKSecret(JSON.stringify(['P2PK', { data: pk, tags: [] }]))).toMatchObject({ ok: false, code: 'not-locked' })
    expect(parseP2PKSecret('a'.repeat(64))).toMatchObject({ ok: false, code: 'not-locked' })
    expect(parseP2PKSecret(JSON.stringify(['HTLC', { nonce: 'ab', data: pk }]))).toMatchObject({ ok: false, code: 'not-locked' })
    expect(parseP2PKSecret(JSON.stringify(['P2PK', { nonce: 'ab', data: pk, tags: [['locktime', '1_000']] }]))).toMatchObject({ ok: false, code: 'malformed' })
    expect(parseP2PKSecret(JSON.stringify(['P2PK', { nonce: 'ab', data: pk, tags: [['locktime', '1'], ['locktime', '2']] }]))).toMatchObject({ ok: false, code: 'malformed' })
    expect(parseP2PKSecret(JSON.stringify(['P2PK', { nonce: 'ab', data: pk, tags: [['foo', 'bar']] }]))).toMatchObject({ ok: false, code: 'malformed' })
    expect(parseP2PKSecret(JSON.stringify(['P2PK', { nonce: 'ab', data: pk, tags: [] }]) + ' '.repeat(1100))).toMatchObject({ ok: false, code: 'malformed' })
  })
})

describe('payment key', () => {
  it('is created 0600 with an even-y 02 pubkey and stays the same', async () => {
    const dir = await tmp()
    const k1 = await loadOrCreatePaymentKey(dir)
    expect(k1.pubkey).toMatch(/^02[0-9a-f]{64}$/)
    expect((await stat(join(dir, 'payment.key'))).mode & 0o777).toBe(0o600)
    const k2 = await loadOrCreatePaymentKey(dir)
    expect(k2).toEqual(k1)
    for (let i = 0; i < 10; i++) expect(paymentKeyFromPrivkey(randomBytes(32)).pubkey.startsWith('02')).toBe(true)
  })
})

describe('tick verification against a real mint', () => {
  let mintUrl: string
  let wallet: CashuWallet
  let funds: Proof[]
  let payKey: { privkey: string; pubkey: string }
  let dataDir: string
  let keys: MintKeyCache
  let store: ReceivedStore
  let verifier: TickVerifier
  let ticks: Proof[]
  const customer = paymentKeyFromPrivkey(randomBytes(32))
  const now = () => Math.floor(Date.now() / 1000)
  const locktime = () => now() + 3600

  beforeAll(async () => {
    mintUrl = devnet().mint
    const funded = await fundedWallet(mintUrl, 64)
    wallet = funded.wallet
    funds = funded.proofs
    dataDir = await tmp()
    payKey = await loadOrCreatePaymentKey(dataDir)
    keys = new MintKeyCache({ dataDir, mints: [mintUrl] })
    const sync = await keys.start()
    expect(sync[0]?.ok).toBe(true)
    store = await ReceivedStore.open(dataDir)
    verifier = new TickVerifier({ paymentPubkey: payKey.pubkey, keys, minLocktimeMarginSec: 600, store })
    // One lock swap: 10 ticks locked to the provider, refund to the customer.
    const { keep, send } = await wallet.send(10, funds, { includeFees: false })
    funds = keep
    ticks = await lockSwap(wallet, send, 10, 1, { pubkey: payKey.pubkey, locktime: locktime(), refundKeys: [customer.pubkey] })
    expect(ticks).toHaveLength(10)
  })
  afterAll(async () => {
    await store?.close()
  })

  it('accepts ticks from a real lock swap, and stores them durably before resolving', async () => {
    for (const t of ticks.slice(0, 5)) {
      const v = await verifier.accept('s1', t, mintUrl)
      expect(v).toMatchObject({ ok: true })
    }
    expect(store.counts().held).toBe(5)
    const log = await readFile(store.file, 'utf8')
    expect(log.trim().split('\n')).toHaveLength(6)
  })

  it('refuses a replayed tick, also after the store is reopened', async () => {
    const t = ticks[0] as Proof
    expect(verifier.verify(t, mintUrl)).toMatchObject({ ok: false, code: 'replayed' })
    expect(await store.accept('s2', t as never, mintUrl)).toMatchObject({ ok: false, code: 'replayed' })
    await store.close()
    store = await ReceivedStore.open(dataDir)
    verifier = new TickVerifier({ paymentPubkey: payKey.pubkey, keys, minLocktimeMarginSec: 600, store })
    expect(store.counts().held).toBe(5)
    expect(await verifier.accept('s3', t, mintUrl)).toMatchObject({ ok: false, code: 'replayed' })
    // Concurrent duplicates: exactly one wins.
    const dup = ticks[5] as Proof
    const rs = await Promise.all([verifier.accept('a', dup, mintUrl), verifier.accept('b', dup, mintUrl), verifier.accept('c', dup, mintUrl)])
    expect(rs.filter((r) => r.ok)).toHaveLength(1)
    expect(rs.filter((r) => !r.ok && r.code === 'replayed')).toHaveLength(2)
  })

  it('refuses forged proofs (bad DLEQ / C), without storing them', () => {
    const t = ticks[6] as Proof & { dleq: { e: string; s: string; r: string } }
    expect(verifier.verify({ ...t, C: flipBit(t.C, 3) }, mintUrl)).toMatchObject({ ok: false, code: 'bad-dleq' })
    expect(verifier.verify({ ...t, dleq: { ...t.dleq, e: flipBit(t.dleq.e) } }, mintUrl)).toMatchObject({ ok: false, code: 'bad-dleq' })
    expect(verifier.verify({ ...t, dleq: { ...t.dleq, s: flipBit(t.dleq.s, 9) } }, mintUrl)).toMatchObject({ ok: false, code: 'bad-dleq' })
    expect(verifier.verify({ ...t, dleq: { ...t.dleq, r: flipBit(t.dleq.r, 200) } }, mintUrl)).toMatchObject({ ok: false, code: 'bad-dleq' })
    // A made-up proof with a valid lock but a random "signature".
    const fake = { ...t, secret: makeP2PKSecret({ pubkey: payKey.pubkey, locktime: locktime(), refundKeys: [customer.pubkey] }) }
    expect(verifier.verify(fake, mintUrl)).toMatchObject({ ok: false, code: 'bad-dleq' })
    const { dleq: _omit, ...noDleq } = t
    expect(verifier.verify(noDleq, mintUrl)).toMatchObject({ ok: false, code: 'malformed' })
    expect(store.has(hex(secretToY(t.secret)))).toBe(false)
  })

  it('refuses a tick locked to another key, an unlocked one, no locktime, and a too-close locktime', async () => {
    const take = async (n: number): Promise<Proof[]> => {
      const r = await wallet.send(n, funds, { includeFees: false, includeDleq: true })
      funds = r.keep
      return r.send
    }
    const other = paymentKeyFromPrivkey(randomBytes(32))
    const [toOther] = await lockSwap(wallet, await take(1), 1, 1, { pubkey: other.pubkey, locktime: locktime(), refundKeys: [customer.pubkey] })
    expect(verifier.verify(toOther, mintUrl)).toMatchObject({ ok: false, code: 'wrong-key' })
    // A plain 1-sat proof (with DLEQ): anyone holding it can spend it.
    const [plain] = await take(1)
    expect(plain?.amount).toBe(1)
    expect(verifier.verify(plain, mintUrl)).toMatchObject({ ok: false, code: 'not-locked' })
    const [noLocktime] = await lockSwap(wallet, await take(1), 1, 1, { pubkey: payKey.pubkey, refundKeys: [customer.pubkey] })
    expect(verifier.verify(noLocktime, mintUrl)).toMatchObject({ ok: false, code: 'no-locktime' })
    const [soon] = await lockSwap(wallet, await take(1), 1, 1, { pubkey: payKey.pubkey, locktime: now() + 60, refundKeys: [customer.pubkey] })
    expect(verifier.verify(soon, mintUrl)).toMatchObject({ ok: false, code: 'locktime-too-close' })
    // The numeric-locktime secret cashu-ts' createP2PKData would make: nutshell reads it as unlocked.
    const numericSecret = JSON.stringify(['P2PK', { nonce: randomBytes(32).toString('hex'), data: payKey.pubkey, tags: [['locktime', locktime()], ['refund', customer.pubkey]] }])
    const { send: numeric } = await wallet.swap(1, await take(1), { outputData: { send: [outputFor(numericSecret, 1, wallet.keysetId)] } })
    expect(verifier.verify(numeric[0], mintUrl)).toMatchObject({ ok: false, code: 'not-locked' })
  })

  it('refuses amount 2 and a mint it does not accept', async () => {
    const s = await wallet.send(2, funds, { includeFees: false })
    funds = s.keep
    const two = await lockSwap(wallet, s.send, 1, 2, { pubkey: payKey.pubkey, locktime: locktime(), refundKeys: [customer.pubkey] })
    expect(verifier.verify(two[0], mintUrl)).toMatchObject({ ok: false, code: 'wrong-amount' })
    expect(verifier.verify(ticks[7], 'http://127.0.0.1:1/')).toMatchObject({ ok: false, code: 'unknown-mint' })
    expect(verifier.verify({ ...(ticks[7] as Proof), id: '00ffffffffffffff' }, mintUrl)).toMatchObject({ ok: false, code: 'unknown-keyset' })
    expect(verifier.verify('nonsense', mintUrl)).toMatchObject({ ok: false, code: 'malformed' })
    expect(verifier.verify({ ...(ticks[7] as Proof), amount: 1.5 }, mintUrl)).toMatchObject({ ok: false, code: 'malformed' })
  })

  it('keeps verifying offline from the persisted keys (mint unreachable)', async () => {
    const failingFetch = (async () => {
      throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } })
    }) as unknown as typeof fetch
    const offline = new MintKeyCache({ dataDir, mints: [mintUrl + '/'], fetch: failingFetch })
    const res = await offline.start()
    expect(res[0]).toMatchObject({ ok: false, usingCache: true })
    const v = new TickVerifier({ paymentPubkey: payKey.pubkey, keys: offline, minLocktimeMarginSec: 600, store })
    expect(v.verify(ticks[8], mintUrl)).toMatchObject({ ok: true })
    // Unknown keyset → refresh is rate-limited: one fetch attempt, then none.
    let calls = 0
    const counting = (async () => {
      calls++
      throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } })
    }) as unknown as typeof fetch
    const limited = new MintKeyCache({ dataDir, mints: [mintUrl], fetch: counting, refreshMinIntervalMs: 60_000 })
    await limited.load()
    const lv = new TickVerifier({ paymentPubkey: payKey.pubkey, keys: limited, minLocktimeMarginSec: 600, store })
    for (let i = 0; i < 5; i++) {
      expect(await lv.accept('x', { ...(ticks[8] as Proof), id: '00eeeeeeeeeeeeee' }, mintUrl)).toMatchObject({ ok: false, code: 'unknown-keyset' })
    }
    expect(calls).toBe(1)
  })
})

describe('keyset policy', () => {
  let feeMint: RunningMint | undefined
  afterAll(async () => {
    await feeMint?.stop()
  })

  it('refuses keysets with input_fee_ppk > 0, naming the fee', async () => {
    feeMint = await startMint({ dataDir: await tmp('dvm-feemint-'), env: { MINT_INPUT_FEE_PPK: '100' } })
    const dir = await tmp()
    const key = await loadOrCreatePaymentKey(dir)
    const keys = new MintKeyCache({ dataDir: dir, mints: [feeMint.url] })
    const [res] = await keys.start()
    expect(res?.ok).toBe(true)
    expect(res?.usable).toHaveLength(0)
    expect(res?.refused[0]?.reason).toMatch(/input_fee_ppk=100/)
    const { wallet, proofs } = await fundedWallet(feeMint.url, 8)
    const { send } = await wallet.send(2, proofs, { includeFees: true })
    const locked = await lockSwap(wallet, send, 1, 1, { pubkey: key.pubkey, locktime: Math.floor(Date.now() / 1000) + 3600 }).catch(() => [] as Proof[])
    const tick = locked[0] ?? ({ ...(send[0] as Proof), amount: 1 } as Proof)
    const v = new TickVerifier({ paymentPubkey: key.pubkey, keys, minLocktimeMarginSec: 60 })
    const verdict = v.verify(tick, feeMint.url)
    expect(verdict).toMatchObject({ ok: false, code: 'keyset-has-fees' })
    expect(!verdict.ok && verdict.reason).toMatch(/input_fee_ppk=100/)
  })

  it('checks version-00 keyset ids against their keys and normalises mint URLs', () => {
    const keys = { '1': hex(mulG(randomBytes(32))), '2': hex(mulG(randomBytes(32))) }
    const id = deriveKeysetIdV00(keys)
    expect(id).toMatch(/^00[0-9a-f]{14}$/)
    expect(normalizeMintUrl('HTTP://Mint.Example.com:3338/')).toBe('http://mint.example.com:3338')
    expect(normalizeMintUrl('https://x.org/cashu/')).toBe('https://x.org/cashu')
  })
})

describe('mint key cache input', () => {
  it('refuses a key listing larger than the cap, clearly', async () => {
    const oversized = (async () => new Response('{"keysets":[],"pad":"' + 'x'.repeat(5 << 20) + '"}', { status: 200, headers: { 'content-type': 'application/json' } })) as unknown as typeof fetch
    const keys = new MintKeyCache({ dataDir: await tmp(), mints: ['http://127.0.0.1:9'], fetch: oversized })
    const [res] = await keys.start()
    expect(res).toMatchObject({ ok: false })
    expect(res?.error).toMatch(/larger than 4 MiB/)
  })

  it('stops reading an endless answer at the cap', async () => {
    let sent = 0
    const endless = (async () =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull(c) {
            sent += 1 << 16
            c.enqueue(new Uint8Array(1 << 16).fill(0x20))
          },
        }),
        { status: 200 },
      )) as unknown as typeof fetch
    const keys = new MintKeyCache({ dataDir: await tmp(), mints: ['http://127.0.0.1:9'], fetch: endless })
    const [res] = await keys.start()
    expect(res?.error).toMatch(/larger than 4 MiB/)
    expect(sent).toBeLessThan(6 << 20)
  })

  it('loads keys stored under the old URL normalisation, and refuses a mint URL with a query', async () => {
    const mintUrl = devnet().mint
    const dir = await tmp()
    const first = new MintKeyCache({ dataDir: dir, mints: [mintUrl] })
    expect((await first.start())[0]).toMatchObject({ ok: true })
    const id = first.activeKeyset(mintUrl)!.id
    // a key cache written by the old code, read with the mint spelled differently and the mint unreachable
    const offline = (async () => {
      throw new TypeError('fetch failed')
    }) as unknown as typeof fetch
    const spelled = mintUrl.replace('http://', 'HTTP://') + '/'
    const again = new MintKeyCache({ dataDir: dir, mints: [spelled], fetch: offline })
    await again.start()
    expect(again.lookup(spelled, id)).toMatchObject({ ok: true })
    expect(again.lookup(mintUrl, id)).toMatchObject({ ok: true })
    expect(() => new MintKeyCache({ dataDir: dir, mints: [mintUrl + '/?a=1'] })).toThrow(/must not carry a query/)
  })
})

describe('received store crash recovery', () => {
  it('cuts a torn last line and keeps every complete record', async () => {
    const dir = await tmp()
    const s = await ReceivedStore.open(dir)
    const mk = (i: number) => ({ amount: 1, id: '00aa', secret: `s-${i}`, C: '02' + '11'.repeat(32) })
    for (let i = 0; i < 3; i++) expect(await s.accept('sess', mk(i), 'http://m')).toMatchObject({ ok: true })
    await s.close()
    await appendFile(join(dir, 'received.jsonl'), '{"t":"acc","y":"0299')
    const logs: string[] = []
    const s2 = await ReceivedStore.open(dir, { log: (m) => logs.push(m) })
    expect(s2.counts().held).toBe(3)
    expect(logs.join('\n')).toMatch(/torn/)
    expect(await s2.accept('sess', mk(3), 'http://m')).toMatchObject({ ok: true })
    expect(await s2.accept('sess', mk(1), 'http://m')).toMatchObject({ ok: false, code: 'replayed' })
    await s2.close()
    const s3 = await ReceivedStore.open(dir)
    expect(s3.counts().held).toBe(4)
    await s3.close()
  })

  it('refuses to start on a garbled line with records after it, instead of forgetting acknowledged proofs', async () => {
    const dir = await tmp()
    const s = await ReceivedStore.open(dir)
    const mk = (i: number) => ({ amount: 1, id: '00aa', secret: `s-${i}`, C: '02' + '11'.repeat(32) })
    for (let i = 0; i < 3; i++) expect(await s.accept('sess', mk(i), 'http://m')).toMatchObject({ ok: true })
    await s.close()
    const file = join(dir, 'received.jsonl')
    const lines = (await readFile(file, 'utf8')).split('\n')
    lines[2] = '{"t":"acc", damaged'
    await writeFile(file, lines.join('\n'))
    await expect(ReceivedStore.open(dir)).rejects.toThrow(/damaged at line 3 and intact records follow it/)
    // nothing was cut: the records after the damage are still in the file
    expect((await readFile(file, 'utf8')).split('\n').length).toBe(lines.length)
  })

  it('compacts online without losing records written meanwhile, and forgets finished ticks long past their locktime', async () => {
    const dir = await tmp()
    const logs: string[] = []
    const s = await ReceivedStore.open(dir, { compactSlack: 50, pruneScanIntervalMs: 0, log: (m) => logs.push(m) })
    const mk = (i: number) => ({ amount: 1, id: '00aa', secret: `c-${i}`, C: '02' + '11'.repeat(32) })
    const old = nowSec() - 10 * 3600
    // 300 old ticks, all redeemed; 100 fresh ones, 50 redeemed and 10 being redeemed.
    await Promise.all(Array.from({ length: 300 }, (_, i) => s.accept('old', mk(i), 'http://m', { locktime: old })))
    await Promise.all(Array.from({ length: 100 }, (_, i) => s.accept('new', mk(300 + i), 'http://m', { locktime: nowSec() + 3600 })))
    const ys = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => secretToYHex(`c-${from + k}`))
    const out = [{ amount: 1, id: '00aa', secret: 'x', r: '01', B_: '02' }]
    await s.beginRedeem({ batchId: 'b1', mintUrl: 'http://m', ys: ys(0, 350), outputs: out, startedAt: 0 })
    await s.finishRedeem('b1')
    await s.beginRedeem({ batchId: 'b2', mintUrl: 'http://m', ys: ys(350, 360), outputs: out, startedAt: 0 })
    // Many concurrent accepts: some land in the batch that triggers compaction, some after.
    const more = await Promise.all(Array.from({ length: 300 }, (_, i) => s.accept('more', mk(1000 + i), 'http://m', { locktime: nowSec() + 3600 })))
    expect(more.every((r) => r.ok)).toBe(true)
    await s.close()
    const lines = (await readFile(join(dir, 'received.jsonl'), 'utf8')).trim().split('\n').length
    expect(logs.join('\n')).toMatch(/compacted/)
    expect(lines).toBeLessThan(500) // 703 without compaction
    const r = await ReceivedStore.open(dir)
    expect(r.counts()).toMatchObject({ held: 40 + 300, redeeming: 10, redeemed: 50, pendingBatches: 1 })
    expect(r.has(secretToYHex('c-5'))).toBe(false) // redeemed, locktime 10 h ago: forgotten
    expect(r.has(secretToYHex('c-320'))).toBe(true)
    expect(await r.accept('again', mk(1299), 'http://m')).toMatchObject({ ok: false, code: 'replayed' })
    await r.close()
  })

  it('keeps retired batches and partly restored batches across restarts and compaction', async () => {
    const dir = await tmp()
    const mk = (i: number) => ({ amount: 1, id: '00aa', secret: `r-${i}`, C: '02' + '11'.repeat(32) })
    const y = (i: number) => secretToYHex(`r-${i}`)
    const out = (tag: string, n: number) => Array.from({ length: n }, (_, i) => ({ amount: 1, id: '00aa', secret: `${tag}-${i}`, r: '01', B_: `02${tag}${i}` }))
    const s = await ReceivedStore.open(dir)
    for (let i = 0; i < 6; i++) expect(await s.accept('sess', mk(i), 'http://m')).toMatchObject({ ok: true })
    // b1 timed out and looked undone: its inputs are held again, its outputs kept
    await s.beginRedeem({ batchId: 'b1', mintUrl: 'http://m', ys: [y(0), y(1), y(2)], outputs: out('a', 2), startedAt: 1 })
    await s.abortRedeem('b1', [], { keepOutputs: true })
    // b2 was carried out, but a restore returned only one of its two outputs
    await s.beginRedeem({ batchId: 'b2', mintUrl: 'http://m', ys: [y(3), y(4), y(5)], outputs: out('b', 2), startedAt: 2 })
    await s.partialRedeem('b2', ['02b0'])
    // churn, so that the next open compacts
    for (let k = 0; k < 10; k++) {
      await s.beginRedeem({ batchId: `c${k}`, mintUrl: 'http://m', ys: [y(0)], outputs: out('c', 1), startedAt: 3 })
      await s.abortRedeem(`c${k}`)
    }
    const expected = { held: 3, redeemed: 3, pendingBatches: 1, retiredBatches: 1 }
    expect(s.counts()).toMatchObject(expected)
    await s.close()
    const logs: string[] = []
    for (const opts of [{ compactSlack: 1, log: (m: string) => logs.push(m) }, {}]) {
      const r = await ReceivedStore.open(dir, opts)
      expect(r.counts()).toMatchObject(expected)
      expect(r.retiredRedeems().map((x) => [x.batchId, x.ys.length, x.outputs.map((o) => o.B_)])).toEqual([['b1', 3, ['02a0', '02a1']]])
      expect(r.pendingRedeems().map((x) => [x.batchId, x.swapped, x.outputs.map((o) => o.B_)])).toEqual([['b2', true, ['02b1']]])
      await r.close()
    }
    expect(logs.join('\n')).toMatch(/compacted/)
    // the retired batch turns out to have happened; a batch finishing one of its inputs would have forgotten it
    const r = await ReceivedStore.open(dir)
    await r.beginRedeem({ batchId: 'd', mintUrl: 'http://m', ys: [y(0), y(1), y(2)], outputs: out('d', 1), startedAt: 4 })
    await r.finishRedeem('b1')
    await r.abortRedeem('d')
    await r.finishRedeem('b2')
    expect(r.counts()).toMatchObject({ held: 0, redeeming: 0, redeemed: 6, pendingBatches: 0, retiredBatches: 0 })
    await r.close()
    const again = await ReceivedStore.open(dir)
    expect(again.counts()).toMatchObject({ held: 0, redeemed: 6, pendingBatches: 0, retiredBatches: 0 })
    await again.close()
  })

  it('reads a version-1 log (fixture) and rewrites it as version 2 before appending anything newer', async () => {
    const dir = await tmp()
    const file = join(dir, 'received.jsonl')
    await copyFile(new URL('./fixtures/received-v1.jsonl', import.meta.url), file)
    const expected = { held: 2, redeeming: 1, redeemed: 3, lost: 1, pendingBatches: 1, retiredBatches: 0 }
    const logs: string[] = []
    const s = await ReceivedStore.open(dir, { log: (m) => logs.push(m) })
    expect(s.counts()).toMatchObject(expected)
    expect(s.held().map((e) => e.proof?.secret).sort()).toEqual(['v1-fixture-secret-2', 'v1-fixture-secret-4'])
    expect(s.pendingRedeems().map((j) => [j.batchId, j.ys.length, j.outputs[0]?.secret])).toEqual([['b3', 1, 'b3-out']])
    const replay = { amount: 1, id: '00ad268c4d1f5826', secret: 'v1-fixture-secret-0', C: '02' + '11'.repeat(32) }
    expect(await s.accept('again', replay, 'http://127.0.0.1:3338')).toMatchObject({ ok: false, code: 'replayed' })
    expect(RECEIVED_LOG_VERSION).toBe(2)
    expect(JSON.parse((await readFile(file, 'utf8')).split('\n')[0]!)).toMatchObject({ t: 'hdr', v: 2 })
    expect(logs.join('\n')).toMatch(/upgraded from version 1 to 2/)
    // a version-2 record, then a restart: all still there
    await s.abortRedeem('b3', [], { keepOutputs: true })
    await s.close()
    const r = await ReceivedStore.open(dir)
    expect(r.counts()).toMatchObject({ ...expected, held: 3, redeeming: 0, pendingBatches: 0, retiredBatches: 1 })
    await r.close()
  })

  it('refuses a log written by a newer dvm-agent, saying to upgrade, and leaves it untouched', async () => {
    const dir = await tmp()
    const file = join(dir, 'received.jsonl')
    const text = '{"t":"hdr","v":3,"created":1}\n{"t":"acc","y":"02aa","sid":"s","mint":"http://m","at":1,"p":{"amount":1,"id":"00aa","secret":"x","C":"02"}}\n{"t":"new-kind","at":2}\n'
    await writeFile(file, text)
    await expect(ReceivedStore.open(dir)).rejects.toThrow(/written by a newer dvm-agent \(log version 3; this one reads versions 1 to 2\); it was left untouched: upgrade dvm-agent/)
    expect(await readFile(file, 'utf8')).toBe(text)
    expect(await readdir(dir)).toEqual(['received.jsonl']) // nothing cut aside as "corrupt"
    await writeFile(file, '{"t":"hdr","v":"2"}\n')
    await expect(ReceivedStore.open(dir)).rejects.toThrow(/not a dvm-agent received-proof log .* left untouched/)
  })

  it('group-commits concurrent accepts into few fsyncs', async () => {
    const dir = await tmp()
    const s = await ReceivedStore.open(dir)
    const n = 2000
    const t0 = performance.now()
    const rs = await Promise.all(Array.from({ length: n }, (_, i) => s.accept(`s${i % 50}`, { amount: 1, id: '00aa', secret: `g-${i}`, C: '02' + '11'.repeat(32) }, 'http://m')))
    const ms = performance.now() - t0
    expect(rs.every((r) => r.ok)).toBe(true)
    expect(s.stats().fsyncs).toBeLessThan(n / 10)
    expect(n / (ms / 1000)).toBeGreaterThan(1000)
    await s.close()
  })
})
