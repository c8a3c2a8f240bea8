/**
 * 5. NIP-90 over relays: signature-verified job requests one provider
 * handles per second with a trivial (echo) processor, and request-to-result
 * latency. Absorbs the earlier bench/relay-jobs.bench.ts.
 *
 * Roles (each its own process):
 *  - fake-relay: a load generator that speaks the relay protocol, serves N
 *    pre-signed requests to whoever subscribes as fast as the socket takes
 *    them and OKs everything it is sent without checking, so the figure is
 *    the provider's own: parse, shape check, signature verification of every
 *    request, dedupe, NIP-90 parsing, queue, echo, build and sign the result
 *    (in the service's signing thread), publish.
 *  - provider: RelayJobService (src/provider/relay-jobs.ts) on given relays.
 *  - publisher: pre-signs requests and publishes them pipelined to the devnet
 *    relay (which verifies every event), counting OKs: the reference rate a
 *    relay takes events at in this run; and the end-to-end run through it.
 *  - customer: runRelayJob (src/customer/relay-job.ts) one job at a time.
 */
import { generateSecretKey } from 'nostr-tools/pure'
import WebSocket, { WebSocketServer } from 'ws'
import { identityFromSecret } from '../src/identity/nostr-key.js'
import { EchoProcessor } from '../src/processors/echo.js'
import { loadNostrCrypto, nowSeconds, type Event } from '../src/nostr/events.js'
import { RelayPool } from '../src/nostr/relay-client.js'
import { buildJobRequest, resultKindFor } from '../src/nostr/nip90.js'
import { RelayJobService, type JobActivity } from '../src/provider/relay-jobs.js'
import { runRelayJob } from '../src/customer/relay-job.js'
import { BenchChild, benchFile, fatal, isMain, serveCommands, tell } from './lib/child.js'
import { fmt, summarize } from './lib/stats.js'
import type { Row, Section } from './lib/table.js'
import { procSample, cpuPercent } from './lib/timing.js'
import type { BenchContext } from './run.js'

const KIND = 5050
const ISOLATED = Number(process.env.BENCH_RELAY_REQUESTS ?? 5000)
const PUBLISH = Number(process.env.BENCH_RELAY_PUBLISH ?? 1500)
const E2E = Number(process.env.BENCH_RELAY_E2E ?? 1000)
const LATENCY_JOBS = Number(process.env.BENCH_RELAY_LATENCY_JOBS ?? 200)

async function signRequests(n: number, createdAt: number): Promise<string[]> {
  const crypto = await loadNostrCrypto()
  const sk = generateSecretKey()
  const frames: string[] = []
  for (let i = 0; i < n; i++) frames.push(JSON.stringify(crypto.sign(buildJobRequest({ kind: KIND, inputs: [{ type: 'text', value: `request number ${i}` }] }, createdAt), sk)))
  return frames
}

// ------------------------------------------------------------------ fake relay (load generator)

async function fakeRelay(n: number): Promise<void> {
  // the provider serves requests from its start on; these are signed before it starts
  const frames = await signRequests(n, nowSeconds() + 60)
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise<void>((r) => wss.once('listening', () => r()))
  const resultKind = resultKindFor(KIND)
  let results = 0
  let firstSentAt = 0
  let served = false
  wss.on('connection', (ws: WebSocket) => {
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as [string, ...unknown[]]
      if (msg[0] === 'REQ') {
        const sub = msg[1] as string
        const filter = msg[2] as { kinds?: number[] }
        if (filter.kinds?.includes(KIND) && !served) {
          served = true
          firstSentAt = performance.now()
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
        if (ev.kind === resultKind && ++results === n) tell('done', { results, ms: performance.now() - firstSentAt })
      }
    })
  })
  serveCommands({}, async () => void wss.close())
  tell('ready', { url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}` })
}

// ------------------------------------------------------------------ provider

async function provider(relay: string, expect: number): Promise<void> {
  const crypto = await loadNostrCrypto()
  const pool = new RelayPool({ crypto, relays: [relay], maxSeenIds: Math.max(20_000, expect * 2) })
  const identity = identityFromSecret(generateSecretKey())
  let results = 0
  let lastResultAt = 0
  const service = new RelayJobService({
    identity,
    relays: pool,
    kinds: [KIND],
    processor: new EchoProcessor(),
    crypto,
    rateLimit: false,
    resultCache: false,
    maxJobs: 256,
    maxQueued: Math.max(1000, expect),
    onActivity: (a: JobActivity) => {
      if (a.type === 'result') {
        results++
        lastResultAt = Date.now()
      }
    },
  })
  await pool.waitConnected()
  await service.start()
  serveCommands(
    {
      stats: () => ({ results, lastResultAt, pool: { ...pool.stats }, backend: crypto.backend }),
      reset: () => {
        results = 0
        lastResultAt = 0
        return {}
      },
    },
    async () => {
      await service.stop()
      pool.close()
    },
  )
  tell('ready', { pubkey: identity.pubkey, backend: crypto.backend })
}

// ------------------------------------------------------------------ publisher

async function publisher(relay: string): Promise<void> {
  let frames: string[] = []
  const ws = new WebSocket(relay)
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  let oks = 0
  let refused = 0
  let onOk: (() => void) | null = null
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString()) as [string, string, boolean, string]
    if (msg[0] !== 'OK') return
    if (msg[2]) oks++
    else refused++
    onOk?.()
  })
  serveCommands(
    {
      sign: async (m) => {
        frames = await signRequests(Number(m.n), nowSeconds())
        return {}
      },
      publish: async () => {
        oks = 0
        refused = 0
        const firstAt = Date.now()
        const t0 = performance.now()
        const done = new Promise<void>((resolve) => (onOk = () => oks + refused >= frames.length && resolve()))
        let i = 0
        // pipelined, with at most 500 unanswered so the relay's socket is never flooded
        const pump = (): void => {
          while (i < frames.length && i - (oks + refused) < 500) ws.send(`["EVENT",${frames[i++]}]`)
          if (i < frames.length) setTimeout(pump, 1)
        }
        pump()
        await done
        return { n: frames.length, oks, refused, ms: performance.now() - t0, firstAt }
      },
    },
    async () => ws.close(),
  )
  tell('ready')
}

// ------------------------------------------------------------------ customer (latency)

async function customer(relay: string, providerPubkey: string, n: number): Promise<void> {
  const crypto = await loadNostrCrypto()
  const pool = new RelayPool({ crypto, relays: [relay] })
  await pool.waitConnected()
  const identity = identityFromSecret(generateSecretKey())
  const times: number[] = []
  for (let i = 0; i < n + 10; i++) {
    const t0 = performance.now()
    await runRelayJob({ kind: KIND, inputs: [{ type: 'text', value: `latency ${i}` }], provider: providerPubkey }, { identity, pool, crypto, timeoutMs: 10_000 })
    if (i >= 10) times.push(performance.now() - t0) // the first few warm up
  }
  pool.close()
  tell('done', { times })
}

// ------------------------------------------------------------------ runner side

export async function benchRelays(ctx: BenchContext): Promise<Section> {
  const relay = ctx.devnet.relays[0]!
  const children: BenchChild[] = []
  const child = (name: string, args: string[]) => {
    const c = new BenchChild(name, benchFile('relay-jobs.ts'), args, { logDir: ctx.logDir })
    children.push(c)
    return c
  }
  try {
    // load generator and publisher sign their events while nothing is measured
    const fake = child('relay-fake', ['fake-relay', String(ISOLATED)])
    const pub = child('relay-publisher', ['publisher', relay])
    const [fakeReady] = await Promise.all([fake.next('ready', 90_000), pub.next('ready', 30_000)])
    await pub.request('sign', { n: PUBLISH }, 60_000)

    // reference: the devnet relay taking signed events (it verifies each), nobody subscribed
    const ref = (await pub.request('publish', {}, 60_000)) as unknown as { n: number; oks: number; refused: number; ms: number }
    const refRate = ref.oks / (ref.ms / 1000)

    // the provider alone, fed by the load generator
    const isolated = child('relay-provider-isolated', ['provider', String(fakeReady.url), String(ISOLATED)])
    const done = fake.next('done', 120_000)
    await isolated.next('ready', 30_000)
    const cpu0 = procSample(isolated.pid)
    const fakeDone = (await done) as unknown as { results: number; ms: number }
    const cpu1 = procSample(isolated.pid)
    const isoStats = (await isolated.request('stats')) as unknown as { pool: { verified: number; invalid: number }; backend: string }
    await isolated.stop()
    const isoRate = fakeDone.results / (fakeDone.ms / 1000)

    // end to end through the devnet relay, then latency one job at a time
    const prov = child('relay-provider', ['provider', relay, String(E2E)])
    const provReady = await prov.next('ready', 30_000)
    await pub.request('sign', { n: E2E }, 60_000)
    const e2e = (await pub.request('publish', {}, 90_000)) as unknown as { n: number; oks: number; ms: number; firstAt: number }
    let st = (await prov.request('stats')) as unknown as { results: number; lastResultAt: number }
    const deadline = Date.now() + 60_000
    while (st.results < e2e.oks && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100))
      st = (await prov.request('stats')) as unknown as { results: number; lastResultAt: number }
    }
    const e2eRate = st.results / ((st.lastResultAt - e2e.firstAt) / 1000)
    const cust = child('relay-customer', ['customer', relay, String(provReady.pubkey), String(LATENCY_JOBS)])
    const lat = summarize(((await cust.next('done', 90_000)) as unknown as { times: number[] }).times)

    const rows: Row[] = [
      {
        group: '5 relays',
        figure: 'signature-verified job requests handled per second, one provider, echo processor',
        value: `${fmt(isoRate)}/s`,
        reference: `devnet relay takes ${fmt(refRate)} events/s`,
        ratio: fmt(isoRate / refRate, 2),
        target: '≥ 1,000/s',
        verdict: isoRate >= 1000 ? 'pass' : 'FAIL',
      },
      {
        group: '5 relays',
        figure: 'same, end to end through the devnet relay (publish → provider → result stored)',
        value: `${fmt(e2eRate)}/s (${fmt(st.results)}/${fmt(e2e.oks)} results)`,
        reference: `devnet relay ${fmt(refRate)} events/s`,
        ratio: fmt(e2eRate / refRate, 2),
        verdict: 'info',
      },
      {
        group: '5 relays',
        figure: 'request → result latency on the devnet relay, one job at a time, p50 / p99',
        value: `${fmt(lat.p50, 1)} / ${fmt(lat.p99, 1)} ms`,
        verdict: 'info',
      },
    ]
    const notes = [
      `5 relays: provider alone — ${fmt(fakeDone.results)} pre-signed requests served by a load-generator relay process that checks nothing, results counted there; provider process CPU ${fmt(cpuPercent(cpu0, cpu1))}% (all its threads; 100% = one core; replies signed inline with native libsecp256k1), signatures via ${isoStats.backend}, ${fmt(isoStats.pool.verified)} events verified, ${isoStats.pool.invalid} dropped. Reference — ${fmt(ref.oks)} signed job requests published pipelined (≤ 500 unanswered) to the devnet relay (src/devnet/relay.ts, @nostr-relay/core, verifies each event, runs in the bench runner's process) in ${fmt(ref.ms)} ms${ref.refused ? `, ${ref.refused} refused` : ''}. End to end: the same through that relay with a provider subscribed, so the relay also verifies and stores every result.`,
      `5 relays: latency from ${fmt(lat.n)} jobs (runRelayJob: sign, publish, wait for the result; after 10 warm-up jobs), p50/p90/p99/max ${fmt(lat.p50, 1)}/${fmt(lat.p90, 1)}/${fmt(lat.p99, 1)}/${fmt(lat.max, 1)} ms.`,
    ]
    return { rows, notes }
  } finally {
    await Promise.allSettled(children.map((c) => c.stop()))
  }
}

if (isMain(import.meta.url)) {
  const [role, a, b, c] = process.argv.slice(2)
  const run =
    role === 'fake-relay' ? fakeRelay(Number(a))
    : role === 'provider' ? provider(a!, Number(b))
    : role === 'publisher' ? publisher(a!)
    : role === 'customer' ? customer(a!, b!, Number(c))
    : Promise.reject(new Error(`unknown role ${role}`))
  run.catch(fatal)
}
