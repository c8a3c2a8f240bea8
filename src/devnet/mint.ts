import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, openSync, closeSync, readFileSync, writeSync, mkdirSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { writeFileAtomic } from '../util/atomic-file.js'
import { defaultMintVenv, installMintScript } from './paths.js'
import { freePort, isPortFree } from './ports.js'

export interface MintOptions {
  /** Holds the mint's key, database and log; reusing it keeps keysets and issued ecash valid. */
  dataDir: string
  /** TCP port on 127.0.0.1; omitted or 0 picks a free one. */
  port?: number
  /** The nutshell virtualenv (default $DVM_MINT_VENV or <project>/.venv/mint). */
  venv?: string
  /**
   * Extra or overriding nutshell settings, e.g. { MINT_INPUT_FEE_PPK: '100' } to
   * test fee handling (the fee is fixed into the keyset at a data dir's first
   * start, so use a fresh dataDir for that).
   */
  env?: Record<string, string>
  /** Run scripts/install-mint.sh when the venv is missing (default true). */
  install?: boolean
  /** How long to wait for GET /v1/info to answer (default 30 s). */
  startTimeoutMs?: number
}

export interface RunningMint {
  url: string
  port: number
  dataDir: string
  pid: number
  /** Graceful shutdown (SIGTERM, then SIGKILL after 5 s); resolves once the process is gone. */
  stop(): Promise<void>
  /** Hard kill, as in a crash; resolves once the process is gone. */
  kill(): Promise<void>
}

const CASHU_VERSION_HINT = 'nutshell (PyPI cashu 0.19.2)'

/**
 * The mint runs under this launcher instead of the `mint` console script so it
 * can never outlive us: it watches its stdin (a pipe from this process) and
 * shuts down when the pipe closes, which happens however this process ends,
 * SIGKILL included.
 */
const LAUNCHER = `# dvm-agent: nutshell mint launcher
import os, signal, sys, threading
def _watch_parent():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except Exception:
        pass
    hard = threading.Timer(5.0, lambda: os._exit(1))
    hard.daemon = True
    hard.start()
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=_watch_parent, daemon=True).start()
from cashu.mint.main import main
sys.argv = ["mint"]
main()
`

/** Settings that make nutshell a fast, offline, fee-free test mint. */
function mintEnv(dataDir: string, port: number, privateKey: string, overrides: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  // Inherit the basics, but no nutshell setting from the caller's shell: a stray
  // MINT_DATABASE or FAKEWALLET_* there must not change what the devnet is.
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(MINT_|FAKEWALLET_|LIGHTNING_|CASHU_|TOR$|SOCKS_|DEBUG$|LOG_LEVEL$|PYTHON)/i.test(k)) env[k] = v
  }
  Object.assign(env, {
    // nutshell reads ~/.cashu/.env and ./.env over our settings; point both at the data dir.
    HOME: dataDir,
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
    LOG_LEVEL: 'INFO',
    DEBUG: 'false',
    TOR: 'false',
    MINT_BACKEND_BOLT11_SAT: 'FakeWallet',
    // The default fee (100 ppk) is fixed into the keyset at first start; 1-sat ticks need 0.
    MINT_INPUT_FEE_PPK: '0',
    FAKEWALLET_BRR: 'true',
    FAKEWALLET_DELAY_INCOMING_PAYMENT: '0',
    FAKEWALLET_DELAY_OUTGOING_PAYMENT: '0',
    MINT_LISTEN_HOST: '127.0.0.1',
    MINT_LISTEN_PORT: String(port),
    MINT_PRIVATE_KEY: privateKey,
    MINT_DATABASE: join(dataDir, 'db'),
    MINT_AUTH_DATABASE: join(dataDir, 'db'),
    MINT_RATE_LIMIT: 'false',
    MINT_REQUIRE_AUTH: 'false',
    MINT_REDIS_CACHE_ENABLED: 'false',
    MINT_RPC_SERVER_ENABLE: 'false',
    MINT_WATCHDOG_ENABLED: 'false',
    MINT_INFO_NAME: 'dvm-agent devnet mint',
  })
  return Object.assign(env, overrides)
}

/** The seed of every keyset; made once per data dir so a restart keeps the same keys. */
async function mintPrivateKey(dataDir: string): Promise<string> {
  const path = join(dataDir, 'mint.key')
  if (existsSync(path)) return readFileSync(path, 'utf8').trim()
  const key = randomBytes(32).toString('hex')
  await writeFileAtomic(path, key + '\n', 0o600)
  return key
}

async function ensureVenv(venv: string, install: boolean): Promise<string> {
  const python = join(venv, 'bin', 'python')
  if (existsSync(join(venv, '.dvm-mint-installed')) && existsSync(python)) return python
  const script = installMintScript()
  if (!install) {
    throw new Error(`mint: ${CASHU_VERSION_HINT} is not installed in ${venv}; run \`bash ${script}\` first`)
  }
  process.stderr.write(`mint: installing ${CASHU_VERSION_HINT} into ${venv} (first run only)\n`)
  const code = await new Promise<number | null>((resolvePromise) => {
    const child = spawn('bash', [script], { stdio: ['ignore', process.stderr, process.stderr], env: { ...process.env, DVM_MINT_VENV: venv } })
    child.on('error', () => resolvePromise(-1))
    child.on('exit', (c) => resolvePromise(c))
  })
  if (code !== 0 || !existsSync(python)) {
    throw new Error(`mint: installing nutshell failed (see the messages above); fix the cause and run \`bash ${script}\``)
  }
  return python
}

/** A mint already running on this data dir would share its SQLite database: refuse. */
function claimDataDir(dataDir: string): string {
  const pidFile = join(dataDir, 'mint.pid')
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').trim())
    let alive = false
    if (Number.isInteger(pid) && pid > 0) {
      try {
        process.kill(pid, 0)
        alive = true
      } catch (err) {
        alive = (err as NodeJS.ErrnoException).code === 'EPERM'
      }
    }
    if (alive) throw new Error(`mint: another mint (pid ${pid}) is running on ${dataDir}; stop it first or use another data dir`)
  }
  return pidFile
}

function logTail(logPath: string, lines = 8): string {
  try {
    return readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((r) => child.once('exit', () => r()))
}

/** Signal the mint's whole process group (it was spawned detached as its leader). */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    try { child.kill(signal) } catch { /* already gone */ }
  }
}

async function waitReady(url: string, child: ChildProcess, timeoutMs: number, logPath: string, port: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let exitInfo: string | undefined
  child.once('exit', (code, signal) => { exitInfo = signal ? `signal ${signal}` : `code ${code}` })
  while (Date.now() < deadline) {
    if (exitInfo !== undefined) {
      const tail = logTail(logPath)
      if (/address already in use|Errno 98/i.test(tail)) {
        throw new Error(`mint: port ${port} on 127.0.0.1 is already in use; stop whatever holds it or choose another port`)
      }
      throw new Error(`mint: nutshell exited (${exitInfo}) before it answered; last lines of ${logPath}:\n${tail}`)
    }
    try {
      const res = await fetch(`${url}/v1/info`, { signal: AbortSignal.timeout(1000) })
      if (res.ok && exitInfo === undefined) return
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`mint: nutshell did not answer ${url}/v1/info within ${Math.round(timeoutMs / 1000)} s; see ${logPath}`)
}

/**
 * Start nutshell with the FakeWallet backend (invoices settle at once, no
 * Lightning node, no network) on 127.0.0.1, and wait until it answers.
 */
export async function startMint(options: MintOptions): Promise<RunningMint> {
  const dataDir = resolve(options.dataDir)
  mkdirSync(dataDir, { recursive: true })
  const pidFile = claimDataDir(dataDir)
  const python = await ensureVenv(resolve(options.venv ?? defaultMintVenv()), options.install ?? true)
  const privateKey = await mintPrivateKey(dataDir)

  const port = options.port ? options.port : await freePort()
  if (!(await isPortFree(port))) {
    throw new Error(`mint: port ${port} on 127.0.0.1 is already in use; stop whatever holds it or choose another port`)
  }
  const url = `http://127.0.0.1:${port}`
  const logPath = join(dataDir, 'mint.log')
  const logFd = openSync(logPath, 'a')
  writeSync(logFd, `\n=== ${new Date().toISOString()} dvm-agent starting mint on ${url} ===\n`)

  let child: ChildProcess
  try {
    child = spawn(python, ['-c', LAUNCHER], {
      cwd: dataDir,
      env: mintEnv(dataDir, port, privateKey, options.env ?? {}),
      stdio: ['pipe', logFd, logFd],
      // Own process group, so stop() can take down anything the mint spawns.
      detached: true,
    })
  } finally {
    closeSync(logFd)
  }
  const spawnError = new Promise<never>((_, reject) => {
    child.once('error', (err) => reject(new Error(`mint: cannot run ${python} (${err.message}); reinstall with \`bash ${installMintScript()}\``)))
  })
  spawnError.catch(() => {})
  // The pipe only exists to signal our death; never let it keep us alive or throw.
  child.stdin?.on('error', () => {})

  // Last resort if this process exits without calling stop(); the launcher's
  // stdin watch covers the cases where no JavaScript runs at all.
  const onExit = () => signalGroup(child, 'SIGKILL')
  process.on('exit', onExit)
  const forget = () => {
    process.off('exit', onExit)
    try { rmSync(pidFile, { force: true }) } catch { /* best effort */ }
  }
  child.once('exit', forget)
  if (child.pid !== undefined) await writeFileAtomic(pidFile, `${child.pid}\n`, 0o644)

  const shutdown = async (graceful: boolean): Promise<void> => {
    if (graceful) {
      signalGroup(child, 'SIGTERM')
      const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), 5000)
      await exited(child)
      clearTimeout(timer)
    } else {
      signalGroup(child, 'SIGKILL')
      await exited(child)
    }
    child.stdin?.destroy()
    forget()
  }

  try {
    await Promise.race([waitReady(url, child, options.startTimeoutMs ?? 30_000, logPath, port), spawnError])
  } catch (err) {
    await shutdown(false)
    throw err
  }

  let stopping: Promise<void> | undefined
  return {
    url,
    port,
    dataDir,
    pid: child.pid!,
    stop: () => (stopping ??= shutdown(true)),
    kill: () => (stopping ??= shutdown(false)),
  }
}
