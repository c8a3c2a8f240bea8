import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

/** What `dvm-devnet` writes to `<dir>/devnet.json` once every service is up. */
export interface DevnetConfig {
  bootstrap: Array<{ host: string; port: number }>
  relays: string[]
  mint: string
}

export function parseDevnetConfig(json: unknown, source = 'devnet.json'): DevnetConfig {
  const o = json as Partial<DevnetConfig> | null
  const ok =
    o !== null && typeof o === 'object' &&
    Array.isArray(o.bootstrap) && o.bootstrap.every((b) => typeof b?.host === 'string' && Number.isInteger(b?.port)) &&
    Array.isArray(o.relays) && o.relays.every((r) => typeof r === 'string') &&
    typeof o.mint === 'string'
  if (!ok) throw new Error(`${source} is not a devnet description (bootstrap, relays, mint); restart dvm-devnet to rewrite it`)
  return { bootstrap: o.bootstrap!, relays: o.relays!, mint: o.mint! }
}

/** Load `<dir>/devnet.json`; the dir comes from `--devnet` or `DVM_DEVNET`. */
export function loadDevnetConfig(dir: string): DevnetConfig {
  const path = join(resolve(dir), 'devnet.json')
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    throw new Error(`no devnet found at ${path}; start one with \`dvm-devnet --dir=${dir}\` first`)
  }
  return parseDevnetConfig(JSON.parse(text), path)
}
