import { existsSync, readFileSync } from 'node:fs'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ExecProcessor, splitCommand, type ExecOptions } from '../src/processors/exec.js'
import { collect, failure, job } from './helpers/processors.js'

const NODE = JSON.stringify(process.execPath)

/** Alive and not a zombie (a container's PID 1 may never reap orphans). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (cond()) return true
    await new Promise((r) => setTimeout(r, 20))
  }
  return cond()
}

function proc(spec: string, opts: Omit<ExecOptions, 'command' | 'args'> = {}): ExecProcessor {
  return ExecProcessor.fromSpec(spec, opts)
}

describe('splitCommand: quote-aware, and nothing a shell does', () => {
  it('splits words and honours quotes and escapes', () => {
    expect(splitCommand('cat')).toEqual(['cat'])
    expect(splitCommand('  python3   -u  run.py  ')).toEqual(['python3', '-u', 'run.py'])
    expect(splitCommand(`node -e 'console.log("hi there")'`)).toEqual(['node', '-e', 'console.log("hi there")'])
    expect(splitCommand('a "b c" d')).toEqual(['a', 'b c', 'd'])
    expect(splitCommand('"say \\"hi\\"" \'x\\y\'')).toEqual(['say "hi"', 'x\\y'])
    expect(splitCommand('a\\ b c')).toEqual(['a b', 'c'])
    expect(splitCommand(`pre"mid dle"'post'`)).toEqual(['premid dlepost'])
    expect(splitCommand(`x '' ""`)).toEqual(['x', '', ''])
  })

  it('leaves shell syntax as plain words', () => {
    expect(splitCommand('echo $(touch /tmp/x) `id` ; rm -rf / | cat && $HOME *')).toEqual(['echo', '$(touch', '/tmp/x)', '`id`', ';', 'rm', '-rf', '/', '|', 'cat', '&&', '$HOME', '*'])
  })

  it('refuses unterminated quotes', () => {
    expect(() => splitCommand(`a 'b`)).toThrow(/unterminated ' quote/)
    expect(() => splitCommand(`a "b`)).toThrow(/unterminated " quote/)
    expect(() => splitCommand('a \\')).toThrow(/lone backslash/)
  })
})

describe('exec processor', () => {
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dvm-exec-test-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  describe('start()', () => {
    it('finds a command on PATH', async () => {
      await proc('exec:cat').start()
    })

    it('fails in one sentence when the command is not on PATH', async () => {
      expect(await failure(proc('exec:no-such-command-dvm-xyz --flag').start())).toBe(
        'exec: command "no-such-command-dvm-xyz" was not found on PATH; install it or give its full path, e.g. exec:/usr/local/bin/no-such-command-dvm-xyz',
      )
    })

    it('fails when the path does not exist', async () => {
      expect(await failure(proc(`exec:${join(dir, 'missing.sh')}`).start())).toMatch(/missing\.sh does not exist; check the path/)
    })

    it('fails when the file is not executable, or is a directory', async () => {
      const script = join(dir, 'plain.sh')
      await writeFile(script, '#!/bin/sh\necho hi\n')
      await chmod(script, 0o644)
      expect(await failure(proc(`exec:${script}`).start())).toMatch(/plain\.sh is not an executable file; make it one \(chmod \+x\)/)
      expect(await failure(proc(`exec:${dir}`).start())).toMatch(/is not an executable file/)
    })

    it('resolves a relative path against cwd', async () => {
      const script = join(dir, 'ok.sh')
      await writeFile(script, '#!/bin/sh\necho ok\n')
      await chmod(script, 0o755)
      const p = proc('exec:./ok.sh', { cwd: dir })
      await p.start()
      expect(await collect(p.run(job(''), new AbortController().signal))).toEqual(['ok\n'])
    })
  })

  it('describes itself: text lines, any string params', async () => {
    const info = await proc('exec:/usr/bin/env python3 x.py').describe()
    expect(info).toMatchObject({ name: 'exec', models: ['env'], output: 'text/plain', features: ['streaming', 'lines'] })
    expect(info.paramsSchema).toMatchObject({ type: 'object', additionalProperties: { type: 'string' } })
  })

  describe('cannot be made to run a shell command', () => {
    const payloads = ['; touch MARK', '$(touch MARK)', '`touch MARK`', '| touch MARK', '&& touch MARK', "'; touch MARK; '", '"; touch MARK; "', '\n touch MARK\n', '$((1+1)) ${IFS}']

    it('through its input: the program gets the bytes, nothing runs them', async () => {
      const p = proc('exec:cat')
      await p.start()
      for (const payload of payloads) {
        const mark = join(dir, `input-${Math.random().toString(36).slice(2)}`)
        const text = payload.replaceAll('MARK', mark)
        const out = await collect(p.run(job(text), new AbortController().signal))
        expect(out.join('')).toBe(text)
        expect(existsSync(mark)).toBe(false)
      }
    })

    it('through its params and job id: they arrive as JSON in the environment, nothing runs them', async () => {
      const p = proc('exec:printenv DVM_JOB_PARAMS DVM_JOB_KIND DVM_JOB_ID')
      await p.start()
      const marks: string[] = []
      const params: Record<string, string> = {}
      payloads.forEach((payload, i) => {
        const mark = join(dir, `param-${i}-${Math.random().toString(36).slice(2)}`)
        marks.push(mark)
        params[`p${i} ${payload.replaceAll('MARK', mark)}`] = payload.replaceAll('MARK', mark)
      })
      const idMark = join(dir, 'id-mark')
      const out = (await collect(p.run(job('x', params, { id: `$(touch ${idMark})`, kind: 5002 }), new AbortController().signal))).join('')
      const [json] = out.split('\n5002\n')
      expect(JSON.parse(json!)).toEqual(params)
      expect(out.endsWith(`\n5002\n$(touch ${idMark})\n`)).toBe(true)
      for (const m of [...marks, idMark]) expect(existsSync(m)).toBe(false)
    })
  })

  it('passes the base environment and the requested output type', async () => {
    const p = proc('exec:printenv DVM_TEST_BASE DVM_JOB_OUTPUT', { env: { PATH: process.env.PATH, DVM_TEST_BASE: 'base-ok' } })
    expect((await collect(p.run(job('x', {}, { output: 'text/markdown' }), new AbortController().signal))).join('')).toBe('base-ok\ntext/markdown\n')
  })

  it('streams stdout line by line as the program writes it', async () => {
    const p = proc(`exec:${NODE} -e 'let i = 0; const t = setInterval(() => { process.stdout.write("line " + i + "\\n"); if (++i === 4) clearInterval(t) }, 150)'`)
    const t0 = Date.now()
    const times: number[] = []
    const out: string[] = []
    for await (const c of p.run(job(''), new AbortController().signal)) {
      times.push(Date.now() - t0)
      out.push(String(c))
    }
    expect(out).toEqual(['line 0\n', 'line 1\n', 'line 2\n', 'line 3\n'])
    expect(times[3]! - times[0]!).toBeGreaterThanOrEqual(300)
  })

  it('keeps a last line without a newline, and splits one huge line so it still streams', async () => {
    const p = proc(`exec:${NODE} -e 'process.stdout.write("a\\nb\\n" + "x".repeat(150000) + "\\ntail")'`)
    const out = await collect(p.run(job(''), new AbortController().signal))
    expect(out.slice(0, 2)).toEqual(['a\n', 'b\n'])
    expect(out.at(-1)).toBe('tail')
    expect(out.join('')).toBe('a\nb\n' + 'x'.repeat(150000) + '\ntail')
    expect(Math.max(...out.map((l) => l.length))).toBeLessThanOrEqual(64 * 1024)
  })

  it('does not fail when the program ignores a large stdin', async () => {
    const p = proc('exec:true')
    expect(await collect(p.run(job('y'.repeat(2_000_000)), new AbortController().signal))).toEqual([])
  })

  it('fails the job with the exit code and the tail of stderr', async () => {
    const p = proc(`exec:${NODE} -e 'console.log("partial"); console.error("x".repeat(5000) + " boom: bad input"); process.exit(3)'`)
    const got: string[] = []
    const msg = await failure((async () => { for await (const c of p.run(job(''), new AbortController().signal)) got.push(String(c)) })())
    expect(got).toEqual(['partial\n'])
    expect(msg).toMatch(/^exec: node exited with code 3; stderr: …x+ boom: bad input$/)
    expect(msg.length).toBeLessThan(2200)
  })

  it('says so when the program writes nothing to stderr', async () => {
    expect(await failure(collect(proc('exec:false').run(job(''), new AbortController().signal)))).toBe('exec: false exited with code 1 and wrote nothing to stderr')
  })

  it('stops a program that runs past its timeout, and its children', async () => {
    const p = proc(`exec:${NODE} -e 'const c = require("child_process").spawn("sleep", ["30"], { stdio: "ignore" }); console.log(process.pid + " " + c.pid); setInterval(() => {}, 1000)'`, { timeoutMs: 500 })
    let pids: number[] = []
    const t0 = Date.now()
    const msg = await failure((async () => { for await (const c of p.run(job(''), new AbortController().signal)) pids = String(c).trim().split(' ').map(Number) })())
    expect(msg).toBe('exec: node did not finish within 500 ms and was stopped')
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(pids).toHaveLength(2)
    expect(await until(() => pids.every((pid) => !alive(pid)), 3000)).toBe(true)
  })

  it('a program that exits leaves nothing running: a background child holding stdout is stopped too', async () => {
    const p = proc(`exec:${NODE} -e 'const c = require("child_process").spawn("sleep", ["30"], { stdio: "inherit" }); c.unref(); console.log(c.pid)'`)
    const t0 = Date.now()
    const out = await collect(p.run(job(''), new AbortController().signal))
    expect(Date.now() - t0).toBeLessThan(3000)
    const pid = Number(out.join('').trim())
    expect(pid).toBeGreaterThan(1)
    expect(await until(() => !alive(pid), 2000)).toBe(true)
  })

  it('stops a program that exceeds the output cap', async () => {
    const p = proc('exec:yes', { maxOutputBytes: 100_000 })
    let bytes = 0
    const msg = await failure((async () => { for await (const c of p.run(job(''), new AbortController().signal)) bytes += String(c).length })())
    expect(msg).toBe('exec: yes wrote more than 100000 bytes of output and was stopped')
    expect(bytes).toBeLessThanOrEqual(100_000)
  })

  it('on abort stops promptly and kills the whole process group', async () => {
    const p = proc(`exec:${NODE} -e 'const c = require("child_process").spawn("sleep", ["30"], { stdio: "ignore" }); console.log(process.pid + " " + c.pid); setInterval(() => console.log("tick"), 50)'`)
    const ac = new AbortController()
    let pids: number[] = []
    let abortedAt = 0
    for await (const c of p.run(job(''), ac.signal)) {
      if (pids.length === 0) {
        pids = String(c).trim().split(' ').map(Number)
        expect(pids.every(alive)).toBe(true)
        abortedAt = Date.now()
        ac.abort()
      }
    }
    expect(Date.now() - abortedAt).toBeLessThan(200)
    expect(await until(() => pids.every((pid) => !alive(pid)), 3000)).toBe(true)
  })

  it('escalates to SIGKILL when the program ignores SIGTERM', async () => {
    const p = proc(`exec:${NODE} -e 'process.on("SIGTERM", () => {}); console.log(process.pid); setInterval(() => {}, 1000)'`, { killGraceMs: 300 })
    const ac = new AbortController()
    let pid = 0
    for await (const c of p.run(job(''), ac.signal)) {
      pid = Number(String(c).trim().split('\n')[0])
      ac.abort()
    }
    expect(Number.isInteger(pid) && pid > 0).toBe(true) // a real process was seen
    await new Promise((r) => setTimeout(r, 150))
    expect(alive(pid)).toBe(true) // still within the grace period
    expect(await until(() => !alive(pid), 2000)).toBe(true)
  })

  it('kills the program when the consumer stops reading early', async () => {
    const p = proc(`exec:${NODE} -e 'console.log(process.pid); setInterval(() => console.log("tick"), 20)'`)
    let pid = 0
    for await (const c of p.run(job(''), new AbortController().signal)) {
      pid = Number(String(c).trim().split('\n')[0])
      break
    }
    expect(Number.isInteger(pid) && pid > 0).toBe(true)
    expect(await until(() => !alive(pid), 3000)).toBe(true)
  })

  it('stop() ends every running job', async () => {
    const p = proc(`exec:${NODE} -e 'console.log(process.pid); setInterval(() => {}, 1000)'`)
    const pids: number[] = []
    const runs = [0, 1].map(async () => {
      try {
        for await (const c of p.run(job(''), new AbortController().signal)) pids.push(Number(String(c).trim()))
        return 'ended'
      } catch (err) {
        return (err as Error).message
      }
    })
    expect(await until(() => pids.length === 2, 3000)).toBe(true)
    await p.stop()
    expect(await Promise.all(runs)).toEqual(['exec: node was stopped because the provider is shutting down', 'exec: node was stopped because the provider is shutting down'])
    expect(pids.every((pid) => !alive(pid))).toBe(true)
  })

  it('refuses params too large for the environment, and non-string params', async () => {
    const p = proc('exec:cat')
    expect(await failure(collect(p.run(job('', { big: 'x'.repeat(8000), big2: 'x'.repeat(8000), b3: 'x'.repeat(8000), b4: 'x'.repeat(8000), b5: 'x'.repeat(8000), b6: 'x'.repeat(8000), b7: 'x'.repeat(8000), b8: 'x'.repeat(8000), b9: 'x'.repeat(8000) }), new AbortController().signal)))).toMatch(/at most 65536 fit in DVM_JOB_PARAMS/)
    expect(await failure(collect(p.run(job('', { n: 5 as unknown as string }), new AbortController().signal)))).toMatch(/param n must be a string/)
  })
})
