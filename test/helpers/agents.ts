import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadOrCreateIdentity, type Identity } from '../../src/identity/nostr-key.js'
import { loadOrCreatePaymentKey, type PaymentKey } from '../../src/payments/payment-key.js'
import { Wallet } from '../../src/payments/wallet.js'
import { Provider, type ProviderOptions } from '../../src/provider/provider.js'
import { EchoProcessor } from '../../src/processors/echo.js'
import { connectToProvider, type Connection } from '../../src/customer/connect.js'
import { SessionClient, type SessionOptions } from '../../src/customer/session-client.js'
import { walletFunds } from '../../src/customer/wallet-funds.js'
import type { DevnetConfig } from '../../src/config/devnet-config.js'

/** Temp dirs and agents a test file started; `cleanup()` in afterEach/afterAll stops them all. */
export class Agents {
  private readonly dirs: string[] = []
  private readonly stops: Array<() => Promise<unknown>> = []

  constructor(readonly net: DevnetConfig) {}

  async dir(prefix = 'dvm-agent-'): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), prefix))
    this.dirs.push(d)
    return d
  }

  defer(fn: () => Promise<unknown>): void {
    this.stops.push(fn)
  }

  async provider(over: Partial<ProviderOptions> = {}): Promise<Provider> {
    const dataDir = over.dataDir ?? (await this.dir('dvm-provider-'))
    const provider = await Provider.create({
      dataDir,
      identity: over.identity ?? (await loadOrCreateIdentity(dataDir)),
      kinds: [5100],
      processor: new EchoProcessor(),
      pricing: { perMinute: 600, chunksPerSat: 2, perJob: 0 },
      mints: [this.net.mint],
      bootstrap: this.net.bootstrap,
      graceMs: 1500,
      minLocktimeSec: 2,
      ...over,
    })
    await provider.start()
    this.defer(() => provider.stop())
    return provider
  }

  /** A customer with a funded wallet. */
  async customer(fund: number, dataDir?: string): Promise<{ dataDir: string; identity: Identity; wallet: Wallet; refundKey: PaymentKey }> {
    const dir = dataDir ?? (await this.dir('dvm-customer-'))
    const identity = await loadOrCreateIdentity(dir)
    const refundKey = await loadOrCreatePaymentKey(dir)
    const wallet = new Wallet({ dataDir: dir, mintUrl: this.net.mint })
    await wallet.load()
    if (fund > 0) await wallet.fund(fund)
    return { dataDir: dir, identity, wallet, refundKey }
  }

  /** Connect a customer to a provider and open a session (not yet ticking). */
  async session(
    customer: { identity: Identity; wallet: Wallet; refundKey: PaymentKey },
    provider: Provider | { pubkey: string },
    opts: Partial<SessionOptions> & { kind?: number } = {},
  ): Promise<{ conn: Connection; client: SessionClient }> {
    const pubkey = provider instanceof Provider ? provider.opts.identity.pubkey : provider.pubkey
    const conn = await connectToProvider({ identity: customer.identity, bootstrap: this.net.bootstrap, kind: opts.kind ?? 5100, providerPubkey: pubkey, timeoutMs: 20_000 })
    this.defer(() => conn.swarm.destroy())
    const client = new SessionClient({
      peer: conn.link.peer,
      skill: conn.link.skill,
      kind: opts.kind ?? 5100,
      mode: 'session',
      budget: 20,
      funds: walletFunds(customer.wallet, this.net.mint, customer.refundKey),
      lockSeconds: 4,
      ...opts,
    })
    return { conn, client }
  }

  async cleanup(): Promise<void> {
    // every stop runs even if one fails; a failing stop then fails the test
    const errors: unknown[] = []
    for (const stop of this.stops.splice(0).reverse()) await stop().catch((err: unknown) => errors.push(err))
    // a wallet write still landing as an agent stops would otherwise make rmdir race it
    await Promise.all(this.dirs.splice(0).map((d) => rm(d, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })))
    if (errors.length) throw new AggregateError(errors, `${errors.length} agent(s) failed to stop: ${errors.map((e) => (e as Error).message).join('; ')}`)
  }
}

export async function until<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 15_000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v) return v as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
