/**
 * A provider in its own process, as `dvm-agent` would run it: the Provider
 * (P2P service, offline tick verification, durable store, batched redeemer,
 * tunnel gateway) on the devnet, optionally with the bench backend behind its
 * tunnel. Every HTTP request it makes to a mint is counted (fetch is wrapped
 * before anything captures it), so the runner can ask how many mint round
 * trips a session cost.
 *
 *   options: env BENCH_PROVIDER (JSON, ProviderChildOptions)
 *   → { type: 'ready', pubkey, swarmKey, paymentPubkey, backend }
 *   commands: mint-requests, redeemer, sessions, lag, write-sizes, stop
 *
 * Experiment switches (environment; never set by npm run bench):
 * BENCH_DEBUG=1 logs each session end with its last credit; BENCH_PROVIDER_RCVBUF=<bytes>
 * raises the swarm's UDP receive buffers; BENCH_DEBUG_FRAMES=1 counts the sizes of the
 * writes tunnel streams get; BENCH_EXPERIMENT_WRITEV=1 see ./experiments.ts.
 */
import { mkdirSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { loadOrCreateIdentity } from '../../src/identity/nostr-key.js'
import { EchoProcessor } from '../../src/processors/echo.js'
import { Provider } from '../../src/provider/provider.js'
import type { Pricing } from '../../src/provider/pricing.js'
import { startBackend, type Backend } from './backend.js'
import { fatal, serveCommands, tell } from './child.js'
import { writeKeyCache, type FakeMintKey } from './fake-mint.js'
import { experimentWritev } from './experiments.js'

export interface ProviderChildOptions {
  dataDir: string
  bootstrap: Array<{ host: string; port: number }>
  mints: string[]
  kinds: number[]
  pricing: Pricing
  /** start the bench backend in this process and put it behind the tunnel */
  backend: boolean
  /** or put this origin (a backend in another process) behind the tunnel */
  backendUrl?: string
  maxSessions?: number
  graceMs?: number
  minLocktimeSec?: number
  redeemCount?: number
  redeemAgeMs?: number
  /** pretend keys of this mint were fetched before (the bench's in-process mint) */
  fakeMint?: { url: string; key: FakeMintKey }
  /** forward session-end and redeemed events to the runner */
  events?: boolean
}

interface MintRequest {
  at: number
  method: string
  path: string
  status?: number
}

/** BENCH_DEBUG_FRAMES=1 (experiments only): sizes of the chunks the tunnel streams are given to send. */
const writeSizes = new Map<number, number>()
async function watchWrites(): Promise<void> {
  const { WireStream } = await import('../../src/wire/stream.js')
  if (process.env.BENCH_EXPERIMENT_WRITEV) experimentWritev(WireStream.prototype)
  if (!process.env.BENCH_DEBUG_FRAMES) return
  // every chunk handed to the framing, whether it came through _write or _writev
  const proto = WireStream.prototype as unknown as { writeFrames(chunk: Buffer): Promise<void> }
  const orig = proto.writeFrames
  proto.writeFrames = function (chunk) {
    const bucket = 2 ** Math.ceil(Math.log2(Math.max(1, chunk.length)))
    writeSizes.set(bucket, (writeSizes.get(bucket) ?? 0) + 1)
    return orig.call(this, chunk)
  }
}

async function main(): Promise<void> {
  await watchWrites()
  const opts = JSON.parse(process.env.BENCH_PROVIDER ?? '{}') as ProviderChildOptions
  mkdirSync(opts.dataDir, { recursive: true })
  const requests: MintRequest[] = []
  const origins = new Set(opts.mints.map((m) => new URL(m).origin))
  const realFetch = globalThis.fetch
  globalThis.fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : String(input))
    const rec: MintRequest | undefined = origins.has(url.origin) ? { at: Date.now(), method: init?.method ?? (input instanceof Request ? input.method : 'GET'), path: url.pathname } : undefined
    if (rec) requests.push(rec)
    const res = await realFetch(input, init)
    if (rec) rec.status = res.status
    return res
  }) as typeof fetch

  if (opts.fakeMint) await writeKeyCache(opts.dataDir, opts.fakeMint.url, opts.fakeMint.key)
  let backend: Backend | undefined
  if (opts.backend) backend = await startBackend()
  const identity = await loadOrCreateIdentity(opts.dataDir)
  const logs: string[] = []
  const provider = await Provider.create({
    dataDir: opts.dataDir,
    identity,
    kinds: opts.kinds,
    processor: new EchoProcessor(),
    pricing: opts.pricing,
    mints: opts.mints,
    bootstrap: opts.bootstrap,
    backend: backend?.origin ?? opts.backendUrl,
    maxSessions: opts.maxSessions,
    graceMs: opts.graceMs,
    minLocktimeSec: opts.minLocktimeSec,
    redeemCount: opts.redeemCount,
    redeemAgeMs: opts.redeemAgeMs,
    log: (line) => {
      if (logs.length < 200) logs.push(line)
      process.stderr.write(`[provider] ${line}\n`)
    },
  })
  const refused: Record<string, number> = {}
  provider.p2p.on('tick-refused', (e: { code: string }) => (refused[e.code] = (refused[e.code] ?? 0) + 1))
  if (process.env.BENCH_DEBUG) {
    const last = new Map<string, { at: number; paid: number }>()
    provider.p2p.on('tick', (e: { session: string; paid: number }) => last.set(e.session, { at: Date.now(), paid: e.paid }))
    provider.p2p.on('session-end', (e: { id: string; reason: string; paid: number }) => {
      const l = last.get(e.id)
      process.stderr.write(`session-end ${e.id.slice(0, 8)} ${e.reason} paid ${e.paid}, last credit ${l ? Date.now() - l.at : 'never'} ms ago (paid ${l?.paid})\n`)
    })
  }
  if (opts.events) {
    provider.p2p.on('session-open', (e: { id: string }) => tell('session-open', { id: e.id, at: Date.now() }))
    provider.p2p.on('session-end', (e: { id: string; reason: string; paid: number }) => tell('session-end', { ...e, at: Date.now() }))
    provider.on('redeemed', (reports: unknown) => tell('redeemed', { reports, at: Date.now() }))
  }
  await provider.start()
  if (process.env.BENCH_PROVIDER_RCVBUF) {
    // experiment only (never set by npm run bench): what a larger UDP receive buffer would change
    const io = (provider.p2p.swarm.dht as unknown as { io: { serverSocket: { setRecvBufferSize(n: number): number }; clientSocket: { setRecvBufferSize(n: number): number } } }).io
    io.serverSocket.setRecvBufferSize(Number(process.env.BENCH_PROVIDER_RCVBUF))
    io.clientSocket.setRecvBufferSize(Number(process.env.BENCH_PROVIDER_RCVBUF))
  }
  const lag = monitorEventLoopDelay({ resolution: 10 })
  lag.enable()

  serveCommands(
    {
      'mint-requests': () => ({ requests }),
      'write-sizes': () => ({ sizes: Object.fromEntries([...writeSizes].sort((a, b) => a[0] - b[0])) }),
      redeemer: () => ({ stats: provider.redeemer.stats(), counts: provider.store.counts() }),
      sessions: () => ({ active: provider.p2p.activeSessions, refused, logs: logs.slice(-20) }),
      /** event-loop delay since the last call (ms): how late the provider's thread ran its work */
      lag: () => {
        const r = { p50: lag.percentile(50) / 1e6, p99: lag.percentile(99) / 1e6, max: lag.max / 1e6 }
        lag.reset()
        return r
      },
    },
    async () => {
      await provider.stop()
      await backend?.close()
    },
  )
  tell('ready', { pubkey: identity.pubkey, swarmKey: provider.swarmPublicKey, paymentPubkey: provider.paymentKey.pubkey, backend: backend?.origin ?? opts.backendUrl ?? null })
}

main().catch(fatal)
