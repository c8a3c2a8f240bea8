import { afterEach, describe, expect, it } from 'vitest'
import { once } from 'node:events'
import { devnet } from './helpers/devnet.js'
import { Agents } from './helpers/agents.js'
import { startTestBackend } from './fixtures/test-backend.js'
import { request } from './fixtures/tunnel-harness.js'
import { RentedSession } from '../src/customer/session-runner.js'
import { walletFunds } from '../src/customer/wallet-funds.js'
import type { ProviderOptions } from '../src/provider/provider.js'
import { loadOrCreatePaymentKey } from '../src/payments/payment-key.js'
import { freePort } from '../src/devnet/ports.js'

/**
 * `dvm-session` without --provider rents any provider of the kind: one that
 * refuses the session or asks more than the customer's limit is passed over
 * for the next one on the topic, with nothing locked or paid to it.
 * Each test uses a kind no other test file serves (59xx; customer-wrong-kind
 * draws from 5400-5899), so the topic holds only the providers it starts.
 */
let agents: Agents
afterEach(async () => agents?.cleanup())

/** Start renting with only `first` on the topic; once it is passed over, start `second`. */
async function passOverFirst(kind: number, first: Partial<ProviderOptions>, second: Partial<ProviderOptions>, maxPerMinute?: number) {
  agents = new Agents(devnet())
  const backend = await startTestBackend()
  agents.defer(() => backend.close())
  const a = await agents.provider({ kinds: [kind], backend: backend.origin, ...first })
  const ticksToA: unknown[] = []
  a.p2p.on('tick', (t) => ticksToA.push(t))
  const aPaymentKey = (await loadOrCreatePaymentKey(a.opts.dataDir)).pubkey
  const c = await agents.customer(30)
  const rented = new RentedSession({
    identity: c.identity,
    funds: walletFunds(c.wallet, devnet().mint, c.refundKey),
    kind,
    budget: 20,
    bootstrap: devnet().bootstrap,
    port: 0,
    lockSeconds: 1200,
    maxPerMinute,
    connectTimeoutMs: 20_000,
  })
  agents.defer(() => rented.stop())
  const passed = once(rented, 'passed-over') as Promise<[{ provider: string; code: string; reason: string }]>
  const started = rented.start()
  // a start that settles first (opened with the first, or failed) must fail the test, not hang it
  const [skipped] = await Promise.race([passed, started.then(() => Promise.reject(new Error('the session opened without passing over the first provider')))])
  const b = await agents.provider({ kinds: [kind], backend: backend.origin, ...second })
  await started
  // nothing went to the one passed over: no tick, no proof locked to it
  const nothingToA = async () => {
    expect(ticksToA).toEqual([])
    expect(await c.wallet.lockedProofs({ payeePubkey: aPaymentKey })).toEqual([])
  }
  return { a, b, rented, skipped, nothingToA }
}

describe('passing over providers', () => {
  it('one whose backend is down is passed over, and the session opens with the next', async () => {
    const down = `http://127.0.0.1:${await freePort()}`
    const { a, b, rented, skipped, nothingToA } = await passOverFirst(5961, { backend: down }, { pricing: { perMinute: 60, chunksPerSat: 2, perJob: 0 } })
    expect(skipped).toMatchObject({ provider: a.opts.identity.pubkey, code: 'backend-down' })
    expect(rented.link.pubkey).toBe(b.opts.identity.pubkey)
    const res = await request(`${rented.proxy!.url.replace(/\/$/, '')}/api/data.json`, { agent: false })
    expect(res.status).toBe(200)
    await nothingToA()
  })

  it('one asking more than --max-price is passed over before anything is locked', async () => {
    const { a, b, rented, skipped, nothingToA } = await passOverFirst(5962, { pricing: { perMinute: 600, chunksPerSat: 2, perJob: 0 } }, { pricing: { perMinute: 60, chunksPerSat: 2, perJob: 0 } }, 100)
    expect(skipped).toMatchObject({ provider: a.opts.identity.pubkey, code: 'terms' })
    expect(skipped.reason).toMatch(/600 sats\/minute, more than your limit of 100/)
    expect(rented.link.pubkey).toBe(b.opts.identity.pubkey)
    await nothingToA()
  })

  it('a provider that starts after the customer began looking is found', async () => {
    agents = new Agents(devnet())
    const backend = await startTestBackend()
    agents.defer(() => backend.close())
    const c = await agents.customer(10)
    const rented = new RentedSession({ identity: c.identity, funds: walletFunds(c.wallet, devnet().mint, c.refundKey), kind: 5963, budget: 5, bootstrap: devnet().bootstrap, port: null, connectTimeoutMs: 20_000 })
    agents.defer(() => rented.stop())
    const started = rented.start()
    // the customer's first lookup of the topic has come back empty by now
    await new Promise((r) => setTimeout(r, 1500))
    const p = await agents.provider({ kinds: [5963], backend: backend.origin, pricing: { perMinute: 60, chunksPerSat: 2, perJob: 0 } })
    await started
    expect(rented.link.pubkey).toBe(p.opts.identity.pubkey)
  })

  it('stopping while still looking ends at once: start rejects, stop resolves, nothing was paid', async () => {
    agents = new Agents(devnet())
    const c = await agents.customer(10)
    const rented = new RentedSession({ identity: c.identity, funds: walletFunds(c.wallet, devnet().mint, c.refundKey), kind: 5964, budget: 5, bootstrap: devnet().bootstrap, port: null, connectTimeoutMs: 120_000 })
    const started = rented.start()
    started.catch(() => {})
    await new Promise((r) => setTimeout(r, 500))
    // (were the search not stopped, this would wait out its 120 s and the test time out)
    const summary = await rented.stop('changed my mind')
    expect(summary).toMatchObject({ reason: 'changed my mind', spent: 0 })
    await expect(started).rejects.toThrow(/stopped: changed my mind/)
    expect((await c.wallet.balance()).balance).toBe(10)
  })

  it('stopping while the session opens: start rejects, nothing is locked, nothing happens after end', async () => {
    agents = new Agents(devnet())
    const backend = await startTestBackend()
    agents.defer(() => backend.close())
    const p = await agents.provider({ kinds: [5965], backend: backend.origin })
    const c = await agents.customer(10)
    const rented = new RentedSession({ identity: c.identity, funds: walletFunds(c.wallet, devnet().mint, c.refundKey), kind: 5965, budget: 5, bootstrap: devnet().bootstrap, port: 0, providerPubkey: p.opts.identity.pubkey })
    const after: string[] = []
    rented.once('end', () => ['open', 'locked', 'tick', 'proxy'].forEach((ev) => rented.on(ev, () => after.push(ev))))
    rented.once('connected', () => void rented.stop('changed my mind'))
    await expect(rented.start()).rejects.toThrow()
    await new Promise((r) => setTimeout(r, 1000)) // what a late accept would have set going
    expect(after).toEqual([])
    expect(await c.wallet.balance()).toMatchObject({ balance: 10, locked: 0 })
  })

  it('a named provider that announced it went offline: the error says so, after dialing it only', async () => {
    agents = new Agents(devnet())
    const p = await agents.provider({ kinds: [5966], relays: devnet().relays })
    await p.stop() // publishes its offline heartbeat
    const c = await agents.customer(5)
    const rented = new RentedSession({ identity: c.identity, funds: walletFunds(c.wallet, devnet().mint, c.refundKey), kind: 5966, budget: 5, bootstrap: devnet().bootstrap, port: null, providerPubkey: p.opts.identity.pubkey, relays: devnet().relays, connectTimeoutMs: 4000 })
    agents.defer(() => rented.stop())
    await expect(rented.start()).rejects.toThrow(/did not answer within 4 s; is it running, and on this network\?; its last heartbeat, at .*, said it went offline/)
    expect((await c.wallet.balance()).balance).toBe(5)
  })
})
