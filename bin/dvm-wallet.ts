#!/usr/bin/env node
// dvm-wallet: the Cashu wallet in the data dir, from the shell. A thin layer
// over src/payments/wallet.ts; every subcommand prints one JSON object with --json.
import { createRequire } from 'node:module'
import { Option, type Command } from 'commander'
import { addGlobalOptions, createProgram, fail, resolveGlobals, type GlobalOptions } from '../src/cli/options.js'
import { TokenAlreadyTaken, Wallet } from '../src/payments/wallet.js'
import { loadOrCreatePaymentKey } from '../src/payments/payment-key.js'
import { reclaimExpiredLocks } from '../src/customer/wallet-funds.js'
import { decodeToken, sameMint } from '../src/payments/token.js'
import { existsSync } from 'node:fs'
import { collect } from '../src/cli/collect.js'
import { chooseRelays, chooseWalletMint } from '../src/cli/network.js'
import type { DevnetConfig } from '../src/config/devnet-config.js'
import { findRefunds } from '../src/customer/refund-claims.js'
import { identityFile, loadOrCreateIdentity } from '../src/identity/nostr-key.js'
import { loadNostrCrypto } from '../src/nostr/events.js'
import { RelayPool } from '../src/nostr/relay-client.js'
import { localTime } from '../src/util/local-time.js'

const NAME = 'dvm-wallet'

// `dvm-wallet balance | head -1` closes stdout early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})

interface WalletGlobals extends GlobalOptions {
  mint?: string
}

// qrcode-terminal ships no types; this is the one call we use.
const qrcode = createRequire(import.meta.url)('qrcode-terminal') as {
  generate(text: string, opts: { small: boolean }, cb: (qr: string) => void): void
}

const program = createProgram(NAME, 'Cashu ecash wallet kept in the data dir: balance, fund, send, receive, melt, refunds.')
addGlobalOptions(program)
program
  .addOption(new Option('--mint <url>', 'the mint this wallet uses (default: the devnet mint with --devnet, else the only mint the data dir has a wallet for)').env('DVM_MINT'))
  .addHelpText('after', `
Global options may stand before or after the subcommand. Examples:
  dvm-wallet --devnet .devnet fund 100
  dvm-wallet send 30 --json
  dvm-wallet receive cashuB... --mint http://127.0.0.1:3338`)

/**
 * Which mint: --mint on the command line, then the devnet's mint (--devnet or
 * DVM_DEVNET), then DVM_MINT, then the single mint this data dir already has a
 * wallet for.
 */
async function resolveMint(opts: WalletGlobals, dataDir: string, devnet: DevnetConfig | undefined, hint?: string): Promise<string> {
  // commander fills --mint from DVM_MINT too; only a typed --mint goes before the devnet's
  const flag = program.getOptionValueSource('mint') === 'cli' ? opts.mint : undefined
  return chooseWalletMint({ flag, devnet, dataDir }).catch((err: Error) => {
    throw hint ? new Error(`${err.message} (this token is from ${hint}: add --mint ${hint})`) : err
  })
}

interface Context {
  wallet: Wallet
  json: boolean
  say: (line: string) => void
}

async function open(cmd: Command, hint?: string): Promise<Context> {
  const opts = cmd.optsWithGlobals<WalletGlobals>()
  const globals = resolveGlobals(opts)
  const json = globals.json
  const mintUrl = await resolveMint(opts, globals.dataDir, globals.devnet, hint)
  // Recovery notes and progress go to stderr so stdout stays machine-readable.
  const wallet = new Wallet({ dataDir: globals.dataDir, mintUrl, log: (m) => process.stderr.write(`${NAME}: ${m}\n`) })
  await wallet.load()
  return { wallet, json, say: (line) => process.stdout.write(line + '\n') }
}

function emit(ctx: Context, obj: Record<string, unknown>, human: string): void {
  if (ctx.json) process.stdout.write(JSON.stringify(obj) + '\n')
  else ctx.say(human)
}

function sats(value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0) throw new Error(`"${value}" is not a whole number of sats above 0`)
  return n
}

/** Run an action and turn any error into one clear line (and a JSON error object with --json). */
function run<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const cmd = args[args.length - 1] as Command
    try {
      await fn(...args)
    } catch (err) {
      fail(NAME, err, Boolean(cmd.optsWithGlobals<WalletGlobals>().json))
    }
  }
}

program
  .command('balance')
  .description('spendable sats, and sats pending (in flight to the mint or locked to a payee)')
  .action(
    run(async (_opts: unknown, cmd: Command) => {
      const ctx = await open(cmd)
      // proofs locked to a provider but never sent come back once their locktime has passed
      const refundKey = await loadOrCreatePaymentKey(ctx.wallet.dataDir)
      const back = await reclaimExpiredLocks(ctx.wallet, refundKey).catch(() => null)
      const b = await ctx.wallet.balance()
      emit(
        ctx,
        { type: 'balance', mint: ctx.wallet.mintUrl, balance: b.balance, pending: b.pending, locked: b.locked, reclaimed: back?.reclaimed ?? 0 },
        `${b.balance} sats` +
          (b.pending ? ` (+${b.pending} pending${b.locked ? `, ${b.locked} of them locked to payees` : ''})` : '') +
          ` at ${ctx.wallet.mintUrl}` +
          (back?.reclaimed ? `; reclaimed ${back.reclaimed} sats of unsent session proofs` : '') +
          (back?.nextAt ? `; ${b.locked} locked sats can be reclaimed after ${localTime(back.nextAt)}` : ''),
      )
    }),
  )

program
  .command('fund <sats>')
  .description('get a Lightning invoice from the mint, wait for it to be paid, mint the ecash')
  .option('--timeout <seconds>', 'how long to wait for the payment', '600')
  .action(
    run(async (amountText: string, cmdOpts: { timeout: string }, cmd: Command) => {
      const amount = sats(amountText)
      const timeout = Number(cmdOpts.timeout)
      if (!Number.isFinite(timeout) || timeout <= 0) throw new Error(`--timeout ${cmdOpts.timeout} is not a number of seconds above 0`)
      const ctx = await open(cmd)
      const res = await ctx.wallet.fund(amount, {
        timeoutMs: timeout * 1000,
        onInvoice: (bolt11, quote) => {
          if (ctx.json) {
            // the final JSON comes after payment; the payer needs the invoice now
            process.stderr.write(`${NAME}: pay ${bolt11} (quote ${quote})\n`)
            return
          }
          ctx.say(`Pay this Lightning invoice to add ${amount} sats (quote ${quote}):\n\n${bolt11}\n`)
          // a QR code is for a phone pointed at a terminal; in a log or a pipe it is noise
          if (process.stdout.isTTY) qrcode.generate(bolt11.toUpperCase(), { small: true }, (qr) => ctx.say(qr))
          ctx.say('waiting for payment…')
        },
      })
      const b = await ctx.wallet.balance()
      emit(ctx, { type: 'fund', mint: ctx.wallet.mintUrl, amount: res.amount, quote: res.quote, invoice: res.request, balance: b.balance, pending: b.pending }, `funded ${res.amount} sats; balance ${b.balance} sats`)
    }),
  )

program
  .command('send <sats>')
  .description('make a Cashu token (cashuB, with DLEQ proofs) worth <sats>; prints the token')
  .option('--memo <text>', 'a note carried inside the token')
  .action(
    run(async (amountText: string, cmdOpts: { memo?: string }, cmd: Command) => {
      const amount = sats(amountText)
      const ctx = await open(cmd)
      const token = await ctx.wallet.send(amount, cmdOpts.memo ? { memo: cmdOpts.memo } : {})
      const b = await ctx.wallet.balance()
      if (ctx.json) {
        process.stdout.write(JSON.stringify({ type: 'send', mint: ctx.wallet.mintUrl, amount, token, balance: b.balance, pending: b.pending }) + '\n')
      } else {
        // the token alone on stdout, so TOKEN=$(dvm-wallet send 30) works
        ctx.say(token)
        process.stderr.write(`${NAME}: sent ${amount} sats; balance ${b.balance} sats\n`)
      }
    }),
  )

program
  .command('receive <token>')
  .description('receive a Cashu token (cashuB or cashuA) from this wallet\'s mint, swapping it so the sender cannot spend it again')
  .action(
    run(async (token: string, _opts: unknown, cmd: Command) => {
      let hint: string | undefined
      try {
        hint = decodeToken(token).mint
      } catch {
        // a bad token is reported by receive() with its own message
      }
      const ctx = await open(cmd, hint)
      const res = await ctx.wallet.receive(token)
      const b = await ctx.wallet.balance()
      emit(
        ctx,
        { type: 'receive', mint: ctx.wallet.mintUrl, amount: res.amount, fee: res.fee, ...(res.memo ? { memo: res.memo } : {}), balance: b.balance, pending: b.pending },
        `received ${res.amount} sats${res.fee ? ` (mint fee ${res.fee})` : ''}${res.memo ? ` — "${res.memo}"` : ''}; balance ${b.balance} sats`,
      )
    }),
  )

program
  .command('melt <bolt11>')
  .description('pay a Lightning invoice with ecash at the mint')
  .action(
    run(async (bolt11: string, _opts: unknown, cmd: Command) => {
      const ctx = await open(cmd)
      const res = await ctx.wallet.melt(bolt11)
      const b = await ctx.wallet.balance()
      emit(
        ctx,
        { type: 'melt', mint: ctx.wallet.mintUrl, paid: res.paid, state: res.state, amount: res.amount, feePaid: res.feePaid, ...(res.preimage ? { preimage: res.preimage } : {}), balance: b.balance, pending: b.pending },
        res.paid
          ? `paid ${res.amount} sats (fee ${res.feePaid})${res.preimage ? `, preimage ${res.preimage}` : ''}; balance ${b.balance} sats`
          : `payment pending at the mint; ${b.pending} sats stay pending until it settles (run balance later)`,
      )
    }),
  )

program
  .command('refunds')
  .description('find refunds providers sent for your relay jobs after you stopped waiting (timeout, Ctrl-C, a provider that paid later) and receive them')
  .option('--days <n>', 'how far back to look', '30')
  .addOption(new Option('--relay <url>', 'relay to ask (repeatable or comma-separated; default: the devnet relay, then $DVM_RELAYS, then public relays)').argParser(collect).default([]))
  .action(
    run(async (opts: { days: string; relay: string[] }, cmd: Command) => {
      const days = Number(opts.days)
      if (!/^\d+$/.test(opts.days) || days < 1 || days > 3650) throw new Error(`--days must be a whole number from 1 to 3650, got "${opts.days}"`)
      const globals = resolveGlobals(cmd.optsWithGlobals<WalletGlobals>())
      const relays = chooseRelays(opts.relay, globals.devnet)
      // Refunds are encrypted to the key dvm-customer uses: the one in this data dir.
      if (!existsSync(identityFile(globals.dataDir))) throw new Error(`no Nostr key in ${globals.dataDir}: refunds go to the key dvm-customer used; pass the same --data-dir`)
      const identity = await loadOrCreateIdentity(globals.dataDir)
      const ctx = await open(cmd)
      const pool = new RelayPool({ crypto: await loadNostrCrypto(), relays })
      try {
        if (!(await pool.waitConnected(5000))) throw new Error(`cannot reach any relay (${relays.join(', ')}); check --relay`)
        const { refunds, unreadable } = await findRefunds({ pool, identity, since: Math.floor(Date.now() / 1000) - days * 86_400 })
        const results: Array<Record<string, unknown>> = []
        const say = (r: Record<string, unknown>, human: string): void => {
          results.push(r)
          if (!ctx.json) ctx.say(`job ${String(r.job).slice(0, 12)}…: ${human}`)
        }
        let received = 0
        for (const r of refunds) {
          const base = { job: r.jobId, provider: r.provider, amountMsats: r.msats }
          let mint: string
          try {
            mint = decodeToken(r.token).mint
          } catch (err) {
            say({ ...base, state: 'unreadable', reason: (err as Error).message }, `a refund whose token is unusable: ${(err as Error).message}`)
            continue
          }
          if (!sameMint(mint, ctx.wallet.mintUrl)) {
            say({ ...base, state: 'other-mint', mint, token: r.token }, `a refund from mint ${mint}; receive it with --mint ${mint}: ${r.token}`)
            continue
          }
          try {
            const got = await ctx.wallet.receive(r.token)
            received += got.amount
            say({ ...base, state: 'received', sats: got.amount }, `received a refund of ${got.amount} sats`)
          } catch (err) {
            const reason = (err as Error).message
            // The wallet tells a token it took before from one spent elsewhere.
            if (err instanceof TokenAlreadyTaken && err.by === 'this-wallet') say({ ...base, state: 'already-received' }, 'refund already in this wallet')
            else if (err instanceof TokenAlreadyTaken) say({ ...base, state: 'spent', reason }, 'refund already spent (received by another wallet?)')
            else say({ ...base, state: 'failed', reason, token: r.token }, `refund not received (${reason}); the token: ${r.token}`)
          }
        }
        for (const u of unreadable) say({ job: u.jobId, provider: u.provider, amountMsats: u.msats, state: 'unreadable', reason: u.reason }, `a refund that ${u.reason}`)
        const b = await ctx.wallet.balance()
        emit(
          ctx,
          { type: 'refunds', mint: ctx.wallet.mintUrl, found: refunds.length, received, balance: b.balance, refunds: results },
          `${refunds.length} refund${refunds.length === 1 ? '' : 's'} found; ${received} sats received; balance ${b.balance} sats`,
        )
      } finally {
        pool.close()
      }
    }),
  )

program.parseAsync(process.argv).catch((err: unknown) => fail(NAME, err, process.argv.includes('--json')))
