import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { devnet } from './helpers/devnet.js'
import { Agents } from './helpers/agents.js'
import { connectToProvider } from '../src/customer/connect.js'
import { decodeToken } from '../src/payments/token.js'
import { paymentKeyFromPrivkey } from '../src/payments/payment-key.js'
import type { ControlMessage, WireProof } from '../src/wire/protocol.js'
import type { Peer } from '../src/wire/peer.js'
import type { Provider } from '../src/provider/provider.js'

/**
 * A hand-driven customer: opens a session and sends crafted ticks, reading the
 * provider's answer to each. Every refusal must leave the session uncredited.
 */
let agents: Agents
let provider: Provider
let peer: Peer
let customer: Awaited<ReturnType<Agents['customer']>>
let session: string
let paymentPubkey: string
const replies: ControlMessage[] = []

async function answer(proof: WireProof, mint = devnet().mint): Promise<ControlMessage> {
  const n = replies.length
  peer.send({ type: 'tick', session, mint, proof })
  const deadline = Date.now() + 10_000
  while (replies.length === n) {
    if (Date.now() > deadline) throw new Error('no answer to tick')
    await new Promise((r) => setTimeout(r, 10))
  }
  return replies[n]!
}

const soon = (s: number) => Math.floor(Date.now() / 1000) + s

beforeAll(async () => {
  agents = new Agents(devnet())
  provider = await agents.provider({ minLocktimeSec: 60, graceMs: 30_000 })
  customer = await agents.customer(20)
  const conn = await connectToProvider({ identity: customer.identity, bootstrap: devnet().bootstrap, kind: 5100, timeoutMs: 20_000, providerPubkey: provider.opts.identity.pubkey })
  agents.defer(() => conn.swarm.destroy())
  peer = conn.link.peer
  peer.on('message', (m: ControlMessage) => m.type !== 'skill' && replies.push(m))
  session = randomBytes(8).toString('hex')
  peer.send({ type: 'open', session, kind: 5100, mode: 'session', budget: 20 })
  while (!replies.some((m) => m.type === 'accept')) await new Promise((r) => setTimeout(r, 10))
  paymentPubkey = (replies.find((m) => m.type === 'accept') as { paymentPubkey: string }).paymentPubkey
  replies.length = 0
})
afterAll(async () => agents.cleanup())

async function lockOne(over: { payee?: string; locktime?: number } = {}): Promise<WireProof> {
  const [p] = await customer.wallet.lockForPayee({
    amount: 1,
    payeePubkey: over.payee ?? paymentPubkey,
    locktime: over.locktime ?? soon(600),
    refundPubkey: customer.refundKey.pubkey,
  })
  return p as WireProof
}

describe('the provider refuses bad ticks and credits nothing for them', () => {
  it('accepts a good one and then refuses its replay', async () => {
    const good = await lockOne()
    const ok = await answer(good)
    expect(ok).toMatchObject({ type: 'ack', paid: 1 })
    const again = await answer(good)
    expect(again).toMatchObject({ type: 'refuse', code: 'replayed' })
  })

  it('refuses a forged proof (DLEQ does not verify)', async () => {
    const p = await lockOne()
    const s = p.dleq!.s
    const forged = { ...p, dleq: { ...p.dleq!, s: (s[0] === 'a' ? 'b' : 'a') + s.slice(1) } }
    expect(await answer(forged)).toMatchObject({ type: 'refuse', code: 'bad-dleq' })
  })

  it('refuses a proof locked to another key', async () => {
    const other = paymentKeyFromPrivkey(randomBytes(32))
    expect(await answer(await lockOne({ payee: other.pubkey }))).toMatchObject({ type: 'refuse', code: 'wrong-key' })
  })

  it('refuses an unlocked proof', async () => {
    const token = await customer.wallet.send(1)
    const [p] = decodeToken(token).proofs
    expect(await answer(p as WireProof)).toMatchObject({ type: 'refuse', code: 'not-locked' })
  })

  it('refuses ecash from a mint it does not accept', async () => {
    expect(await answer(await lockOne(), 'http://127.0.0.1:9/')).toMatchObject({ type: 'refuse', code: 'unknown-mint' })
  })

  it('refuses a proof whose locktime leaves it no time to redeem', async () => {
    expect(await answer(await lockOne({ locktime: soon(20) }))).toMatchObject({ type: 'refuse', code: 'locktime-too-close' })
  })

  it('after all that, the session is credited for the one good tick only', async () => {
    expect(provider.p2p.sessionStats().find((s) => s.id === session)?.paid).toBe(1)
  })
})

describe('identity', () => {
  it('a customer expecting another provider refuses this one', async () => {
    const stranger = paymentKeyFromPrivkey(randomBytes(32)).pubkey.slice(2) // any x-only key that is not the provider's
    await expect(
      connectToProvider({ identity: customer.identity, bootstrap: devnet().bootstrap, kind: 5100, timeoutMs: 4000, providerPubkey: stranger }),
    ).rejects.toThrow(/not the expected/)
  })
})
