// Offline pieces of the wallet: NUT-00 blinding, NUT-11 lock secrets and
// witnesses, token encoding, and the proof store's file locking.
import { afterEach, describe, expect, it } from 'vitest'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import secp from 'secp256k1'
import { schnorr } from '@noble/curves/secp256k1.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js'
import { getEncodedToken } from '@cashu/cashu-ts'
import { blindSecret, randomOutput, unblind } from '../src/payments/lock.js'
import { hashToCurve } from '../src/payments/hash-to-curve.js'
import { SchnorrSigner, claimsP2PKLock, makeP2PKSecret, normalizePubkey, parseP2PKSecret, pubkeyOf, sameXOnly } from '../src/payments/p2pk.js'
import { decodeToken, encodeToken, normalizeMintUrl, sameMint } from '../src/payments/token.js'
import { normalizeMintUrl as normalizeKeyCacheUrl } from '../src/payments/mint-keys.js'
import { isPowerOfTwo, splitAmount } from '../src/payments/amounts.js'
import { ProofStore, currentOwner, ownerAlive, storePath, totals } from '../src/payments/proof-store.js'

let cleanups: Array<() => void> = []
afterEach(() => {
  for (const fn of cleanups.reverse()) fn()
  cleanups = []
})

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dvm-lock-test-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const privkey = () => bytesToHex(randomBytes(32))

describe('NUT-00 blinding', () => {
  it('hash_to_curve matches the NUT-00 test vectors', () => {
    const vectors: Array<[string, string]> = [
      ['0000000000000000000000000000000000000000000000000000000000000000', '024cce997d3b518f739663b757deaec95bcd9473c30a14ac2fd04023a739d1a725'],
      ['0000000000000000000000000000000000000000000000000000000000000001', '022e7158e11c9506f1aa4248bf531298daa7febd6194f003edcd9b93ade6253acf'],
      ['0000000000000000000000000000000000000000000000000000000000000002', '026cdbe15362df59cd1dd3c9c11de8aedac2106eca69236ecd9fbe117af897be4f'],
    ]
    for (const [msg, point] of vectors) expect(bytesToHex(hashToCurve(hexToBytes(msg)))).toBe(point)
  })

  it('unblinding a signature on B_ gives k·Y, the signature on the secret', () => {
    const k = randomBytes(32)
    const K = bytesToHex(secp.publicKeyCreate(k, true))
    const out = randomOutput(1, '00aabbccddeeff00')
    const C_ = bytesToHex(secp.publicKeyTweakMul(hexToBytes(out.B_), k, true))
    const proof = unblind(out, { id: out.id, amount: 1, C_, dleq: { e: 'ee', s: 'ff' } }, { id: out.id, unit: 'sat', keys: { 1: K } })
    const expected = bytesToHex(secp.publicKeyTweakMul(hashToCurve(utf8ToBytes(out.secret)), k, true))
    expect(proof.C).toBe(expected)
    expect(proof.secret).toBe(out.secret)
    expect(proof.dleq).toEqual({ e: 'ee', s: 'ff', r: out.r })
  })

  it('refuses to unblind an amount the keyset has no key for', () => {
    const out = randomOutput(2, '00aabbccddeeff00')
    expect(() => unblind(out, { id: out.id, amount: 2, C_: out.B_ }, { id: out.id, unit: 'sat', keys: { 1: out.B_ } })).toThrow(/no key/)
  })
})

describe('NUT-11 lock secrets', () => {
  const payee = pubkeyOf(privkey())
  const refund = pubkeyOf(privkey())

  it('writes every tag value as a string, SIG_INPUTS explicit, readable by the provider-side parser', () => {
    const secret = makeP2PKSecret({ pubkey: payee, locktime: 1_900_000_000, refundKeys: [refund] })
    const [kind, body] = JSON.parse(secret) as [string, { data: string; nonce: string; tags: unknown[][] }]
    expect(kind).toBe('P2PK')
    expect(body.data).toBe(payee)
    expect(body.nonce).toMatch(/^[0-9a-f]{64}$/)
    for (const tag of body.tags) for (const v of tag) expect(typeof v).toBe('string')
    expect(body.tags).toContainEqual(['sigflag', 'SIG_INPUTS'])
    expect(body.tags).toContainEqual(['locktime', '1900000000'])
    expect(body.tags).toContainEqual(['refund', refund])
    const parsed = parseP2PKSecret(secret)
    expect(parsed.ok).toBe(true)
    if (parsed.ok) {
      expect(parsed.secret).toMatchObject({ pubkey: payee, locktime: 1_900_000_000, refundKeys: [refund], sigflag: 'SIG_INPUTS' })
    }
    expect(claimsP2PKLock(secret)).toBe(true)
    expect(parseP2PKSecret(randomOutput(1, '00aabbccddeeff00').secret)).toMatchObject({ ok: false, code: 'not-locked' })
    expect(claimsP2PKLock(randomOutput(1, '00aabbccddeeff00').secret)).toBe(false)
  })

  it('keeps refusing to receive a P2PK secret a mint would read as unlocked (numeric locktime, as cashu-ts writes it)', () => {
    const numeric = JSON.stringify(['P2PK', { nonce: 'ab', data: payee, tags: [['locktime', 1_900_000_000], ['refund', refund]] }])
    expect(parseP2PKSecret(numeric)).toMatchObject({ ok: false, code: 'not-locked' })
    expect(claimsP2PKLock(numeric)).toBe(true)
  })

  it('rejects bad keys and locktimes with a clear message', () => {
    expect(() => makeP2PKSecret({ pubkey: 'zz', locktime: 1, refundKeys: [refund] })).toThrow(/payee key "zz" is not a secp256k1 public key/)
    expect(() => makeP2PKSecret({ pubkey: payee, locktime: 1.5, refundKeys: [refund] })).toThrow(/locktime/)
    expect(() => normalizePubkey('04' + 'ab'.repeat(32))).toThrow(/not a secp256k1 public key/)
    expect(() => makeP2PKSecret({ pubkey: '02' + '11'.repeat(32), locktime: 1, refundKeys: [refund] })).toThrow(/payee key .* is not a point on secp256k1/)
    // an x-only key (as Nostr prints it) is taken with an even-y prefix
    expect(normalizePubkey(payee.slice(2).toUpperCase())).toBe('02' + payee.slice(2))
    expect(sameXOnly(payee, '03' + payee.slice(2))).toBe(true)
  })

  it('witness is a BIP-340 signature over sha256(secret) by the key, as nutshell checks it', () => {
    const sk = privkey()
    const secret = makeP2PKSecret({ pubkey: pubkeyOf(sk), locktime: 1_900_000_000, refundKeys: [refund] })
    const { signatures } = JSON.parse(new SchnorrSigner(sk).witness(secret)) as { signatures: string[] }
    expect(signatures).toHaveLength(1)
    const xonly = hexToBytes(pubkeyOf(sk).slice(2))
    expect(schnorr.verify(hexToBytes(signatures[0]!), sha256(utf8ToBytes(secret)), xonly)).toBe(true)
    expect(schnorr.verify(hexToBytes(signatures[0]!), sha256(utf8ToBytes(secret + ' ')), xonly)).toBe(false)
  })

  it('blinds lock secrets like any other secret', () => {
    const secret = makeP2PKSecret({ pubkey: payee, locktime: 1_900_000_000, refundKeys: [refund] })
    const a = blindSecret(secret, 1, '00aabbccddeeff00')
    const b = blindSecret(secret, 1, '00aabbccddeeff00')
    expect(a.B_).not.toBe(b.B_) // fresh blinding factor each time
    expect(a.secret).toBe(secret)
  })
})

describe('amounts', () => {
  it('splits into the keyset\'s denominations, largest first, in one place for wallet and redeemer', () => {
    const pow2 = Array.from({ length: 64 }, (_, i) => String(2 ** i))
    expect(splitAmount(13, pow2)).toEqual([8, 4, 1])
    expect(splitAmount(0, pow2)).toEqual([])
    expect(splitAmount(2 ** 50 + 3, pow2)).toEqual([2 ** 50, 2, 1])
    expect(splitAmount(12, ['1', '4'])).toEqual([4, 4, 4]) // a keyset without 8 still works
    expect(() => splitAmount(3, ['2', '4'])).toThrow(/cannot make 3 sats/)
    expect(() => splitAmount(5000, ['1'])).toThrow(/at most 1000 outputs/)
    expect(() => splitAmount(1.5, pow2)).toThrow(/whole number/)
    expect([1, 2, 1024, 2 ** 50].every(isPowerOfTwo)).toBe(true)
    expect([0, 3, 6, -2, 0.5, 2 ** 50 + 2].some(isPowerOfTwo)).toBe(false)
  })
})

describe('tokens', () => {
  const proof = { id: '00aabbccddeeff00', amount: 2, secret: 'ab'.repeat(32), C: pubkeyOf(privkey()), dleq: { e: '11'.repeat(32), s: '22'.repeat(32), r: '33'.repeat(32) } }

  it('normalizes mint URLs so spelling does not split wallets', () => {
    expect(normalizeMintUrl('HTTP://Mint.Example:3338/')).toBe('http://mint.example:3338')
    expect(normalizeMintUrl('https://mint.example/cashu/api/')).toBe('https://mint.example/cashu/api')
    expect(sameMint('http://127.0.0.1:3338/', 'http://127.0.0.1:3338')).toBe(true)
    expect(() => normalizeMintUrl('ftp://x')).toThrow(/http/)
    expect(() => normalizeMintUrl('not a url')).toThrow(/not a mint URL/)
  })

  it('one normalisation for wallets and the key cache: the stricter one, refusing queries and fragments', () => {
    for (const norm of [normalizeMintUrl, normalizeKeyCacheUrl]) {
      expect(norm(' HTTP://Mint.Example:3338/ ')).toBe('http://mint.example:3338')
      expect(() => norm('https://mint.example/?x=1')).toThrow(/must not carry a query or fragment/)
      expect(() => norm('https://mint.example/#a')).toThrow(/must not carry a query or fragment/)
    }
    // stored data was keyed by the old form: the same URLs still map to the same wallet file
    expect(storePath('/d', 'HTTP://127.0.0.1:3338/')).toBe(storePath('/d', 'http://127.0.0.1:3338'))
  })

  it('refuses tokens whose proof amounts or counts no honest token has, before anything is blinded', () => {
    const v3 = (proofs: Array<Record<string, unknown>>) =>
      'cashuA' + Buffer.from(JSON.stringify({ token: [{ mint: 'http://127.0.0.1:3338', proofs }], unit: 'sat' })).toString('base64url')
    const p = (amount: number) => ({ ...proof, amount, secret: bytesToHex(randomBytes(32)) })
    expect(() => decodeToken(v3([p(6)]))).toThrow(/power of two/)
    expect(() => decodeToken(v3([p(2 ** 51)]))).toThrow(/more than .*bitcoin/)
    expect(() => decodeToken(v3(Array.from({ length: 20 }, () => p(2 ** 47))))).toThrow(/more than .*bitcoin/)
    expect(() => decodeToken(v3(Array.from({ length: 1001 }, () => p(1))))).toThrow(/at most 1000 proofs/)
    expect(() => decodeToken('cashuA' + 'A'.repeat(3 << 20))).toThrow(/too long/)
    expect(decodeToken(v3(Array.from({ length: 1000 }, () => p(1)))).proofs).toHaveLength(1000)
    expect(decodeToken(v3([p(2 ** 50)])).proofs[0]!.amount).toBe(2 ** 50)
  })

  it('encodes V4 with DLEQ and decodes V4 and V3', () => {
    const v4 = encodeToken('http://127.0.0.1:3338', [proof], { memo: 'hi' })
    expect(v4.startsWith('cashuB')).toBe(true)
    const d4 = decodeToken(v4)
    expect(d4).toMatchObject({ mint: 'http://127.0.0.1:3338', unit: 'sat', memo: 'hi', version: 4 })
    expect(d4.proofs[0]).toMatchObject({ amount: 2, secret: proof.secret, C: proof.C, dleq: proof.dleq })
    const v3 = getEncodedToken({ mint: 'http://127.0.0.1:3338', proofs: [proof], unit: 'sat' }, { version: 3 })
    expect(v3.startsWith('cashuA')).toBe(true)
    expect(decodeToken('cashu:' + v3)).toMatchObject({ mint: 'http://127.0.0.1:3338', version: 3 })
  })

  it('says clearly what is wrong with a bad token', () => {
    expect(() => decodeToken('hello')).toThrow(/not a Cashu token/)
    expect(() => decodeToken('cashuBnotbase64!!')).toThrow(/could not be decoded/)
  })
})

describe('proof store', () => {
  const mint = 'http://127.0.0.1:3338'
  const p = (n: number) => ({ id: '00aabbccddeeff00', amount: 1, secret: `s${n}`, C: '02' + '11'.repeat(32) })

  it('two stores on one file (two wallets, one process) lose no update', async () => {
    const dir = tempDir()
    const [a, b] = await Promise.all([ProofStore.open(dir, mint), ProofStore.open(dir, mint)])
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        (i % 2 ? a : b).update((d) => {
          d.proofs.push({ proof: p(i), state: 'unspent', addedAt: Date.now() })
        }),
      ),
    )
    const reread = await ProofStore.open(dir, mint)
    expect(totals(reread.data).unspent).toBe(40)
    expect(new Set(reread.data.proofs.map((x) => x.proof.secret)).size).toBe(40)
    // the file on disk is the store format, private to the user
    const file = JSON.parse(readFileSync(storePath(dir, mint), 'utf8')) as { format: string; mintUrl: string }
    expect(file).toMatchObject({ format: 'dvm-wallet', version: 1, mintUrl: mint })
  })

  it('a failing change writes nothing', async () => {
    const store = await ProofStore.open(tempDir(), mint)
    await store.update((d) => void d.proofs.push({ proof: p(1), state: 'unspent', addedAt: 0 }))
    await expect(store.update((d) => {
      d.proofs.push({ proof: p(2), state: 'unspent', addedAt: 0 })
      throw new Error('boom')
    })).rejects.toThrow('boom')
    expect(totals(await store.refresh()).unspent).toBe(1)
  })

  it('breaks the lock of a dead process, waits for a live one with a clear message', async () => {
    const dir = tempDir()
    const store = await ProofStore.open(dir, mint, { lockTimeoutMs: 300 })
    const lockPath = storePath(dir, mint) + '.lock'
    mkdirSync(join(dir, 'wallet'), { recursive: true })
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
    writeFileSync(lockPath, JSON.stringify({ pid: Number(dead.stdout), token: 'gone' }))
    await store.update((d) => void d.proofs.push({ proof: p(1), state: 'unspent', addedAt: 0 }))
    expect(totals(store.data).unspent).toBe(1)
    // pid 1 always runs: its lock is respected until the timeout
    writeFileSync(lockPath, JSON.stringify({ pid: 1, token: 'init' }))
    await expect(store.update(() => undefined)).rejects.toThrow(/is busy: process 1 holds its lock/)
  })

  it('drops old spent records (the file must not grow with every tick) but remembers received tokens longer', async () => {
    const store = await ProofStore.open(tempDir(), mint)
    const day = 24 * 3600 * 1000
    await store.update((d) => {
      d.proofs.push({ proof: p(1), state: 'spent', spentBy: 'paid', spentAt: Date.now() - 2 * day, addedAt: 0 })
      d.proofs.push({ proof: p(2), state: 'spent', spentBy: 'received', spentAt: Date.now() - 2 * day, addedAt: 0 })
      d.proofs.push({ proof: p(3), state: 'spent', spentBy: 'paid', spentAt: Date.now(), addedAt: 0 })
      d.proofs.push({ proof: p(4), state: 'unspent', addedAt: 0 })
    })
    expect(store.data.proofs.map((x) => x.proof.secret).sort()).toEqual(['s2', 's3', 's4'])
  })

  it('refuses a damaged file and leaves it untouched', async () => {
    const dir = tempDir()
    const path = storePath(dir, mint)
    mkdirSync(join(dir, 'wallet'), { recursive: true })
    writeFileSync(path, '{"format":"dvm-wallet", truncated')
    await expect(ProofStore.open(dir, mint)).rejects.toThrow(/is damaged .* left untouched/)
    expect(readFileSync(path, 'utf8')).toBe('{"format":"dvm-wallet", truncated')
  })

  it('tells a live owner from a dead one', () => {
    expect(ownerAlive(currentOwner('x'))).toBe(true)
    expect(ownerAlive({ pid: process.pid, token: 'another-process-with-our-pid' })).toBe(false)
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
    expect(ownerAlive({ pid: Number(dead.stdout), token: 't' })).toBe(false)
  })
})
