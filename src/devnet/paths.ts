import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The package's root folder, found from this file's location so it works
 * from `src/` (tsx, vitest) and from `dist/src/` (built bins) alike.
 */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const pkg = join(dir, 'package.json')
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'dvm-agent') return dir
      } catch {
        // unreadable package.json: keep walking up
      }
    }
    const parent = dirname(dir)
    if (parent === dir) throw new Error('cannot find the dvm-agent package folder above ' + fileURLToPath(import.meta.url))
    dir = parent
  }
}

/** Where scripts/install-mint.sh puts nutshell unless DVM_MINT_VENV says otherwise. */
export function defaultMintVenv(): string {
  return process.env.DVM_MINT_VENV ? resolve(process.env.DVM_MINT_VENV) : join(projectRoot(), '.venv', 'mint')
}

export function installMintScript(): string {
  return join(projectRoot(), 'scripts', 'install-mint.sh')
}
