import { spawn } from 'node:child_process'
import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { basename, delimiter, isAbsolute, join, resolve } from 'node:path'
import { defineParams } from './params.js'
import { LineSplitter, TailBuffer } from './streams.js'
import { jobText, type Chunk, type Job, type Processor, type ProcessorInfo } from './types.js'

/**
 * Splits `exec:` command text into argv the way a user expects from a shell
 * line, but with nothing else a shell does: whitespace separates words,
 * '…' is literal, "…" is literal except \" and \\, a backslash outside quotes
 * escapes the next character. No variables, globs, pipes or substitutions:
 * the words go to the program exactly as written.
 */
export function splitCommand(text: string): string[] {
  const words: string[] = []
  let word = ''
  let inWord = false
  let i = 0
  while (i < text.length) {
    const c = text[i]!
    if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) words.push(word)
      word = ''
      inWord = false
      i++
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1)
      if (end === -1) throw new Error(`exec command has an unterminated ' quote: ${text}`)
      word += text.slice(i + 1, end)
      inWord = true
      i = end + 1
    } else if (c === '"') {
      i++
      for (;;) {
        if (i >= text.length) throw new Error(`exec command has an unterminated " quote: ${text}`)
        const d = text[i]!
        if (d === '"') break
        if (d === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) {
          word += text[i + 1]
          i += 2
        } else {
          word += d
          i++
        }
      }
      inWord = true
      i++
    } else if (c === '\\') {
      if (i + 1 >= text.length) throw new Error(`exec command ends with a lone backslash: ${text}`)
      word += text[i + 1]
      inWord = true
      i += 2
    } else {
      word += c
      inWord = true
      i++
    }
  }
  if (inWord) words.push(word)
  return words
}

export interface ExecOptions {
  /** program: a path, or a name looked up on PATH */
  command: string
  args?: string[]
  /** the program's base environment (default process.env); DVM_JOB_* are added per job */
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** per-job limit, ms (default 10 minutes) */
  timeoutMs?: number
  /** stdout bytes one job may produce (default 16 MiB) */
  maxOutputBytes?: number
  /** between SIGTERM and SIGKILL, ms (default 2000) */
  killGraceMs?: number
}

/** Linux caps one environment string at 128 KiB; stay well below it. */
const MAX_PARAMS_JSON = 64 * 1024
const PARAMS = defineParams({}, { additional: 'allow', maxValueLength: 8192 })

/** How a run ended when the program did not end it itself. */
type StopCause = 'abort' | 'timeout' | 'cap' | 'shutdown'

interface Running {
  pid: number
  terminate(cause: StopCause): void
  closed: Promise<void>
}

async function isExecutableFile(path: string): Promise<'yes' | 'missing' | 'not-executable'> {
  try {
    if (!(await stat(path)).isFile()) return 'not-executable'
  } catch {
    return 'missing'
  }
  try {
    await access(path, constants.X_OK)
    return 'yes'
  } catch {
    return 'not-executable'
  }
}

/**
 * Runs a local program per job without a shell: the job's input on stdin,
 * its params as JSON in DVM_JOB_PARAMS (with DVM_JOB_KIND, DVM_JOB_ID and,
 * when asked for, DVM_JOB_OUTPUT), and stdout streamed back line by line.
 * Each run is its own process group, so stopping it (abort, timeout, output
 * cap, shutdown) also stops whatever the program started.
 */
export class ExecProcessor implements Processor {
  private resolved: string | undefined
  private readonly running = new Set<Running>()
  private readonly onParentExit = () => {
    // Last resort when the provider exits without stop(): leave no orphans behind.
    for (const r of this.running) killGroup(r.pid, 'SIGKILL')
  }

  constructor(private readonly opts: ExecOptions) {
    if (!opts.command) throw new Error('exec: no command given; use --processor=exec:<command> [args…]')
  }

  /** `exec:<command args…>` → a processor; the text after `exec:` is split by {@link splitCommand}. */
  static fromSpec(spec: string, opts: Omit<ExecOptions, 'command' | 'args'> = {}): ExecProcessor {
    const [command, ...args] = splitCommand(spec.replace(/^exec:/, ''))
    if (!command) throw new Error('exec: no command given; use --processor=exec:<command> [args…]')
    return new ExecProcessor({ ...opts, command, args })
  }

  async start(): Promise<void> {
    this.resolved = await this.resolve()
  }

  async describe(): Promise<ProcessorInfo> {
    return {
      name: 'exec',
      models: [basename(this.opts.command)],
      output: 'text/plain',
      paramsSchema: { ...PARAMS.schema, description: 'passed to the program as JSON in the DVM_JOB_PARAMS environment variable' },
      features: ['streaming', 'lines'],
    }
  }

  async stop(): Promise<void> {
    const all = [...this.running]
    for (const r of all) r.terminate('shutdown')
    await Promise.all(all.map((r) => r.closed))
  }

  private async resolve(): Promise<string> {
    const { command } = this.opts
    const env = this.opts.env ?? process.env
    if (command.includes('/')) {
      const path = isAbsolute(command) ? command : resolve(this.opts.cwd ?? process.cwd(), command)
      const state = await isExecutableFile(path)
      if (state === 'missing') throw new Error(`exec: ${path} does not exist; check the path in --processor=exec:…`)
      if (state === 'not-executable') throw new Error(`exec: ${path} is not an executable file; make it one (chmod +x) or name its interpreter, e.g. exec:python3 ${command}`)
      return path
    }
    let unusable: string | undefined
    for (const dir of (env.PATH ?? '').split(delimiter)) {
      if (!dir) continue
      const path = join(dir, command)
      const state = await isExecutableFile(path)
      if (state === 'yes') return path
      if (state === 'not-executable') unusable ??= path
    }
    if (unusable) throw new Error(`exec: ${unusable} is not an executable file; make it one (chmod +x) or give another path`)
    throw new Error(`exec: command "${command}" was not found on PATH; install it or give its full path, e.g. exec:/usr/local/bin/${command}`)
  }

  async *run(job: Job, signal: AbortSignal): AsyncIterable<Chunk> {
    PARAMS.parse(job.params)
    const params = JSON.stringify(job.params)
    if (params.length > MAX_PARAMS_JSON) throw new Error(`exec: the job's params are ${params.length} bytes as JSON; at most ${MAX_PARAMS_JSON} fit in DVM_JOB_PARAMS`)
    const exe = this.resolved ?? (await this.resolve())
    if (signal.aborted) return

    const name = basename(this.opts.command)
    const timeoutMs = this.opts.timeoutMs ?? 10 * 60_000
    const cap = this.opts.maxOutputBytes ?? 16 * 1024 * 1024
    const grace = this.opts.killGraceMs ?? 2000
    const env: NodeJS.ProcessEnv = {
      ...(this.opts.env ?? process.env),
      DVM_JOB_PARAMS: params,
      DVM_JOB_KIND: String(job.kind),
      DVM_JOB_ID: job.id,
      ...(job.output ? { DVM_JOB_OUTPUT: job.output } : {}),
    }

    // shell: false is the default; spelled out because it is the whole point.
    // detached: a new session and process group, so a kill reaches the program's children too.
    const child = spawn(exe, this.opts.args ?? [], { shell: false, detached: true, cwd: this.opts.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] })

    const stderr = new TailBuffer(2048)
    child.stderr.on('data', (b: Buffer) => stderr.push(b))
    // A program that ignores stdin closes the pipe early: EPIPE is not a failure of the job.
    child.stdin.on('error', () => {})
    child.stdin.end(jobText(job))

    let cause: StopCause | undefined
    let wake: () => void = () => {}
    const stopped = new Promise<'stopped'>((r) => (wake = () => r('stopped')))
    let escalate: NodeJS.Timeout | undefined
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((done) => {
      child.once('error', (error) => done({ code: null, signal: null, error }))
      child.once('exit', () => {
        // The program is done; anything it left running in its group goes too, or it
        // could hold stdout open and keep computing after the job has ended.
        if (child.pid) killGroup(child.pid, 'SIGKILL')
        clearTimeout(escalate)
      })
      child.once('close', (code, sig) => done({ code, signal: sig }))
    })
    const closed = exited.then(() => undefined)

    const handle: Running = {
      pid: child.pid ?? -1,
      closed,
      terminate: (why) => {
        if (cause) return
        cause = why
        wake()
        if (!child.pid || child.exitCode !== null || child.signalCode !== null) return
        killGroup(child.pid, 'SIGTERM')
        const pid = child.pid
        escalate = setTimeout(() => killGroup(pid, 'SIGKILL'), grace)
      },
    }
    if (child.pid) this.track(handle, closed)
    const onAbort = () => handle.terminate('abort')
    signal.addEventListener('abort', onAbort, { once: true })
    const timer = setTimeout(() => handle.terminate('timeout'), timeoutMs)

    const lines = new LineSplitter()
    const reader = child.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>
    let bytes = 0
    try {
      for (;;) {
        // A read error (the pipe torn down by a failed spawn) ends the output; `exited` says why.
        const next = reader.next().catch((): IteratorResult<Buffer> => ({ done: true, value: undefined }))
        const r = await Promise.race([next, stopped])
        if (r === 'stopped' || r.done) break
        bytes += r.value.byteLength
        if (bytes > cap) {
          handle.terminate('cap')
          break
        }
        for (const line of lines.push(r.value)) yield line
      }
      if (cause === 'abort' || signal.aborted) return
      if (cause === 'timeout') throw new Error(`exec: ${name} did not finish within ${duration(timeoutMs)} and was stopped`)
      if (cause === 'cap') throw new Error(`exec: ${name} wrote more than ${cap} bytes of output and was stopped`)
      if (cause === 'shutdown') throw new Error(`exec: ${name} was stopped because the provider is shutting down`)
      for (const line of lines.end()) yield line
      const end = await Promise.race([exited, stopped])
      if (end === 'stopped') return
      if (end.error) throw new Error(`exec: cannot run ${name} (${(end.error as NodeJS.ErrnoException).code ?? end.error.message})`)
      const said = stderr.text()
      if (end.signal) throw new Error(`exec: ${name} was killed by ${end.signal}${said ? `; stderr: ${said}` : ''}`)
      if (end.code !== 0) throw new Error(`exec: ${name} exited with code ${end.code}${said ? `; stderr: ${said}` : ' and wrote nothing to stderr'}`)
    } finally {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      // The consumer stopped early (or we did): the program must not run on unobserved.
      handle.terminate('abort')
      void reader.return?.()
    }
  }

  private track(handle: Running, closed: Promise<void>): void {
    if (this.running.size === 0) process.on('exit', this.onParentExit)
    this.running.add(handle)
    void closed.then(() => {
      this.running.delete(handle)
      if (this.running.size === 0) process.off('exit', this.onParentExit)
    })
  }
}

function duration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`
}

/** Signal a whole process group; a group that is already gone is fine. */
function killGroup(pid: number, sig: NodeJS.Signals): void {
  // -0 / -1 would mean "my own group" / "every process I may signal": never.
  if (!Number.isInteger(pid) || pid <= 1) return
  try {
    process.kill(-pid, sig)
  } catch {
    // ESRCH: nothing left to stop
  }
}
