/**
 * 3. Tunnel throughput and latency against raw Hyperswarm, same run.
 *
 * Reference: two processes (raw-server, raw-client) joined by one Hyperswarm
 * connection on the devnet; the server writes N bytes in 64 kB writes with
 * backpressure, the client times its request to the last byte; then 100-byte
 * ping-pongs.
 * Figure: four processes, as in real use — a backend (plain node:http), a
 * provider (bench/lib/provider-child.ts: Provider with its gateway in front
 * of that backend), a customer running a paid RentedSession with its local
 * proxy (what dvm-session runs), and an HTTP client (the browser's part). The
 * client downloads N bytes through local proxy → P2P stream → gateway →
 * backend, and times small GETs through the proxy and directly to the backend
 * (keep-alive, one connection each, interleaved in blocks of 250).
 * Floor (info rows): the same four processes with the two middle ones only
 * copying bytes between TCP and one Hyperswarm connection (pipeProvider,
 * pipeCustomer), which is what the extra processes and loopback hops cost
 * on this machine before any HTTP, framing or payment; the tunnel's distance
 * from it is what this project's own layers cost.
 * Raw, tunnel and floor downloads alternate (raw, tunnel, floor, raw, …) and
 * the best of each counts, so a burst of load from elsewhere hits all alike.
 *
 * Experiments (not part of npm run bench): BENCH_DEBUG_FRAMES=1 logs the
 * sizes of the writes the provider's tunnel streams get;
 * BENCH_EXPERIMENT_WRITEV=1 see bench/lib/experiments.ts; BENCH_CPU_PROF=<dir>
 * profiles every child (bench/lib/child.ts).
 */
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'
import DHT from 'hyperdht'
import httpProxy from 'http-proxy'
import type { NoiseSecretStream } from 'hyperswarm'
import { createSwarm } from '../src/wire/swarm.js'
import { loadOrCreateIdentity } from '../src/identity/nostr-key.js'
import { loadOrCreatePaymentKey } from '../src/payments/payment-key.js'
import { Wallet } from '../src/payments/wallet.js'
import { walletFunds } from '../src/customer/wallet-funds.js'
import { RentedSession } from '../src/customer/session-runner.js'
import { httpGet } from './lib/backend.js'
import { BenchChild, benchFile, fatal, isMain, serveCommands, tell } from './lib/child.js'
import { fmt, mbps, summarize, type Summary } from './lib/stats.js'
import type { Row, Section } from './lib/table.js'
import { startProviderChild } from './sessions.js'
import type { BenchContext } from './run.js'
import { cpuPercent, procSample, udpRcvbufErrors } from './lib/timing.js'

const WRITE = 64 * 1024
const PING = 100
const SIZE = Number(process.env.BENCH_TUNNEL_MB ?? 200) * 1e6
const ROUNDS = 3
const PINGS = 2000
const GETS = 2000

// ------------------------------------------------------------------ raw Hyperswarm, server side

function serveRaw(conn: NoiseSecretStream): void {
  const block = Buffer.alloc(WRITE, 0x42)
  let buf = Buffer.alloc(0)
  let echo = false
  conn.on('data', (data: Buffer) => {
    if (echo) {
      conn.write(data)
      return
    }
    buf = Buffer.concat([buf, data])
    while (!echo && buf.length >= 9) {
      const cmd = String.fromCharCode(buf[0]!)
      const size = Number(buf.readBigUInt64BE(1))
      const rest = buf.subarray(9)
      buf = Buffer.alloc(0)
      if (cmd === 'E') {
        echo = true
        if (rest.length) conn.write(rest)
      } else if (cmd === 'T') {
        let left = size
        const pump = (): void => {
          while (left > 0) {
            const n = Math.min(left, WRITE)
            left -= n
            if (!conn.write(n === WRITE ? block : block.subarray(0, n))) {
              conn.once('drain', pump)
              return
            }
          }
        }
        pump()
        buf = rest
      }
    }
  })
}

// ------------------------------------------------------------------ raw Hyperswarm, client side

class RawClient {
  private waiting: ((b: Buffer) => void) | null = null
  constructor(readonly conn: NoiseSecretStream) {
    conn.on('data', (b: Buffer) => this.waiting?.(b))
  }

  throughput(size: number): Promise<{ bytes: number; ms: number }> {
    return new Promise((resolve) => {
      let got = 0
      const t0 = performance.now()
      this.waiting = (b) => {
        got += b.length
        if (got >= size) {
          this.waiting = null
          resolve({ bytes: got, ms: performance.now() - t0 })
        }
      }
      const head = Buffer.alloc(9)
      head.write('T', 0)
      head.writeBigUInt64BE(BigInt(size), 1)
      this.conn.write(head)
    })
  }

  async pings(n: number): Promise<number[]> {
    const head = Buffer.alloc(9)
    head.write('E', 0)
    this.conn.write(head)
    const msg = Buffer.alloc(PING, 0x70)
    const rtts: number[] = []
    for (let i = 0; i < n; i++) {
      rtts.push(
        await new Promise<number>((resolve) => {
          let got = 0
          const t0 = performance.now()
          this.waiting = (b) => {
            got += b.length
            if (got >= PING) {
              this.waiting = null
              resolve(performance.now() - t0)
            }
          }
          this.conn.write(msg)
        }),
      )
    }
    return rtts
  }
}

/** Experiment switch (BENCH_RCVBUF=<bytes>): UDP receive buffer of the DHT's sockets; not used by npm run bench. */
async function rcvbuf(swarm: ReturnType<typeof createSwarm>): Promise<void> {
  const size = Number(process.env.BENCH_RCVBUF ?? 0)
  if (!size) return
  await swarm.dht.ready()
  const io = (swarm.dht as unknown as { io: { serverSocket: { setRecvBufferSize(n: number): number }; clientSocket: { setRecvBufferSize(n: number): number } } }).io
  io.serverSocket.setRecvBufferSize(size)
  io.clientSocket.setRecvBufferSize(size)
}

async function rawServer(bootstrap: Array<{ host: string; port: number }>): Promise<void> {
  const swarm = createSwarm({ keyPair: DHT.keyPair(), bootstrap })
  await rcvbuf(swarm)
  swarm.on('connection', (conn: NoiseSecretStream) => serveRaw(conn))
  await (swarm as unknown as { listen(): Promise<void> }).listen()
  serveCommands({}, () => swarm.destroy())
  tell('ready', { publicKey: swarm.keyPair.publicKey.toString('hex') })
}

async function rawClient(bootstrap: Array<{ host: string; port: number }>, serverKey: string): Promise<void> {
  const swarm = createSwarm({ keyPair: DHT.keyPair(), bootstrap })
  await rcvbuf(swarm)
  const conn = await new Promise<NoiseSecretStream>((resolve) => {
    swarm.once('connection', (c: NoiseSecretStream) => resolve(c))
    swarm.joinPeer(Buffer.from(serverKey, 'hex'))
  })
  const client = new RawClient(conn)
  await client.throughput(16e6) // warm-up
  serveCommands(
    {
      throughput: async (m) => client.throughput(Number(m.size)),
      pings: async (m) => ({ rtts: await client.pings(Number(m.n)) }),
    },
    () => swarm.destroy(),
  )
  tell('ready')
}

// ------------------------------------------------------------------ byte pipe: the floor any tunnel has here

/**
 * The same hops as the tunnel with nothing on them: the provider end copies
 * bytes between a Hyperswarm connection and one TCP connection to the
 * backend, the customer end between a local TCP port and that Hyperswarm
 * connection. No HTTP, no framing, no payment: what the machine charges for
 * the two extra processes and two loopback TCP hops alone.
 */
async function pipeProvider(bootstrap: Array<{ host: string; port: number }>, backend: string): Promise<void> {
  const { hostname, port } = new URL(backend)
  const swarm = createSwarm({ keyPair: DHT.keyPair(), bootstrap })
  swarm.on('connection', (conn: NoiseSecretStream) => {
    const sock = net.connect(Number(port), hostname)
    sock.setNoDelay(true)
    conn.pipe(sock).pipe(conn)
    const cut = (): void => {
      conn.destroy()
      sock.destroy()
    }
    conn.on('error', cut).on('close', cut)
    sock.on('error', cut).on('close', cut)
  })
  await (swarm as unknown as { listen(): Promise<void> }).listen()
  serveCommands({}, () => swarm.destroy())
  tell('ready', { publicKey: swarm.keyPair.publicKey.toString('hex') })
}

async function pipeCustomer(bootstrap: Array<{ host: string; port: number }>, serverKey: string): Promise<void> {
  const swarm = createSwarm({ keyPair: DHT.keyPair(), bootstrap })
  const conn = await new Promise<NoiseSecretStream>((resolve) => {
    swarm.once('connection', (c: NoiseSecretStream) => resolve(c))
    swarm.joinPeer(Buffer.from(serverKey, 'hex'))
  })
  // One Hyperswarm connection per peer, so one client at a time: the bench's keep-alive agent.
  let taken = false
  const server = net.createServer((sock) => {
    if (taken) {
      sock.destroy()
      return
    }
    taken = true
    sock.setNoDelay(true)
    sock.pipe(conn).pipe(sock)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  serveCommands({}, async () => {
    server.close()
    await swarm.destroy()
  })
  tell('ready', { proxy: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}` })
}

/**
 * A plain http-proxy reverse proxy in its own process, TCP on both sides: what
 * the HTTP layer the gateway is built on costs here without any tunnel.
 */
async function plainProxy(backend: string): Promise<void> {
  const proxy = httpProxy.createProxyServer({ target: backend, changeOrigin: true, agent: new http.Agent({ keepAlive: true }) })
  const server = http.createServer((req, res) => proxy.web(req, res))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  serveCommands({}, async () => {
    server.closeAllConnections()
    server.close()
  })
  tell('ready', { origin: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}` })
}

// ------------------------------------------------------------------ tunnel customer

interface CustomerOpts {
  bootstrap: Array<{ host: string; port: number }>
  mint: string
  providerPubkey: string
  providerSwarmKey: string
  backend: string
  dir: string
}

async function tunnelCustomer(o: CustomerOpts): Promise<void> {
  if (process.env.BENCH_EXPERIMENT_WRITEV) {
    const { experimentWritev } = await import('./lib/experiments.js')
    experimentWritev((await import('../src/wire/stream.js')).WireStream.prototype)
  }
  const identity = await loadOrCreateIdentity(o.dir)
  const refundKey = await loadOrCreatePaymentKey(o.dir)
  const wallet = new Wallet({ dataDir: join(o.dir, 'wallet'), mintUrl: o.mint })
  await wallet.load()
  await wallet.fund(400, { pollMs: 20 })
  const session = new RentedSession({
    identity,
    funds: walletFunds(wallet, o.mint, refundKey),
    kind: 5100,
    budget: 300,
    bootstrap: o.bootstrap,
    providerPubkey: o.providerPubkey,
    providerSwarmKey: o.providerSwarmKey,
    port: 0,
  })
  const firstAck = new Promise<void>((resolve) => session.once('ack', () => resolve()))
  let ended = ''
  session.on('end', (s: { reason: string }) => (ended = s.reason))
  await session.start()
  await firstAck
  serveCommands({ spent: () => ({ spent: session.client.spent, ended }) }, async () => void (await session.stop('bench done')))
  tell('ready', { proxy: session.proxy!.url.replace(/\/$/, '') })
}

// ------------------------------------------------------------------ the browser: HTTP through the proxy, and direct

async function browser(proxy: string, backend: string, pipe: string, plain: string): Promise<void> {
  const agents = { tunnel: keepAlive(), direct: keepAlive(), pipe: keepAlive(), plain: keepAlive() }
  const origins = { tunnel: proxy, direct: backend, pipe, plain }
  type Via = keyof typeof agents
  const get = async (via: Via, path: string): Promise<{ bytes: number; ms: number }> => {
    const r = await httpGet(`${origins[via]}${path}`, agents[via])
    if (r.status !== 200) throw new Error(`${via} GET ${path}: HTTP ${r.status}`)
    return r
  }
  // warm-up: connections, JIT, the gateway's backend pool
  for (let i = 0; i < 200; i++) for (const via of ['tunnel', 'direct', 'pipe', 'plain'] as const) await get(via, '/small')
  await get('tunnel', `/download?size=${16e6}`)
  await get('pipe', `/download?size=${16e6}`)
  serveCommands(
    {
      download: async (m) => {
        const r = await get(m.via as Via, `/download?size=${Number(m.size)}`)
        if (r.bytes !== Number(m.size)) throw new Error(`download got ${r.bytes} of ${Number(m.size)} bytes`)
        return { bytes: r.bytes, ms: r.ms }
      },
      latency: async (m) => {
        const ms: Record<Via, number[]> = { direct: [], tunnel: [], pipe: [], plain: [] }
        const n = Number(m.n)
        for (let block = 0; block < n / 250; block++) {
          for (const via of ['direct', 'tunnel', 'pipe', 'plain'] as const) for (let i = 0; i < 250; i++) ms[via].push((await get(via, '/small')).ms)
        }
        return ms
      },
    },
    async () => {
      for (const a of Object.values(agents)) a.destroy()
    },
  )
  tell('ready')
}

function keepAlive(): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: 1 })
}

// ------------------------------------------------------------------ runner side

export async function benchTunnel(ctx: BenchContext): Promise<Section> {
  const boot = JSON.stringify(ctx.devnet.bootstrap)
  const children: BenchChild[] = []
  const child = (name: string, file: string, args: string[]) => {
    const c = new BenchChild(name, benchFile(file), args, { logDir: ctx.logDir })
    children.push(c)
    return c
  }
  try {
    const backendChild = child('tunnel-backend', 'lib/backend-child.ts', [])
    const backend = String((await backendChild.next('ready', 30_000)).origin)
    const provider = await startProviderChild(ctx, 'tunnel-provider', { backendUrl: backend })
    children.push(provider.child)
    const server = child('raw-server', 'tunnel.ts', ['raw-server', boot])
    const { publicKey } = await server.next('ready', 30_000)
    const client = child('raw-client', 'tunnel.ts', ['raw-client', boot, String(publicKey)])
    const opts: CustomerOpts = { bootstrap: ctx.devnet.bootstrap, mint: ctx.devnet.mint, providerPubkey: provider.pubkey, providerSwarmKey: provider.swarmKey, backend, dir: ctx.dir('tunnel-customer') }
    const customer = child('tunnel-customer', 'tunnel.ts', ['tunnel-customer', JSON.stringify(opts)])
    const pipeProvider = child('pipe-provider', 'tunnel.ts', ['pipe-provider', boot, backend])
    const pipeKey = String((await pipeProvider.next('ready', 30_000)).publicKey)
    const pipeCustomer = child('pipe-customer', 'tunnel.ts', ['pipe-customer', boot, pipeKey])
    const [, custReady, pipeReady] = await Promise.all([client.next('ready', 60_000), customer.next('ready', 60_000), pipeCustomer.next('ready', 60_000)])
    const plain = child('plain-proxy', 'tunnel.ts', ['plain-proxy', backend])
    const plainOrigin = String((await plain.next('ready', 30_000)).origin)
    const web = child('tunnel-browser', 'tunnel.ts', ['browser', String(custReady.proxy), backend, String(pipeReady.proxy), plainOrigin])
    await web.next('ready', 60_000)

    const raw: number[] = []
    const tun: number[] = []
    const pipe: number[] = []
    // CPU of both ends during each download (% of one core), and UDP receive-buffer drops
    const rawCpu: string[] = []
    const tunCpu: string[] = []
    const pipeCpu: string[] = []
    let rawDrops = 0
    let tunDrops = 0
    // CPU ms each process spent per MB moved, in the best round of each kind
    let rawPerMb = ''
    let tunPerMb = ''
    let pipePerMb = ''
    const perMb = (each: number[], rate: number) => each.map((c) => fmt((10 * c) / rate, 1)).join('/')
    const during = async <T>(pids: number[], f: () => Promise<T>): Promise<{ r: T; cpu: string; each: number[]; drops: number }> => {
      const a = pids.map(procSample)
      const d0 = udpRcvbufErrors()
      const r = await f()
      const b = pids.map(procSample)
      const each = pids.map((_, i) => cpuPercent(a[i]!, b[i]!))
      const sum = each.reduce((x, y) => x + y, 0)
      return { r, each, cpu: `${each.map((x) => fmt(x)).join('/')} (Σ ${fmt(sum)}%)`, drops: udpRcvbufErrors() - d0 }
    }
    for (let round = 0; round < ROUNDS; round++) {
      const r = await during([server.pid, client.pid], async () => (await client.request('throughput', { size: SIZE }, 60_000)) as unknown as { bytes: number; ms: number })
      raw.push(mbps(r.r.bytes, r.r.ms))
      if (raw.at(-1)! >= Math.max(...raw)) rawPerMb = perMb(r.each, raw.at(-1)!)
      rawCpu.push(r.cpu)
      rawDrops += r.drops
      const t = await during([provider.child.pid, customer.pid, backendChild.pid, web.pid], async () => (await web.request('download', { size: SIZE, via: 'tunnel' }, 90_000)) as unknown as { bytes: number; ms: number })
      tun.push(mbps(t.r.bytes, t.r.ms))
      if (tun.at(-1)! >= Math.max(...tun)) tunPerMb = perMb(t.each, tun.at(-1)!)
      tunCpu.push(t.cpu)
      tunDrops += t.drops
      const p = await during([pipeProvider.pid, pipeCustomer.pid, backendChild.pid, web.pid], async () => (await web.request('download', { size: SIZE, via: 'pipe' }, 90_000)) as unknown as { bytes: number; ms: number })
      pipe.push(mbps(p.r.bytes, p.r.ms))
      if (pipe.at(-1)! >= Math.max(...pipe)) pipePerMb = perMb(p.each, pipe.at(-1)!)
      pipeCpu.push(p.cpu)
    }
    const d = (await web.request('download', { size: SIZE, via: 'direct' }, 60_000)) as unknown as { bytes: number; ms: number }
    const directMbps = mbps(d.bytes, d.ms)
    const { rtts } = (await client.request('pings', { n: PINGS }, 60_000)) as unknown as { rtts: number[] }
    const latPids = [provider.child.pid, customer.pid, backendChild.pid, web.pid, pipeProvider.pid, pipeCustomer.pid, plain.pid]
    const lat0 = latPids.map(procSample)
    const lat = (await web.request('latency', { n: GETS }, 90_000)) as unknown as { direct: number[]; tunnel: number[]; pipe: number[]; plain: number[] }
    const lat1 = latPids.map(procSample)
    // CPU µs each process spent per tunnel GET (the backend and client also served the direct GETs)
    // "total (kernel)" µs: the kernel's share is syscalls and wake-ups, the rest is JavaScript
    const latCpuEach = latPids.map((_, i) => `${fmt(((lat1[i]!.cpuMs - lat0[i]!.cpuMs) * 1000) / GETS)} (${fmt(((lat1[i]!.sysMs - lat0[i]!.sysMs) * 1000) / GETS)})`)
    const latCpu = latCpuEach.slice(0, 4).join('/')
    const pipeLatCpu = latCpuEach.slice(4, 6).join('/')
    const plainLatCpu = latCpuEach[6]
    const spent = (await customer.request('spent')) as unknown as { spent: number; ended: string }
    if (process.env.BENCH_DEBUG_FRAMES) ctx.log(`tunnel: provider WireStream write sizes (≤ bytes: count): ${JSON.stringify((await provider.child.request('write-sizes')).sizes)}`)

    const rawBest = Math.max(...raw)
    const tunBest = Math.max(...tun)
    const pipeBest = Math.max(...pipe)
    const ping: Summary = summarize(rtts)
    const dl: Summary = summarize(lat.direct)
    const tl: Summary = summarize(lat.tunnel)
    const pl: Summary = summarize(lat.pipe)
    const hl: Summary = summarize(lat.plain)
    const added = tl.p50 - dl.p50
    const rows: Row[] = [
      {
        group: '3 tunnel',
        figure: `HTTP download through a paid session (proxy → P2P → gateway → backend), ${fmt(SIZE / 1e6)} MB`,
        value: `${fmt(tunBest, 1)} MB/s`,
        reference: `raw Hyperswarm stream ${fmt(rawBest, 1)} MB/s`,
        ratio: fmt(tunBest / rawBest, 2),
        target: '≥ 0.8',
        verdict: tunBest / rawBest >= 0.8 ? 'pass' : 'FAIL',
      },
      {
        group: '3 tunnel',
        figure: 'small GET (64 B body), keep-alive, p50 / p99',
        value: `${fmt(tl.p50, 3)} / ${fmt(tl.p99, 3)} ms`,
        reference: `direct to backend ${fmt(dl.p50, 3)} / ${fmt(dl.p99, 3)} ms`,
        ratio: `+${fmt(added, 3)} ms at p50`,
        target: '≤ +0.5 ms at p50',
        verdict: added <= 0.5 ? 'pass' : 'FAIL',
      },
      {
        group: '3 tunnel',
        figure: 'byte pipe floor: the same four processes and hops, the two middle ones only copying bytes (no HTTP, framing or payment)',
        value: `${fmt(pipeBest, 1)} MB/s; small GET ${fmt(pl.p50, 3)} / ${fmt(pl.p99, 3)} ms`,
        reference: `raw ${fmt(rawBest, 1)} MB/s; direct ${fmt(dl.p50, 3)} ms`,
        ratio: `${fmt(pipeBest / rawBest, 2)}; +${fmt(pl.p50 - dl.p50, 3)} ms`,
        verdict: 'info',
      },
      {
        group: '3 tunnel',
        figure: 'tunnel against that floor: what HTTP, framing and payment cost on top of the hops',
        value: `${fmt(tunBest / pipeBest, 2)} of its throughput; +${fmt(tl.p50 - pl.p50, 3)} ms at p50`,
        verdict: 'info',
      },
      {
        group: '3 tunnel',
        figure: 'small GET through a plain http-proxy reverse proxy (own process, TCP both sides, no tunnel), p50 / p99',
        value: `${fmt(hl.p50, 3)} / ${fmt(hl.p99, 3)} ms`,
        reference: `direct ${fmt(dl.p50, 3)} ms`,
        ratio: `+${fmt(hl.p50 - dl.p50, 3)} ms`,
        verdict: 'info',
      },
      {
        group: '3 tunnel',
        figure: 'raw Hyperswarm round trip, 100 B, p50 / p99',
        value: `${fmt(ping.p50, 3)} / ${fmt(ping.p99, 3)} ms`,
        verdict: 'info',
      },
    ]
    const notes = [
      `3 tunnel: downloads of ${fmt(SIZE / 1e6)} MB, best of ${ROUNDS} alternating rounds — raw ${raw.map((x) => fmt(x, 1)).join(', ')} MB/s; tunnel ${tun.map((x) => fmt(x, 1)).join(', ')} MB/s; direct HTTP from the backend (no tunnel) ${fmt(directMbps, 1)} MB/s. Raw: two processes, one Hyperswarm (Noise/UDX) connection on the devnet DHT, 64 kB writes with backpressure. Tunnel: four processes as in use — backend (plain node:http), provider (Provider with its gateway, bench/lib/provider-child.ts), customer (RentedSession with its local proxy: what dvm-session runs) and the HTTP client (the browser's part); ${spent.spent} sats paid during the bench. CPU during each download, % of one core (raw: sender/receiver; tunnel: provider/customer/backend/HTTP client): raw ${rawCpu.join(', ')}; tunnel ${tunCpu.join(', ')}; CPU ms per MB moved in the best rounds: raw ${rawPerMb}, tunnel ${tunPerMb}. UDP datagrams dropped for a full receive buffer (machine-wide) during the downloads: raw ${rawDrops}, tunnel ${tunDrops}. Byte pipe (bench/tunnel.ts pipeProvider, pipeCustomer: a Hyperswarm connection piped to and from one TCP connection at each end) ${pipe.map((x) => fmt(x, 1)).join(', ')} MB/s; CPU ${pipeCpu.join(', ')}; CPU ms per MB in its best round ${pipePerMb} (pipe provider/pipe customer/backend/HTTP client).`,
      `3 tunnel: latency from ${GETS} GETs each way (direct, tunnel, byte pipe, plain http-proxy), interleaved in blocks of 250, one keep-alive connection each; tunnel p50/p90/p99/max ${fmt(tl.p50, 3)}/${fmt(tl.p90, 3)}/${fmt(tl.p99, 3)}/${fmt(tl.max, 2)} ms, direct ${fmt(dl.p50, 3)}/${fmt(dl.p90, 3)}/${fmt(dl.p99, 3)}/${fmt(dl.max, 2)} ms, byte pipe ${fmt(pl.p50, 3)}/${fmt(pl.p90, 3)}/${fmt(pl.p99, 3)}/${fmt(pl.max, 2)} ms, plain http-proxy (bench/tunnel.ts plainProxy) ${fmt(hl.p50, 3)}/${fmt(hl.p90, 3)}/${fmt(hl.p99, 3)}/${fmt(hl.max, 2)} ms; raw 100 B ping-pong over ${PINGS} round trips. CPU µs per tunnel GET, in brackets the part spent in the kernel (provider/customer; backend/HTTP client, which also served the other GETs): ${latCpu}; per byte-pipe GET (pipe provider/pipe customer): ${pipeLatCpu}; per plain http-proxy GET: ${plainLatCpu}.`,
    ]
    return { rows, notes }
  } finally {
    await Promise.allSettled(children.reverse().map((c) => c.stop()))
  }
}

if (isMain(import.meta.url)) {
  const [role, a, b, c, d] = process.argv.slice(2)
  const run =
    role === 'raw-server' ? rawServer(JSON.parse(a!))
    : role === 'raw-client' ? rawClient(JSON.parse(a!), b!)
    : role === 'tunnel-customer' ? tunnelCustomer(JSON.parse(a!) as CustomerOpts)
    : role === 'pipe-provider' ? pipeProvider(JSON.parse(a!), b!)
    : role === 'pipe-customer' ? pipeCustomer(JSON.parse(a!), b!)
    : role === 'plain-proxy' ? plainProxy(a!)
    : role === 'browser' ? browser(a!, b!, c!, d!)
    : Promise.reject(new Error(`unknown role ${role}`))
  run.catch(fatal)
}
