#!/usr/bin/env node
// dvm-customer: one NIP-90 job from the shell. Publishes the request on the
// relays, streams the provider's output, pays its invoice from the wallet
// (never more than --bid), prints the result. Thin layer over src/customer.
import { Option } from 'commander'
import { nip19 } from 'nostr-tools'
import { chooseRelays, chooseWalletMint } from '../src/cli/network.js'
import { addGlobalOptions, createProgram, fail, resolveGlobals, walletFlags, type GlobalOptions } from '../src/cli/options.js'
import { collect, parseIntFlag } from '../src/cli/collect.js'
import { runP2PCommand } from '../src/customer/p2p-command.js'
import { loadOrCreateIdentity, parsePubkey } from '../src/identity/nostr-key.js'
import type { JobInput } from '../src/processors/types.js'
import { loadNostrCrypto } from '../src/nostr/events.js'
import { isJobRequestKind } from '../src/nostr/nip90.js'
import { RelayPool } from '../src/nostr/relay-client.js'
import { discoverProviders } from '../src/customer/discovery.js'
import { runChain, type CustomerEvent, type JobOutcome, type JobSpec, type PayInvoice } from '../src/customer/relay-job.js'
import { Wallet } from '../src/payments/wallet.js'
import { decodeToken, sameMint } from '../src/payments/token.js'

const NAME = 'dvm-customer'

process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})

interface CustomerFlags extends GlobalOptions {
  kind: string
  provider?: string
  bid?: string
  encrypt: boolean
  chain: string[]
  param: string[]
  inputType: string
  output?: string
  relay: string[]
  mint?: string
  timeout: string
  via: string
  discover: boolean
  budget: string
  lockSeconds: string
  maxPrice?: string
}

const program = addGlobalOptions(
  createProgram(NAME, 'Run one NIP-90 job: publish the request, stream feedback and output, pay if asked (up to --bid), print the result.')
    .argument('<prompt...>', 'the job input (words are joined with spaces)')
    .addOption(new Option('--kind <kind>', 'job request kind, 5000-5999 (5050 = text generation)').env('DVM_KIND').default('5050'))
    .addOption(new Option('--provider <npub>', 'send the job to this provider only (npub or hex)').env('DVM_PROVIDER'))
    .addOption(new Option('--bid <msats>', 'the most to pay for each job, in millisats; without it nothing is paid').env('DVM_BID'))
    .addOption(new Option('--encrypt', 'encrypt inputs and params to the provider (NIP-44); results come back encrypted').default(false))
    .addOption(new Option('--chain <step>', 'add a step that takes the previous step\'s output: "<kind>:<text>", "<kind>" or "<text>" (repeatable)').argParser(collectRaw).default([]))
    .addOption(new Option('--param <key=value>', 'a job parameter (repeatable)').argParser(collectRaw).default([]))
    .addOption(new Option('--input-type <type>', 'how the provider reads the prompt: text, url, event or job').choices(['text', 'url', 'event', 'job']).default('text'))
    .addOption(new Option('--output <mime>', 'the output format to ask for'))
    .addOption(new Option('--relay <url>', 'relay to use (repeatable or comma-separated; default: the devnet relay, then $DVM_RELAYS, then public relays)').argParser(collect).default([]))
    .addOption(new Option('--mint <url>', "the wallet's mint, for paying (default: the devnet's, then $DVM_MINT, then the one mint this data dir has a wallet at)"))
    .addOption(new Option('--timeout <seconds>', 'give up (and cancel the job) after this long').default('120'))
    .addOption(new Option('--via <transport>', 'relay: NIP-90 over Nostr relays; p2p: over Hyperswarm').choices(['relay', 'p2p']).default('relay'))
    .addOption(new Option('--budget <sats>', 'p2p: the most this job may cost, paid per chunk as output arrives').default('50'))
    .addOption(new Option('--lock-seconds <s>', 'p2p: locktime of proofs locked to the provider (raised to its minimum, 16 min by default); unsent ones come back after it').default('1200'))
    .addOption(new Option('--max-price <sats>', 'p2p: refuse providers asking more than this per 100 chunks of output'))
    .addOption(new Option('--no-discover', 'without --provider, publish an open request instead of looking up providers (NIP-89)')),
).addHelpText('after', `
Examples:
  dvm-customer --devnet .devnet --kind=5050 "Summarize the Bitcoin whitepaper"
  dvm-customer --relay wss://relay.example --provider npub1… --bid 21000 --encrypt "a private question"
  dvm-customer --devnet .devnet "draft an answer" --chain "5050:make it shorter" --json`)

function collectRaw(value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

function parseParams(values: string[]): Record<string, string> {
  const params: Record<string, string> = {}
  for (const v of values) {
    const eq = v.indexOf('=')
    if (eq <= 0) throw new Error(`--param "${v}" must look like key=value`)
    params[v.slice(0, eq)] = v.slice(eq + 1)
  }
  return params
}

/** "<kind>:<text>", "<kind>" or "<text>" (the text step keeps --kind). */
function parseStep(value: string, defaultKind: number): { kind: number; text?: string } {
  const m = /^(\d{4})(?::([\s\S]*))?$/.exec(value)
  if (m) {
    const kind = Number(m[1])
    if (!isJobRequestKind(kind)) throw new Error(`--chain "${value}": ${kind} is not a job kind (5000-5999)`)
    return m[2] ? { kind, text: m[2] } : { kind }
  }
  return { kind: defaultKind, text: value }
}

function npubOf(pubkey: string): string {
  return nip19.npubEncode(pubkey)
}

program.action(async (promptWords: string[], flags: CustomerFlags) => {
  const g = resolveGlobals(flags)
  const json = g.json
  const out = (obj: Record<string, unknown>): void => {
    if (json) process.stdout.write(JSON.stringify(obj) + '\n')
  }
  const note = (line: string): void => {
    if (!json) process.stderr.write(line + '\n')
  }
  let pool: RelayPool | undefined
  try {
    const kind = parseIntFlag('kind', flags.kind, 5000, 5999)
    if (flags.via === 'p2p') {
      const mintUrl = await chooseWalletMint({ flag: flags.mint, devnet: g.devnet, dataDir: g.dataDir })
      const text = promptWords.join(' ')
      if (text.trim().length === 0) throw new Error('the prompt is empty; give the job some input')
      process.exitCode = await runP2PCommand({
        identity: await loadOrCreateIdentity(g.dataDir),
        dataDir: g.dataDir,
        mintUrl,
        kind,
        input: [{ type: flags.inputType as JobInput['type'], value: text }],
        params: parseParams(flags.param),
        output: flags.output,
        budget: parseIntFlag('budget', flags.budget, 1, 1_000_000),
        lockSeconds: parseIntFlag('lock-seconds', flags.lockSeconds, 1),
        walletFlags: walletFlags(flags, g, mintUrl),
        maxPrice: flags.maxPrice !== undefined ? parseIntFlag('max-price', flags.maxPrice, 1) : undefined,
        providerPubkey: flags.provider ? parsePubkey(flags.provider) : undefined,
        bootstrap: g.devnet?.bootstrap,
        relays: chooseRelays(flags.relay, g.devnet),
        timeoutMs: parseIntFlag('timeout', flags.timeout, 1, 86_400) * 1000,
        json,
      })
      // the swarm's sockets must not keep a finished command alive
      setImmediate(() => process.exit())
      return
    }
    const bidMsats = flags.bid !== undefined ? parseIntFlag('bid', flags.bid, 0) : undefined
    const timeoutSec = parseIntFlag('timeout', flags.timeout, 1, 86_400)
    const params = parseParams(flags.param)
    const relays = chooseRelays(flags.relay, g.devnet)
    const prompt = promptWords.join(' ')
    if (prompt.trim().length === 0) throw new Error('the prompt is empty; give the job some input')
    const steps = flags.chain.map((s) => parseStep(s, kind))

    const identity = await loadOrCreateIdentity(g.dataDir)
    const crypto = await loadNostrCrypto()
    pool = new RelayPool({ crypto, relays })
    if (!(await pool.waitConnected(5000))) throw new Error(`cannot reach any relay (${relays.join(', ')}); check --relay or start the devnet`)

    let provider = flags.provider ? parsePubkey(flags.provider) : undefined
    if (!provider && flags.discover) {
      const found = await discoverProviders(pool, kind, { timeoutMs: 3000 })
      const best = found.find((p) => p.available) ?? found[0]
      if (best) {
        provider = best.pubkey
        out({ type: 'provider', pubkey: best.pubkey, npub: npubOf(best.pubkey), name: best.handler.name, available: best.available, free: best.heartbeat?.free ?? null, pricing: best.handler.pricing })
        note(`provider: ${best.handler.name || 'unnamed'} ${npubOf(best.pubkey)}${best.available ? '' : ' (no recent heartbeat with a free slot)'}`)
      } else {
        note(`no provider announces kind ${kind} on these relays; publishing an open request and waiting up to ${timeoutSec} s for one to answer (--timeout)`)
      }
    }
    if (flags.encrypt && !provider) throw new Error('--encrypt needs a provider to encrypt to, and none was found; pass --provider=npub…')

    const base = (k: number, inputs: JobInput[]): JobSpec => {
      const spec: JobSpec = { kind: k, inputs, encrypt: flags.encrypt }
      if (provider) spec.provider = provider
      if (bidMsats !== undefined) spec.bidMsats = bidMsats
      if (Object.keys(params).length > 0) spec.params = params
      if (flags.output) spec.output = flags.output
      return spec
    }
    const specs: JobSpec[] = [
      base(kind, [{ type: flags.inputType as JobInput['type'], value: prompt }]),
      ...steps.map((s) => base(s.kind, s.text ? [{ type: 'text', value: s.text }] : [])),
    ]

    // only a paid job needs the wallet; a free one runs without any
    const mintUrl = await chooseWalletMint({ flag: flags.mint, devnet: g.devnet, dataDir: g.dataDir }).catch(() => undefined)
    let wallet: Wallet | undefined
    const openWallet = async (): Promise<Wallet> => {
      if (!wallet) {
        wallet = new Wallet({ dataDir: g.dataDir, mintUrl: mintUrl ?? (await chooseWalletMint({ flag: flags.mint, devnet: g.devnet, dataDir: g.dataDir })) })
        await wallet.load()
      }
      return wallet
    }
    const pay: PayInvoice = async (bolt11) => {
      // the bid caps what leaves the wallet, fees included, not just the invoice amount
      await (await openWallet()).melt(bolt11, bidMsats !== undefined ? { maxSats: Math.floor(bidMsats / 1000) } : {})
    }
    // A paid job that fails comes back as a token; only one from our own mint is taken
    // automatically (a provider must not make us contact hosts of its choosing).
    const receiveRefund = async (token: string): Promise<number> => {
      const from = decodeToken(token).mint
      if (mintUrl && !sameMint(from, mintUrl)) {
        throw new Error(`it is from mint ${from}, not your wallet's mint ${mintUrl}; receive it with: dvm-wallet --mint ${from} receive <token>`)
      }
      return (await (await openWallet()).receive(token)).amount
    }

    const last = specs.length - 1
    let streamed = ''
    const onEvent = (e: CustomerEvent): void => {
      const step = specs.length > 1 ? `step ${e.step + 1}: ` : ''
      switch (e.type) {
        case 'published': {
          const ok = e.outcomes.filter((o) => o.ok).length
          out({ type: 'published', step: e.step, id: e.id, relays: e.outcomes })
          note(`${step}request ${e.id.slice(0, 12)}… published to ${ok}/${e.outcomes.length} relays`)
          return
        }
        case 'feedback':
          out({ type: 'feedback', step: e.step, id: e.id, provider: e.provider, status: e.status, ...(e.extra ? { extra: e.extra } : {}) })
          if (e.status !== 'payment-required') note(`${step}${e.status}${e.extra ? `: ${e.extra}` : ''}`)
          return
        case 'partial':
          out({ type: 'partial', step: e.step, id: e.id, text: e.text })
          if (!json && e.step === last) {
            process.stdout.write(e.text)
            streamed += e.text
          }
          return
        case 'payment-required':
          out({ type: 'payment-required', step: e.step, id: e.id, provider: e.provider, amount_msats: e.amountMsats, bolt11: e.bolt11 })
          note(`${step}paying ${e.amountMsats / 1000} sats (bid ${bidMsats ?? 0} msats)…`)
          return
        case 'paid':
          out({ type: 'paid', step: e.step, id: e.id, provider: e.provider, amount_msats: e.amountMsats })
          note(`${step}paid ${e.amountMsats / 1000} sats`)
          return
        case 'already-paid':
          out({ type: 'already-paid', step: e.step, id: e.id, provider: e.provider, reason: e.reason })
          note(`${step}the mint reports the invoice already paid; nothing was spent`)
          return
        case 'refunded':
          out({ type: 'refunded', step: e.step, id: e.id, provider: e.provider, sats: e.sats, amount_msats: e.amountMsats })
          note(`${step}the job failed after it was paid; ${e.sats} sats were refunded to your wallet`)
          return
        case 'refund-unclaimed':
          out({ type: 'refund-unclaimed', step: e.step, id: e.id, provider: e.provider, amount_msats: e.amountMsats, token: e.token, reason: e.reason })
          // The token is the money: it goes to the terminal even without --json, so it is never lost.
          if (!json) process.stderr.write(`${step}refund of ${e.amountMsats / 1000} sats not received (${e.reason}); the token:\n${e.token}\n`)
          return
        case 'ignored':
          return
      }
    }

    const stop = new AbortController()
    process.once('SIGINT', () => stop.abort())
    let outcomes: JobOutcome[]
    try {
      outcomes = await runChain(specs, { identity, pool, crypto, timeoutMs: timeoutSec * 1000, pay, receiveRefund, onEvent, signal: stop.signal })
    } catch (err) {
      if (streamed && !streamed.endsWith('\n')) process.stdout.write('\n')
      throw err
    }
    const final = outcomes[last]!
    for (const [n, o] of outcomes.entries()) {
      out({ type: 'result', step: n, id: o.id, provider: o.provider, content: o.content, paid_msats: o.paidMsats, ...(o.amountMsats !== undefined ? { amount_msats: o.amountMsats } : {}) })
    }
    if (!json) {
      // Partial output already on the terminal is not printed twice.
      const rest = final.content.startsWith(streamed) ? final.content.slice(streamed.length) : (streamed ? '\n' : '') + final.content
      process.stdout.write(rest.endsWith('\n') ? rest : rest + '\n')
      const paid = outcomes.reduce((n, o) => n + o.paidMsats, 0)
      note(`done: provider ${npubOf(final.provider)}${paid > 0 ? `, paid ${paid / 1000} sats` : ''}`)
    }
    pool.close()
    process.exitCode = 0
    // Open sockets and the wallet's timers must not keep a finished command alive.
    setImmediate(() => process.exit(0))
  } catch (err) {
    pool?.close()
    fail(NAME, err, json)
  }
})

program.parseAsync().catch((err: unknown) => fail(NAME, err))
