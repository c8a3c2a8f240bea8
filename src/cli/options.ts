import { Command, Option } from 'commander'
import { resolveDataDir } from '../config/data-dir.js'
import { loadDevnetConfig, type DevnetConfig } from '../config/devnet-config.js'
import { sameMint } from '../payments/mint-url.js'

/** Options every command accepts, before or after a subcommand. */
export interface GlobalOptions {
  dataDir?: string
  devnet?: string
  json?: boolean
}

export function addGlobalOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--data-dir <dir>', 'where keys, wallet and state live (default ~/.dvm-agent)').env('DVM_DATA_DIR'))
    .addOption(new Option('--devnet <dir>', 'use the local network started by dvm-devnet in <dir>').env('DVM_DEVNET'))
    .addOption(new Option('--json', 'machine-readable output: one JSON object per line').default(false))
}

/** A commander program with our conventions: strict flags, clear errors, exit codes. */
export function createProgram(name: string, description: string): Command {
  const program = new Command(name)
  program
    .description(description)
    .allowExcessArguments(false)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(`${name}: ${str.replace(/^error: /, '')}`) })
  return program
}

export interface ResolvedGlobals {
  dataDir: string
  devnet?: DevnetConfig
  json: boolean
}

export function resolveGlobals(opts: GlobalOptions): ResolvedGlobals {
  return {
    dataDir: resolveDataDir(opts.dataDir),
    devnet: opts.devnet ? loadDevnetConfig(opts.devnet) : undefined,
    json: Boolean(opts.json),
  }
}

/**
 * The flags that name the wallet a command used (its data dir, and the devnet
 * or mint), for hints the user can paste into `dvm-wallet`.
 */
export function walletFlags(opts: GlobalOptions, g: ResolvedGlobals, mintUrl: string): string {
  const devnetWallet = opts.devnet && g.devnet?.mint && sameMint(g.devnet.mint, mintUrl)
  return `--data-dir=${g.dataDir} ${devnetWallet ? `--devnet=${opts.devnet}` : `--mint=${mintUrl}`}`
}

/** Print a failure as one sentence and exit non-zero; used by every bin. */
export function fail(name: string, err: unknown, json = false): never {
  const message = err instanceof Error ? err.message : String(err)
  // a machine-readable reason where the error has one (a provider's refusal code, ECONNREFUSED…)
  const code = (err as { code?: unknown } | null)?.code
  if (json) process.stdout.write(JSON.stringify({ type: 'error', error: message, ...(typeof code === 'string' ? { code } : {}) }) + '\n')
  process.stderr.write(`${name}: ${message}\n`)
  process.exit(1)
}
