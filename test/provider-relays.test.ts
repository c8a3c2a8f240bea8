import { afterEach, describe, expect, it } from 'vitest'
import { generateSecretKey } from 'nostr-tools'
import { devnet } from './helpers/devnet.js'
import { Agents, until } from './helpers/agents.js'
import { startRelay } from '../src/devnet/relay.js'
import { loadNostrCrypto } from '../src/nostr/events.js'
import { RelayPool } from '../src/nostr/relay-client.js'
import { HANDLER_KIND, parseHandler } from '../src/nostr/nip89.js'
import { HEARTBEAT_KIND, parseHeartbeat } from '../src/nostr/heartbeat.js'
import { identityFromSecret } from '../src/identity/nostr-key.js'
import { runRelayJob } from '../src/customer/relay-job.js'
import { RentedSession } from '../src/customer/session-runner.js'
import { walletFunds } from '../src/customer/wallet-funds.js'
import { EchoProcessor } from '../src/processors/echo.js'

let agents: Agents
afterEach(async () => agents?.cleanup())

/** A kind no other test file uses, so discovery sees only this test's providers. */
const uniqueKind = () => 5200 + Math.floor(Math.random() * 700)

async function relayPool(relays = devnet().relays) {
  const pool = new RelayPool({ crypto: await loadNostrCrypto(), relays })
  agents.defer(async () => pool.close())
  return pool
}

describe('one provider, P2P and relays', () => {
  it('announces a NIP-89 handler with its swarm key and skill, a heartbeat, and offline on a clean stop', async () => {
    agents = new Agents(devnet())
    const kind = uniqueKind()
    const provider = await agents.provider({ kinds: [kind], relays: devnet().relays, name: 'test-provider', heartbeatMs: 60_000 })
    const pool = await relayPool()
    const handlers = await until(async () => {
      const evs = await pool.query([{ kinds: [HANDLER_KIND], authors: [provider.opts.identity.pubkey], '#k': [String(kind)] }], { timeoutMs: 2000 })
      return evs.length ? evs : null
    }, 'the NIP-89 handler')
    const h = parseHandler(handlers[0]!)
    expect(h.ok).toBe(true)
    if (!h.ok) return
    expect(h.value.swarmKey).toBe(provider.swarmPublicKey)
    expect(h.value.mints).toEqual([devnet().mint])
    expect((h.value.skill as { pricing: { perMinute: number } }).pricing.perMinute).toBe(600)
    const beat = async () => {
      const evs = await pool.query([{ kinds: [HEARTBEAT_KIND], authors: [provider.opts.identity.pubkey] }], { timeoutMs: 2000 })
      const parsed = evs.map((e) => parseHeartbeat(e)).filter((p) => p.ok).map((p) => (p as { value: { status: string; free: number; createdAt: number } }).value)
      return parsed.sort((a, b) => b.createdAt - a.createdAt)[0]
    }
    expect(await until(beat, 'a heartbeat')).toMatchObject({ status: 'online', free: 100 })
    await provider.stop()
    expect(await beat()).toMatchObject({ status: 'offline' })
  })

  it('serves a NIP-90 job over the relay from the same process', async () => {
    agents = new Agents(devnet())
    const kind = uniqueKind()
    const provider = await agents.provider({ kinds: [kind], relays: devnet().relays, processor: new EchoProcessor() })
    const pool = await relayPool()
    await until(() => provider.relayJobs !== null, 'relay jobs started')
    await new Promise((r) => setTimeout(r, 300)) // its subscription reaches the relay
    const customer = identityFromSecret(generateSecretKey())
    const out = await runRelayJob(
      { kind, inputs: [{ type: 'text', value: 'hello over the relay' }], provider: provider.opts.identity.pubkey },
      { identity: customer, pool, crypto: await loadNostrCrypto(), timeoutMs: 15_000 },
    )
    expect(out.content).toBe('hello over the relay')
    expect(out.provider).toBe(provider.opts.identity.pubkey)
  })

  it('with its relay down, P2P sessions still work', async () => {
    agents = new Agents(devnet())
    const relay = await startRelay({ port: 0 })
    await relay.stop() // a relay that is not there
    const provider = await agents.provider({ relays: [relay.url] })
    const c = await agents.customer(10)
    const { client } = await agents.session(c, provider, { budget: 5 })
    await client.open()
    client.startTicking()
    await until(() => client.spent >= 3, '3 acked ticks with the relay down')
    client.end('done')
  })

  it('a customer picks the provider from the relays and dials its swarm key', async () => {
    agents = new Agents(devnet())
    const kind = uniqueKind()
    const provider = await agents.provider({ kinds: [kind], relays: devnet().relays })
    const c = await agents.customer(10)
    const rented = new RentedSession({ identity: c.identity, funds: walletFunds(c.wallet, devnet().mint, c.refundKey), kind, budget: 5, bootstrap: devnet().bootstrap, port: null, relays: devnet().relays })
    agents.defer(() => rented.stop())
    const chosen = new Promise<{ pubkey: string; swarmKey: string }>((r) => rented.once('chosen', r))
    await until(async () => {
      try {
        await rented.start()
        return true
      } catch {
        return false
      }
    }, 'session started', 20_000, 500)
    expect(await chosen).toEqual({ pubkey: provider.opts.identity.pubkey, swarmKey: provider.swarmPublicKey })
    expect(rented.link.pubkey).toBe(provider.opts.identity.pubkey)
  })
})
