#!/usr/bin/env -S node --min-semi-space-size=8 --initial-old-space-size=64
// dvm-agent: be a provider. Thin CLI over src/provider.
import { Option } from 'commander'
import { addGlobalOptions, createProgram, fail, resolveGlobals, type GlobalOptions } from '../src/cli/options.js'
import { collect, parseIntFlag, parseKinds } from '../src/cli/collect.js'
import { chooseAcceptedMints, chooseRelays } from '../src/cli/network.js'
import { loadOrCreateIdentity, parsePubkey } from '../src/identity/nostr-key.js'
import { createProcessor } from '../src/processors/index.js'
import { Provider } from '../src/provider/provider.js'
import { loadSkillFile } from '../src/skills/validate.js'
import { ProviderConsole } from '../src/provider/console.js'
import { PipelineProcessor } from '../src/processors/pipeline.js'
import { buyP2PJob } from '../src/customer/buy-job.js'
import { walletFunds } from '../src/customer/wallet-funds.js'
import { loadOrCreatePaymentKey } from '../src/payments/payment-key.js'

const NAME = 'dvm-agent'

interface AgentFlags extends GlobalOptions {
  kind: string[]
  processor: string
  backend?: string
  model?: string
  pricePerMinute: string
  chunksPerSat: string
  pricePerJob: string
  mint: string[]
  relay: string[]
  maxSessions: string
  grace: string
  skill?: string
  about?: string
  allowPath: string[]
  denyPath: string[]
  maxJobs: string
  minPrice: string
  name?: string
  subKind?: string
  subBudget: string
  subProvider?: string
}

const program = addGlobalOptions(
  createProgram(NAME, 'Sell compute: serve paid P2P sessions and jobs for the given job kinds, and NIP-90 jobs over relays.')
    .addOption(new Option('--kind <kinds>', 'job kinds to serve, comma-separated or repeated (e.g. 5050,5100)').argParser(collect).makeOptionMandatory())
    .addOption(new Option('--processor <spec>', 'echo | ollama | groq | exec:<command> | http(s)://backend').env('DVM_PROCESSOR').default('echo'))
    .addOption(new Option('--backend <url>', 'HTTP origin paying sessions may tunnel to (web UI, API)').env('DVM_BACKEND'))
    .addOption(new Option('--model <name>', 'model for ollama/groq processors').env('DVM_MODEL'))
    .addOption(new Option('--price-per-minute <sats>', 'session price; a 1-sat tick every 60000/price ms').env('DVM_PRICE_PER_MINUTE').default('60'))
    .addOption(new Option('--chunks-per-sat <n>', 'P2P job output: chunks one sat buys').env('DVM_CHUNKS_PER_SAT').default('10'))
    .addOption(new Option('--price-per-job <sats>', 'relay (NIP-90) job price; 0 = free').env('DVM_PRICE_PER_JOB').default('0'))
    .addOption(new Option('--mint <url>', "accepted mint, repeatable (default: the devnet's, then $DVM_MINT, comma-separated, then the mints this data dir has wallets at)").argParser(collect).default([]))
    .addOption(new Option('--relay <url>', 'Nostr relay, repeatable (default: the devnet relay, then $DVM_RELAYS, then public relays)').argParser(collect).default([]))
    .addOption(new Option('--max-sessions <n>', 'concurrent paid sessions').env('DVM_MAX_SESSIONS').default('100'))
    .addOption(new Option('--max-jobs <n>', 'relay (NIP-90) jobs running at once').env('DVM_MAX_JOBS').default('4'))
    .addOption(new Option('--min-price <sats>', 'relay jobs priced below this are free').default('1'))
    .addOption(new Option('--name <name>', 'display name in the profile and NIP-89 handlers'))
    .addOption(new Option('--grace <seconds>', 'how long a session may go unpaid before it ends').default('5'))
    .addOption(new Option('--skill <file>', 'skill descriptor JSON (default: built from the processor)'))
    .addOption(new Option('--about <text>', 'one line about this provider for its NIP-89 handler'))
    .addOption(new Option('--allow-path <prefix>', 'tunnel: only these path prefixes reach the backend (repeatable)').argParser(collect).default([]))
    .addOption(new Option('--deny-path <prefix>', 'tunnel: these path prefixes never reach the backend (repeatable)').argParser(collect).default([]))
    .addOption(new Option('--sub-kind <kind>', 'pipeline: buy a job of this kind from another provider (P2P) and feed its output to the processor'))
    .addOption(new Option('--sub-budget <sats>', 'most sats one sub-job may cost').default('10'))
    .addOption(new Option('--sub-provider <npub>', 'buy sub-jobs only from this provider')),
)

program.action(async (flags: AgentFlags) => {
  const g = resolveGlobals(flags)
  const out = new ProviderConsole(g.json)
  let provider: Provider
  try {
    const identity = await loadOrCreateIdentity(g.dataDir)
    const mints = await chooseAcceptedMints(flags.mint, g.devnet, g.dataDir)
    // an http(s) processor is also the tunnel's backend unless --backend names another
    const backend = flags.backend ?? (/^https?:\/\//.test(flags.processor) ? new URL(flags.processor).origin : undefined)
    let processor = await createProcessor({ spec: flags.processor, model: flags.model })
    if (flags.subKind) {
      const subKind = parseIntFlag('sub-kind', flags.subKind, 0, 65535)
      const subBudget = parseIntFlag('sub-budget', flags.subBudget, 1)
      const refundKey = await loadOrCreatePaymentKey(g.dataDir)
      const subProvider = flags.subProvider ? parsePubkey(flags.subProvider) : undefined
      processor = new PipelineProcessor(processor, subKind, async (job) => {
        // paid from the provider's own wallet: what it earns buys what it needs
        const r = await buyP2PJob({
          identity,
          funds: walletFunds(provider.wallet, provider.wallet.mintUrl, refundKey),
          kind: subKind,
          input: job.input,
          params: {},
          budget: subBudget,
          bootstrap: g.devnet?.bootstrap,
          providerPubkey: subProvider,
        })
        if (r.status !== 'success') throw new Error(`sub-job ended ${r.status}${r.error ? `: ${r.error}` : ''}`)
        out.log(`bought a kind ${subKind} sub-job for ${r.paid} sats`)
        return r.output
      })
    }
    provider = await Provider.create({
      dataDir: g.dataDir,
      identity,
      kinds: parseKinds(flags.kind),
      processor,
      pricing: {
        perMinute: parseIntFlag('price-per-minute', flags.pricePerMinute, 1, 6000),
        chunksPerSat: parseIntFlag('chunks-per-sat', flags.chunksPerSat, 1),
        perJob: parseIntFlag('price-per-job', flags.pricePerJob, 0),
      },
      mints,
      bootstrap: g.devnet?.bootstrap,
      backend,
      pathPolicy: { allow: flags.allowPath, deny: flags.denyPath },
      maxSessions: parseIntFlag('max-sessions', flags.maxSessions, 1, 100_000),
      graceMs: parseIntFlag('grace', flags.grace, 0, 600) * 1000,
      skill: flags.skill ? loadSkillFile(flags.skill) : undefined,
      about: flags.about,
      name: flags.name,
      relays: chooseRelays(flags.relay, g.devnet),
      maxJobs: parseIntFlag('max-jobs', flags.maxJobs, 1, 1000),
      // On the devnet every relay is on loopback; elsewhere a request must not steer us into our own network.
      privateRequestRelays: flags.relay.length === 0 && g.devnet !== undefined,
      minPrice: parseIntFlag('min-price', flags.minPrice, 0),
      log: (m) => out.log(m),
    })
    await provider.start()
  } catch (err) {
    fail(NAME, err, g.json)
  }
  out.attach(provider)
  out.ready(provider)
  // a backend that is down now may be started later: warn, and keep serving
  const backend = await provider.backendProbe?.check()
  if (backend && !backend.up) out.backendDown(provider.gateway!.origin, backend.error)

  let stopping = false
  const shutdown = () => {
    if (stopping) process.exit(1)
    stopping = true
    provider.stop().then(
      () => out.stopped(provider).then(() => process.exit(0)),
      (err: unknown) => fail(NAME, err, g.json),
    )
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
})

program.parseAsync(process.argv).catch((err: unknown) => fail(NAME, err))
