/**
 * The demo's buyer: a wallet topped up to the budget, a paid session with
 * the demo provider, and the local proxy the browser opens, counting bytes.
 */
import type { Duplex } from 'node:stream'
import type { DevnetConfig } from '../config/devnet-config.js'
import { isPortFree } from '../devnet/ports.js'
import { loadOrCreateIdentity, type Identity } from '../identity/nostr-key.js'
import { loadOrCreatePaymentKey, type PaymentKey } from '../payments/payment-key.js'
import { Wallet } from '../payments/wallet.js'
import { RentedSession } from '../customer/session-runner.js'
import { reclaimExpiredLocks, walletFunds } from '../customer/wallet-funds.js'
import { startLocalProxy, type LocalProxy } from '../tunnel/local-proxy.js'
import { TunnelRefusedError } from '../tunnel/refusal.js'
import type { TunnelLogger } from '../tunnel/log.js'
import { countingDuplex, type ByteCounter } from './counting-stream.js'
import { waitUntil, type Teardown } from './lifecycle.js'
import type { DemoReporter } from './report.js'
import { DEMO_KIND, type ProviderSide } from './provider-side.js'

export interface CustomerWallet {
  identity: Identity
  refundKey: PaymentKey
  wallet: Wallet
  /** spendable + locked before this run funded anything */
  before: number
  /** sats minted into the wallet by this run */
  funded: number
}

/**
 * The customer's wallet, kept between runs: proofs an earlier run locked but
 * never sent come back once their locktime passed, then it is topped up to
 * the budget from the devnet mint.
 */
export async function prepareWallet(dataDir: string, mint: string, budget: number, report: DemoReporter): Promise<CustomerWallet> {
  const identity = await loadOrCreateIdentity(dataDir)
  const refundKey = await loadOrCreatePaymentKey(dataDir)
  const wallet = new Wallet({ dataDir, mintUrl: mint })
  await wallet.load()
  const back = await reclaimExpiredLocks(wallet, refundKey).catch((err: Error) => {
    report.note(`could not reclaim an earlier run's unsent proofs yet (${err.message}); the next run tries again`)
    return null
  })
  if (back?.reclaimed) report.event('reclaimed', { sats: back.reclaimed }, `reclaimed ${back.reclaimed} sats an earlier run locked to the provider but never sent`)
  const start = await wallet.balance()
  let funded = 0
  if (start.balance < budget) {
    funded = budget - start.balance
    await wallet.fund(funded)
    report.event('funded', { sats: funded, mint }, `funded the customer's wallet with ${funded} sats from the devnet mint (its fake Lightning backend pays the invoice itself)`)
  }
  return { identity, refundKey, wallet, before: start.balance + start.locked, funded }
}

export interface SessionOptions {
  customer: CustomerWallet
  seller: ProviderSide
  devnet: DevnetConfig
  budget: number
  lockSeconds: number
  durationSec?: number
  report: DemoReporter
  teardown: Teardown
}

/** Open the paid session and wait for the first acknowledged tick: before it, the provider's gateway answers 402. */
export async function startSession(o: SessionOptions): Promise<RentedSession> {
  const { customer, seller, report } = o
  const session = new RentedSession({
    identity: customer.identity,
    funds: walletFunds(customer.wallet, o.devnet.mint, customer.refundKey),
    kind: DEMO_KIND,
    budget: o.budget,
    bootstrap: o.devnet.bootstrap,
    providerPubkey: seller.identity.pubkey,
    providerSwarmKey: seller.provider.swarmPublicKey,
    // the demo's own proxy counts the bytes (startProxy)
    port: null,
    lockSeconds: o.lockSeconds,
    // a short run locks no more than it will spend
    expectedMs: o.durationSec !== undefined ? o.durationSec * 1000 : undefined,
    connectTimeoutMs: 20_000,
  })
  o.teardown.add('session', () => session.stop('demo stopped'))
  session.on('locked', (e: { count: number; locktime: number }) =>
    report.event('locked', e, `locked ${e.count} sats to the provider in one swap (what is not sent is yours again after ${new Date(e.locktime * 1000).toLocaleTimeString()})`),
  )
  session.on('refuse', (e: { code: string; reason: string }) => report.event('refuse', e, `the provider refused a payment (${e.code}): ${e.reason}`))
  session.on('reconnecting', () => report.note('connection to the provider lost; reconnecting…'))
  session.on('reconnected', () => report.note('reconnected; the session goes on'))
  await session.start()
  const paid = await waitUntil(() => session.client.spent >= 1 || session.client.ended, 15_000)
  if (!paid || session.client.spent < 1) {
    throw new Error(`the provider did not acknowledge the first payment within 15 s${session.client.ended ? ' (the session ended)' : ''}; see the messages above`)
  }
  return session
}

/**
 * The local proxy the browser opens: each connection one tunnel stream of
 * the session, counted. On the asked-for port, or a free one if that is busy.
 */
export async function startProxy(session: RentedSession, port: number, bytes: ByteCounter, report: DemoReporter, teardown: Teardown): Promise<LocalProxy> {
  const logger: TunnelLogger = { info: (m) => report.note(`tunnel: ${m}`), warn: (m) => report.note(`tunnel: warning: ${m}`) }
  if (port !== 0 && !(await isPortFree(port))) {
    report.note(`port ${port} is busy; using a free port instead (choose one with --port)`)
    port = 0
  }
  const openStream = async (): Promise<Duplex> => {
    if (session.client.ended) throw new TunnelRefusedError('the paid session has ended; run `npm run demo` again', 402, 'session_ended')
    return countingDuplex(session.client.openStream(), bytes)
  }
  const proxy = await startLocalProxy({ port, openStream, logger })
  teardown.add('local proxy', () => proxy.close())
  return proxy
}
