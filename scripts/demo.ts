#!/usr/bin/env node
// `npm run demo`: devnet + provider + funded customer session in one command.
// Flags and signals only; the work is in src/demo/run-demo.ts.
import { join } from 'node:path'
import { Option } from 'commander'
import { createProgram, fail } from '../src/cli/options.js'
import { parseIntFlag } from '../src/cli/collect.js'
import { projectRoot } from '../src/devnet/paths.js'
import { DEFAULT_LOCK_SECONDS, DemoAbortedError, MIN_LOCK_SECONDS, startDemo, type RunningDemo } from '../src/demo/run-demo.js'
import { DemoReporter } from '../src/demo/report.js'
import type { DemoProcessorChoice } from '../src/demo/processor.js'

const NAME = 'demo'

interface DemoFlags {
  budget: string
  port: string
  duration?: string
  json: boolean
  dir?: string
  price: string
  lockSeconds: string
  processor: DemoProcessorChoice
}

const program = createProgram(
  NAME,
  'Run the whole market on this machine: a local devnet (HyperDHT, Nostr relay, Cashu mint), a provider selling a demo web app by the second, and a funded customer session you open in a browser.',
)
  .addOption(new Option('--budget <sats>', 'the most the session may cost; the wallet is topped up to it').default('600'))
  .addOption(new Option('--port <port>', 'local proxy port; a free one is used if it is busy; 0 = any free port').env('DVM_PORT').default('8080'))
  .addOption(new Option('--duration <seconds>', 'end the demo after this long (default: until Ctrl-C or the budget is spent)'))
  .addOption(new Option('--json', 'one JSON object per line on stdout (events, status each second, the final account)').default(false))
  .addOption(new Option('--dir <dir>', 'where the devnet, keys and wallets live between runs (default <project>/.devnet/demo)').env('DVM_DEMO_DIR'))
  .addOption(new Option('--price <sats>', "the provider's price in sats a minute (one 1-sat tick per 60/price s)").default('60'))
  .addOption(new Option('--lock-seconds <s>', 'locktime of proofs locked to the provider: unsent ones are yours again this long after locking').default(String(DEFAULT_LOCK_SECONDS)))
  .addOption(new Option('--processor <name>', 'what answers the chat: auto = Ollama if it runs here, else echo').choices(['auto', 'echo', 'ollama']).default('auto'))
  .addHelpText('after', `
Ctrl-C (or SIGTERM) ends the session, waits for the provider to redeem its
ticks at the mint and prints the accounting: spent = redeemed, and what is left
in the customer's wallet. The first run installs the mint (about 40 s).`)

program.action(async (flags: DemoFlags) => {
  const report = new DemoReporter(flags.json, process.stdout, process.stderr)
  let demo: RunningDemo | null = null
  const starting = new AbortController()
  let firstSignalAt = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    const now = Date.now()
    if (firstSignalAt !== 0) {
      // `npm run` passes the terminal's Ctrl-C on to us, so one press can arrive twice
      if (now - firstSignalAt < 1_000) return
      report.note(`${signal} again: exiting now without the accounting (the mint stops with us)`)
      process.exit(130)
    }
    firstSignalAt = now
    if (demo) void demo.stop(signal === 'SIGINT' ? 'interrupted' : 'terminated').catch(() => {})
    else starting.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    const lockSeconds = parseIntFlag('lock-seconds', flags.lockSeconds, MIN_LOCK_SECONDS, 7 * 24 * 3600)
    demo = await startDemo(
      {
        dir: flags.dir ?? join(projectRoot(), '.devnet', 'demo'),
        budget: parseIntFlag('budget', flags.budget, 1, 100_000),
        port: parseIntFlag('port', flags.port, 0, 65535),
        durationSec: flags.duration !== undefined ? parseIntFlag('duration', flags.duration, 1, 7 * 24 * 3600) : undefined,
        perMinute: parseIntFlag('price', flags.price, 1, 6000),
        lockSeconds,
        processor: flags.processor,
      },
      report,
      starting.signal,
    )
  } catch (err) {
    // a Ctrl-C during startup may also surface as the failure it caused (e.g. the mint install cut short)
    if (err instanceof DemoAbortedError || starting.signal.aborted) {
      report.note('stopped before the demo was ready; everything it started is stopped')
      process.exit(130)
    }
    fail(NAME, err, flags.json)
  }
  // a signal that came after the last startup check
  if (starting.signal.aborted) void demo.stop('interrupted').catch(() => {})
  try {
    const account = await demo.finished
    process.exitCode = account.balanced ? 0 : 1
  } catch (err) {
    fail(NAME, err, flags.json)
  }
  // Everything is stopped and the process should end by itself; if some
  // library still holds a handle, do not hang the user's terminal over it.
  setTimeout(() => process.exit(), 3_000).unref()
})

program.parseAsync(process.argv).catch((err: unknown) => fail(NAME, err))
