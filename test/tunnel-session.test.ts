import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import http from 'node:http'
import { once } from 'node:events'
import WebSocket from 'ws'
import { devnet } from './helpers/devnet.js'
import { Agents, until } from './helpers/agents.js'
import { startTestBackend, patternSha256, type TestBackend } from './fixtures/test-backend.js'
import { request, testAgent } from './fixtures/tunnel-harness.js'
import { RentedSession } from '../src/customer/session-runner.js'
import { walletFunds } from '../src/customer/wallet-funds.js'
import type { Provider } from '../src/provider/provider.js'

/**
 * The tunnel over a real paid P2P session: local proxy → Hyperswarm stream →
 * provider gateway → backend, with payments gating every byte.
 */
let agents: Agents
let backend: TestBackend
let provider: Provider
let rented: RentedSession
let base: string
let customer: Awaited<ReturnType<Agents['customer']>>

beforeAll(async () => {
  agents = new Agents(devnet())
  backend = await startTestBackend()
  agents.defer(() => backend.close())
  provider = await agents.provider({ backend: backend.origin, graceMs: 1500 })
  const c = (customer = await agents.customer(500))
  rented = new RentedSession({
    identity: c.identity,
    funds: walletFunds(c.wallet, devnet().mint, c.refundKey),
    kind: 5100,
    budget: 400,
    bootstrap: devnet().bootstrap,
    providerPubkey: provider.opts.identity.pubkey,
    port: 0,
    lockSeconds: 1200,
  })
  agents.defer(() => rented.stop())
  for (const ev of ['refuse', 'end', 'locked', 'ack', 'tick']) rented.on(ev, (e) => process.env.DEBUG_TUNNEL && console.log(ev, e))
  await rented.start()
  base = rented.proxy!.url.replace(/\/$/, '')
  await until(() => rented.client.spent >= 1, 'first tick acknowledged')
})
afterAll(async () => agents.cleanup())

describe('tunnel through a paid session', () => {
  it('serves pages, JSON and binary, keep-alive on one connection', async () => {
    const agent = testAgent(1)
    const page = await request(`${base}/`, { agent })
    expect(page.status).toBe(200)
    expect(page.body.toString()).toMatch(/<html/i)
    const json = await request(`${base}/api/data.json`, { agent })
    expect(JSON.parse(json.body.toString())).toMatchObject({ ok: true, items: [1, 2, 3] })
    expect(json.reusedSocket).toBe(true)
    const img = await request(`${base}/image.png`, { agent })
    expect(img.body.subarray(1, 4).toString()).toBe('PNG')
    agent.destroy()
  })

  it('a 100 MB download and a 100 MB upload arrive byte-identical', async () => {
    const size = 100 * 1024 * 1024
    const down = await new Promise<string>((resolve, reject) => {
      http.get(`${base}/download?size=${size}`, (res) => {
        const h = createHash('sha256')
        res.on('data', (c: Buffer) => h.update(c))
        res.on('end', () => resolve(h.digest('hex')))
        res.on('error', reject)
      }).on('error', reject)
    })
    expect(down).toBe(patternSha256(size))

    const hash = createHash('sha256')
    const up = await new Promise<string>((resolve, reject) => {
      const req = http.request(`${base}/upload`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve(Buffer.concat(chunks).toString()))
      })
      req.on('error', reject)
      let sent = 0
      const block = Buffer.alloc(1024 * 1024)
      const pump = () => {
        while (sent < size) {
          block.writeUInt32BE(sent / block.length, 0)
          hash.update(block)
          sent += block.length
          if (!req.write(block)) return void req.once('drain', pump)
        }
        req.end()
      }
      pump()
    })
    expect(JSON.parse(up)).toMatchObject({ bytes: size, sha256: hash.digest('hex') })
  }, 120_000)

  it('50 parallel requests each get their own answer', async () => {
    const agent = testAgent(50)
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => request(`${base}/echo?id=${i}`, { agent })))
    results.forEach((r, i) => expect(JSON.parse(r.body.toString()).id).toBe(String(i)))
    agent.destroy()
  })

  it('WebSocket echo of text and binary, with a clean close code', async () => {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/ws`)
    await once(ws, 'open')
    ws.send('hello')
    const [text] = await once(ws, 'message')
    expect(text.toString()).toBe('hello')
    ws.send(Buffer.from([1, 2, 3, 255]))
    const [bin, isBinary] = await once(ws, 'message')
    expect(isBinary).toBe(true)
    expect([...(bin as Buffer)]).toEqual([1, 2, 3, 255])
    ws.close(4001, 'bye')
    const [code] = await once(ws, 'close')
    expect(code).toBe(4001)
  })

  it('SSE arrives event by event, as produced', async () => {
    const arrivals: number[] = []
    await new Promise<void>((resolve, reject) => {
      http.get(`${base}/sse?count=5&interval=150`, (res) => {
        res.on('data', (c: Buffer) => {
          for (const _ of c.toString().matchAll(/^data: \{"i"/gm)) arrivals.push(Date.now())
        })
        res.on('end', () => resolve())
      }).on('error', reject)
    })
    expect(arrivals.length).toBe(5)
    // spread over time like the backend produced them, not delivered in one lump at the end
    expect(arrivals.at(-1)! - arrivals[0]!).toBeGreaterThan(400)
  })

  it('when the session ends, new requests get 402 and the backend sees nothing', async () => {
    const seen = backend.requests.length
    const ended = once(provider.p2p, 'session-end')
    const summary = await rented.stop('test over')
    expect(summary.spent).toBeGreaterThan(0)
    // the provider heard the customer end it (not a silence it took for a lapse in payment)
    const [end] = (await ended) as [{ reason: string; paid: number }]
    expect(end).toMatchObject({ reason: 'customer ended the session', paid: summary.spent })
    // and the wallet counts as still locked exactly what the session did not pay
    expect((await customer.wallet.balance()).locked).toBe(summary.lockedUnsent)
    // the proxy is closed with the session; a stream on the ended session is refused by the provider too
    await expect(request(`${base}/`)).rejects.toThrow()
    expect(backend.requests.length).toBe(seen)
  })
})

describe('payment gates the tunnel', () => {
  it('no byte reaches the backend before the first verified tick', async () => {
    const c = await agents.customer(5)
    const { client } = await agents.session(c, provider, { budget: 5 })
    await client.open() // session open, nothing paid
    const seen = backend.requests.length
    const stream = client.openStream()
    stream.end('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
    const chunks: Buffer[] = []
    for await (const c of stream) chunks.push(c as Buffer)
    const text = Buffer.concat(chunks).toString()
    expect(text).toMatch(/^HTTP\/1\.1 402/)
    expect(backend.requests.length).toBe(seen)
    client.end('done')
  })
})
