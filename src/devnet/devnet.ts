import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseDevnetConfig, type DevnetConfig } from '../config/devnet-config.js'
import { writeFileAtomic } from '../util/atomic-file.js'
import { startDht, type RunningDht } from './dht.js'
import { startMint, type RunningMint } from './mint.js'
import { startRelay, type RunningRelay } from './relay.js'
import { isPortFree } from './ports.js'

export interface DevnetOptions {
  /** Holds devnet.json, the mint's data (kept across restarts) and a lock. */
  dir: string
  /** Start the Cashu mint (default true). Without it devnet.json has `"mint": ""`. */
  mint?: boolean
  /** HyperDHT testnet size (default 3). */
  dhtSize?: number
  /** Where the relay's warnings go (default stderr). */
  log?: (line: string) => void
}

export interface RunningDevnet {
  dir: string
  /** `<dir>/devnet.json`, written once every service answers. */
  configPath: string
  config: DevnetConfig
  dht: RunningDht
  relay: RunningRelay
  mint?: RunningMint
  /** Stops every service and process, removes devnet.json and the lock. */
  stop(): Promise<void>
}

/** Ports of the last run in this dir, reused when free so URLs stay the same (wallets key proofs by mint URL). */
interface LastPorts { dht?: number; relay?: number; mint?: number }

function portOf(url: string | undefined): number | undefined {
  if (!url) return undefined
  try {
    const port = Number(new URL(url).port)
    return port > 0 ? port : undefined
  } catch {
    return undefined
  }
}

function readLastPorts(path: string): LastPorts {
  try {
    const cfg = parseDevnetConfig(JSON.parse(readFileSync(path, 'utf8')), path)
    return { dht: cfg.bootstrap[0]?.port, relay: portOf(cfg.relays[0]), mint: portOf(cfg.mint) }
  } catch {
    return {}
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** One devnet per dir: a second one would fight over the mint database and devnet.json. */
function lockDir(dir: string): string {
  const lock = join(dir, 'devnet.pid')
  if (existsSync(lock)) {
    const pid = Number(readFileSync(lock, 'utf8').trim())
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
      throw new Error(`a devnet is already running in ${dir} (pid ${pid}); use it, stop it, or pick another --dir`)
    }
  }
  return lock
}

/** Try the preferred port, and a free one if that fails (e.g. taken since the last run). */
async function withFallback<T>(preferred: number | undefined, start: (port: number) => Promise<T>): Promise<T> {
  if (preferred) {
    try {
      return await start(preferred)
    } catch {
      // fall through to a free port
    }
  }
  return start(0)
}

/**
 * Start the whole local network on loopback: a HyperDHT testnet, a Nostr
 * relay and (unless `mint: false`) a nutshell mint, then write
 * `<dir>/devnet.json` for every other command (`--devnet=<dir>`).
 */
export async function startDevnet(options: DevnetOptions): Promise<RunningDevnet> {
  const dir = resolve(options.dir)
  mkdirSync(dir, { recursive: true })
  const lock = lockDir(dir)
  const configPath = join(dir, 'devnet.json')
  const lastPortsPath = join(dir, 'last-ports.json')
  const last = readLastPorts(lastPortsPath)
  await writeFileAtomic(lock, `${process.pid}\n`, 0o644)

  const started: Array<{ stop(): Promise<void> }> = []
  const stopAll = async () => {
    const results = await Promise.allSettled(started.splice(0).reverse().map((s) => s.stop()))
    rmSync(configPath, { force: true })
    rmSync(lock, { force: true })
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
  }

  try {
    const wantMint = options.mint ?? true
    const mintPort = last.mint && (await isPortFree(last.mint)) ? last.mint : undefined
    // The three start independently (the mint, a Python process, is the slow
    // one); wait for all of them so a failure never leaves one half-started.
    const results = await Promise.allSettled([
      withFallback(last.dht, (port) => startDht({ size: options.dhtSize, port })),
      withFallback(last.relay, (port) => startRelay({ port, log: options.log })),
      wantMint ? startMint({ dataDir: join(dir, 'mint'), port: mintPort }) : Promise.resolve(undefined),
    ])
    for (const r of results) if (r.status === 'fulfilled' && r.value) started.push(r.value)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
    const dht = (results[0] as PromiseFulfilledResult<RunningDht>).value
    const relay = (results[1] as PromiseFulfilledResult<RunningRelay>).value
    const mint = (results[2] as PromiseFulfilledResult<RunningMint | undefined>).value
    const config: DevnetConfig = { bootstrap: dht.bootstrap, relays: [relay.url], mint: mint?.url ?? '' }
    const text = JSON.stringify(config)
    await writeFileAtomic(lastPortsPath, text + '\n', 0o644)
    await writeFileAtomic(configPath, text + '\n', 0o644)
    let stopping: Promise<void> | undefined
    return { dir, configPath, config, dht, relay, mint, stop: () => (stopping ??= stopAll()) }
  } catch (err) {
    await stopAll().catch(() => {})
    throw err
  }
}
