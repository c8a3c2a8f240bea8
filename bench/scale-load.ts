/**
 * 6. Scale: one provider process, many paying sessions from a load generator
 * in another process, one tick a second each.
 *
 * Runner side (benchScale): starts a provider (bench/lib/provider-child.ts)
 * and this file as the load generator, then steps the session count up
 * (100 → 250 → 500 → 1000 by default; sessions of earlier steps keep
 * ticking). After each step's sessions are open and a short settle, a window
 * of WINDOW_MS: every tick sent in it must be acknowledged within 1 s, no
 * session may end or be refused. The provider's CPU (utime+stime from
 * /proc/<pid>/stat over the window) and RSS (VmRSS from /proc/<pid>/status)
 * are read at the same time. The largest count that passes is the figure;
 * the first step that fails ends the run.
 *
 * Load generator: one HyperDHT node on the devnet, one Noise connection per
 * customer identity (dht.connect with that identity's swarm key pair, the
 * identity proof both ways, as connectToProvider does), PER_CONN sessions
 * per connection, each a SessionClient (the dvm-session code) ticking on its
 * own timer. Proofs: real 1-sat P2PK-locked proofs with DLEQ, signed by a
 * bench mint key (bench/lib/fake-mint.ts) whose keyset the provider has cached,
 * made before each step's sessions open; nutshell signs about 300 outputs a
 * second here, too slow for the ~60,000 proofs this run makes. The provider
 * verifies them exactly as it verifies nutshell's; its redemption is set to
 * run only at the end (nobody answers at the bench mint's URL) and is not
 * part of the figure.
 */
import DHT from 'hyperdht'
import type { NoiseSecretStream } from 'hyperswarm'
import { generateSecretKey } from 'nostr-tools/pure'
import { randomBytes } from 'node:crypto'
import { identityFromSecret, type Identity } from '../src/identity/nostr-key.js'
import { deriveSwarmKeyPair } from '../src/identity/swarm-key.js'
import { paymentKeyFromPrivkey } from '../src/payments/payment-key.js'
import { Peer } from '../src/wire/peer.js'
import type { ControlMessage, WireProof } from '../src/wire/protocol.js'
import type { SkillDescriptor } from '../src/skills/descriptor.js'
import { SessionClient } from '../src/customer/session-client.js'
import type { SessionFunds } from '../src/customer/session-funds.js'
import { BenchChild, benchFile, fatal, isMain, serveCommands, tell } from './lib/child.js'
import { FakeMint, newFakeMintKey, type FakeMintKey } from './lib/fake-mint.js'
import { fmt, summarize } from './lib/stats.js'
import type { Row, Section } from './lib/table.js'
import { cpuPercent, procSample, sleep, udpRcvbufErrors, type ProcSample } from './lib/timing.js'
import { startProviderChild } from './sessions.js'
import type { BenchContext } from './run.js'

const KIND = 5100
const STEPS = (process.env.BENCH_SCALE_STEPS ?? '100,250,500,1000').split(',').map(Number)
const WINDOW_MS = Number(process.env.BENCH_SCALE_WINDOW_MS ?? 10_000)
const SETTLE_MS = 3_000
const PER_CONN = Number(process.env.BENCH_SCALE_PER_CONN ?? 1)
/** bench mint URL: a loopback port nothing listens on, so a redemption attempt fails at once */
const FAKE_MINT_URL = 'http://127.0.0.1:9'
const RCVBUF = 8 * 1024 * 1024
type UdxSocket = { setRecvBufferSize(n: number): number; getRecvBufferSize(): number }

// ------------------------------------------------------------------ load generator (child)

interface LoadOpts {
  bootstrap: Array<{ host: string; port: number }>
  providerPubkey: string
  providerSwarmKey: string
  paymentPubkey: string
  mintUrl: string
  mintKey: FakeMintKey
  perConn: number
}

interface Sess {
  client: SessionClient
  sentAt: number[]
  endedBy: string | null
}

function firstSkill(peer: Peer, ms: number): Promise<SkillDescriptor> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no skill descriptor in time')), ms)
    const on = (m: ControlMessage) => {
      if (m.type !== 'skill') return
      clearTimeout(t)
      peer.off('message', on)
      resolve(m.skill as unknown as SkillDescriptor)
    }
    peer.on('message', on)
  })
}

async function loadGenerator(o: LoadOpts): Promise<void> {
  const dht = new DHT({ bootstrap: o.bootstrap, host: '127.0.0.1', firewalled: false })
  await dht.ready()
  // One UDP socket here stands for a thousand customers' machines: give it the receive
  // buffer they would have together (the kernel caps it at net.core.rmem_max), so the
  // harness does not drop the provider's packets (the provider keeps its own defaults).
  const io = (dht as unknown as { io: { serverSocket: UdxSocket; clientSocket: UdxSocket } }).io
  for (const sock of [io.serverSocket, io.clientSocket]) sock.setRecvBufferSize(RCVBUF)
  const rcvbuf = io.clientSocket.getRecvBufferSize()
  const mint = new FakeMint(o.mintKey)
  const refund = paymentKeyFromPrivkey(randomBytes(32))
  const pool: WireProof[] = []
  /** times a session asked for proofs the harness had not made: a harness failure, not the provider's */
  let poolEmpty = 0
  /** make proofs until the pool holds `target`, in slices of a few ms: open sessions keep ticking meanwhile,
   *  and a long synchronous slice would leave their packets waiting in the socket */
  async function fill(target: number): Promise<number> {
    const t0 = performance.now()
    while (pool.length < target) {
      for (let i = 0; i < 16 && pool.length < target; i++) pool.push(mint.issueLocked({ payee: o.paymentPubkey, locktime, refund: refund.pubkey }))
      await new Promise((r) => setImmediate(r))
    }
    return performance.now() - t0
  }
  const locktime = Math.floor(Date.now() / 1000) + 2 * 3600
  const funds: SessionFunds = {
    mintUrl: o.mintUrl,
    refundPubkey: refund.pubkey,
    lock: async (amount) => {
      if (pool.length < amount) poolEmpty++
      return pool.splice(0, amount)
    },
    markSpent: async () => {},
  }
  const sessions: Sess[] = []
  const peers: Peer[] = []
  let window: { from: number; to: number; lat: number[]; refused: number; endings: string[] } | null = null
  let stopping = false
  const endReasons: Record<string, number> = {}

  async function connect(): Promise<{ peer: Peer; skill: SkillDescriptor }> {
    const identity: Identity = identityFromSecret(generateSecretKey())
    const conn = (dht as unknown as { connect(pk: Buffer, opts: { keyPair: unknown }): NoiseSecretStream }).connect(Buffer.from(o.providerSwarmKey, 'hex'), { keyPair: deriveSwarmKeyPair(identity.secretKey) })
    conn.on('error', () => {})
    const peer = new Peer(conn, { identity, role: 'customer', expectedPubkey: o.providerPubkey, helloTimeoutMs: 30_000 })
    peer.setMaxListeners(0)
    const skill = firstSkill(peer, 30_000)
    skill.catch(() => {})
    await peer.ready
    peers.push(peer)
    return { peer, skill: await skill }
  }

  async function openSession(peer: Peer, skill: SkillDescriptor): Promise<void> {
    // the budget is not the limit here: the pool is, topped up before each step
    const client = new SessionClient({ peer, skill, kind: KIND, mode: 'session', budget: 1_000_000, funds, batchTicks: 4, timeoutMs: 30_000, ackTimeoutMs: 10_000 })
    const s: Sess = { client, sentAt: [], endedBy: null }
    const openedAt = performance.now()
    let lastAck = 0
    client.on('tick', () => s.sentAt.push(performance.now()))
    client.on('ack', () => {
      lastAck = performance.now()
      const sent = s.sentAt.shift()
      if (sent === undefined || !window) return
      if (sent >= window.from && sent <= window.to) window.lat.push(performance.now() - sent)
    })
    client.on('refuse', () => window && window.refused++)
    client.on('end', (summary: { reason: string }) => {
      if (stopping) return
      s.endedBy = summary.reason
      const now = performance.now()
      if (process.env.BENCH_DEBUG) process.stderr.write(`ended: ${summary.reason}; age ${fmt(now - openedAt)} ms, sent ${client.sent}, spent ${client.spent}, last ack ${lastAck ? fmt(now - lastAck) : 'never'} ms ago, pending ${s.sentAt.map((t) => fmt(now - t)).join(',')} ms\n`)
      endReasons[summary.reason] = (endReasons[summary.reason] ?? 0) + 1
      window?.endings.push(summary.reason)
    })
    await client.open()
    sessions.push(s)
    client.startTicking()
  }

  serveCommands(
    {
      /** top the proof pool up to `pool` proofs, then open `count` new sessions (paced) */
      add: async (m) => {
        const count = Number(m.count)
        const proofMs = await fill(Number(m.pool))
        const t1 = performance.now()
        const groups = Math.ceil(count / o.perConn)
        let next = 0
        const errors: string[] = []
        await Promise.all(
          Array.from({ length: Math.min(8, groups) }, async () => {
            while (next < groups) {
              const g = next++
              try {
                const { peer, skill } = await connect()
                const n = Math.min(o.perConn, count - g * o.perConn)
                for (let i = 0; i < n; i++) await openSession(peer, skill)
              } catch (err) {
                if (errors.length < 5) errors.push((err as Error).message)
              }
            }
          }),
        )
        return { proofMs, openMs: performance.now() - t1, sessions: sessions.length, connections: peers.length, errors, endReasons }
      },
      topup: async (m) => ({ proofMs: await fill(Number(m.pool)) }),
      window: async (m) => {
        const ms = Number(m.ms)
        const w = { from: performance.now(), to: performance.now() + ms, lat: [] as number[], refused: 0, endings: [] as string[] }
        window = w
        const sent0 = sessions.reduce((n, s) => n + s.client.sent, 0)
        await sleep(ms)
        const sent1 = sessions.reduce((n, s) => n + s.client.sent, 0)
        // give acks of the window's last ticks time to come back
        await sleep(1_200)
        window = null
        const pendingOld = sessions.reduce((n, s) => n + s.sentAt.filter((t) => t <= w.to).length, 0)
        const active = sessions.filter((s) => !s.client.ended).length
        return { ticks: sent1 - sent0, acked: w.lat.length, lat: summarize(w.lat), over1s: w.lat.filter((x) => x > 1000).length, unacked: pendingOld, refused: w.refused, endings: w.endings.slice(0, 5), ended: w.endings.length, active, poolLeft: pool.length, poolEmpty, endReasons }
      },
    },
    async () => {
      stopping = true
      for (const s of sessions) s.client.end('load generator done')
      await sleep(200)
      for (const p of peers) p.close()
      await dht.destroy()
    },
  )
  tell('ready', { rcvbuf })
}

// ------------------------------------------------------------------ runner side

interface StepResult {
  sessions: number
  connections: number
  ok: boolean
  why: string
  ticks: number
  acked: number
  p50: number
  p99: number
  max: number
  cpu: number
  loadCpu: number
  /** provider event-loop delay, max over the window (ms) */
  lagMax: number
  /** UDP datagrams dropped machine-wide for a full receive buffer during the window */
  drops: number
  rss: number
  attempt: number
  proofMs: number
  openMs: number
}

export async function benchScale(ctx: BenchContext): Promise<Section> {
  const key = newFakeMintKey()
  const provider = await startProviderChild(ctx, 'scale-provider', {
    mints: [FAKE_MINT_URL],
    fakeMint: { url: FAKE_MINT_URL, key },
    maxSessions: Math.max(...STEPS) + 100,
    redeemCount: 10_000_000,
    redeemAgeMs: 3_600_000,
  })
  const opts: LoadOpts = { bootstrap: ctx.devnet.bootstrap, providerPubkey: provider.pubkey, providerSwarmKey: provider.swarmKey, paymentPubkey: provider.paymentPubkey, mintUrl: FAKE_MINT_URL, mintKey: key, perConn: PER_CONN }
  const load = new BenchChild('scale-load', benchFile('scale-load.ts'), ['load', JSON.stringify(opts)], { logDir: ctx.logDir })
  const results: StepResult[] = []
  const idle = procSample(provider.child.pid)
  let loadRcvbuf = 0
  try {
    const ready = await load.next('ready', 30_000)
    loadRcvbuf = Number(ready.rcvbuf)
    let have = 0
    // Seconds one step lasts once its proofs are made: the ramp (40–100 new connections a
    // second here), the settle, the window and a margin. The pool is filled to cover that for
    // every session (fill() also makes up for what open sessions spend while it runs), plus
    // what SessionClient keeps locked ahead per session (batches of 4, refilled at 5 left).
    const stepSeconds = (add: number) => add / 40 + 3 + (SETTLE_MS + WINDOW_MS + 1_200) / 1000 + 8
    for (const [i, target] of STEPS.entries()) {
      // time still needed: each remaining step's run plus about 0.5 ms per proof to make
      const left = STEPS.slice(i).reduce((sum, n, j) => {
        const add = n - (j === 0 ? have : STEPS[i + j - 1]!)
        return sum + stepSeconds(add) + (n * stepSeconds(add) * 0.5) / 1000
      }, 0)
      if (ctx.remainingMs() < left * 1000 + 30_000) {
        ctx.log(`scale: stopping before ${target} sessions, the run's time limit is near`)
        break
      }
      const pool = Math.ceil(target * stepSeconds(target - have) + (target - have) * 10)
      await provider.child.request('lag')
      const ramp0 = procSample(provider.child.pid)
      const drops0 = udpRcvbufErrors()
      const added = (await load.request('add', { count: target - have, pool }, 180_000)) as unknown as { proofMs: number; openMs: number; sessions: number; connections: number; errors: string[] }
      have = added.sessions
      const ramp1 = procSample(provider.child.pid)
      const rampLag = (await provider.child.request('lag')) as unknown as { p99: number; max: number }
      ctx.log(`scale: ramp to ${target}: provider CPU ${fmt(cpuPercent(ramp0, ramp1))}%, event-loop delay p99/max ${fmt(rampLag.p99)}/${fmt(rampLag.max)} ms, UDP receive-buffer drops (machine) ${udpRcvbufErrors() - drops0}`)
      ctx.log(`scale: ${added.sessions} sessions on ${added.connections} connections (proofs ${fmt(added.proofMs)} ms, opening ${fmt(added.openMs)} ms)${added.errors.length ? `; errors: ${added.errors.join('; ')}` : ''}`)
      await sleep(SETTLE_MS)
      // a step passes on one clean window; on a shared machine a burst of outside load can spoil one,
      // so a window that failed on latency alone (no session lost, nothing refused) is measured once more
      let r: StepResult | undefined
      for (let attempt = 1; attempt <= 2; attempt++) {
        if (attempt > 1) await load.request('topup', { pool: Math.ceil(target * ((WINDOW_MS + 1_200) / 1000 + 8)) }, 120_000)
        await provider.child.request('lag')
        const a: ProcSample = procSample(provider.child.pid)
        const la: ProcSample = procSample(load.pid)
        const wd0 = udpRcvbufErrors()
        const w = (await load.request('window', { ms: WINDOW_MS }, WINDOW_MS + 30_000)) as unknown as {
          ticks: number; acked: number; lat: { p50: number; p99: number; max: number }; over1s: number; unacked: number; refused: number; endings: string[]; ended: number; active: number; endReasons: Record<string, number>; poolEmpty: number
        }
        const b: ProcSample = procSample(provider.child.pid)
        const lb: ProcSample = procSample(load.pid)
        const lag = (await provider.child.request('lag')) as unknown as { p50: number; p99: number; max: number }
        const drops = udpRcvbufErrors() - wd0
        const problems: string[] = []
        if (w.poolEmpty > 0) problems.push(`the load generator ran out of proofs ${w.poolEmpty} times (a harness failure)`)
        if (added.sessions < target) problems.push(`only ${added.sessions}/${target} sessions opened (${added.errors[0] ?? '?'})`)
        if (w.over1s > 0) problems.push(`${w.over1s} of ${w.acked} ticks acked after more than 1 s`)
        if (w.unacked > 0) problems.push(`${w.unacked} ticks never acked`)
        if (w.refused > 0) problems.push(`${w.refused} ticks refused`)
        if (w.ended > 0) problems.push(`${w.ended} sessions ended (${w.endings[0]})`)
        if (w.active < target) problems.push(`${w.active} sessions active (ended: ${Object.entries(w.endReasons).map(([k, v]) => `${v}× ${k}`).join(', ')})`)
        const latencyOnly = problems.length === 1 && w.over1s > 0
        r = { sessions: target, connections: added.connections, ok: problems.length === 0, why: problems.join('; '), ticks: w.ticks, acked: w.acked, p50: w.lat.p50, p99: w.lat.p99, max: w.lat.max, cpu: cpuPercent(a, b), loadCpu: cpuPercent(la, lb), lagMax: lag.max, drops, rss: b.rss, proofMs: added.proofMs, openMs: added.openMs, attempt }
        results.push(r)
        ctx.log(`scale: ${target} sessions, window ${attempt}: ${w.ticks} ticks in ${WINDOW_MS / 1000} s, ack p50/p99/max ${fmt(r.p50, 1)}/${fmt(r.p99, 1)}/${fmt(r.max, 1)} ms, provider CPU ${fmt(r.cpu)}%, event-loop delay max ${fmt(r.lagMax)} ms, RSS ${fmt(r.rss / 2 ** 20)} MiB, load generator CPU ${fmt(r.loadCpu)}%, UDP drops ${r.drops} → ${r.ok ? 'ok' : r.why}`)
        if (r.ok || !latencyOnly) break
      }
      if (!r?.ok) break
    }
  } finally {
    await load.stop(15_000)
    await provider.child.stop(20_000)
  }
  const best = [...results].reverse().find((r) => r.ok)
  const target = 1000
  const rows: Row[] = [
    {
      group: '6 scale',
      figure: 'paying sessions one provider process holds, 1 tick/s each, every tick acked within 1 s',
      value: best ? fmt(best.sessions) : 'none of the steps',
      reference: best ? `ack p50/p99/max ${fmt(best.p50, 1)}/${fmt(best.p99, 1)}/${fmt(best.max, 0)} ms` : undefined,
      ratio: best ? fmt(best.sessions / target, 2) : undefined,
      target: '≥ 1,000',
      verdict: best && best.sessions >= target ? 'pass' : 'FAIL',
    },
    {
      group: '6 scale',
      figure: `provider RSS and CPU at ${best ? fmt(best.sessions) : '—'} sessions`,
      value: best ? `${fmt(best.rss / 2 ** 20)} MiB, ${fmt(best.cpu)}% of one core` : '—',
      reference: `idle after start: ${fmt(idle.rss / 2 ** 20)} MiB`,
      verdict: 'info',
    },
  ]
  const perConn = PER_CONN === 1 ? 'one Noise connection per session (one customer identity each)' : `${PER_CONN} sessions per Noise connection (one customer identity per connection)`
  const notes = [
    `6 scale: load generator in its own process: ${perConn}, all from one HyperDHT node (8 connections opening at a time; its UDP receive buffer raised to ${fmt(loadRcvbuf / 2 ** 20, 1)} MiB, as it stands for a thousand customers' sockets — the provider keeps the defaults); proofs signed by a bench mint key the provider has cached (see bench/scale-load.ts for why not nutshell), verified by the provider exactly like nutshell's; redemption deferred to the end. Steps (sessions of earlier steps keep ticking; ${fmt(SETTLE_MS / 1000)} s settle, then a ${fmt(WINDOW_MS / 1000)} s window; a window that fails on latency alone, with no session lost and nothing refused, is measured once more and both are listed): ` +
      results.map((r) => `${r.sessions}${r.attempt > 1 ? ` (window ${r.attempt})` : ''} → ${fmt(r.ticks)} ticks, ack p50/p99/max ${fmt(r.p50, 1)}/${fmt(r.p99, 1)}/${fmt(r.max, 0)} ms, provider CPU ${fmt(r.cpu)}% (event-loop delay max ${fmt(r.lagMax)} ms), RSS ${fmt(r.rss / 2 ** 20)} MiB, load generator CPU ${fmt(r.loadCpu)}%, ${r.connections} connections (opened in ${fmt(r.openMs / 1000, 1)} s after ${fmt(r.proofMs / 1000, 1)} s making proofs)${r.ok ? '' : ` — FAILED: ${r.why}`}`).join('; ') +
      '.',
  ]
  return { rows, notes }
}

if (isMain(import.meta.url)) {
  const [role, a] = process.argv.slice(2)
  if (role === 'load') loadGenerator(JSON.parse(a!) as LoadOpts).catch(fatal)
  else fatal(new Error(`unknown role ${role}`))
}
