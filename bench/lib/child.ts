/**
 * Child processes for the benchmarks: the runner forks each role (`node
 * --import tsx bench/<file>.ts <role>`) with an IPC channel, talks to it with
 * small request/reply messages, and kills whatever is still running when it
 * exits, however it exits. A child exits when its parent goes away.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { createWriteStream, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { DATA_PATH_NODE_FLAGS } from '../../src/cli/node-flags.js'

export type Msg = { type: string; [k: string]: unknown }

const live = new Set<ChildProcess>()
const benchChildren = new Set<BenchChild>()
let exitHookInstalled = false

/** Register a process spawned some other way (e.g. a CLI under test) so it is killed at exit. */
export function track(proc: ChildProcess): void {
  installExitHook()
  live.add(proc)
  proc.once('exit', () => live.delete(proc))
}

/** Stop every child still running: bench children politely, anything else with signals. */
export async function stopAllChildren(): Promise<void> {
  await Promise.allSettled([...benchChildren].map((c) => c.stop(3_000)))
  const others = [...live]
  for (const p of others) p.kill('SIGTERM')
  await Promise.all(
    others.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve()
          const t = setTimeout(() => {
            p.kill('SIGKILL')
            resolve()
          }, 3_000)
          p.once('exit', () => {
            clearTimeout(t)
            resolve()
          })
        }),
    ),
  )
}

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const c of live) {
      try {
        c.kill('SIGKILL')
      } catch {
        // already gone
      }
    }
  })
}

/** Children still running. */
export function liveChildren(): number {
  return live.size
}

export class BenchChild {
  readonly proc: ChildProcess
  readonly logFile: string
  private serial = 0
  private readonly waiters = new Set<{ match: (m: Msg) => boolean; resolve: (m: Msg) => void }>()
  /**
   * 'ready' and 'fatal' that came before anyone waited for them: a child
   * started alongside others may be ready before the runner gets to it.
   * Other messages (replies, events) only count for whoever already waits.
   */
  private readonly early: Msg[] = []
  private readonly exited: Promise<number | null>
  private exitCode: number | null | undefined

  constructor(readonly name: string, file: string, args: string[], opts: { logDir: string; env?: Record<string, string>; execArgv?: string[] }) {
    installExitHook()
    this.logFile = join(opts.logDir, `${name}.log`)
    const log = createWriteStream(this.logFile)
    this.proc = fork(file, args, {
      // BENCH_CPU_PROF=<dir>: a V8 CPU profile of every child, for finding where the time goes
      // Every child runs with the V8 flags dvm-agent and dvm-session carry in their shebangs
      // (the raw-Hyperswarm reference too, so both sides of a ratio get the same runtime).
      execArgv: ['--import', 'tsx', ...DATA_PATH_NODE_FLAGS, ...(opts.execArgv ?? []), ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${join(process.env.BENCH_CPU_PROF, name)}`] : []),
        // BENCH_PERF_MAP=1: /tmp/perf-<pid>.map so `perf record` names JS frames (kernel and native time included)
        ...(process.env.BENCH_PERF_MAP ? ['--perf-basic-prof-only-functions'] : []),
        // BENCH_NODE_FLAGS='--trace-gc …': any node flags for every child (NODE_OPTIONS refuses many)
        ...(process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? []),
        // BENCH_TRACE=<dir>: per-hop timestamps of tunnel requests (bench/lib/trace.ts)
        ...(process.env.BENCH_TRACE ? ['--import', pathToFileURL(join(repoRoot(), 'bench/lib/trace.ts')).href] : [])],
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      cwd: repoRoot(),
    })
    this.proc.stdout?.pipe(log, { end: false })
    this.proc.stderr?.pipe(log, { end: false })
    live.add(this.proc)
    benchChildren.add(this)
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code) => {
        live.delete(this.proc)
        benchChildren.delete(this)
        this.exitCode = code
        // stdout/stderr may still hold a little; the log is for post-mortems only
        setTimeout(() => log.end(), 50).unref()
        for (const w of [...this.waiters]) w.resolve({ type: 'exit', code })
        resolve(code)
      }),
    )
    this.proc.on('message', (m: Msg) => {
      let taken = false
      for (const w of [...this.waiters]) {
        if (w.match(m)) {
          this.waiters.delete(w)
          w.resolve(m)
          taken = true
        }
      }
      if (!taken && (m.type === 'ready' || m.type === 'fatal')) this.early.push(m)
    })
  }

  get pid(): number {
    return this.proc.pid as number
  }

  get running(): boolean {
    return this.exitCode === undefined
  }

  /** The next message of this type (an 'error' message or the child's exit rejects). */
  next(type: string, timeoutMs: number): Promise<Msg> {
    return this.wait((m) => m.type === type, timeoutMs, `${this.name}: waiting for "${type}"`)
  }

  private wait(match: (m: Msg) => boolean, timeoutMs: number, what: string): Promise<Msg> {
    if (!this.running) return Promise.reject(new Error(`${what}: the child had exited (${this.exitCode})${this.tail()}`))
    return new Promise<Msg>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const w = {
        match: (m: Msg) => match(m) || m.type === 'fatal',
        resolve: (m: Msg) => {
          clearTimeout(timer)
          if (m.type === 'fatal') reject(new Error(`${this.name}: ${String(m.error)}`))
          else if (m.type === 'exit') reject(new Error(`${what}: the child exited (${String(m.code)})${this.tail()}`))
          else resolve(m)
        },
      }
      const early = this.early.findIndex(w.match)
      if (early !== -1) {
        w.resolve(this.early.splice(early, 1)[0]!)
        return
      }
      timer = setTimeout(() => {
        this.waiters.delete(w)
        reject(new Error(`${what}: no answer within ${Math.round(timeoutMs / 1000)} s${this.tail()}`))
      }, timeoutMs)
      timer.unref()
      this.waiters.add(w)
    })
  }

  /** Send a command and wait for its reply. */
  async request(cmd: string, data: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<Msg> {
    const id = ++this.serial
    const reply = this.wait((m) => m.type === 'reply' && m.id === id, timeoutMs, `${this.name}: ${cmd}`)
    // A child that died between our check and this send closes the channel
    // (EPIPE): with a callback that is an error for this request, not an
    // uncaught 'error' event that ends the whole bench run.
    const sent = new Promise<never>((_, reject) =>
      this.proc.send({ cmd, id, ...data }, (err) => {
        if (err) reject(new Error(`${this.name}: ${cmd}: could not reach the child (${err.message})`))
      }),
    )
    const m = await Promise.race([reply, sent])
    if (typeof m.error === 'string') throw new Error(`${this.name}: ${cmd}: ${m.error}`)
    return m
  }

  /** The last lines of the child's log, for error messages. */
  tail(lines = 15): string {
    try {
      const text = readFileSync(this.logFile, 'utf8').trim()
      if (!text) return ''
      return `\n--- last lines of ${this.logFile} ---\n${text.split('\n').slice(-lines).join('\n')}`
    } catch {
      return ''
    }
  }

  /** Ask it to stop (`stop` command), then SIGTERM, then SIGKILL; resolves once it is gone. */
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.running) return
    try {
      await this.request('stop', {}, graceMs)
      // it exits by itself right after answering
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 3_000).unref())])
    } catch {
      // fall through to signals
    }
    if (this.running) this.proc.kill('SIGTERM')
    const t = setTimeout(() => this.running && this.proc.kill('SIGKILL'), 2_000)
    await this.exited
    clearTimeout(t)
  }
}

let root: string | undefined
export function repoRoot(): string {
  root ??= fileURLToPath(new URL('../../', import.meta.url))
  return root
}

export function benchFile(name: string): string {
  return join(repoRoot(), 'bench', name)
}

/** Is this module the process's entry point (run as a child) rather than imported by the runner? */
export function isMain(importMetaUrl: string): boolean {
  return process.argv[1] !== undefined && fileURLToPath(importMetaUrl) === process.argv[1]
}

export type Handler = (msg: Msg) => Promise<Record<string, unknown> | void> | Record<string, unknown> | void

/**
 * The child's side: answer the runner's commands. A handler's result is the
 * reply; a throw becomes a reply with `error`. `stop` runs `onStop` and exits.
 * The child exits when the runner goes away (IPC disconnect).
 */
export function serveCommands(handlers: Record<string, Handler>, onStop?: () => Promise<void>): void {
  const send = (m: Record<string, unknown>) => process.send?.(m)
  process.on('disconnect', () => process.exit(0))
  process.on('message', (m: Msg & { cmd?: string; id?: number }) => {
    const cmd = m.cmd
    if (!cmd) return
    void (async () => {
      try {
        if (cmd === 'stop') {
          await onStop?.()
          // exit once the reply is on the wire, not after a guess at how long that takes
          if (process.send) process.send({ type: 'reply', id: m.id }, () => process.exit(0))
          else process.exit(0)
          return
        }
        const h = handlers[cmd]
        if (!h) throw new Error(`unknown command ${cmd}`)
        const r = await h(m)
        send({ type: 'reply', id: m.id, ...(r ?? {}) })
      } catch (err) {
        send({ type: 'reply', id: m.id, error: (err as Error).stack ?? String(err) })
      }
    })()
  })
}

/** Send a message to the runner. */
export function tell(type: string, data: Record<string, unknown> = {}): void {
  process.send?.({ type, ...data })
}

/** Report a fatal error to the runner and exit. */
export function fatal(err: unknown): void {
  const msg = err instanceof Error ? (err.stack ?? err.message) : String(err)
  // whichever way the process ends from here, it ends as a failure
  process.exitCode = 1
  process.stderr.write(`fatal: ${msg}\n`)
  if (process.send) process.send({ type: 'fatal', error: err instanceof Error ? err.message : String(err) }, () => process.exit(1))
  setTimeout(() => process.exit(1), 200).unref()
}
