import { afterEach, describe, expect, it } from 'vitest'
import { generateSecretKey } from 'nostr-tools/pure'
import { devnet } from './helpers/devnet.js'
import { identityFromSecret, type Identity } from '../src/identity/nostr-key.js'
import { loadNostrCrypto, nowSeconds, type Event } from '../src/nostr/events.js'
import { buildHandler, HANDLER_KIND, parseHandler, type HandlerInfo } from '../src/nostr/nip89.js'
import { buildHeartbeat, HEARTBEAT_KIND, isAvailable, parseHeartbeat } from '../src/nostr/heartbeat.js'
import { buildProfile, parseProfile } from '../src/nostr/profile.js'
import { RelayPool } from '../src/nostr/relay-client.js'
import { Announcer } from '../src/provider/announce.js'
import { discoverProviders } from '../src/customer/discovery.js'

const cleanup: Array<() => unknown> = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

const info = (kind: number, name = 'test provider'): HandlerInfo => ({
  kind,
  name,
  about: 'echoes what it is given',
  skill: { name: 'echo', models: ['echo'] },
  pricing: { perMinute: 60, perRequest: 0 },
  mints: ['http://127.0.0.1:3338'],
  swarmKey: 'cd'.repeat(32),
})

async function signed(t: Parameters<Awaited<ReturnType<typeof loadNostrCrypto>>['sign']>[0], id: Identity): Promise<Event> {
  return (await loadNostrCrypto()).sign(t, id.secretKey)
}

describe('announcements', () => {
  const me = identityFromSecret(generateSecretKey())

  it('builds and parses NIP-89 handlers', async () => {
    const ev = await signed(buildHandler(info(5050), 10), me)
    expect(ev.kind).toBe(HANDLER_KIND)
    expect(ev.tags).toContainEqual(['d', 'dvm-agent:5050'])
    expect(ev.tags).toContainEqual(['k', '5050'])
    expect(parseHandler(ev)).toEqual({ ok: true, value: { ...info(5050), pubkey: me.pubkey, eventId: ev.id, createdAt: 10 } })
    const bad = async (content: string): Promise<unknown> => parseHandler(await signed({ kind: HANDLER_KIND, created_at: 1, content, tags: [['k', '5050']] }, me))
    expect(await bad('not json')).toMatchObject({ ok: false })
    expect(await bad(JSON.stringify({ swarmKey: 'xyz' }))).toMatchObject({ ok: false, reason: expect.stringMatching(/swarmKey/) })
    expect(await bad(JSON.stringify({ swarmKey: 'ab'.repeat(32), pricing: { perMinute: -1 } }))).toMatchObject({ ok: false, reason: expect.stringMatching(/pricing/) })
    expect(() => buildHandler({ ...info(5050), kind: 1 }, 1)).toThrow(/job kind/)
    expect(() => buildHandler({ ...info(5050), skill: { blob: 'x'.repeat(40_000) } }, 1)).toThrow(/limit/)
  })

  it('builds and parses heartbeats', async () => {
    const now = nowSeconds()
    const ev = await signed(buildHeartbeat({ status: 'online', kinds: [5050, 5100], free: 3, max: 4, intervalSeconds: 30 }, now), me)
    expect(ev.kind).toBe(HEARTBEAT_KIND)
    expect(ev.tags).toEqual([
      ['d', 'dvm-agent:heartbeat'],
      ['status', 'online'],
      ['k', '5050'],
      ['k', '5100'],
      ['capacity', '3', '4'],
      ['expiration', String(now + 90)],
    ])
    const hb = parseHeartbeat(ev)
    expect(hb).toMatchObject({ ok: true, value: { status: 'online', kinds: [5050, 5100], free: 3, max: 4, intervalSeconds: 30, expiresAt: now + 90 } })
    expect(hb.ok && isAvailable(hb.value, now)).toBe(true)
    expect(hb.ok && isAvailable(hb.value, now + 91)).toBe(false)
    const off = parseHeartbeat(await signed(buildHeartbeat({ status: 'offline', kinds: [5050], free: 0, max: 4, intervalSeconds: 30 }, now), me))
    expect(off.ok && isAvailable(off.value, now)).toBe(false)
  })

  it('builds and parses profiles', async () => {
    const ev = await signed(buildProfile({ name: 'echo bot', about: 'says it back', bot: true }, 1), me)
    expect(parseProfile(ev)).toEqual({ ok: true, value: { name: 'echo bot', about: 'says it back', bot: true, pubkey: me.pubkey } })
    expect(parseProfile({ ...ev, content: '[]' })).toMatchObject({ ok: false })
  })
})

/** Ask `get` until `done` holds for its answer; the last answer, or an error naming what never happened after `ms`. */
async function until<T>(get: () => Promise<T>, done: (v: T) => boolean, ms: number, what: () => string): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await get()
    if (done(v)) return v
    if (Date.now() > deadline) throw new Error(`${what()} within ${ms} ms; last answer: ${JSON.stringify(v)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe('discovery on the devnet relay', () => {
  async function pool(): Promise<RelayPool> {
    const p = new RelayPool({ crypto: await loadNostrCrypto(), relays: devnet().relays })
    cleanup.push(() => p.close())
    return p
  }

  it('finds providers of a kind, available ones first, and drops those that went offline', async () => {
    const kind = 5000 + Math.floor(Math.random() * 900)
    const crypto = await loadNostrCrypto()
    const publishErrors: string[] = []
    const providers = [identityFromSecret(generateSecretKey()), identityFromSecret(generateSecretKey()), identityFromSecret(generateSecretKey())]
    const announcers = await Promise.all(
      providers.map(async (identity, i) => {
        const a = new Announcer({
          identity,
          pool: await pool(),
          crypto,
          handlers: [info(kind, `p${i}`)],
          profile: { name: `p${i}` },
          capacity: () => ({ free: i, max: 2 }),
          intervalMs: 60_000,
          onError: (what, reason) => publishErrors.push(`p${i} ${what}: ${reason}`),
        })
        await a.start()
        cleanup.push(() => a.stop())
        return a
      }),
    )
    // Another kind's handler is not returned.
    const other = new Announcer({ identity: identityFromSecret(generateSecretKey()), pool: await pool(), crypto, handlers: [info(kind + 1)], capacity: () => ({ free: 1, max: 1 }) })
    await other.start()
    cleanup.push(() => other.stop())

    const customer = await pool()
    const found = await discoverProviders(customer, kind, { timeoutMs: 5000 })
    expect(found.map((f) => f.handler.name)).toEqual(['p2', 'p1', 'p0'])
    expect(found.map((f) => f.available)).toEqual([true, true, false])
    expect(found[0]!.handler.swarmKey).toBe('cd'.repeat(32))

    await announcers[2]!.stop()
    // stop() waits for the relay's OK to the offline beat, but under heavy
    // load that publish can time out and land later, or a query can end at
    // its timeout before EOSE: ask again until the offline beat shows, within
    // a generous bound, then check the whole ranking.
    const offlineSeen = await until(
      () => discoverProviders(customer, kind, { timeoutMs: 5000 }),
      (f) => f.find((c) => c.handler.name === 'p2')?.heartbeat?.status === 'offline',
      30_000,
      () => `p2's offline heartbeat never showed up on the relay${publishErrors.length ? ` (announcer errors: ${publishErrors.join('; ')})` : ''}`,
    )
    expect(offlineSeen.map((f) => [f.handler.name, f.heartbeat?.status])).toEqual([
      ['p1', 'online'],
      ['p0', 'online'],
      ['p2', 'offline'],
    ])
  }, 60_000)
})
