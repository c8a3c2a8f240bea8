import { describe, expect, it } from 'vitest'
import { generateSecretKey, getPublicKey } from 'nostr-tools/pure'
import { loadNostrCrypto, loadWasmNostrCrypto, eventShapeProblem, pureNostrCrypto, type Event } from '../src/nostr/events.js'
import { decryptFrom, detectScheme, encryptFor, MAX_PLAINTEXT_BYTES } from '../src/nostr/encryption.js'
import {
  buildCancellation,
  buildFeedback,
  buildJobRequest,
  buildResult,
  cancelledRequestIds,
  isJobRequestKind,
  parseFeedback,
  parseJobRequest,
  parsePrivateTags,
  parseResult,
  resultKindFor,
} from '../src/nostr/nip90.js'
import { bolt11AmountMsats } from '../src/customer/bolt11.js'

const customerKey = generateSecretKey()
const providerKey = generateSecretKey()
const provider = getPublicKey(providerKey)

async function sign(t: Parameters<ReturnType<typeof pureNostrCrypto>['sign']>[0], sk = customerKey): Promise<Event> {
  return (await loadNostrCrypto()).sign(t, sk)
}

describe('NIP-90 request', () => {
  it('round-trips every tag a request can carry', async () => {
    const ev = await sign(
      buildJobRequest(
        {
          kind: 5050,
          inputs: [
            { type: 'text', value: 'hello' },
            { type: 'url', value: 'https://example.com/a.txt' },
            { type: 'event', value: 'a'.repeat(64), relay: 'wss://relay.example' },
            { type: 'job', value: 'b'.repeat(64), relay: 'wss://relay.example', marker: 'source' },
          ],
          params: { model: 'echo', max_tokens: '512' },
          output: 'text/plain',
          bidMsats: 21_000,
          relays: ['wss://a.example', 'wss://b.example'],
          providers: [provider],
          expiration: 2_000_000_000,
        },
        1_700_000_000,
      ),
    )
    const r = parseJobRequest(ev)
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.value).toMatchObject({
      kind: 5050,
      customer: getPublicKey(customerKey),
      params: { model: 'echo', max_tokens: '512' },
      output: 'text/plain',
      bidMsats: 21_000,
      relays: ['wss://a.example', 'wss://b.example'],
      providers: [provider],
      expiration: 2_000_000_000,
    })
    expect(r.value.inputs).toEqual([
      { type: 'text', value: 'hello' },
      { type: 'url', value: 'https://example.com/a.txt' },
      { type: 'event', value: 'a'.repeat(64), relay: 'wss://relay.example' },
      { type: 'job', value: 'b'.repeat(64), relay: 'wss://relay.example', marker: 'source' },
    ])
    expect(r.value.encryption).toBeUndefined()
  })

  it('encrypts i/param/output into the content and parses them back', async () => {
    const enc = (text: string): string => encryptFor(customerKey, provider, text)
    const ev = await sign(buildJobRequest({ kind: 5050, inputs: [{ type: 'text', value: 'private' }], params: { k: 'v' }, providers: [provider], bidMsats: 5 }, 1, enc))
    expect(ev.tags).toEqual([['p', provider], ['bid', '5'], ['encrypted']])
    expect(ev.content).not.toContain('private')
    const { plaintext, scheme } = decryptFrom(providerKey, ev.pubkey, ev.content)
    expect(scheme).toBe('nip44')
    const priv = parsePrivateTags(plaintext)
    expect(priv.ok).toBe(true)
    const r = parseJobRequest(ev, priv.ok ? priv.value : [])
    expect(r.ok && r.value.inputs).toEqual([{ type: 'text', value: 'private' }])
    expect(r.ok && r.value.params).toEqual({ k: 'v' })
    expect(r.ok && r.value.encryption).toBe('nip44')
    expect(() => buildJobRequest({ kind: 5050, inputs: [] }, 1, enc)).toThrow(/exactly one provider/)
  })

  it('rejects malformed and over-limit requests with a reason', async () => {
    const bad = async (tags: string[][], content = ''): Promise<string> => {
      const r = parseJobRequest(await sign({ kind: 5050, created_at: 1, content, tags }))
      return r.ok ? 'ok' : r.reason
    }
    expect(await bad([['i', 'x', 'audio']])).toMatch(/input type "audio"/)
    expect(await bad([['i', 'ftp://x', 'url']])).toMatch(/http\(s\) URL/)
    expect(await bad([['i']])).toMatch(/no value/)
    expect(await bad([['param', 'k']])).toMatch(/name and a value/)
    expect(await bad([['param', '__proto__', 'x']])).toMatch(/not an acceptable param name/)
    expect(await bad([['param', 'k', 'a'], ['param', 'k', 'b']])).toMatch(/given twice/)
    expect(await bad([['bid', '-1']])).toMatch(/whole number of millisats/)
    expect(await bad([['bid', '99999999999999999999']])).toMatch(/whole number of millisats/)
    expect(await bad([['p', 'npub1xyz']])).toMatch(/64-hex pubkey/)
    expect(await bad([['relays', 'https://relay']])).toMatch(/not a ws/)
    expect(await bad([['expiration', 'soon']])).toMatch(/unix time/)
    expect(await bad([['output', 'x'.repeat(200)]])).toMatch(/MIME type/)
    expect(await bad(Array.from({ length: 33 }, (_, i) => ['param', `p${i}`, 'v']))).toMatch(/more than 32 params/)
    expect(await bad([['param', 'big', 'x'.repeat(17_000)]])).toMatch(/param "big" is 17000 bytes/)
    expect(await bad([['encrypted']], 'abc')).toMatch(/encrypted but was not decrypted/)
    const big = await sign({ kind: 5050, created_at: 1, content: 'x'.repeat(70_000), tags: [] })
    const r = parseJobRequest(big)
    expect(!r.ok && r.reason).toMatch(/request is \d+ bytes, limit 65536/)
    expect(parseJobRequest(await sign({ kind: 1, created_at: 1, content: '', tags: [] }))).toMatchObject({ ok: false })
  })

  it('parses the private tags of an encrypted request strictly', () => {
    expect(parsePrivateTags('nope')).toMatchObject({ ok: false })
    expect(parsePrivateTags('{"i":1}')).toMatchObject({ ok: false })
    expect(parsePrivateTags('[["i", 5]]')).toMatchObject({ ok: false })
    expect(parsePrivateTags(JSON.stringify(Array.from({ length: 201 }, () => ['t', 'x'])))).toMatchObject({ ok: false })
    expect(parsePrivateTags('[["i","x","text"]]')).toEqual({ ok: true, value: [['i', 'x', 'text']] })
  })

  it('knows its kinds', () => {
    expect(isJobRequestKind(5000)).toBe(true)
    expect(isJobRequestKind(5999)).toBe(true)
    expect(isJobRequestKind(6000)).toBe(false)
    expect(resultKindFor(5050)).toBe(6050)
    expect(() => resultKindFor(7000)).toThrow(/not a job request kind/)
  })
})

describe('NIP-90 feedback, results, cancellation', () => {
  const request = { id: 'c'.repeat(64), customer: getPublicKey(customerKey) }

  it('builds and parses feedback, encrypting only the content', async () => {
    const enc = (t: string): string => encryptFor(providerKey, request.customer, t)
    const ev = await sign(buildFeedback(request, { status: 'partial', content: 'some output', seq: 3 }, 1, enc), providerKey)
    const f = parseFeedback(ev)
    expect(f).toMatchObject({ ok: true, value: { status: 'partial', seq: 3, encrypted: true, requestId: request.id, customer: request.customer, provider } })
    expect(f.ok && decryptFrom(customerKey, provider, f.value.content).plaintext).toBe('some output')
    const pay = parseFeedback(await sign(buildFeedback(request, { status: 'payment-required', amountMsats: 21_000, bolt11: 'lnbcrt210n1abc' }, 1), providerKey))
    expect(pay).toMatchObject({ ok: true, value: { amountMsats: 21_000, bolt11: 'lnbcrt210n1abc' } })
    expect(parseFeedback(await sign({ kind: 7000, created_at: 1, content: '', tags: [['status', 'done'], ['e', request.id], ['p', request.customer]] }))).toMatchObject({ ok: false })
    expect(parseFeedback(await sign({ kind: 7000, created_at: 1, content: '', tags: [['status', 'success'], ['p', request.customer]] }))).toMatchObject({ ok: false })
  })

  it('builds results with request, e, i, p and amount; leaves i out when encrypted', async () => {
    const reqEvent = await sign(buildJobRequest({ kind: 5050, inputs: [{ type: 'text', value: 'q' }], providers: [provider] }, 1))
    const parsed = parseJobRequest(reqEvent)
    if (!parsed.ok) throw new Error(parsed.reason)
    const plain = await sign(buildResult(parsed.value, { content: 'answer', amountMsats: 1000 }, 2), providerKey)
    expect(plain.kind).toBe(6050)
    expect(plain.tags).toEqual([['request', JSON.stringify(reqEvent)], ['e', reqEvent.id], ['p', reqEvent.pubkey], ['i', 'q', 'text'], ['amount', '1000']])
    expect(parseResult(plain)).toMatchObject({ ok: true, value: { content: 'answer', amountMsats: 1000, requestKind: 5050, encrypted: false } })
    const secret = { ...parsed.value, encryption: 'nip44' as const }
    const enc = await sign(buildResult(secret, { content: 'answer' }, 2, (t) => encryptFor(providerKey, reqEvent.pubkey, t)), providerKey)
    expect(enc.tags.some((t) => t[0] === 'i')).toBe(false)
    expect(enc.tags).toContainEqual(['encrypted'])
    expect(enc.content).not.toBe('answer')
  })

  it('builds a kind 5 cancellation with a k tag and reads it back', async () => {
    const ev = await sign(buildCancellation({ id: request.id, kind: 5050 }, 1))
    expect(ev.kind).toBe(5)
    expect(ev.tags).toEqual([['e', request.id], ['k', '5050']])
    expect(cancelledRequestIds(ev)).toEqual([request.id])
  })
})

describe('events and encryption', () => {
  it('verifies with native, WASM and pure JS alike, and refuses tampering', async () => {
    const native = await loadNostrCrypto()
    expect(native.backend).toBe('native')
    const wasm = await loadWasmNostrCrypto()
    expect(wasm.backend).toBe('wasm')
    for (const signer of [native, wasm, pureNostrCrypto()]) {
      const ev = signer.sign({ kind: 1, created_at: 1, content: 'x', tags: [] }, customerKey)
      for (const c of [native, wasm, pureNostrCrypto()]) {
        expect(c.verify(ev)).toBe(true)
        expect(c.verify({ ...ev, content: 'y' })).toBe(false)
        expect(c.verify({ ...ev, sig: ev.sig.replace(/.$/, (ch) => (ch === '0' ? '1' : '0')) })).toBe(false)
      }
    }
  })

  it('checks the shape of untrusted events', () => {
    const ok = { id: 'a'.repeat(64), pubkey: 'b'.repeat(64), sig: 'c'.repeat(128), kind: 1, created_at: 1, content: '', tags: [['t', 'x']] }
    expect(eventShapeProblem(ok)).toBeUndefined()
    expect(eventShapeProblem({ ...ok, id: 'A'.repeat(64) })).toMatch(/id/)
    expect(eventShapeProblem({ ...ok, kind: 70000 })).toMatch(/kind/)
    expect(eventShapeProblem({ ...ok, tags: [[]] })).toMatch(/non-empty/)
    expect(eventShapeProblem({ ...ok, tags: [['t', 5]] })).toMatch(/not a string/)
    expect(eventShapeProblem({ ...ok, content: 'x'.repeat(200_000) })).toMatch(/limit/)
    expect(eventShapeProblem([ok])).toMatch(/object/)
  })

  it('speaks NIP-44 v2 and NIP-04, and tells them apart', () => {
    const me = getPublicKey(customerKey)
    const v44 = encryptFor(customerKey, provider, 'hi there')
    const v04 = encryptFor(customerKey, provider, 'hi there', 'nip04')
    expect(detectScheme(v44)).toBe('nip44')
    expect(detectScheme(v04)).toBe('nip04')
    expect(decryptFrom(providerKey, me, v44)).toEqual({ plaintext: 'hi there', scheme: 'nip44' })
    expect(decryptFrom(providerKey, me, v04)).toEqual({ plaintext: 'hi there', scheme: 'nip04' })
    expect(() => decryptFrom(generateSecretKey(), me, v44)).toThrow(/cannot decrypt the NIP-44 content/)
    expect(() => decryptFrom(providerKey, me, 'plain text')).toThrow(/neither NIP-44 v2 nor NIP-04/)
    expect(() => decryptFrom(providerKey, me, 'A'.repeat(100_000))).toThrow(/limit/)
    expect(() => encryptFor(customerKey, provider, 'x'.repeat(MAX_PLAINTEXT_BYTES + 1))).toThrow(/at most 65535/)
  })
})

describe('bolt11 amounts', () => {
  it('reads the amount from the human-readable part', () => {
    expect(bolt11AmountMsats('lnbcrt210n1pjxyz')).toBe(21_000)
    expect(bolt11AmountMsats('lnbc2500u1pvjluez')).toBe(250_000_000)
    expect(bolt11AmountMsats('lnbc20m1pvjluez')).toBe(2_000_000_000)
    expect(bolt11AmountMsats('lntb10p1abc')).toBe(1)
    expect(bolt11AmountMsats('LNBC1PVJLUEZ')).toBeUndefined()
    expect(() => bolt11AmountMsats('lnbc15p1abc')).toThrow(/whole number/)
    expect(() => bolt11AmountMsats('cashuBxyz')).toThrow(/not a BOLT-11/)
  })
})
