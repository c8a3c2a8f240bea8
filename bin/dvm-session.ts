#!/usr/bin/env -S node --min-semi-space-size=8 --initial-old-space-size=64
// dvm-session: rent a provider, pay per tick, browse its backend on localhost. Thin CLI over src/customer.
import { Option } from 'commander'
import { addGlobalOptions, createProgram, fail, resolveGlobals, walletFlags, type GlobalOptions } from '../src/cli/options.js'
import { collect, parseIntFlag } from '../src/cli/collect.js'
import { chooseRelays, chooseWalletMint } from '../src/cli/network.js'
import { loadOrCreateIdentity, parsePubkey } from '../src/identity/nostr-key.js'
import { loadOrCreatePaymentKey } from '../src/payments/payment-key.js'
import { Wallet } from '../src/payments/wallet.js'
import { emptyWalletError, walletFunds, reclaimExpiredLocks } from '../src/customer/wallet-funds.js'
import { RentedSession } from '../src/customer/session-runner.js'
import { SessionConsole } from '../src/customer/session-console.js'
import { runP2PJob } from '../src/customer/p2p-job.js'

const NAME = 'dvm-session'

interface SessionFlags extends GlobalOptions {
  kind: string
  budget: string
  provider?: string
  maxPrice?: string
  port: string
  host?: string
  duration?: string
  mint?: string
  proxy: boolean
  lockSeconds: string
  relay: string[]
  reconnect: string
}

const program = addGlobalOptions(
  createProgram(NAME, 'Rent a provider: open a paid P2P session and use its backend through a local HTTP proxy.')
    .addOption(new Option('--kind <kind>', 'job kind to rent').env('DVM_KIND').default('5100'))
    .addOption(new Option('--budget <sats>', 'the most this session may cost').env('DVM_BUDGET').default('100'))
    .addOption(new Option('--provider <npub>', 'only this provider (npub or hex); its identity is checked on the connection').env('DVM_PROVIDER'))
    .addOption(new Option('--max-price <sats>', 'refuse providers asking more than this per minute'))
    .addOption(new Option('--port <port>', 'local proxy port; 0 picks a free one').env('DVM_PORT').default('8080'))
    .addOption(new Option('--host <host>', 'local proxy interface (default 127.0.0.1; anything else is reachable by others)'))
    .addOption(new Option('--no-proxy', 'no local proxy (pay for time, use generate)'))
    .addOption(new Option('--duration <seconds>', 'end the session after this long'))
    .addOption(new Option('--mint <url>', "the wallet's mint (default: the devnet's, then $DVM_MINT, then the one mint this data dir has a wallet at)"))
    .addOption(new Option('--reconnect <seconds>', 'if the provider goes away, keep trying to reach it this long before ending the session (0 = end at once)').default('60'))
    .addOption(new Option('--lock-seconds <s>', 'locktime of proofs locked to the provider (raised to its minimum, 16 min by default)').default('1200'))
    .addOption(new Option('--relay <url>', 'choose the provider from NIP-89 handlers on these relays (repeatable; default: the devnet relay, then $DVM_RELAYS, then public relays)').argParser(collect).default([])),
)

program.action(async (flags: SessionFlags) => {
  const g = resolveGlobals(flags)
  let mintUrl: string
  const con = (wallet: Wallet) => new SessionConsole(g.json, async () => (await wallet.balance()).balance)
  let session: RentedSession
  let wallet: Wallet
  let out: SessionConsole
  try {
    mintUrl = await chooseWalletMint({ flag: flags.mint, devnet: g.devnet, dataDir: g.dataDir })
    const budget = parseIntFlag('budget', flags.budget, 1, 1_000_000)
    const identity = await loadOrCreateIdentity(g.dataDir)
    const refundKey = await loadOrCreatePaymentKey(g.dataDir)
    wallet = new Wallet({ dataDir: g.dataDir, mintUrl })
    await wallet.load()
    out = con(wallet)
    const back = await reclaimExpiredLocks(wallet, refundKey).catch(() => null)
    if (back?.reclaimed) out.emit('reclaimed', { sats: back.reclaimed }, `reclaimed ${back.reclaimed} sats from earlier sessions' unsent proofs`)
    const { balance } = await wallet.balance()
    if (balance < 1) throw await emptyWalletError(wallet, { amount: budget, walletFlags: walletFlags(flags, g, mintUrl) })
    session = new RentedSession({
      identity,
      funds: walletFunds(wallet, mintUrl, refundKey),
      kind: parseIntFlag('kind', flags.kind, 0, 65535),
      budget: Math.min(budget, balance),
      bootstrap: g.devnet?.bootstrap,
      providerPubkey: flags.provider ? parsePubkey(flags.provider) : undefined,
      maxPerMinute: flags.maxPrice ? parseIntFlag('max-price', flags.maxPrice, 1) : undefined,
      port: flags.proxy ? parseIntFlag('port', flags.port, 0, 65535) : null,
      host: flags.host,
      lockSeconds: parseIntFlag('lock-seconds', flags.lockSeconds, 1),
      reconnectMs: parseIntFlag('reconnect', flags.reconnect, 0, 86_400) * 1000,
      relays: chooseRelays(flags.relay, g.devnet),
      expectedMs: flags.duration ? parseIntFlag('duration', flags.duration, 1) * 1000 : undefined,
    })
    out.attach(session)
    await session.start()
  } catch (err) {
    fail(NAME, err, g.json)
  }

  let closePrompt = () => {}
  const quit = (reason: string) => void session.stop(reason)
  session.once('end', async (summary) => {
    closePrompt()
    const balance = (await wallet.balance()).balance
    out.end(summary, balance)
    process.exit(0)
  })
  closePrompt = out.prompt(session, {
    onQuit: () => quit('customer quit'),
    onGenerate: async (text) => {
      const r = await runP2PJob(session.client, { kind: Number(flags.kind), input: [{ type: 'text', value: text }] }, {
        onChunk: (t) => (g.json ? out.emit('chunk', { data: t }) : process.stdout.write(t)),
      })
      out.emit('job', { status: r.status, chunks: r.chunks, error: r.error }, `\njob ${r.status}: ${r.chunks} chunks${r.error ? ` (${r.error})` : ''}`)
    },
  })
  if (flags.duration) setTimeout(() => quit('duration reached'), parseIntFlag('duration', flags.duration, 1) * 1000).unref()
  process.on('SIGINT', () => quit('interrupted'))
  process.on('SIGTERM', () => quit('terminated'))
})

program.parseAsync(process.argv).catch((err: unknown) => fail(NAME, err))
