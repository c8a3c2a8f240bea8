import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { afterAll, afterEach, beforeEach } from 'vitest'

export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

export interface ProcOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** The process is SIGKILLed after this long, whatever it is doing (default 30 s). */
  timeoutMs?: number
  /** give the child a stdin pipe to type into with `write()` */
  stdin?: boolean
}

export interface ProcExit {
  code: number | null
  signal: NodeJS.Signals | null
  timedOut: boolean
}

/** A child process under test: output captured, lifetime bounded, always reaped. */
export class Proc {
  readonly child: ChildProcess
  readonly exited: Promise<ProcExit>
  private out = ''
  private err = ''
  private timedOut = false
  private readonly timer: NodeJS.Timeout
  // the whole group: a node it started (tsx, a mint) must not outlive the test
  private readonly onParentExit = () => this.signal('SIGKILL', true)

  constructor(readonly command: string, readonly args: string[], options: ProcOptions = {}) {
    this.child = spawn(command, args, {
      cwd: options.cwd ?? PROJECT_ROOT,
      env: options.env ?? process.env,
      stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      // Own process group, so a kill also reaches whatever the command spawned.
      detached: true,
    })
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => { this.out += s })
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => { this.err += s })
    this.exited = new Promise<ProcExit>((resolve) => {
      this.child.once('error', (e) => {
        this.err += `\n[spawn error] ${e.message}`
        resolve({ code: null, signal: null, timedOut: false })
      })
      this.child.once('exit', (code, signal) => {
        clearTimeout(this.timer)
        process.off('exit', this.onParentExit)
        resolve({ code, signal, timedOut: this.timedOut })
      })
    })
    this.timer = setTimeout(() => {
      this.timedOut = true
      this.signal('SIGKILL', true)
    }, options.timeoutMs ?? 30_000)
    this.timer.unref()
    process.on('exit', this.onParentExit)
  }

  /** Type into the child's stdin (spawned with `stdin: true`). */
  write(text: string): void {
    this.child.stdin?.write(text)
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  get stdout(): string {
    return this.out
  }

  get stderr(): string {
    return this.err
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** Send a signal to the process only (e.g. to test its own shutdown path). */
  signal(signal: NodeJS.Signals, group = false): void {
    if (!this.running || this.child.pid === undefined) return
    try {
      if (group) process.kill(-this.child.pid, signal)
      else this.child.kill(signal)
    } catch {
      // already gone
    }
  }

  /** Resolve with the first match of `pattern` on stdout (or stderr), or reject with the output so far. */
  async waitFor(pattern: RegExp, timeoutMs = 20_000, stream: 'stdout' | 'stderr' = 'stdout'): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const m = (stream === 'stdout' ? this.out : this.err).match(pattern)
      if (m) return m
      if (!this.running) throw new Error(`${this.describe()} exited before printing ${pattern}\n${this.output()}`)
      if (Date.now() > deadline) throw new Error(`${this.describe()} did not print ${pattern} within ${timeoutMs} ms\n${this.output()}`)
      await new Promise((r) => setTimeout(r, 25))
    }
  }

  /** SIGTERM the whole group, SIGKILL it after `graceMs`; resolves when it has exited. */
  async stop(graceMs = 5000): Promise<ProcExit> {
    if (this.running) {
      this.signal('SIGTERM', true)
      const t = setTimeout(() => this.signal('SIGKILL', true), graceMs)
      const exit = await this.exited
      clearTimeout(t)
      return exit
    }
    return this.exited
  }

  describe(): string {
    return `${this.command} ${this.args.join(' ')}`
  }

  output(): string {
    return `--- stdout ---\n${this.out}\n--- stderr ---\n${this.err}`
  }
}

/** Arguments that run a TypeScript entry point with this node: `spawn(process.execPath, tsArgs('bin/x.ts', '--help'))`. */
export function tsArgs(file: string, ...args: string[]): string[] {
  return ['--import', 'tsx', file, ...args]
}

/**
 * Processes spawned by one test file, reaped after each test (and after all,
 * for ones started in beforeAll). Call at the top of a file or describe block.
 */
export function useProcs(): { spawn(command: string, args: string[], options?: ProcOptions): Proc } {
  const perTest = new Set<Proc>()
  const perFile = new Set<Proc>()
  let inTest = false
  const reap = async (set: Set<Proc>) => {
    await Promise.all([...set].map((p) => p.stop(2000)))
    set.clear()
  }
  beforeEach(() => {
    inTest = true
  })
  afterEach(async () => {
    inTest = false
    await reap(perTest)
  })
  afterAll(() => reap(perFile))
  return {
    spawn(command, args, options) {
      const proc = new Proc(command, args, options)
      ;(inTest ? perTest : perFile).add(proc)
      return proc
    },
  }
}
