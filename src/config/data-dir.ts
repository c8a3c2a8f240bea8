import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { mkdirSync } from 'node:fs'

/** Where keys, the wallet and state live: `--data-dir`, then `DVM_DATA_DIR`, then `~/.dvm-agent`. */
export function resolveDataDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const dir = resolve(flag ?? env.DVM_DATA_DIR ?? join(homedir(), '.dvm-agent'))
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  return dir
}
