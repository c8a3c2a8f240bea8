import { afterEach, describe, expect, it } from 'vitest'
import { once } from 'node:events'
import { devnet } from './helpers/devnet.js'
import { Agents, until } from './helpers/agents.js'
import { reclaimExpiredLocks } from '../src/customer/wallet-funds.js'
import type { SessionSummary } from '../src/customer/session-client.js'

let agents: Agents
afterEach(async () => agents?.cleanup())

describe('paid P2P session', () => {
  it('N ticks sent, N acked, N redeemed by the provider, and the rest comes back to the customer', async () => {
    agents = new Agents(devnet())
    const provider = await agents.provider()
    const customer = await agents.customer(30)
    const before = (await customer.wallet.balance()).balance
    expect(before).toBe(30)

    const { client } = await agents.session(customer, provider, { budget: 20, batchTicks: 12 })
    const accept = await client.open()
    expect(accept.tickMs).toBe(100)
    const acks: number[] = []
    client.on('ack', (a: { paid: number }) => acks.push(a.paid))
    let locked = 0
    client.on('locked', (e: { count: number }) => (locked += e.count))
    client.startTicking()
    await until(() => client.spent >= 8, '8 acknowledged ticks')
    const ended = once(client, 'end')
    client.end('test over')
    const [summary] = (await ended) as [SessionSummary]

    const n = summary.spent
    expect(n).toBeGreaterThanOrEqual(8)
    expect(acks).toEqual(Array.from({ length: n }, (_, i) => i + 1))
    expect(client.sent).toBe(n)
    // a small first swap, then batches of 12 locked ahead; what was not sent stays locked until locktime
    expect(locked).toBeLessThanOrEqual(20)
    expect(summary.lockedUnsent).toBe(locked - n)

    // the provider redeems exactly what it acknowledged, in a few round trips
    await until(async () => (await provider.wallet.balance()).balance === n, `provider wallet at ${n} sats`)
    const after = await customer.wallet.balance()
    expect(after.balance).toBe(before - locked)
    expect(after.locked).toBe(locked - n)

    // after locktime the unsent proofs come back with the refund key
    await new Promise((r) => setTimeout(r, Math.max(0, (summary.refundAt! + 1) * 1000 - Date.now())))
    // a proof the mint still reports PENDING is retried, as `dvm-wallet balance` would on its next run
    let reclaimed = 0
    await until(async () => {
      reclaimed += (await reclaimExpiredLocks(customer.wallet, customer.refundKey)).reclaimed
      return reclaimed >= locked - n
    }, 'unsent proofs reclaimed', 15_000, 500)
    expect(reclaimed).toBe(locked - n)
    expect((await customer.wallet.balance()).balance).toBe(before - n)
  })

  it('never pays past its budget', async () => {
    agents = new Agents(devnet())
    const provider = await agents.provider()
    const customer = await agents.customer(10)
    const { client } = await agents.session(customer, provider, { budget: 5 })
    await client.open()
    const ended = once(client, 'end')
    client.startTicking()
    const [summary] = (await ended) as [SessionSummary]
    expect(summary.reason).toMatch(/budget/)
    expect(summary.spent).toBe(5)
    expect(client.sent).toBe(5)
    await until(async () => (await provider.wallet.balance()).balance === 5, 'provider redeemed 5')
  })

  it('a provider asking more than the customer allows is refused before any payment', async () => {
    agents = new Agents(devnet())
    const provider = await agents.provider()
    const customer = await agents.customer(5)
    const { client } = await agents.session(customer, provider, { maxPerMinute: 100 })
    await expect(client.open()).rejects.toThrow(/600 sats\/minute, more than your limit of 100/)
    expect((await customer.wallet.balance()).balance).toBe(5)
  })

  it('a provider at --max-sessions refuses the next session with a reason, and takes it once one ends', async () => {
    agents = new Agents(devnet())
    const provider = await agents.provider({ maxSessions: 1 })
    const a = await agents.customer(5)
    const b = await agents.customer(5)
    const first = await agents.session(a, provider, { budget: 5 })
    await first.client.open()
    const second = await agents.session(b, provider, { budget: 5 })
    await expect(second.client.open()).rejects.toThrow(/at its limit of 1 sessions/)
    first.client.end('making room')
    await until(() => provider.p2p.activeSessions === 0, 'the first session to end')
    const third = await agents.session(b, provider, { budget: 5, sessionId: 'second-try' })
    await expect(third.client.open()).resolves.toMatchObject({ type: 'accept' })
  })
})
