/**
 * The demo's seller: the processor, the demo app as the tunnel's backend,
 * and a provider selling it by the second on the devnet.
 */
import type { DevnetConfig } from '../config/devnet-config.js'
import { loadOrCreateIdentity, type Identity } from '../identity/nostr-key.js'
import { Provider } from '../provider/provider.js'
import { startDemoApp, type ProviderView } from './app.js'
import type { Teardown } from './lifecycle.js'
import { pickDemoProcessor, type DemoProcessorChoice } from './processor.js'

/** The job kind the demo provider sells: text generation in today's NIP-90 registry. */
export const DEMO_KIND = 5050

/**
 * The provider accepts a tick only if its locktime leaves it this long to
 * redeem. The customer locks about a minute of ticks per swap, so its
 * locktime must cover that minute plus this margin (see DEFAULT_LOCK_SECONDS).
 */
export const PROVIDER_MIN_LOCKTIME_SEC = 20

export interface ProviderSide {
  provider: Provider
  identity: Identity
  /** the processor's name for people, e.g. `echo (built in)` */
  processorLabel: string
  /** the app's origin: the provider's backend */
  backend: string
  /** sats the provider's wallet gained from redemptions since it started */
  redeemedSoFar(): Promise<number>
}

export interface ProviderSideOptions {
  dataDir: string
  devnet: DevnetConfig
  perMinute: number
  processor: DemoProcessorChoice
  env?: NodeJS.ProcessEnv
  teardown: Teardown
  note: (message: string) => void
}

export async function startProviderSide(opts: ProviderSideOptions): Promise<ProviderSide> {
  const { note, teardown } = opts
  const picked = await pickDemoProcessor({ choice: opts.processor, env: opts.env })
  note(`processor: ${picked.note}`)
  const identity = await loadOrCreateIdentity(opts.dataDir)

  // The app is the provider's backend, so it starts first and asks the
  // provider for its figures once there is one.
  let provider: Provider | undefined
  let baseline = 0
  const redeemedSoFar = async (): Promise<number> => (provider ? (await provider.wallet.balance()).balance - baseline : 0)
  const app = await startDemoApp({
    processor: picked.processor,
    kind: DEMO_KIND,
    about: () => ({ provider: identity.npub, processor: picked.label, perMinute: opts.perMinute }),
    stats: async (): Promise<ProviderView> => {
      const sessions = provider?.p2p.sessionStats() ?? []
      return { sessions: sessions.length, paid: sessions.reduce((n, s) => n + s.paid, 0), redeemed: await redeemedSoFar() }
    },
    log: note,
  })
  teardown.add('demo app', () => app.close())

  const created = await Provider.create({
    dataDir: opts.dataDir,
    identity,
    kinds: [DEMO_KIND],
    processor: picked.processor,
    pricing: { perMinute: opts.perMinute, chunksPerSat: 10, perJob: 0 },
    mints: [opts.devnet.mint],
    bootstrap: opts.devnet.bootstrap,
    backend: app.origin,
    minLocktimeSec: PROVIDER_MIN_LOCKTIME_SEC,
    graceMs: 3_000,
    about: 'dvm-agent demo provider: a chat and a picture, sold by the second',
    log: (m) => note(`provider: ${m}`),
  })
  teardown.add('provider', () => created.stop())
  await created.start()
  // Ticks held since an earlier run died are redeemed first, so that
  // "redeemed" counts this run's session only.
  await created.redeemer.redeemAll()
  baseline = (await created.wallet.balance()).balance
  provider = created
  return { provider: created, identity, processorLabel: picked.label, backend: app.origin, redeemedSoFar }
}
