/**
 * `npm run demo`: the whole market on one machine. Starts the devnet, a
 * provider selling the built-in demo app through its tunnel, a funded
 * customer renting it through a local proxy; then the money and the bytes
 * move live until Ctrl-C, --duration or the budget ends it, and every sat is
 * accounted for (live-demo.ts).
 */
import { existsSync, mkdirSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { startDevnet, type RunningDevnet } from '../devnet/index.js'
import { defaultMintVenv } from '../devnet/paths.js'
import { newByteCounter } from './counting-stream.js'
import { prepareWallet, startProxy, startSession } from './customer-side.js'
import { Teardown } from './lifecycle.js'
import { LiveDemo, type RunningDemo } from './live-demo.js'
import type { DemoProcessorChoice } from './processor.js'
import { PROVIDER_MIN_LOCKTIME_SEC, startProviderSide } from './provider-side.js'
import type { DemoReporter } from './report.js'

export type { RunningDemo } from './live-demo.js'

export interface DemoOptions {
  /** Holds the devnet (mint database), the provider's and the customer's keys and wallets; kept between runs. */
  dir: string
  /** the most the session may cost, sats; the customer's wallet is topped up to it */
  budget: number
  /** local proxy port; when busy, a free one is used instead; 0 = a free one */
  port: number
  /** end the demo after this long (seconds) */
  durationSec?: number
  /** the provider's price, sats a minute (one 1-sat tick every 60/perMinute s) */
  perMinute: number
  /** locktime of the customer's locked proofs, seconds: what is not sent comes back this long after it was locked */
  lockSeconds: number
  processor: DemoProcessorChoice
  env?: NodeJS.ProcessEnv
}

/**
 * A session locks about a minute of ticks per swap; the last of them must
 * still leave the provider PROVIDER_MIN_LOCKTIME_SEC to redeem, plus slack
 * for a slow swap. Short, so that a Ctrl-C's leftovers come back soon.
 */
export const DEFAULT_LOCK_SECONDS = 60 + PROVIDER_MIN_LOCKTIME_SEC + 20
export const MIN_LOCK_SECONDS = 60 + PROVIDER_MIN_LOCKTIME_SEC + 10

export class DemoAbortedError extends Error {
  constructor() {
    super('stopped before the demo was ready')
  }
}

/** Start the mint, relay and DHT; the first run installs the mint, which takes a while, so say so. */
async function startDemoDevnet(dir: string, note: (m: string) => void): Promise<RunningDevnet> {
  const t0 = Date.now()
  const venv = defaultMintVenv()
  let progress: NodeJS.Timeout | undefined
  if (!existsSync(join(venv, '.dvm-mint-installed'))) {
    const shown = relative(process.cwd(), venv)
    note(`first run: installing the Cashu mint (nutshell) into ${shown && !shown.startsWith('..') ? shown : venv}; this takes about 40 s, once`)
    // pip runs quietly: show that the wait is progressing, not hung
    progress = setInterval(() => note(`  still installing the mint… ${Math.round((Date.now() - t0) / 1000)} s`), 10_000)
  }
  try {
    return await startDevnet({ dir, log: (line) => note(`devnet: ${line}`) })
  } finally {
    clearInterval(progress)
  }
}

export async function startDemo(opts: DemoOptions, report: DemoReporter, abort?: AbortSignal): Promise<RunningDemo> {
  if (opts.lockSeconds < MIN_LOCK_SECONDS) {
    throw new Error(`--lock-seconds must be at least ${MIN_LOCK_SECONDS}: a minute of ticks is locked at once and the provider needs ${PROVIDER_MIN_LOCKTIME_SEC} s to redeem the last`)
  }
  const dir = resolve(opts.dir)
  mkdirSync(dir, { recursive: true })
  const t0 = Date.now()
  const teardown = new Teardown()
  const note = (m: string): void => report.note(m)
  const checkAbort = (): void => {
    if (abort?.aborted) throw new DemoAbortedError()
  }

  try {
    const devnet = await startDemoDevnet(join(dir, 'devnet'), note)
    teardown.add('devnet', () => devnet.stop())
    const net = devnet.config
    report.event(
      'devnet',
      { ...net, mintPid: devnet.mint?.pid ?? null, startupMs: Date.now() - t0 },
      `devnet up in ${((Date.now() - t0) / 1000).toFixed(1)} s: Cashu mint ${net.mint}, Nostr relay ${net.relays.join(', ')}, HyperDHT on 127.0.0.1:${net.bootstrap[0]?.port}`,
    )
    checkAbort()

    const seller = await startProviderSide({ dataDir: join(dir, 'provider'), devnet: net, perMinute: opts.perMinute, processor: opts.processor, env: opts.env, teardown, note })
    report.event(
      'provider',
      { npub: seller.identity.npub, swarmKey: seller.provider.swarmPublicKey, backend: seller.backend, processor: seller.processorLabel, perMinute: opts.perMinute },
      `provider ${seller.identity.npub} sells ${seller.backend} (the demo app, ${seller.processorLabel}) at ${opts.perMinute} sats a minute`,
    )
    checkAbort()

    const customer = await prepareWallet(join(dir, 'customer'), net.mint, opts.budget, report)
    checkAbort()
    const session = await startSession({ customer, seller, devnet: net, budget: opts.budget, lockSeconds: opts.lockSeconds, durationSec: opts.durationSec, report, teardown })
    checkAbort()
    const bytes = newByteCounter()
    const proxy = await startProxy(session, opts.port, bytes, report, teardown)
    checkAbort()

    report.event(
      'ready',
      { url: proxy.url, pid: process.pid, provider: seller.identity.npub, processor: seller.processorLabel, budget: opts.budget, perMinute: opts.perMinute, startupMs: Date.now() - t0 },
      `\n  ➜ open ${proxy.url}\n    the provider's demo app through a paid P2P session: ${opts.perMinute} sats a minute from a ${opts.budget}-sat budget.\n    Ctrl-C ends it and prints the accounting.\n`,
    )
    return new LiveDemo({ url: proxy.url, session, seller, customer, bytes, report, teardown, durationSec: opts.durationSec })
  } catch (err) {
    await teardown.run(note)
    throw err
  }
}
