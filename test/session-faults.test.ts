import { afterEach, describe, expect, it } from 'vitest'
import { once } from 'node:events'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { devnet, devnetDir } from './helpers/devnet.js'
import { Agents, until } from './helpers/agents.js'
import { useProcs, tsArgs } from './helpers/procs.js'
import { startMint } from '../src/devnet/mint.js'
import { loadOrCreateIdentity } from '../src/identity/nostr-key.js'
import { Wallet } from '../src/payments/wallet.js'
import type { SessionSummary } from '../src/customer/session-client.js'
import { RentedSession } from '../src/customer/session-runner.js'
import { walletFunds } from '../src/customer/wallet-funds.js'
import { startTestBackend } from './fixtures/test-backend.js'
import { request } from './fixtures/tunnel-harness.js'

const procs = useProcs()
let agents: Agents
afterEach(async () => agents?.cleanup())

function agentCli(dataDir: string, ...extra: string[]) {
  return procs.spawn(process.execPath, tsArgs('bin/dvm-agent.ts', '--kind=5100', `--devnet=${devnetDir()}`, `--data-dir=${dataDir}`, '--json', '--price-per-minute=600', '--grace=2', ...extra), { timeoutMs: 90_000 })
}

/** dvm-session without a proxy, 15 sats of budget, renting `npub`. */
function sessionCli(dataDir: string, npub: string, ...extra: string[]) {
  return procs.spawn(process.execPath, tsArgs('bin/dvm-session.ts', '--kind=5100', `--devnet=${devnetDir()}`, `--data-dir=${dataDir}`, '--json', '--no-proxy', '--budget=15', `--provider=${npub}`, ...extra), { timeoutMs: 60_000 })
}

async function walletBalance(dataDir: string, mintUrl = devnet().mint): Promise<number> {
  const w = new Wallet({ dataDir, mintUrl })
  await w.load()
  return (await w.balance()).balance
}

/**
 * A provider CLI with a test backend behind it, and a RentedSession on it
 * with its local proxy, not yet started. The provider can be killed and
 * started again on the same data dir.
 */
async function rentedBackendSession(reconnectMs?: number) {
  const backend = await startTestBackend()
  agents.defer(() => backend.close())
  const pdir = await agents.dir('dvm-provider-')
  const pid = await loadOrCreateIdentity(pdir)
  // 1 sat a second, so the budget outlasts the outage
  const startProvider = async () => {
    const proc = agentCli(pdir, `--backend=${backend.origin}`, '--price-per-minute=60')
    await proc.waitFor(/"type":"ready"/, 30_000)
    return proc
  }
  const proc = await startProvider()
  const c = await agents.customer(80)
  const rented = new RentedSession({
    identity: c.identity,
    funds: walletFunds(c.wallet, devnet().mint, c.refundKey),
    kind: 5100,
    budget: 70,
    bootstrap: devnet().bootstrap,
    providerPubkey: pid.pubkey,
    port: 0,
    lockSeconds: 1200,
    reconnectMs,
  })
  agents.defer(() => rented.stop())
  const seen: string[] = []
  for (const ev of ['reconnecting', 'reconnected', 'end']) rented.on(ev, () => seen.push(ev))
  return { proc, startProvider, rented, seen, wallet: c.wallet }
}

describe('faults', () => {
  it('provider killed mid-session: every proof it acknowledged is redeemed after restart', async () => {
    agents = new Agents(devnet())
    const pdir = await agents.dir('dvm-provider-')
    const pid = await loadOrCreateIdentity(pdir)
    let proc = agentCli(pdir)
    await proc.waitFor(/"type":"ready"/, 30_000)
    const customer = await agents.customer(40)
    const { client } = await agents.session(customer, { pubkey: pid.pubkey }, { budget: 30, batchTicks: 30, lockSeconds: 1200 })
    await client.open()
    client.startTicking()
    await until(() => client.spent >= 6, '6 acked ticks')
    proc.signal('SIGKILL')
    const [summary] = (await once(client, 'end')) as [SessionSummary]
    const acked = summary.spent
    expect(acked).toBeGreaterThanOrEqual(6)
    expect(await walletBalance(pdir)).toBe(0) // nothing redeemed before the kill (count and age thresholds not reached)

    proc = agentCli(pdir)
    await proc.waitFor(/"type":"ready"/, 30_000)
    // held proofs from before the crash are redeemed at start; the provider may have stored one more than it acked
    await until(async () => (await walletBalance(pdir)) >= acked, `provider wallet ≥ ${acked}`, 20_000, 200)
    const redeemed = await walletBalance(pdir)
    expect(redeemed - acked).toBeLessThanOrEqual(1)
    await proc.stop()
  })

  it('provider restarted mid-session: the rented session reconnects, pays on, and its local proxy serves again', async () => {
    agents = new Agents(devnet())
    // Well under the ~15 s a connection to a killed process takes to time out:
    // the session has to drop it itself to dial the restarted provider in time.
    const { proc: first, startProvider, rented, seen, wallet } = await rentedBackendSession(6_000)
    let proc = first
    await rented.start()
    const base = rented.proxy!.url.replace(/\/$/, '')
    // A page asked for while the session reconnects waits for it instead of failing.
    let during: ReturnType<typeof request> | undefined
    rented.once('reconnecting', () => (during = request(`${base}/api/data.json`, { agent: false })))
    // Asked before the first payment is acknowledged: answered once it is, not with a 402.
    expect(rented.client.spent).toBe(0)
    const before = await request(`${base}/api/data.json`, { agent: false })
    expect(before.status).toBe(200)
    expect(rented.client.spent).toBeGreaterThanOrEqual(1)

    proc.signal('SIGKILL', true)
    await proc.exited
    proc = await startProvider()
    await until(() => seen.includes('reconnected') || seen.includes('end'), 'session reconnected or ended', 30_000, 100)
    expect(seen.slice(0, 2)).toEqual(['reconnecting', 'reconnected'])
    const waited = await during!
    expect(waited.status).toBe(200)
    expect(waited.body.equals(before.body)).toBe(true)
    // the restarted provider acknowledges new ticks of the same session, and the proxy answers again
    const spent = rented.client.spent
    await until(() => rented.client.spent > spent, 'a tick acknowledged after the restart', 15_000, 100)
    const after = await request(`${base}/api/data.json`, { agent: false })
    expect(after.status).toBe(200)
    expect(after.body.equals(before.body)).toBe(true)
    expect(seen).not.toContain('end')
    const summary = await rented.stop()
    expect(summary.reason).toBe('customer quit')
    expect(summary.providerGone).toBe(false)
    // what the session says is still locked is what the wallet holds locked: ticks acknowledged
    // before the crash count as paid although the restarted provider counts anew
    expect((await wallet.balance()).locked).toBe(summary.lockedUnsent)
    await proc.stop()
  }, 120_000)

  it('provider down for 20 s: the session waits for it without paying, then resumes on the same local proxy', async () => {
    agents = new Agents(devnet())
    // no reconnectMs: the default window is what dvm-session users get
    const { proc: first, startProvider, rented, seen } = await rentedBackendSession()
    let proc = first
    await rented.start()
    const base = rented.proxy!.url.replace(/\/$/, '')
    const before = await request(`${base}/api/data.json`, { agent: false })
    expect(before.status).toBe(200)

    proc.signal('SIGKILL', true)
    await proc.exited
    const down = Date.now()
    await until(() => seen.includes('reconnecting'), 'the session noticed the provider is gone', 15_000, 100)
    const sentWhenLost = rented.client.sent
    await new Promise((r) => setTimeout(r, 20_000 - (Date.now() - down)))
    expect(seen).toEqual(['reconnecting'])
    expect(rented.client.sent).toBe(sentWhenLost) // nothing sent to a provider that is not there
    proc = await startProvider()
    await until(() => seen.length > 1, 'session reconnected or ended', 40_000, 100)
    expect(seen).toEqual(['reconnecting', 'reconnected'])
    const spent = rented.client.spent
    await until(() => rented.client.spent > spent, 'a tick acknowledged after the restart', 15_000, 100)
    const after = await request(`${base}/api/data.json`, { agent: false })
    expect(after.status).toBe(200)
    expect(after.body.equals(before.body)).toBe(true)
    await rented.stop()
    await proc.stop()
  }, 150_000)

  it('customer quits (dvm-session --duration): the provider hears it at once, not after the grace, and the wallet keeps count', async () => {
    agents = new Agents(devnet())
    const provider = await agents.provider({ graceMs: 60_000 })
    const cdir = await agents.dir('dvm-customer-')
    const customer = await agents.customer(20, cdir)
    const ended = once(provider.p2p, 'session-end')
    const proc = sessionCli(cdir, provider.opts.identity.npub, '--duration=2')
    expect((await proc.exited).code, proc.output()).toBe(0)
    const last = JSON.parse(proc.stdout.trim().split('\n').at(-1)!) as { type: string; spent: number; lockedUnsent: number }
    expect(last.type).toBe('end')
    const [end] = (await ended) as [{ reason: string; paid: number }]
    expect(end).toMatchObject({ reason: 'customer ended the session', paid: last.spent })
    await customer.wallet.load()
    const b = await customer.wallet.balance()
    expect(b.locked).toBe(last.lockedUnsent)
    expect(b.balance).toBe(20 - 15)
  })

  it('customer killed: the provider ends the session after the grace and redeems what it was paid', async () => {
    agents = new Agents(devnet())
    const provider = await agents.provider({ graceMs: 1000 })
    const cdir = await agents.dir('dvm-customer-')
    const customer = await agents.customer(20, cdir)
    const ended = once(provider.p2p, 'session-end')
    const proc = sessionCli(cdir, provider.opts.identity.npub)
    await proc.waitFor(/"type":"ack","paid":4/, 30_000)
    proc.signal('SIGKILL')
    const [end] = (await ended) as [{ reason: string; paid: number }]
    expect(end.reason).toMatch(/no payment within the grace/)
    expect(end.paid).toBeGreaterThanOrEqual(4)
    await until(async () => (await provider.wallet.balance()).balance === end.paid, `provider redeemed ${end.paid}`)
    // the customer's wallet shows the spent sats as locked-and-paid or locked-unsent, never lost
    await customer.wallet.load()
    // one swap locked the whole budget (15); what was not paid stays locked, reclaimable after locktime
    const b = await customer.wallet.balance()
    expect(b.balance).toBe(5)
    expect(b.locked).toBeGreaterThanOrEqual(15 - end.paid)
  })

  it('mint down during the session: ticks still verify, and redemption happens when it is back', async () => {
    agents = new Agents(devnet())
    const mintDir = await mkdtemp(join(tmpdir(), 'dvm-mint-'))
    let mint = await startMint({ dataDir: mintDir })
    agents.defer(() => mint.stop())
    const net = { ...devnet(), mint: mint.url }
    const local = new Agents(net)
    agents.defer(() => local.cleanup())
    const provider = await local.provider({ mints: [mint.url] })
    const customer = await local.customer(20)
    const { client } = await local.session(customer, provider, { budget: 10, batchTicks: 10, lockSeconds: 1200 })
    await client.open()
    const locked = once(client, 'locked')
    client.startTicking()
    await locked
    await mint.stop() // every proof for this session is already locked; the mint is not needed to verify
    const [summary] = (await once(client, 'end')) as [SessionSummary]
    expect(summary.reason).toMatch(/budget/)
    expect(summary.spent).toBe(10)
    await new Promise((r) => setTimeout(r, 500))
    expect((await provider.wallet.balance()).balance).toBe(0) // could not redeem yet

    mint = await startMint({ dataDir: mintDir, port: mint.port })
    await until(async () => (await provider.wallet.balance()).balance === 10, 'provider redeemed 10 after the mint came back', 30_000, 200)
  })
})
