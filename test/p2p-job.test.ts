import { afterEach, describe, expect, it } from 'vitest'
import { devnet } from './helpers/devnet.js'
import { Agents, until } from './helpers/agents.js'
import { runP2PJob } from '../src/customer/p2p-job.js'
import { EchoProcessor } from '../src/processors/echo.js'
import type { Chunk, Job, Processor, ProcessorInfo } from '../src/processors/types.js'

let agents: Agents
afterEach(async () => agents?.cleanup())

const words = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(' ')

/** Streams `before` chunks, then goes silent until aborted: a provider that takes the money and stops. */
class StallingProcessor implements Processor {
  constructor(private readonly before: number) {}
  async start(): Promise<void> {}
  async describe(): Promise<ProcessorInfo> {
    return { name: 'stall', models: [], output: 'text/plain', paramsSchema: { type: 'object' }, features: [] }
  }
  async *run(_job: Job, signal: AbortSignal): AsyncIterable<Chunk> {
    for (let i = 0; i < this.before; i++) yield `c${i} `
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
  }
}

describe('streaming P2P jobs paid per chunk', () => {
  it('streams the whole output and pays one sat per started batch of chunks', async () => {
    agents = new Agents(devnet())
    // a time price that would keep many seconds of session ticks locked; a job keeps only two proofs in hand
    const provider = await agents.provider({ processor: new EchoProcessor({ delayMs: 5 }), pricing: { perMinute: 600, chunksPerSat: 3, perJob: 0 } })
    const c = await agents.customer(20)
    const { client } = await agents.session(c, provider, { mode: 'job', budget: 20 })
    await client.open()
    const seen: string[] = []
    const r = await runP2PJob(client, { kind: 5100, input: [{ type: 'text', value: words(10) }] }, { onChunk: (t) => seen.push(t) })
    expect(r.status).toBe('success')
    expect(r.chunks).toBe(10)
    expect(r.output).toBe(words(10))
    expect(seen.length).toBe(10) // arrived piece by piece
    expect(r.paid).toBe(Math.ceil(10 / 3))
    // a budget far above the cost is not locked at once: proofs are locked 2, 2, 4… as the job
    // goes, so at most 4 of the 20 stay locked after a 4-sat job, and the rest is spendable
    client.end('done')
    await client.settle() // a lock swap started in the background ends before we count
    const summary = client.summary()
    expect(summary.lockedUnsent).toBeLessThanOrEqual(4)
    expect(await c.wallet.balance()).toMatchObject({ balance: 20 - 4 - summary.lockedUnsent, locked: summary.lockedUnsent })
    await until(async () => (await provider.wallet.balance()).balance === 4, 'provider redeemed 4')
  })

  it('a budget cut-off mid-stream pays exactly the chunks delivered', async () => {
    agents = new Agents(devnet())
    const provider = await agents.provider({ processor: new EchoProcessor(), pricing: { perMinute: 60, chunksPerSat: 2, perJob: 0 } })
    const c = await agents.customer(10)
    const { client } = await agents.session(c, provider, { mode: 'job', budget: 3 })
    await client.open()
    const r = await runP2PJob(client, { kind: 5100, input: [{ type: 'text', value: words(20) }] })
    expect(r.status).toBe('budget')
    expect(r.chunks).toBe(6)
    expect(r.paid).toBe(3)
    client.end('done')
    await until(async () => (await provider.wallet.balance()).balance === 3, 'provider redeemed 3')
  })

  it('a provider that stops sending after payment is caught and paid no more', async () => {
    agents = new Agents(devnet())
    const provider = await agents.provider({ processor: new StallingProcessor(5), pricing: { perMinute: 60, chunksPerSat: 2, perJob: 0 } })
    const c = await agents.customer(10)
    const { client } = await agents.session(c, provider, { mode: 'job', budget: 10 })
    await client.open()
    const r = await runP2PJob(client, { kind: 5100, input: [{ type: 'text', value: 'x' }] }, { stallMs: 1500 })
    expect(r.status).toBe('stalled')
    expect(r.chunks).toBe(5)
    // paid for 3 batches of 2 (the third only half delivered), then stopped
    expect(r.paid).toBe(3)
    await new Promise((res) => setTimeout(res, 500))
    expect(client.spent).toBe(3)
  })

  it('a customer cancel stops the job', async () => {
    agents = new Agents(devnet())
    const provider = await agents.provider({ processor: new EchoProcessor({ delayMs: 50 }), pricing: { perMinute: 60, chunksPerSat: 100, perJob: 0 } })
    const c = await agents.customer(10)
    const { client } = await agents.session(c, provider, { mode: 'job', budget: 5 })
    await client.open()
    const ac = new AbortController()
    const r = await runP2PJob(client, { kind: 5100, input: [{ type: 'text', value: words(100) }] }, { signal: ac.signal, onChunk: (_t, seq) => seq === 3 && ac.abort() })
    expect(r.status).toBe('cancelled')
    expect(r.chunks).toBeLessThan(20)
  })
})
