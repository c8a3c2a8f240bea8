/**
 * NIP-90 over relays: how many signature-verified job requests one provider
 * handles per second with a trivial processor, and request-to-result latency
 * through a real relay. Prints figures; asserts nothing.
 *
 *   npx tsx bench/relay-jobs.bench.ts                 # both parts
 *   REQUESTS=10000 npx tsx bench/relay-jobs.bench.ts --throughput-only
 *
 * Throughput: a load generator in a child process plays a relay that serves
 * N pre-signed requests as fast as the socket takes them and OKs every event
 * the provider publishes, without checking them, so the figure is the
 * provider's: parse, shape check, signature verification (every request),
 * dedupe, parse NIP-90, queue, run echo, build and sign the result, send.
 * Latency: customer and provider on a real relay (src/devnet/relay.ts, which
 * verifies every event too), one job at a time.
 */
import { fork } from 'node:child_process'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { generateSecretKey } from 'nostr-tools/pure'
import { WebSocketServer, type WebSocket } from 'ws'
import { identityFromSecret } from '../src/identity/nostr-key.js'
import { EchoProcessor } from '../src/processors/echo.js'
import { loadNostrCrypto, nowSeconds, type Event } from '../src/nostr/events.js'
import { RelayPool } from '../src/nostr/relay-client.js'
import { buildJobRequest, resultKindFor } from '../src/nostr/nip90.js'
import { RelayJobService } from '../src/provider/relay-jobs.js'
import { runRelayJob } from '../src/customer/relay-job.js'
import { startRelay } from '../src/devnet/relay.js'

const KIND = 5050
const REQUESTS = Number(process.env.REQUESTS ?? 5000)
const LATENCY_JOBS = Number(process.env.LATENCY_JOBS ?? 200)
const fmt = (x: number, digits = 0): string => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

// ---------------------------------------------------------------- load generator (child)

interface LoadReport {
  requests: number
  results: number
  firstSentAt: number
  lastResultAt: number
}

async function loadGenerator(): Promise<void> {
  const crypto = await loadNostrCrypto()
  const sk = generateSecretKey()
  // Signing takes seconds and the provider only takes requests from after it started.
  const created = nowSeconds() + 60
  const frames: string[] = []
  for (let i = 0; i < REQUESTS; i++) {
    const ev = crypto.sign(buildJobRequest({ kind: KIND, inputs: [{ type: 'text', value: `request number ${i}` }] }, created), sk)
    frames.push(JSON.stringify(ev))
  }
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise<void>((r) => wss.once('listening', () => r()))
  let results = 0
  let firstSentAt = 0
  let lastResultAt = 0
  const resultKind = resultKindFor(KIND)
  wss.on('connection', (ws: WebSocket) => {
    ws.on('message', (data) => {
      const text = data.toString()
      const msg = JSON.parse(text) as [string, ...unknown[]]
      if (msg[0] === 'REQ') {
        const sub = msg[1] as string
        const filter = msg[2] as { kinds?: number[] }
        if (filter.kinds?.includes(KIND)) {
          firstSentAt = performance.now()
          // Send in slices so the socket's buffer does not hold all of it at once.
          let i = 0
          const pump = (): void => {
            const end = Math.min(frames.length, i + 200)
            for (; i < end; i++) ws.send(`["EVENT","${sub}",${frames[i]}]`)
            if (i < frames.length) setImmediate(pump)
          }
          pump()
        }
        ws.send(JSON.stringify(['EOSE', sub]))
      } else if (msg[0] === 'EVENT') {
        const ev = msg[1] as Event
        ws.send(JSON.stringify(['OK', ev.id, true, '']))
        if (ev.kind === resultKind) {
          results++
          lastResultAt = performance.now()
          if (results === REQUESTS) {
            const report: LoadReport = { requests: REQUESTS, results, firstSentAt, lastResultAt }
            process.send!({ type: 'done', report })
          }
        }
      }
    })
  })
  process.send!({ type: 'ready', url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}` })
}

// ---------------------------------------------------------------- parts

async function throughput(): Promise<void> {
  const child = fork(fileURLToPath(import.meta.url), ['--load-generator'], { execArgv: ['--import', 'tsx'], env: { ...process.env, REQUESTS: String(REQUESTS) } })
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { type: string; url: string }) => resolve(m.url))
    child.once('exit', (code) => reject(new Error(`load generator exited (${code})`)))
  })
  const crypto = await loadNostrCrypto()
  const pool = new RelayPool({ crypto, relays: [url], maxSeenIds: REQUESTS * 2 })
  const service = new RelayJobService({
    identity: identityFromSecret(generateSecretKey()),
    relays: pool,
    kinds: [KIND],
    processor: new EchoProcessor(),
    crypto,
    rateLimit: false,
    resultCache: false,
    maxJobs: 256,
    maxQueued: REQUESTS,
  })
  const cpu0 = process.cpuUsage()
  const elu0 = performance.eventLoopUtilization()
  const done = new Promise<LoadReport>((resolve) => child.on('message', (m: { type: string; report: LoadReport }) => m.type === 'done' && resolve(m.report)))
  await service.start()
  const report = await Promise.race([
    done,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`not all results within 120 s (provider saw ${pool.stats.verified} requests, dropped ${pool.stats.invalid})`)), 120_000)),
  ])
  const cpu = process.cpuUsage(cpu0)
  const elu = performance.eventLoopUtilization(elu0)
  const seconds = (report.lastResultAt - report.firstSentAt) / 1000
  const cpuMs = (cpu.user + cpu.system) / 1000
  console.log(`throughput (one provider process, ${crypto.backend} signatures, echo processor)`)
  console.log(`  ${fmt(report.requests)} requests, ${fmt(report.results)} results in ${fmt(seconds, 2)} s: ${fmt(report.results / seconds)} verified requests/s`)
  console.log(`  provider CPU: ${fmt(cpuMs / seconds / 10)}% of one core (${fmt(cpuMs / report.results, 2)} ms per job, both threads); main thread busy ${fmt(elu.utilization * 100)}%`)
  console.log(`  events verified ${fmt(pool.stats.verified)}, dropped ${fmt(pool.stats.invalid)}; figures fall when other processes hold the cores (load average above)`)
  await service.stop()
  pool.close()
  child.kill()
}

async function latency(): Promise<void> {
  const relay = await startRelay({ log: () => {} })
  const crypto = await loadNostrCrypto()
  const providerPool = new RelayPool({ crypto, relays: [relay.url] })
  const customerPool = new RelayPool({ crypto, relays: [relay.url] })
  await Promise.all([providerPool.waitConnected(), customerPool.waitConnected()])
  const provider = identityFromSecret(generateSecretKey())
  const service = new RelayJobService({ identity: provider, relays: providerPool, kinds: [KIND], processor: new EchoProcessor(), crypto, rateLimit: false, resultCache: false })
  await service.start()
  const customer = identityFromSecret(generateSecretKey())
  const times: number[] = []
  for (let i = 0; i < LATENCY_JOBS + 10; i++) {
    const t0 = performance.now()
    await runRelayJob({ kind: KIND, inputs: [{ type: 'text', value: `latency ${i}` }], provider: provider.pubkey }, { identity: customer, pool: customerPool, crypto, timeoutMs: 10_000 })
    if (i >= 10) times.push(performance.now() - t0) // the first few warm up the JIT
  }
  times.sort((a, b) => a - b)
  const q = (p: number): number => times[Math.min(times.length - 1, Math.floor(p * times.length))]!
  console.log(`latency (request published -> result received, devnet relay in this process, ${LATENCY_JOBS} jobs one at a time)`)
  console.log(`  p50 ${fmt(q(0.5), 2)} ms, p90 ${fmt(q(0.9), 2)} ms, p99 ${fmt(q(0.99), 2)} ms`)
  await service.stop()
  providerPool.close()
  customerPool.close()
  await relay.stop()
}

if (process.argv.includes('--load-generator')) {
  await loadGenerator()
} else {
  console.log(`relay jobs bench: node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`)
  await throughput()
  if (!process.argv.includes('--throughput-only')) await latency()
  process.exit(0)
}
