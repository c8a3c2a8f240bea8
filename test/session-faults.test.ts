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

const procs = useProcs()
let agents: Agents
afterEach(async () => agents?.cleanup())

function agentCli(dataDir: string, ...extra: string[]) {
  return procs.spawn(process.execPath, tsArgs('bin/dvm-agent.ts', '--kind=5100', `--devnet=${devnetDir()}`, `--data-dir=${dataDir}`, '--json', '--price-per-minute=600', '--grace=2', ...extra), { timeoutMs: 90_000 })
}

async function walletBalance(dataDir: string, mintUrl = devnet().mint): Promise<number> {
  const w = new Wallet({ dataDir, mintUrl })
  await w.load()
  return (await w.balance()).balance
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

  it('customer killed: the provider ends the session after the grace and redeems what it was paid', async () => {
    agents = new Agents(devnet())
    const provider = await agents.provider({ graceMs: 1000 })
    const cdir = await agents.dir('dvm-customer-')
    const customer = await agents.customer(20, cdir)
    const ended = once(provider.p2p, 'session-end')
    const proc = procs.spawn(
      process.execPath,
      tsArgs('bin/dvm-session.ts', '--kind=5100', `--devnet=${devnetDir()}`, `--data-dir=${cdir}`, '--json', '--no-proxy', '--budget=15', `--provider=${provider.opts.identity.npub}`),
      { timeoutMs: 60_000 },
    )
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
