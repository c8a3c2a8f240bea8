/**
 * `npm run bench`: every benchmark in one run, on a devnet this process starts
 * (HyperDHT testnet and relay in this process, nutshell mint as a child), each
 * figure next to a reference measured in the same run, written to
 * BENCHMARKS.md. Not part of `npm test`.
 *
 *   node --import tsx bench/run.ts [--only=ticks,sessions,tunnel,startup,relays,scale] [--keep] [--no-write]
 *
 * Every load runs in child processes (bench/lib/child.ts) so the process that
 * measures is not the one that serves the devnet; all of them, and the mint,
 * are stopped at the end, on Ctrl-C, on a failure, and at the 10-minute limit.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, createWriteStream } from 'node:fs'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { startDevnet, type RunningDevnet } from '../src/devnet/index.js'
import type { DevnetConfig } from '../src/config/devnet-config.js'
import { liveChildren, repoRoot, stopAllChildren } from './lib/child.js'
import { fmt } from './lib/stats.js'
import { errorSection, renderMarkdown, renderText, type Row, type Section } from './lib/table.js'
import { machineBusy, machineSample, sleep, withTimeout } from './lib/timing.js'

export interface BenchContext {
  devnet: DevnetConfig
  /** holds devnet.json: `--devnet=<devnetDir>` for the CLIs */
  devnetDir: string
  /** a fresh directory under the run's temp dir */
  dir(name: string): string
  /** child process logs go here */
  logDir: string
  log(line: string): void
  /** ms left before the whole run's limit */
  remainingMs(): number
}

interface Bench {
  key: string
  title: string
  /** generous per-bench limit; the run's own limit is 10 minutes */
  timeoutMs: number
  run(ctx: BenchContext): Promise<Section>
}

const RUN_LIMIT_MS = 10 * 60_000
const t0 = Date.now()
const args = process.argv.slice(2)
const only = args.find((a) => a.startsWith('--only='))?.slice(7).split(',')
let keep = args.includes('--keep')
const write = !args.includes('--no-write')

const root = mkdtempSync(join(tmpdir(), 'dvm-bench-'))
const logDir = join(root, 'logs')
mkdirSync(logDir, { recursive: true })
const runLog = createWriteStream(join(logDir, 'run.log'))
let devnet: RunningDevnet | undefined
let cleaning: Promise<void> | undefined
let interrupted = false

function log(line: string): void {
  const stamp = ((Date.now() - t0) / 1000).toFixed(1).padStart(6)
  process.stderr.write(`[bench ${stamp}s] ${line}\n`)
  runLog.write(`[${stamp}] ${line}\n`)
}

async function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await stopAllChildren()
    await devnet?.stop().catch((err: Error) => log(`devnet stop: ${err.message}`))
    if (!keep) rmSync(root, { recursive: true, force: true })
    else log(`kept ${root}`)
  })()
  return cleaning
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    interrupted = true
    log(`${sig}: stopping everything`)
    void cleanup().finally(() => process.exit(130))
  })
}
const hardStop = setTimeout(() => {
  log('the 10-minute limit was reached: stopping everything')
  void cleanup().finally(() => process.exit(2))
}, RUN_LIMIT_MS)
hardStop.unref()

async function main(): Promise<void> {
  const all: Bench[] = [
    { key: 'ticks', title: '1 verified ticks/s', timeoutMs: 150_000, run: async (c) => (await import('./ticks.js')).benchTicks(c) },
    { key: 'sessions', title: '2 mint round trips per session', timeoutMs: 90_000, run: async (c) => (await import('./sessions.js')).benchSessions(c) },
    { key: 'tunnel', title: '3 tunnel', timeoutMs: 150_000, run: async (c) => (await import('./tunnel.js')).benchTunnel(c) },
    { key: 'startup', title: '4 dvm-session start to first paid byte', timeoutMs: 90_000, run: async (c) => (await import('./startup.js')).benchStartup(c) },
    { key: 'relays', title: '5 relays', timeoutMs: 150_000, run: async (c) => (await import('./relay-jobs.js')).benchRelays(c) },
    { key: 'scale', title: '6 scale', timeoutMs: 240_000, run: async (c) => (await import('./scale-load.js')).benchScale(c) },
  ]
  const benches = all.filter((b) => !only || only.includes(b.key))

  log(`dvm-agent bench: node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load ${loadavg().map((x) => x.toFixed(2)).join(' ')}; logs in ${logDir}`)
  const notes: string[] = []
  // The CLI bench runs the built dvm-session: build before anything is measured.
  if (benches.some((b) => b.key === 'startup')) notes.push(...(await (await import('./startup.js')).prepareStartup(log)))

  const devnetDir = join(root, 'devnet')
  const dt = Date.now()
  devnet = await startDevnet({ dir: devnetDir, log: (line) => runLog.write(`[devnet] ${line}\n`) })
  log(`devnet up in ${Date.now() - dt} ms: mint ${devnet.config.mint}, relay ${devnet.config.relays[0]}, dht ${devnet.config.bootstrap.map((b) => `${b.host}:${b.port}`).join(',')}`)
  let serial = 0
  const ctx: BenchContext = {
    devnet: devnet.config,
    devnetDir,
    dir: (name) => {
      const d = join(root, `${name}-${++serial}`)
      mkdirSync(d, { recursive: true })
      return d
    },
    logDir,
    log,
    remainingMs: () => RUN_LIMIT_MS - (Date.now() - t0),
  }

  const rows: Row[] = []
  const timings: string[] = []
  const machine: string[] = []
  const load0 = loadavg()
  for (const b of benches) {
    if (interrupted) break
    // what the machine is doing without us: one second with nothing of the bench running but the idle devnet
    const m0 = machineSample()
    await sleep(1_000)
    const background = machineBusy(m0, machineSample())
    const started = Date.now()
    log(`${b.title}… (background load: ${fmt(background)}% of all cores busy)`)
    let section: Section
    try {
      section = await withTimeout(b.run(ctx), Math.min(b.timeoutMs, ctx.remainingMs() - 20_000), b.title)
    } catch (err) {
      log(`${b.title} failed: ${(err as Error).stack ?? err}`)
      section = errorSection(b.title, err)
      keep = true // the logs of what failed stay for a post-mortem
      await stopAllChildren()
    }
    rows.push(...section.rows)
    notes.push(...section.notes)
    const secs = (Date.now() - started) / 1000
    timings.push(`${b.key} ${secs.toFixed(0)} s`)
    machine.push(`${b.key} ${fmt(background)}%`)
    log(`${b.title} done in ${secs.toFixed(1)} s`)
    for (const r of section.rows) log(`  ${r.figure}: ${r.value}${r.reference ? ` (ref ${r.reference}${r.ratio ? `, ratio ${r.ratio}` : ''})` : ''}${r.target ? ` target ${r.target}` : ''} → ${r.verdict}`)
  }

  if (interrupted) return
  const total = (Date.now() - t0) / 1000
  const date = new Date().toISOString()
  const load1 = loadavg()
  notes.push(
    `machine: CPU busy with work other than the bench (all cores, from /proc/stat, in the second before each bench while only the idle devnet ran): ${machine.join(', ')}; 1-minute load average ${fmt(load0[0] ?? NaN, 2)} at the start and ${fmt(load1[0] ?? NaN, 2)} at the end, on ${cpus().length} cores. Background load slows a figure and its same-run reference alike; the ratios are the comparable part.`,
  )
  const header = `node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model?.trim() ?? '?'}), ${fmt(totalmem() / 2 ** 30, 1)} GiB RAM, ${process.platform}/${process.arch}, ${date}; whole run ${total.toFixed(0)} s (${timings.join(', ')})`
  process.stdout.write(`\n${renderText(rows)}\n\n${header}\n\nNotes:\n${notes.map((n) => `- ${n}`).join('\n')}\n`)
  if (write && !only) {
    const md = [
      '# Benchmarks',
      '',
      'Generated by `npm run bench` (bench/run.ts): every figure measured in one run on a devnet the run starts itself',
      '(HyperDHT testnet, Nostr relay, nutshell mint, all on loopback), each next to a reference measured in the same run.',
      'Targets are from the design brief §5. Do not edit by hand; run `npm run bench` again.',
      '',
      `- machine: ${cpus().length} cores (\`os.cpus().length\`), ${cpus()[0]?.model?.trim() ?? '?'}, ${fmt(totalmem() / 2 ** 30, 1)} GiB RAM, ${process.platform}/${process.arch}`,
      `- node: ${process.version}`,
      `- date: ${date}`,
      `- run time: ${total.toFixed(0)} s (${timings.join(', ')})`,
      '',
      renderMarkdown(rows),
      '',
      '## How each figure was measured',
      '',
      ...notes.map((n) => `- ${n}`),
      '',
    ].join('\n')
    writeFileSync(join(repoRoot(), 'BENCHMARKS.md'), md)
    log('wrote BENCHMARKS.md')
  } else if (write) {
    log('--only given: BENCHMARKS.md not written (it holds full runs only)')
  }
}

main()
  .then(
    () => 0,
    (err: Error) => {
      log(`bench failed: ${err.stack ?? err}`)
      return 1
    },
  )
  .then(async (code) => {
    await cleanup()
    if (liveChildren() > 0) log(`warning: ${liveChildren()} child processes were still running; killed`)
    process.exit(code)
  })
