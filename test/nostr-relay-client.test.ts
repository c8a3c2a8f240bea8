import { afterEach, describe, expect, it } from 'vitest'
import { generateSecretKey, getPublicKey } from 'nostr-tools/pure'
import { startRelay, type RunningRelay } from '../src/devnet/relay.js'
import { RelayPool, normalizeRelayUrl } from '../src/nostr/relay-client.js'
import { loadNostrCrypto, nowSeconds, type Event } from '../src/nostr/events.js'
import { until as waitFor } from './helpers/until.js'

const cleanup: Array<() => unknown> = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

async function relay(port?: number): Promise<RunningRelay> {
  const r = await startRelay({ port, log: () => {} })
  cleanup.push(() => r.stop())
  return r
}

async function pool(relays: string[], extra: Partial<ConstructorParameters<typeof RelayPool>[0]> = {}): Promise<RelayPool> {
  const p = new RelayPool({ crypto: await loadNostrCrypto(), relays, reconnectMinMs: 50, reconnectMaxMs: 200, publishTimeoutMs: 3000, ...extra })
  cleanup.push(() => p.close())
  return p
}


describe('RelayPool', () => {
  it('publishes with OK and delivers verified events once across relays', async () => {
    const [a, b] = [await relay(), await relay()]
    const crypto = await loadNostrCrypto()
    const sk = generateSecretKey()
    const reader = await pool([a.url, b.url])
    const writer = await pool([a.url, b.url])
    expect(await reader.waitConnected(3000, 2)).toBe(true)
    const got: Array<[Event, string]> = []
    reader.subscribe([{ kinds: [1], authors: [getPublicKey(sk)], since: nowSeconds() - 5 }], { onevent: (e, r) => got.push([e, r]) })
    await new Promise((r) => setTimeout(r, 100))
    const ev = crypto.sign({ kind: 1, created_at: nowSeconds(), tags: [], content: 'hello' }, sk)
    const out = await writer.publish(ev)
    expect(out.map((o) => o.ok)).toEqual([true, true])
    await waitFor(() => got.length >= 1)
    await new Promise((r) => setTimeout(r, 200))
    expect(got).toHaveLength(1)
    expect(reader.stats.duplicates).toBe(1)
    expect(got[0]![0].content).toBe('hello')
  })

  it('reports a relay refusal in the publish outcome', async () => {
    const a = await relay()
    const crypto = await loadNostrCrypto()
    const p = await pool([a.url])
    const ev = crypto.sign({ kind: 1, created_at: nowSeconds(), tags: [], content: 'x' }, generateSecretKey())
    const forged = { ...ev, content: 'tampered' }
    const [outcome] = await p.publish(forged)
    expect(outcome!.ok).toBe(false)
    await expect(p.publishOrThrow(forged)).rejects.toThrow(/no relay accepted/)
  })

  it('resubscribes after the relay restarts on the same port', async () => {
    const a = await relay()
    const crypto = await loadNostrCrypto()
    const sk = generateSecretKey()
    const statuses: string[] = []
    const reader = await pool([a.url], { onStatus: (s) => statuses.push(s.state) })
    const got: Event[] = []
    reader.subscribe([{ kinds: [1], since: nowSeconds() - 5 }], { onevent: (e) => got.push(e) })
    expect(await reader.waitConnected(3000)).toBe(true)
    await a.stop()
    await waitFor(() => statuses.includes('disconnected'))
    const b = await relay(a.port)
    await waitFor(() => statuses.filter((s) => s === 'connected').length >= 2)
    const writer = await pool([b.url])
    await writer.publishOrThrow(crypto.sign({ kind: 1, created_at: nowSeconds(), tags: [], content: 'after restart' }, sk))
    await waitFor(() => got.some((e) => e.content === 'after restart'))
  })

  it('queues a publish while the relay is down and sends it on reconnect', async () => {
    const a = await relay()
    const port = a.port
    const crypto = await loadNostrCrypto()
    const p = await pool([a.url], { publishTimeoutMs: 5000 })
    expect(await p.waitConnected(3000)).toBe(true)
    await a.stop()
    const pending = p.publish(crypto.sign({ kind: 1, created_at: nowSeconds(), tags: [], content: 'q' }, generateSecretKey()))
    await new Promise((r) => setTimeout(r, 300))
    await relay(port)
    const [o] = await pending
    expect(o!.ok).toBe(true)
  })

  it('drops events with bad signatures and does not let them shadow the real one', async () => {
    const a = await relay()
    const crypto = await loadNostrCrypto()
    const p = await pool([a.url])
    const invalid: string[] = []
    const got: Event[] = []
    // Feed the pool frames directly, as a hostile relay would.
    const sub = p.subscribe([{ kinds: [1] }], { onevent: (e) => got.push(e), oninvalid: (_r, why) => invalid.push(why) })
    const ev = crypto.sign({ kind: 1, created_at: nowSeconds(), tags: [], content: 'real' }, generateSecretKey())
    const forged = { ...ev, content: 'forged' }
    const conn = { url: normalizeRelayUrl(a.url) } as never
    p.onMessage(conn, JSON.stringify(['EVENT', sub.id, forged]))
    p.onMessage(conn, JSON.stringify(['EVENT', sub.id, { ...ev, sig: 'zz' }]))
    p.onMessage(conn, JSON.stringify(['EVENT', sub.id, ev]))
    p.onMessage(conn, JSON.stringify(['EVENT', sub.id, ev]))
    p.onMessage(conn, 'not json')
    expect(got.map((e) => e.content)).toEqual(['real'])
    expect(invalid).toHaveLength(2)
    expect(invalid[0]).toMatch(/bad signature/)
    expect(invalid[1]).toMatch(/sig is not/)
  })

  it('forgets old ids beyond its bound', async () => {
    const a = await relay()
    const crypto = await loadNostrCrypto()
    const p = await pool([a.url], { maxSeenIds: 2 })
    const got: Event[] = []
    const sub = p.subscribe([{ kinds: [1] }], { onevent: (e) => got.push(e) })
    const sk = generateSecretKey()
    const evs = [0, 1, 2].map((i) => crypto.sign({ kind: 1, created_at: nowSeconds(), tags: [], content: String(i) }, sk))
    const conn = { url: normalizeRelayUrl(a.url) } as never
    for (const e of [...evs, evs[0]]) p.onMessage(conn, JSON.stringify(['EVENT', sub.id, e]))
    expect(got.map((e) => e.content)).toEqual(['0', '1', '2', '0'])
  })
})
