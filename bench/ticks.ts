/**
 * 1. Verified ticks per second on one core.
 *
 * Real 1-sat proofs: the child funds a wallet at the devnet's nutshell mint
 * and lock-swaps them to a provider payment key (P2PK, locktime, refund key,
 * DLEQ kept), exactly what a customer sends. Then, in one JS thread:
 *   - TickVerifier.verify alone (every offline check, no write), best of 5 passes;
 *   - TickVerifier.accept = verify + ReceivedStore.accept (durable, group-committed
 *     fdatasync before the ack) with 1, 16 and 256 ticks in flight, each pass
 *     on a fresh store (a proof is accepted only once per store);
 *   - reference: cashu-ts's pure-JS hasValidDleq on the same proofs.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { hasValidDleq } from '@cashu/cashu-ts'
import { Wallet } from '../src/payments/wallet.js'
import { loadOrCreatePaymentKey, paymentKeyFromPrivkey } from '../src/payments/payment-key.js'
import { MintKeyCache } from '../src/payments/mint-keys.js'
import { ReceivedStore } from '../src/payments/received-store.js'
import { TickVerifier } from '../src/payments/tick-verifier.js'
import { verifyProofDleq } from '../src/payments/dleq.js'
import { secretToY } from '../src/payments/hash-to-curve.js'
import { BenchChild, benchFile, fatal, isMain, serveCommands, tell } from './lib/child.js'
import { fmt, summarize } from './lib/stats.js'
import type { Row, Section } from './lib/table.js'
import type { BenchContext } from './run.js'

type Proof = { amount: number; id: string; secret: string; C: string; dleq?: { e: string; s: string; r?: string } }

interface AcceptPass {
  inFlight: number
  ticks: number
  perSec: number
  fsyncs: number
  cpuMsPerTick: number
  cpuPct: number
  ackP50: number
  ackP99: number
}

interface TicksReport {
  proofs: number
  lockMs: number
  verifyPerSec: number
  dleqPerSec: number
  cashuTsPerSec: number
  cashuTsSample: number
  accept: AcceptPass[]
}

// ------------------------------------------------------------------ child

async function measure(mint: string, dir: string, count: number): Promise<TicksReport> {
  const providerDir = join(dir, 'provider')
  mkdirSync(providerDir, { recursive: true })
  const payKey = await loadOrCreatePaymentKey(providerDir)
  const refund = paymentKeyFromPrivkey(randomBytes(32))
  const wallet = new Wallet({ dataDir: join(dir, 'customer'), mintUrl: mint })
  await wallet.load()
  await wallet.fund(count, { pollMs: 20 })
  let t = performance.now()
  const proofs = (await wallet.lockForPayee({ amount: count, payeePubkey: payKey.pubkey, locktime: Math.floor(Date.now() / 1000) + 7200, refundPubkey: refund.pubkey })) as Proof[]
  const lockMs = performance.now() - t
  const keys = new MintKeyCache({ dataDir: providerDir, mints: [mint] })
  await keys.start()

  const bestRate = (passes: number, n: number, f: (i: number) => void): number => {
    let best = 0
    for (let pass = 0; pass < passes; pass++) {
      const t0 = performance.now()
      for (let i = 0; i < n; i++) f(i)
      best = Math.max(best, n / ((performance.now() - t0) / 1000))
    }
    return best
  }
  // verify alone: no store, so nothing is a replay and passes can repeat
  const verifier = new TickVerifier({ paymentPubkey: payKey.pubkey, keys, minLocktimeMarginSec: 600 })
  const verifyPerSec = bestRate(5, proofs.length, (i) => {
    const v = verifier.verify(proofs[i], mint)
    if (!v.ok) throw new Error(`verify refused a real proof: ${v.reason}`)
  })
  const A = keys.publicKey(mint, proofs[0]!.id, 1)!
  const dleqPerSec = bestRate(3, proofs.length, (i) => {
    const p = proofs[i]!
    if (!verifyProofDleq(p as never, A, secretToY(p.secret))) throw new Error('DLEQ failed')
  })

  // verify + durable accept, on a fresh store per pass
  const accept: AcceptPass[] = []
  let pass = 0
  for (const inFlight of [1, 16, 256]) {
    const batch = inFlight === 1 ? proofs.slice(0, Math.min(400, proofs.length)) : proofs
    const store = await ReceivedStore.open(join(dir, `store-${pass++}`))
    const v = new TickVerifier({ paymentPubkey: payKey.pubkey, keys, minLocktimeMarginSec: 600, store })
    const lat: number[] = []
    let next = 0
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: inFlight }, async (_, w) => {
        while (next < batch.length) {
          const p = batch[next++]!
          const s = performance.now()
          const r = await v.accept(`session-${w}`, p, mint)
          if (!r.ok) throw new Error(`accept refused a real proof: ${r.reason}`)
          lat.push(performance.now() - s)
        }
      }),
    )
    const ms = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    const cpuMs = (cpu.user + cpu.system) / 1000
    const s = summarize(lat)
    accept.push({ inFlight, ticks: batch.length, perSec: batch.length / (ms / 1000), fsyncs: store.stats().fsyncs, cpuMsPerTick: cpuMs / batch.length, cpuPct: (cpuMs / ms) * 100, ackP50: s.p50, ackP99: s.p99 })
    await store.close()
  }

  // reference: cashu-ts, pure JS (about 13 ms a proof here, so a sample)
  const sample = proofs.slice(0, 60)
  const keyset = { id: proofs[0]!.id, unit: 'sat', keys: { 1: Buffer.from(A).toString('hex') } }
  t = performance.now()
  for (const p of sample) if (!hasValidDleq(p as never, keyset as never)) throw new Error('cashu-ts: DLEQ invalid')
  const cashuTsPerSec = sample.length / ((performance.now() - t) / 1000)
  return { proofs: proofs.length, lockMs, verifyPerSec, dleqPerSec, cashuTsPerSec, cashuTsSample: sample.length, accept }
}

// ------------------------------------------------------------------ runner side

export async function benchTicks(ctx: BenchContext): Promise<Section> {
  const count = Number(process.env.BENCH_TICKS ?? 1500)
  const child = new BenchChild('ticks', benchFile('ticks.ts'), ['child'], { logDir: ctx.logDir })
  try {
    await child.next('ready', 30_000)
    const { report } = (await child.request('measure', { mint: ctx.devnet.mint, dir: ctx.dir('ticks'), count }, 120_000)) as unknown as { report: TicksReport }
    const best = report.accept.reduce((a, b) => (b.perSec > a.perSec ? b : a))
    const one = report.accept.find((a) => a.inFlight === 1)!
    const ref = report.cashuTsPerSec
    const rows: Row[] = [
      {
        group: '1 ticks',
        figure: `verified + durably stored ticks/s, one thread (TickVerifier.accept, ${best.inFlight} in flight)`,
        value: `${fmt(best.perSec)}/s`,
        reference: `cashu-ts hasValidDleq ${fmt(ref, 1)}/s`,
        ratio: `${fmt(best.perSec / ref, 1)}×`,
        target: '≥ 1,000/s',
        verdict: best.perSec >= 1000 ? 'pass' : 'FAIL',
      },
      {
        group: '1 ticks',
        figure: 'TickVerifier.verify alone (all offline checks, no write)',
        value: `${fmt(report.verifyPerSec)}/s`,
        reference: `cashu-ts ${fmt(ref, 1)}/s`,
        ratio: `${fmt(report.verifyPerSec / ref, 1)}×`,
        verdict: 'info',
      },
      {
        group: '1 ticks',
        figure: 'DLEQ check alone (NUT-12, native libsecp256k1)',
        value: `${fmt(report.dleqPerSec)}/s`,
        reference: `cashu-ts ${fmt(ref, 1)}/s`,
        ratio: `${fmt(report.dleqPerSec / ref, 1)}×`,
        verdict: 'info',
      },
      {
        group: '1 ticks',
        figure: 'verify + store with 1 tick in flight (each ack waits for its own fdatasync)',
        value: `${fmt(one.perSec)}/s, ack p50 ${fmt(one.ackP50, 2)} ms`,
        verdict: 'info',
      },
    ]
    const notes = [
      `1 ticks: ${fmt(report.proofs)} real 1-sat proofs lock-swapped at the devnet nutshell mint (P2PK to the provider's payment key, locktime, refund key, DLEQ kept); the lock swap itself took ${fmt(report.lockMs)} ms (${fmt(report.proofs / (report.lockMs / 1000))} proofs/s, nutshell's signing rate; not part of the figure).`,
      `1 ticks: accept passes — ${report.accept.map((a) => `${a.inFlight} in flight: ${fmt(a.perSec)}/s, ${a.fsyncs} fsyncs for ${a.ticks} ticks, ack p50/p99 ${fmt(a.ackP50, 2)}/${fmt(a.ackP99, 2)} ms, ${fmt(a.cpuMsPerTick, 3)} CPU ms/tick (${fmt(a.cpuPct)}% of a core)`).join('; ')}. cashu-ts reference on ${report.cashuTsSample} of the same proofs.`,
    ]
    return { rows, notes }
  } finally {
    await child.stop()
  }
}

if (isMain(import.meta.url)) {
  serveCommands({
    measure: async (m) => ({ report: await measure(String(m.mint), String(m.dir), Number(m.count)) }),
  })
  tell('ready')
}
