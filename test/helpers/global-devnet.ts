import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { startDevnet } from '../../src/devnet/index.js'
import type {} from './devnet.js' // brings in the ProvidedContext declaration

/**
 * One devnet (DHT testnet, relay, mint) for the whole test run, in a fresh
 * temp dir: starting nutshell per file would cost seconds each time. Tests
 * that need to stop or kill a service start their own instead.
 * DVM_KEEP_DEVNET=1 keeps the dir (mint.log, database) for a post-mortem.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), 'dvm-test-devnet-'))
  const t0 = Date.now()
  const devnet = await startDevnet({ dir, log: (line) => process.stderr.write(`[devnet] ${line}\n`) })
  if (process.env.DVM_DEVNET_VERBOSE) {
    process.stderr.write(`[devnet] ready in ${Date.now() - t0} ms: ${JSON.stringify(devnet.config)}\n`)
  }
  project.provide('devnet', devnet.config)
  project.provide('devnetDir', dir)
  return async () => {
    await devnet.stop()
    if (!process.env.DVM_KEEP_DEVNET) await rm(dir, { recursive: true, force: true })
  }
}
