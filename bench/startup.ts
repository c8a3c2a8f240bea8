/**
 * 4. `dvm-session` start to the first paid byte through its proxy.
 *
 * The built CLI (`node dist/bin/dvm-session.js`, rebuilt first when any source
 * is newer than it) is spawned against a provider already running on the
 * devnet (bench/lib/provider-child.ts with the bench backend), with a funded
 * wallet in a fresh data dir. Timed from spawn() to the first 200 answer of a
 * GET through its local proxy (the proxy holds a request until the first tick
 * is acknowledged; any other answer is retried every 5 ms). The JSON lines it
 * prints give the phases.
 */
import { spawn, spawnSync } from 'node:child_process'
import { DATA_PATH_NODE_FLAGS } from '../src/cli/node-flags.js'
import { existsSync, readdirSync, statSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Wallet } from '../src/payments/wallet.js'
import { repoRoot, track } from './lib/child.js'
import { fmt, median } from './lib/stats.js'
import type { Row, Section } from './lib/table.js'
import { sleep } from './lib/timing.js'
import { startProviderChild } from './sessions.js'
import type { BenchContext } from './run.js'

const RUNS = Number(process.env.BENCH_STARTUP_RUNS ?? 5)
const CLI = join(repoRoot(), 'dist', 'bin', 'dvm-session.js')

function newestMtime(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p))
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs)
  }
  return newest
}

let buildNote = ''

/** Build dist/ if any source is newer than the built CLI. Returns notes for the report. */
export async function prepareStartup(log: (line: string) => void): Promise<string[]> {
  const root = repoRoot()
  const built = existsSync(CLI) ? statSync(CLI).mtimeMs : 0
  const sources = Math.max(newestMtime(join(root, 'src')), newestMtime(join(root, 'bin')))
  if (built >= sources) {
    buildNote = 'dist/ was up to date'
    return []
  }
  log(`dist/ is older than the sources: npm run build…`)
  const t = Date.now()
  const r = spawnSync('npm', ['run', 'build'], { cwd: root, encoding: 'utf8', timeout: 240_000 })
  const secs = ((Date.now() - t) / 1000).toFixed(0)
  if (r.status === 0) {
    buildNote = `dist/ rebuilt (npm run build, ${secs} s) before the run`
  } else {
    const why = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').filter((l) => l.includes('error')).slice(0, 3).join('; ')
    buildNote = `npm run build failed (${why || `exit ${r.status}`}); tsc still emits, so the CLI measured is what it wrote`
    log(buildNote)
  }
  return []
}

interface StartupRun {
  total: number
  phases: Record<string, number>
}

async function oneRun(ctx: BenchContext, provider: string, index: number): Promise<StartupRun> {
  const dataDir = ctx.dir(`startup-customer-${index}`)
  const wallet = new Wallet({ dataDir, mintUrl: ctx.devnet.mint })
  await wallet.load()
  await wallet.fund(60, { pollMs: 20 })

  // as its shebang runs it (npx / npm's bin link)
  const args = [...DATA_PATH_NODE_FLAGS, CLI, `--devnet=${ctx.devnetDir}`, `--data-dir=${dataDir}`, '--kind=5100', '--budget=20', '--port=0', '--json', `--provider=${provider}`]
  const t0 = performance.now()
  const proc = spawn(process.execPath, args, { cwd: repoRoot(), stdio: ['pipe', 'pipe', 'pipe'] })
  track(proc)
  const phases: Record<string, number> = {}
  let stderr = ''
  proc.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dvm-session printed no proxy port within 20 s; stderr: ${stderr.slice(-400)}`)), 20_000)
      proc.once('exit', (code) => reject(new Error(`dvm-session exited (${code}): ${stderr.slice(-400)}`)))
      createInterface({ input: proc.stdout }).on('line', (line) => {
        let m: { type?: string; port?: number }
        try {
          m = JSON.parse(line)
        } catch {
          return
        }
        if (m.type && !(m.type in phases)) phases[m.type] = performance.now() - t0
        if (m.type === 'proxy' && m.port) {
          clearTimeout(timer)
          resolve(m.port)
        }
      })
    })
    const deadline = performance.now() + 20_000
    for (;;) {
      const status = await new Promise<number>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/small', agent: false }, (res) => {
          if (res.statusCode === 200) res.once('data', () => (phases['first paid byte'] ??= performance.now() - t0))
          res.resume()
          res.on('end', () => resolve(res.statusCode ?? 0))
        })
        req.on('error', () => resolve(0))
      })
      if (status === 200) break
      if (performance.now() > deadline) throw new Error(`no 200 through the proxy within 20 s (last status ${status})`)
      phases[`first ${status || 'error'}`] ??= performance.now() - t0
      await sleep(5)
    }
    const total = phases['first paid byte'] ?? performance.now() - t0
    return { total, phases }
  } finally {
    proc.stdin.write('quit\n')
    const t = setTimeout(() => proc.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(t)
  }
}

export async function benchStartup(ctx: BenchContext): Promise<Section> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing and could not be built`)
  const provider = await startProviderChild(ctx, 'startup-provider', { backend: true })
  try {
    const runs: StartupRun[] = []
    for (let i = 0; i < RUNS; i++) runs.push(await oneRun(ctx, provider.pubkey, i))
    const totals = runs.map((r) => r.total)
    const med = median(totals)
    const phaseNames = ['connected', 'open', 'proxy', 'first 402', 'locked', 'ack', 'first paid byte']
    const phaseText = phaseNames
      .map((p) => {
        const vals = runs.map((r) => r.phases[p]).filter((x): x is number => x !== undefined)
        return vals.length ? `${p} ${fmt(median(vals))} ms` : ''
      })
      .filter(Boolean)
      .join(', ')
    const rows: Row[] = [
      {
        group: '4 startup',
        figure: 'dvm-session start → first paid byte through its proxy (median / max)',
        value: `${fmt(med / 1000, 2)} / ${fmt(Math.max(...totals) / 1000, 2)} s`,
        target: '< 1.5 s',
        verdict: med < 1500 ? 'pass' : 'FAIL',
      },
    ]
    const notes = [
      `4 startup: ${RUNS} runs of \`node ${DATA_PATH_NODE_FLAGS.join(' ')} dist/bin/dvm-session.js --devnet --kind=5100 --budget=20 --port=0 --json --provider=<hex>\` against a running provider, each with a fresh funded data dir: ${totals.map((t) => fmt(t)).join(', ')} ms from spawn() to the first 200 through the proxy. Median time of each JSON line since spawn: ${phaseText}. ${buildNote}.`,
    ]
    return { rows, notes }
  } finally {
    await provider.child.stop()
  }
}
