import { afterEach, describe, expect, it } from 'vitest'
import { devnet, devnetDir } from './helpers/devnet.js'
import { useProcs, tsArgs } from './helpers/procs.js'
import { Agents, until } from './helpers/agents.js'
import { buyP2PJob } from '../src/customer/buy-job.js'
import { walletFunds } from '../src/customer/wallet-funds.js'
import { loadOrCreateIdentity } from '../src/identity/nostr-key.js'
import { Wallet } from '../src/payments/wallet.js'
import { jobText, type Chunk, type Job, type Processor, type ProcessorInfo } from '../src/processors/types.js'

const procs = useProcs()
let agents: Agents
afterEach(async () => agents?.cleanup())

class UpperProcessor implements Processor {
  async start(): Promise<void> {}
  async describe(): Promise<ProcessorInfo> {
    return { name: 'upper', models: [], output: 'text/plain', paramsSchema: { type: 'object', additionalProperties: false }, features: [] }
  }
  async *run(job: Job): AsyncIterable<Chunk> {
    for (const w of jobText(job).toUpperCase().split(/(?<=\s)/)) yield w
  }
}

describe('pipelines and param checks', () => {
  it('dvm-agent --sub-kind buys a sub-job from another provider with its own sats and feeds the result to its processor', async () => {
    agents = new Agents(devnet())
    const net = devnet()
    const upstream = await agents.provider({ kinds: [5002], processor: new UpperProcessor(), pricing: { perMinute: 60, chunksPerSat: 2, perJob: 0 } })

    // the middle provider has 20 sats of its own to spend on sub-jobs
    const midDir = await agents.dir('dvm-mid-')
    const midWallet = new Wallet({ dataDir: midDir, mintUrl: net.mint })
    await midWallet.load()
    await midWallet.fund(20)
    const midId = await loadOrCreateIdentity(midDir)
    const mid = procs.spawn(
      process.execPath,
      tsArgs('bin/dvm-agent.ts', '--kind=5050', '--sub-kind=5002', '--sub-budget=10', `--sub-provider=${upstream.opts.identity.npub}`, '--chunks-per-sat=10', `--devnet=${devnetDir()}`, `--data-dir=${midDir}`, '--json'),
      { timeoutMs: 60_000 },
    )
    await mid.waitFor(/"type":"ready"/, 30_000)

    const c = await agents.customer(10)
    const r = await buyP2PJob({ identity: c.identity, funds: walletFunds(c.wallet, net.mint, c.refundKey), kind: 5050, input: [{ type: 'text', value: 'make me loud please' }], budget: 5, bootstrap: net.bootstrap, providerPubkey: midId.pubkey })
    expect(r.status, `${r.error}\n${mid.output()}`).toBe('success')
    expect(r.output).toBe('MAKE ME LOUD PLEASE')
    expect(r.paid).toBe(1)
    await mid.waitFor(/bought a kind 5002 sub-job for 2 sats/, 10_000)
    // the upstream provider was paid for 4 chunks at 2 per sat, out of the middle provider's wallet
    await until(async () => (await upstream.wallet.balance()).balance === 2, 'upstream redeemed 2')
    await mid.stop()
  })

  it('params the provider would refuse are caught before paying anything', async () => {
    agents = new Agents(devnet())
    const net = devnet()
    const provider = await agents.provider({ kinds: [5002], processor: new UpperProcessor() })
    const c = await agents.customer(5)
    await expect(
      buyP2PJob({ identity: c.identity, funds: walletFunds(c.wallet, net.mint, c.refundKey), kind: 5002, input: [{ type: 'text', value: 'x' }], params: { temperature: '9' }, budget: 5, bootstrap: net.bootstrap, providerPubkey: provider.opts.identity.pubkey }),
    ).rejects.toThrow(/param temperature is not accepted by this provider; nothing was paid|nothing was paid/)
    expect((await c.wallet.balance()).balance).toBe(5)
  })
})
