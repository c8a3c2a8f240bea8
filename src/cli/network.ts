import type { DevnetConfig } from '../config/devnet-config.js'
import { listWalletMints } from '../payments/proof-store.js'
import { normalizeMintUrl } from '../payments/mint-url.js'

/**
 * Which relays and which mint a command uses when the user names none, so
 * `npx dvm-session --budget=500` works on the public network without flags.
 * Order everywhere: the flag, then the devnet (--devnet / DVM_DEVNET), then the
 * environment (DVM_RELAYS, DVM_MINT), then a default.
 */

/** Well-known public relays that accept NIP-89 handlers and NIP-90 jobs. */
export const PUBLIC_RELAYS = ['wss://relay.damus.io', 'wss://nos.lol', 'wss://relay.primal.net']

export function chooseRelays(flagRelays: string[], devnet: DevnetConfig | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  if (flagRelays.length > 0) return flagRelays
  if (devnet) return devnet.relays
  const fromEnv = splitList(env.DVM_RELAYS)
  return fromEnv.length > 0 ? fromEnv : PUBLIC_RELAYS
}

export interface MintChoice {
  /** --mint as given on the command line */
  flag?: string
  devnet?: DevnetConfig
  dataDir: string
  env?: NodeJS.ProcessEnv
}

/**
 * The customer's wallet mint. There is no default mint: whose ecash to hold
 * is the user's choice. Once a wallet is funded (dvm-wallet fund --mint=…),
 * the data dir remembers it, and commands use it without being told again.
 */
export async function chooseWalletMint(c: MintChoice): Promise<string> {
  const given = c.flag || c.devnet?.mint || (c.env ?? process.env).DVM_MINT
  if (given) return normalizeMintUrl(given)
  const known = await listWalletMints(c.dataDir)
  if (known.length === 1) return known[0]!
  throw new Error(
    known.length === 0
      ? `no wallet in ${c.dataDir} yet: fund one at a mint you trust (dvm-wallet fund 100 --mint=<url> --data-dir=${c.dataDir}), or use --devnet=<dir> for the local network`
      : `${c.dataDir} has wallets at ${known.length} mints (${known.join(', ')}); choose one with --mint=<url> or DVM_MINT`,
  )
}

/**
 * The mints a provider accepts ecash from: --mint (repeatable), the devnet's,
 * DVM_MINT (comma-separated), or every mint its data dir holds a wallet for
 * (the mints it already trusts with its earnings).
 */
export async function chooseAcceptedMints(flags: string[], devnet: DevnetConfig | undefined, dataDir: string, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const given = flags.length > 0 ? flags : devnet?.mint ? [devnet.mint] : splitList(env.DVM_MINT)
  // one spelling per mint, the one customers' wallets use (`--mint=https://m.x/` is https://m.x)
  if (given.length > 0) return [...new Set(given.map(normalizeMintUrl))]
  return listWalletMints(dataDir)
}

function splitList(value: string | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim()).filter(Boolean)
}
