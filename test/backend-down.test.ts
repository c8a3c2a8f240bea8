import { afterEach, describe, expect, it } from 'vitest'
import http from 'node:http'
import { once } from 'node:events'
import { devnet, devnetDir } from './helpers/devnet.js'
import { Agents, until } from './helpers/agents.js'
import { useProcs, tsArgs } from './helpers/procs.js'
import { RentedSession } from '../src/customer/session-runner.js'
import { walletFunds } from '../src/customer/wallet-funds.js'
import type { SessionSummary } from '../src/customer/session-client.js'
import type { ProviderLink } from '../src/customer/connect.js'
import type { ControlMessage } from '../src/wire/protocol.js'
import type { Provider } from '../src/provider/provider.js'
import { request } from './fixtures/tunnel-harness.js'
import { freePort } from '../src/devnet/ports.js'
import { discoverProviders } from '../src/customer/discovery.js'
import { loadNostrCrypto } from '../src/nostr/events.js'
import { RelayPool } from '../src/nostr/relay-client.js'

/**
 * A provider whose tunnel backend does not answer must not take money for it:
 * it refuses new sessions before any payment, and ends running ones once the
 * backend has been gone a while.
 */
const procs = useProcs()
let agents: Agents
afterEach(async () => agents?.cleanup())

/** A small backend on a chosen port; close() drops its open connections too. */
async function serveOn(port: number): Promise<{ close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end('{"ok":true}')
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  let closed = false
  return {
    close: async () => {
      if (closed) return
      closed = true
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function rent(c: Awaited<ReturnType<Agents['customer']>>, provider: Provider, budget: number): RentedSession {
  const rented = new RentedSession({
    identity: c.identity,
    funds: walletFunds(c.wallet, devnet().mint, c.refundKey),
    kind: 5100,
    budget,
    bootstrap: devnet().bootstrap,
    providerPubkey: provider.opts.identity.pubkey,
    port: 0,
    lockSeconds: 1200,
    reconnectMs: 0,
  })
  agents.defer(() => rented.stop())
  return rented
}

describe('backend down', () => {
  it('a session open is refused (backend-down) before any payment; once the backend listens, an open succeeds', async () => {
    agents = new Agents(devnet())
    const port = await freePort()
    const provider = await agents.provider({ backend: `http://127.0.0.1:${port}` })
    const c = await agents.customer(20)

    const first = rent(c, provider, 10)
    const refusals: ControlMessage[] = []
    first.on('connected', (link: ProviderLink) => link.peer.on('message', (m: ControlMessage) => m.type === 'refuse' && refusals.push(m)))
    await expect(first.start()).rejects.toThrow(/^provider refused the session: the provider's backend is not answering .*try again later or choose another provider/)
    expect(refusals).toMatchObject([{ type: 'refuse', code: 'backend-down' }])
    expect(provider.p2p.activeSessions).toBe(0)
    // nothing spent, nothing locked to the provider
    expect(await c.wallet.balance()).toMatchObject({ balance: 20, locked: 0 })
    await first.stop()
    // dvm-session says the same, with the refusal's code for scripts
    const cli = procs.spawn(process.execPath, tsArgs('bin/dvm-session.ts', `--devnet=${devnetDir()}`, `--data-dir=${c.dataDir}`, '--json', '--no-proxy', '--budget=5', `--provider=${provider.opts.identity.pubkey}`), { timeoutMs: 30_000 })
    expect((await cli.exited).code).toBe(1)
    expect(JSON.parse(cli.stdout.trim().split('\n').at(-1)!)).toMatchObject({ type: 'error', code: 'backend-down' })

    const backend = await serveOn(port)
    agents.defer(() => backend.close())
    // a "down" answer is remembered for at most a second
    await new Promise((r) => setTimeout(r, 1100))
    const second = rent(c, provider, 10)
    await second.start()
    const res = await request(`${second.proxy!.url.replace(/\/$/, '')}/`, { agent: false })
    expect(res.status).toBe(200)
    expect(JSON.parse(res.body.toString())).toEqual({ ok: true })
    expect(second.client.spent).toBeGreaterThanOrEqual(1)
  }, 30_000)

  it('a running session whose backend dies is ended by the provider, and the customer stops paying', async () => {
    agents = new Agents(devnet())
    const port = await freePort()
    const backend = await serveOn(port)
    agents.defer(() => backend.close())
    // 1 sat every 500 ms; the backend may be gone 1.5 s before sessions end
    const provider = await agents.provider({ backend: `http://127.0.0.1:${port}`, pricing: { perMinute: 120, chunksPerSat: 2, perJob: 0 }, graceMs: 5000, backendDownEndMs: 1500 })
    const c = await agents.customer(60)
    const rented = rent(c, provider, 50)
    await rented.start()
    await until(() => rented.client.spent >= 1, 'first tick acknowledged')

    const ended = once(rented, 'end') as Promise<[SessionSummary]>
    const providerEnd = once(provider.p2p, 'session-end') as Promise<[{ reason: string }]>
    await backend.close()
    const [summary] = await Promise.race([ended, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('session did not end within 8 s of the backend going away')), 8000))])
    expect(summary.reason).toMatch(/^provider ended the session: the provider's backend stopped answering .*; the session was ended so you stop paying/)
    expect((await providerEnd)[0].reason).toMatch(/backend stopped answering/)
    // well short of the budget: a few seconds at 2 sats/s, not 50
    expect(summary.spent).toBeLessThan(15)
    const spent = rented.client.spent
    await new Promise((r) => setTimeout(r, 1000))
    expect(rented.client.spent).toBe(spent)
  }, 30_000)

  it('dvm-agent warns at start when nothing answers at --backend, and keeps running', async () => {
    agents = new Agents(devnet())
    const port = await freePort()
    const cli = async (...extra: string[]) =>
      procs.spawn(process.execPath, tsArgs('bin/dvm-agent.ts', '--kind=5100', `--devnet=${devnetDir()}`, `--data-dir=${await agents.dir('dvm-provider-')}`, `--backend=http://127.0.0.1:${port}`, ...extra), { timeoutMs: 30_000 })
    // both at once: a CLI takes a few seconds to start
    const [proc, human] = await Promise.all([cli('--json'), cli()])
    await proc.waitFor(/"type":"ready"/, 15_000)
    const [line] = await proc.waitFor(/^\{"type":"backend-down".*$/m, 5_000)
    expect(JSON.parse(line)).toMatchObject({
      type: 'backend-down',
      backend: `http://127.0.0.1:${port}`,
      error: 'ECONNREFUSED',
      message: expect.stringMatching(/sessions will be refused until it answers/),
    })

    // without --json: one human warning line on stderr
    const [warning] = await human.waitFor(/^warning: .*$/m, 15_000, 'stderr')
    expect(warning).toMatch(new RegExp(`nothing accepts connections at the backend http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\); sessions will be refused until it answers`))
    await new Promise((r) => setTimeout(r, 300))
    expect(proc.running).toBe(true)
    expect(human.running).toBe(true)
  }, 30_000)

  it('its heartbeat offers no free slot while the backend is down, and slots again once it answers', async () => {
    agents = new Agents(devnet())
    const port = await freePort()
    const kind = 5967
    const provider = await agents.provider({ kinds: [kind], backend: `http://127.0.0.1:${port}`, relays: devnet().relays, heartbeatMs: 1000 })
    const pool = new RelayPool({ crypto: await loadNostrCrypto(), relays: devnet().relays })
    agents.defer(async () => pool.close())
    const mine = async () => (await discoverProviders(pool, kind, { timeoutMs: 2000 })).find((c) => c.pubkey === provider.opts.identity.pubkey)
    await until(async () => (await mine())?.heartbeat !== undefined, 'a heartbeat on the relay')
    expect(await mine()).toMatchObject({ available: false, heartbeat: { free: 0 } })
    const backend = await serveOn(port)
    agents.defer(() => backend.close())
    await until(async () => (await mine())?.available === true, 'a heartbeat with free slots', 15_000, 300)
  })
})
