/**
 * 2. Mint round trips for one 100-tick session, end to end.
 *
 * A provider in its own process (bench/lib/provider-child.ts, every request
 * it makes to the mint counted) at the default price of 60 sats/minute, and a
 * customer here with a funded wallet: connect, open, 100 ticks each
 * acknowledged, end; then wait until the provider has redeemed them. Counted:
 * every HTTP request to the mint by either side from `open` until the
 * provider's redemption is done. Funding the customer's wallet (buying the
 * ecash) comes before and is not part of the session; the provider's key
 * fetch at its start is once per provider, not per session, and is shown
 * apart.
 *
 * The ticks are sent back to back (each waits for its ack) instead of one a
 * second: the customer locks in the batches a real 1-tick-a-second session
 * uses (the batch size follows the session's tick interval, not the pace at
 * which payOne is called), so the count is that of a 100-second session,
 * measured in about a second.
 */
import { join } from 'node:path'
import { loadOrCreateIdentity } from '../src/identity/nostr-key.js'
import { loadOrCreatePaymentKey } from '../src/payments/payment-key.js'
import { Wallet } from '../src/payments/wallet.js'
import { connectToProvider } from '../src/customer/connect.js'
import { SessionClient } from '../src/customer/session-client.js'
import { walletFunds } from '../src/customer/wallet-funds.js'
import { BenchChild, benchFile } from './lib/child.js'
import type { ProviderChildOptions } from './lib/provider-child.js'
import { fmt } from './lib/stats.js'
import type { Row, Section } from './lib/table.js'
import { until } from './lib/timing.js'
import type { BenchContext } from './run.js'

const TICKS = 100
const KIND = 5100

interface MintRequest {
  at: number
  method: string
  path: string
}

function describe(reqs: MintRequest[]): string {
  if (reqs.length === 0) return 'none'
  const by = new Map<string, number>()
  for (const r of reqs) by.set(`${r.method} ${r.path}`, (by.get(`${r.method} ${r.path}`) ?? 0) + 1)
  return [...by].map(([k, n]) => (n > 1 ? `${n}× ${k}` : k)).join(', ')
}

/** Start a provider child; resolves once it is on the swarm. */
export async function startProviderChild(ctx: BenchContext, name: string, opts: Partial<ProviderChildOptions>): Promise<{ child: BenchChild; pubkey: string; swarmKey: string; paymentPubkey: string; backend: string | null }> {
  const full: ProviderChildOptions = {
    dataDir: ctx.dir(name),
    bootstrap: ctx.devnet.bootstrap,
    mints: [ctx.devnet.mint],
    kinds: [KIND],
    pricing: { perMinute: 60, chunksPerSat: 10, perJob: 0 },
    backend: false,
    ...opts,
  }
  const child = new BenchChild(name, benchFile('lib/provider-child.ts'), [], { logDir: ctx.logDir, env: { BENCH_PROVIDER: JSON.stringify(full) } })
  const ready = await child.next('ready', 60_000)
  return { child, pubkey: String(ready.pubkey), swarmKey: String(ready.swarmKey), paymentPubkey: String(ready.paymentPubkey), backend: (ready.backend as string | null) ?? null }
}

export async function benchSessions(ctx: BenchContext): Promise<Section> {
  const provider = await startProviderChild(ctx, 'rt-provider', { events: true, graceMs: 2_000 })
  const mint = ctx.devnet.mint
  const mintOrigin = new URL(mint).origin
  const dir = ctx.dir('rt-customer')
  const identity = await loadOrCreateIdentity(dir)
  const refundKey = await loadOrCreatePaymentKey(dir)
  const wallet = new Wallet({ dataDir: join(dir, 'wallet'), mintUrl: mint })
  await wallet.load()
  await wallet.fund(2 * TICKS, { pollMs: 20 })

  const customerReqs: MintRequest[] = []
  const realFetch = globalThis.fetch
  let conn: Awaited<ReturnType<typeof connectToProvider>> | undefined
  try {
    conn = await connectToProvider({ identity, bootstrap: ctx.devnet.bootstrap, kind: KIND, providerPubkey: provider.pubkey, providerSwarmKey: provider.swarmKey, timeoutMs: 20_000 })
    const redeemed = provider.child.next('redeemed', 60_000)
    globalThis.fetch = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(input instanceof Request ? input.url : String(input))
      if (url.origin === mintOrigin) customerReqs.push({ at: Date.now(), method: init?.method ?? 'GET', path: url.pathname })
      return realFetch(input, init)
    }) as typeof fetch
    const windowStart = Date.now()
    const client = new SessionClient({ peer: conn.link.peer, skill: conn.link.skill, kind: KIND, mode: 'session', budget: TICKS, funds: walletFunds(wallet, mint, refundKey) })
    const locks: number[] = []
    client.on('locked', (e: { count: number }) => locks.push(e.count))
    const accept = await client.open()
    const t0 = performance.now()
    let acked = 0
    for (let i = 0; i < TICKS; i++) if (await client.payOne()) acked++
    const tickMs = performance.now() - t0
    const ticksDone = Date.now()
    client.end('bench: 100 ticks done')
    globalThis.fetch = realFetch
    // the provider redeems when the session ends; wait until all 100 are redeemed
    await redeemed
    const stats = await until(
      async () => {
        const s = (await provider.child.request('redeemer')) as unknown as { stats: { redeemedProofs: number; swaps: number; roundTrips: number } }
        return s.stats.redeemedProofs >= acked ? s.stats : undefined
      },
      30_000,
      'provider redemption',
      50,
    )
    const { requests } = (await provider.child.request('mint-requests')) as unknown as { requests: MintRequest[] }
    const startup = requests.filter((r) => r.at < windowStart)
    const during = requests.filter((r) => r.at >= windowStart)
    const total = customerReqs.length + during.length
    const rows: Row[] = [
      {
        group: '2 mint round trips',
        figure: `HTTP requests to the mint for one ${TICKS}-tick session, customer + provider`,
        value: `${total} (customer ${customerReqs.length}, provider ${during.length})`,
        reference: `${acked} ticks acked`,
        ratio: `${fmt(total / Math.max(1, acked), 2)} per tick`,
        target: '≤ 3',
        verdict: acked === TICKS && total <= 3 ? 'pass' : 'FAIL',
      },
      {
        group: '2 mint round trips',
        figure: 'provider requests to the mint while ticks arrive (offline verification)',
        value: String(during.filter((r) => r.at <= ticksDone).length),
        verdict: 'info',
      },
    ]
    const notes = [
      `2 mint round trips: ${acked}/${TICKS} ticks acked in ${fmt(tickMs)} ms at the default price (${accept.tickMs} ms per sat). Customer: ${describe(customerReqs)} (SessionClient's lock swaps: ${locks.join(' + ')} proofs). Provider: ${describe(during)} (${stats.swaps} redeem swap(s), Redeemer.stats().roundTrips ${stats.roundTrips}). Provider start, once per process: ${describe(startup)}. Funding the customer's wallet (mint quote + mint) happened before the session and is not counted.`,
    ]
    return { rows, notes }
  } finally {
    globalThis.fetch = realFetch
    await conn?.swarm.destroy().catch(() => {})
    await provider.child.stop()
  }
}
