#!/usr/bin/env node
// dvm-devnet: the local network (HyperDHT testnet, Nostr relay, Cashu mint)
// on loopback, until SIGINT/SIGTERM. All the work is in src/devnet.
import { Option } from 'commander'
import { relative } from 'node:path'
import { createProgram, fail } from '../src/cli/options.js'
import { startDevnet, type RunningDevnet } from '../src/devnet/index.js'

const NAME = 'dvm-devnet'

const program = createProgram(NAME, 'Run a local network on 127.0.0.1: a HyperDHT testnet, a Nostr relay and a Cashu mint (nutshell, FakeWallet). Other commands use it with --devnet=<dir>.')
  .addOption(new Option('--dir <dir>', 'where devnet.json and the mint data live').env('DVM_DEVNET').default('.devnet'))
  .option('--no-mint', 'skip the Cashu mint (devnet.json then has "mint": "")')
  .option('--json', 'print the ready line as one JSON object', false)
  .addHelpText('after', `
Writes <dir>/devnet.json once everything answers:
  {"bootstrap":[{"host":"127.0.0.1","port":N}],"relays":["ws://127.0.0.1:N"],"mint":"http://127.0.0.1:N"}
and runs until Ctrl-C / SIGTERM, then stops every service and process it started.
The mint's database stays in <dir>/mint, so ecash minted before remains valid after a restart.
The first run installs nutshell into .venv/mint (scripts/install-mint.sh).`)

program.action(async (opts: { dir: string; mint: boolean; json: boolean }) => {
  const t0 = Date.now()
  let devnet: RunningDevnet
  try {
    devnet = await startDevnet({ dir: opts.dir, mint: opts.mint })
  } catch (err) {
    fail(NAME, err, opts.json)
  }
  const { config, configPath } = devnet
  const ms = Date.now() - t0
  if (opts.json) {
    process.stdout.write(JSON.stringify({ type: 'ready', path: configPath, config, startupMs: ms }) + '\n')
  } else {
    const shown = relative(process.cwd(), configPath) || configPath
    const boot = config.bootstrap.map((b) => `${b.host}:${b.port}`).join(',')
    const mint = config.mint ? `, mint ${config.mint}` : ', no mint'
    process.stdout.write(`devnet ready: ${shown.startsWith('..') ? configPath : shown} (relay ${config.relays.join(',')}${mint}, bootstrap ${boot}) in ${ms} ms\n`)
  }

  let stopping = false
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second Ctrl-C: do not wait any longer; the mint is killed on exit.
      process.stderr.write(`${NAME}: ${signal} again, exiting now\n`)
      process.exit(1)
    }
    stopping = true
    devnet.stop().then(
      () => {
        if (!opts.json) process.stdout.write('devnet stopped\n')
        process.exit(0)
      },
      (err: unknown) => fail(NAME, err, opts.json),
    )
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, shutdown)
})

program.parseAsync(process.argv).catch((err: unknown) => fail(NAME, err))
