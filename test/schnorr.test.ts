// BIP-340 on native libsecp256k1 (src/crypto/schnorr.ts) checked against
// @noble/curves' schnorr, the Nostr 'native' backend against nostr-tools, and
// the wire identity proof against the noble-based format it replaced.
import { describe, expect, it } from 'vitest'
import { randomBytes, createHash } from 'node:crypto'
import secp from 'secp256k1'
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js'
import { finalizeEvent, generateSecretKey, getPublicKey, verifyEvent } from 'nostr-tools/pure'
import { SchnorrSigner, schnorrInternals, verifySchnorr } from '../src/crypto/schnorr.js'
import { nativeSecp256k1 } from '../src/crypto/secp256k1.js'
import { loadNostrCrypto, loadWasmNostrCrypto, nativeNostrCrypto, type Event } from '../src/nostr/events.js'
import { signHandshake, verifyHandshake } from '../src/wire/identity-proof.js'

const P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n

const be32 = (x: bigint): Buffer => Buffer.from(x.toString(16).padStart(64, '0'), 'hex')
const toBig = (b: Uint8Array): bigint => BigInt('0x' + Buffer.from(b).toString('hex'))

/** noble throws on some malformed inputs; for the comparison that is a refusal. */
function nobleVerify(sig: Uint8Array, msg: Uint8Array, pub: Uint8Array): boolean {
  try {
    return schnorr.verify(sig, msg, pub)
  } catch {
    return false
  }
}

function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const c = Uint8Array.from(b)
  c[bit >> 3] = (c[bit >> 3] as number) ^ (1 << (bit & 7))
  return c
}

const randInt = (n: number): number => randomBytes(4).readUInt32LE(0) % n

/** An x for which 02‖x is not a curve point (about half of all x). */
function xOffCurve(): Buffer {
  for (;;) {
    const x = randomBytes(32)
    if (toBig(x) < P && !secp.publicKeyVerify(Buffer.concat([Buffer.from([2]), x]))) return x
  }
}

const onCurve = (x: bigint): boolean => secp.publicKeyVerify(Buffer.concat([Buffer.from([2]), be32(x)]))

/** A curve point x in (n, p): the case where ECDSA recovery needs id bit 2. */
function xAboveOrder(): bigint {
  for (let x = N + 1n; x < P; x++) if (onCurve(x)) return x
  throw new Error('no curve point with x in (n, p)')
}

/** s·G − e·lift_x(x), compressed hex, by @noble's point arithmetic (independent of libsecp256k1). */
function nobleSGminusEP(s: bigint, e: bigint, x: bigint): string {
  const Pt = secp256k1.Point
  const sG = s === 0n ? Pt.ZERO : Pt.BASE.multiply(s)
  const eP = e === 0n ? Pt.ZERO : Pt.fromHex('02' + x.toString(16).padStart(64, '0')).multiply(e)
  return sG.subtract(eP).toHex(true)
}

describe('BIP-340 on native libsecp256k1', () => {
  it('runs on the native binding here (the speed-up this module exists for)', () => {
    expect(nativeSecp256k1).toBe(true)
  })

  it('agrees with @noble on 300 random keys and messages, both ways, and both refuse any flipped bit', () => {
    for (let i = 0; i < 300; i++) {
      const sk = schnorr.utils.randomSecretKey()
      const pub = schnorr.getPublicKey(sk)
      const msg = randomBytes(32)
      const signer = new SchnorrSigner(sk)
      expect(Buffer.from(signer.xOnly).equals(Buffer.from(pub))).toBe(true)

      const nobleSig = schnorr.sign(msg, sk)
      expect(verifySchnorr(nobleSig, msg, pub)).toBe(true)
      const nativeSig = signer.sign(msg)
      expect(nobleVerify(nativeSig, msg, pub)).toBe(true)
      expect(verifySchnorr(nativeSig, msg, pub)).toBe(true)
      // Same auxiliary randomness → the same deterministic signature.
      const aux = randomBytes(32)
      expect(Buffer.from(signer.sign(msg, aux)).equals(Buffer.from(schnorr.sign(msg, sk, aux)))).toBe(true)

      const badSig = flipBit(nativeSig, randInt(512))
      const badMsg = flipBit(msg, randInt(256))
      const badPub = flipBit(pub, randInt(256))
      for (const [s, m, p] of [[badSig, msg, pub], [nativeSig, badMsg, pub], [nativeSig, msg, badPub]] as const) {
        expect(verifySchnorr(s, m, p)).toBe(false)
        expect(nobleVerify(s, m, p)).toBe(false)
      }
    }
  })

  it('refuses out-of-range r and s, off-curve keys and zero signatures, as noble does', () => {
    const sk = schnorr.utils.randomSecretKey()
    const pub = schnorr.getPublicKey(sk)
    const msg = randomBytes(32)
    const sig = Buffer.from(new SchnorrSigner(sk).sign(msg))
    const r = sig.subarray(0, 32)
    const s = sig.subarray(32)
    const cases: Array<[string, Uint8Array, Uint8Array]> = [
      ['s = n', Buffer.concat([r, be32(N)]), pub],
      ['s = n + s', Buffer.concat([r, be32(toBig(s) + N < 2n ** 256n ? toBig(s) + N : N + 1n)]), pub],
      ['s > n (all ones)', Buffer.concat([r, Buffer.alloc(32, 0xff)]), pub],
      ['r = p', Buffer.concat([be32(P), s]), pub],
      ['r = p + 1', Buffer.concat([be32(P + 1n), s]), pub],
      ['r ≥ p (all ones)', Buffer.concat([Buffer.alloc(32, 0xff), s]), pub],
      ['s = 0', Buffer.concat([r, Buffer.alloc(32)]), pub],
      ['r = 0', Buffer.concat([Buffer.alloc(32), s]), pub],
      ['all-zero sig', Buffer.alloc(64), pub],
      ['pubkey x off the curve', sig, xOffCurve()],
      ['pubkey x = p', sig, be32(P)],
      ['pubkey x ≥ p (all ones)', sig, Buffer.alloc(32, 0xff)],
      ['pubkey zero', sig, Buffer.alloc(32)],
    ]
    for (const [what, sg, pk] of cases) {
      expect([what, verifySchnorr(sg, msg, pk)]).toEqual([what, false])
      expect([what, nobleVerify(sg, msg, pk)]).toEqual([what, false])
    }
    expect(verifySchnorr(sig, msg, pub)).toBe(true)
  })

  it('refuses a signature whose R has the right x but odd y', () => {
    // With the secret key known, s' = 2·e·d − s gives s'·G − e·P = −R: same x, odd y.
    const tagged = (tag: string, ...parts: Uint8Array[]): bigint => {
      const t = createHash('sha256').update(tag).digest()
      const h = createHash('sha256').update(t).update(t)
      for (const p of parts) h.update(p)
      return toBig(h.digest())
    }
    for (let i = 0; i < 5; i++) {
      const sk = schnorr.utils.randomSecretKey()
      const pub = schnorr.getPublicKey(sk)
      const d0 = toBig(sk)
      const d = secp.publicKeyCreate(sk, true)[0] === 0x02 ? d0 : N - d0
      const msg = randomBytes(32)
      const sig = new SchnorrSigner(sk).sign(msg)
      const r = sig.subarray(0, 32)
      const e = tagged('BIP0340/challenge', r, pub, msg) % N
      const s2 = (((2n * e * d - toBig(sig.subarray(32))) % N) + N) % N
      const forged = Buffer.concat([r, be32(s2)])
      expect(verifySchnorr(forged, msg, pub)).toBe(false)
      expect(nobleVerify(forged, msg, pub)).toBe(false)
      // ...and the point it yields really is −R (x = r, odd y), so the parity check is what refuses it.
      expect(nobleSGminusEP(s2, e, toBig(pub))).toBe('03' + r.toString('hex'))
    }
  })

  it('returns false, never throws, on malformed input', () => {
    const sk = schnorr.utils.randomSecretKey()
    const pub = schnorr.getPublicKey(sk)
    const msg = randomBytes(32)
    const sig = new SchnorrSigner(sk).sign(msg)
    const odd: Array<[unknown, unknown, unknown]> = [
      [sig.subarray(0, 63), msg, pub],
      [Buffer.concat([sig, Buffer.alloc(1)]), msg, pub],
      [sig, msg.subarray(0, 31), pub],
      [sig, msg, Buffer.concat([Buffer.from([2]), pub])],
      [null, msg, pub],
      [sig.toString('hex'), msg, pub],
      [sig, undefined, pub],
      [sig, msg, [...pub]],
    ]
    for (const [a, b, c] of odd) expect(verifySchnorr(a as Uint8Array, b as Uint8Array, c as Uint8Array)).toBe(false)
  })

  it('computes s·G − e·P the same way through recovery and through separate multiplies', () => {
    const rand = (): bigint => toBig(randomBytes(32)) % N
    const xs = [toBig(schnorr.getPublicKey(schnorr.utils.randomSecretKey())), xAboveOrder()]
    for (let i = 0; i < 40; i++) {
      const x = xs[i % 2] as bigint
      const [s, e] = [rand(), rand()]
      const fast = schnorrInternals.combineByRecovery(s, e, x)
      const direct = schnorrInternals.combineDirect(s, e, x)
      expect(fast).toBeInstanceOf(Uint8Array)
      expect(Buffer.from(fast as Uint8Array).toString('hex')).toBe(Buffer.from(direct as Uint8Array).toString('hex'))
      if (i < 6) expect(Buffer.from(fast as Uint8Array).toString('hex')).toBe(nobleSGminusEP(s, e, x))
    }
    // x = n is a curve point, and x mod n = 0 is a recovery "r" it refuses:
    // the separate multiplies take over.
    expect(onCurve(N)).toBe(true)
    expect(schnorrInternals.combineByRecovery(5n, 7n, N)).toBeNull()
    expect(Buffer.from(schnorrInternals.combineDirect(5n, 7n, N) as Uint8Array).toString('hex')).toBe(nobleSGminusEP(5n, 7n, N))
    // Off-curve x: both say invalid.
    const off = toBig(xOffCurve())
    expect(schnorrInternals.combineByRecovery(5n, 7n, off)).toBeUndefined()
    expect(schnorrInternals.combineDirect(5n, 7n, off)).toBeUndefined()
  })

  it('handles the e = 0, s = 0 and point-at-infinity edge cases', () => {
    const d = toBig(randomBytes(32)) % N || 1n
    const Pfull = secp.publicKeyCreate(be32(d), true)
    const x = toBig(Pfull.subarray(1))
    // lift_x takes the even-y point; its discrete log is d or n − d.
    const dEven = Pfull[0] === 0x02 ? d : N - d
    const s = toBig(randomBytes(32)) % N || 1n
    const e = toBig(randomBytes(32)) % N || 1n
    const hex = (u: Uint8Array | null | undefined): string | undefined => (u ? Buffer.from(u).toString('hex') : undefined)

    // e = 0: R = s·G (recovery cannot express it, so it declines).
    expect(schnorrInternals.combineByRecovery(s, 0n, x)).toBeNull()
    expect(hex(schnorrInternals.combineDirect(s, 0n, x))).toBe(nobleSGminusEP(s, 0n, x))
    // s = 0: R = −e·P, although publicKeyCreate refuses a zero scalar.
    const minusEP = nobleSGminusEP(0n, e, x)
    expect(hex(schnorrInternals.combineDirect(0n, e, x))).toBe(minusEP)
    expect(hex(schnorrInternals.combineByRecovery(0n, e, x))).toBe(minusEP)
    // s = e = 0 and s·G = e·P: the point at infinity, which is never a valid R.
    expect(schnorrInternals.combineDirect(0n, 0n, x)).toBeUndefined()
    const sInf = (e * dEven) % N
    expect(schnorrInternals.combineDirect(sInf, e, x)).toBeUndefined()
    expect(schnorrInternals.combineByRecovery(sInf, e, x)).toBeUndefined()
  })
})

describe("Nostr events on the 'native' backend", () => {
  const sk = generateSecretKey()
  const template = { kind: 5050, created_at: 1_700_000_000, tags: [['i', 'what is "2+2"?', 'text'], ['param', 'model', 'x']], content: 'tab\there, quote " backslash \\ newline\n, control \u0001\u001f, U+2028 \u2028, emoji 🧮, é' }

  it('is what loadNostrCrypto picks when the binding loads', async () => {
    expect((await loadNostrCrypto()).backend).toBe('native')
    expect(nativeNostrCrypto()?.backend).toBe('native')
  })

  it('verifies events from nostr-tools and nostr-wasm, and refuses tampered id, content, sig or tags', async () => {
    const native = nativeNostrCrypto()!
    const wasm = await loadWasmNostrCrypto()
    const fromTools = finalizeEvent({ ...template, tags: template.tags.map((t) => [...t]) }, sk)
    const ev: Event = { id: fromTools.id, pubkey: fromTools.pubkey, created_at: fromTools.created_at, kind: fromTools.kind, tags: fromTools.tags, content: fromTools.content, sig: fromTools.sig }
    const fromWasm = wasm.sign(template, sk)
    expect(native.verify(ev)).toBe(true)
    expect(native.verify(fromWasm)).toBe(true)
    const flipHex = (h: string, at: number): string => h.slice(0, at) + (h[at] === '0' ? '1' : '0') + h.slice(at + 1)
    const tampered: Array<[string, Event]> = [
      ['id', { ...ev, id: flipHex(ev.id, 10) }],
      ['content', { ...ev, content: ev.content + ' ' }],
      ['sig (r)', { ...ev, sig: flipHex(ev.sig, 3) }],
      ['sig (s)', { ...ev, sig: flipHex(ev.sig, 100) }],
      ['tag value', { ...ev, tags: [['i', 'what is "2+3"?', 'text'], ['param', 'model', 'x']] }],
      ['tag dropped', { ...ev, tags: [ev.tags[0]!] }],
      ['kind', { ...ev, kind: 5051 }],
      ['created_at', { ...ev, created_at: ev.created_at + 1 }],
      ['other pubkey', { ...ev, pubkey: getPublicKey(generateSecretKey()) }],
      ['id and sig of another event', { ...ev, id: fromWasm.id === ev.id ? flipHex(ev.id, 0) : wasm.sign({ ...template, content: 'other' }, sk).id }],
    ]
    for (const [what, bad] of tampered) expect([what, native.verify(bad)]).toEqual([what, false])
  })

  it('signs events that nostr-tools (pure JS) and nostr-wasm accept', async () => {
    const native = nativeNostrCrypto()!
    const wasm = await loadWasmNostrCrypto()
    for (let i = 0; i < 20; i++) {
      const key = generateSecretKey()
      const ev = native.sign({ ...template, created_at: template.created_at + i, content: template.content + i }, key)
      expect(ev.pubkey).toBe(getPublicKey(key))
      expect(verifyEvent({ ...ev })).toBe(true)
      expect(wasm.verify(ev)).toBe(true)
      expect(native.verify(ev)).toBe(true)
    }
    // A key reused after its array was overwritten signs with the new key (the signer cache checks bytes).
    const key = generateSecretKey()
    const first = native.sign(template, key)
    key.set(generateSecretKey())
    const second = native.sign(template, key)
    expect(second.pubkey).toBe(getPublicKey(key))
    expect(second.pubkey).not.toBe(first.pubkey)
  })

  it('refuses what nostr-tools refuses to serialize, without throwing', () => {
    const native = nativeNostrCrypto()!
    const ev = native.sign(template, sk)
    const odd: unknown[] = [
      { ...ev, pubkey: ev.pubkey.toUpperCase() },
      { ...ev, tags: [['n', 5]] },
      { ...ev, tags: ['i'] },
      { ...ev, kind: '5050' },
      { ...ev, content: 5 },
      { ...ev, sig: ev.sig.slice(0, 126) + 'zz' },
      { ...ev, sig: undefined },
      { ...ev, id: undefined },
      { ...ev, tags: [[{ toJSON: () => 'x' }]] },
      Object.defineProperty({ ...ev }, 'content', { get: () => { throw new Error('hostile getter') }, enumerable: true }),
      null,
    ]
    for (const o of odd) expect(native.verify(o as Event)).toBe(false)
    expect(() => native.sign({ ...template, tags: [['n', 5 as unknown as string]] }, sk)).toThrow(/serialize/)
  })
})

describe('wire identity proof on native BIP-340', () => {
  // The format before this module: noble's schnorr over sha256(tag ‖ handshake hash).
  const tag = Buffer.from('dvm-agent/identity-proof/v1', 'utf8')
  const msgOf = (hh: Uint8Array): Buffer => createHash('sha256').update(tag).update(hh).digest()

  it('keeps the wire format: old proofs verify, new proofs verify the old way', () => {
    for (let i = 0; i < 20; i++) {
      const sk = generateSecretKey()
      const pub = getPublicKey(sk)
      const hh = randomBytes(32)
      const old = Buffer.from(schnorr.sign(msgOf(hh), sk)).toString('hex')
      expect(verifyHandshake(hh, pub, old)).toBe(true)
      const fresh = signHandshake(hh, sk)
      expect(fresh).toMatch(/^[0-9a-f]{128}$/)
      expect(schnorr.verify(Buffer.from(fresh, 'hex'), msgOf(hh), Buffer.from(pub, 'hex'))).toBe(true)
      expect(verifyHandshake(hh, pub, fresh)).toBe(true)
      expect(verifyHandshake(randomBytes(32), pub, fresh)).toBe(false)
      expect(verifyHandshake(hh, getPublicKey(generateSecretKey()), fresh)).toBe(false)
    }
  })

  it('refuses malformed proofs without throwing', () => {
    const sk = generateSecretKey()
    const hh = randomBytes(32)
    const sig = signHandshake(hh, sk)
    const pub = getPublicKey(sk)
    expect(verifyHandshake(hh, pub, sig.slice(2))).toBe(false)
    expect(verifyHandshake(hh, pub, 'zz' + sig.slice(2))).toBe(false)
    expect(verifyHandshake(hh, pub.slice(2), sig)).toBe(false)
    expect(verifyHandshake(hh, 'ff'.repeat(32), sig)).toBe(false)
    expect(verifyHandshake(hh, undefined as unknown as string, sig)).toBe(false)
  })
})
