/**
 * The same tunnel over in-memory Duplex pairs that have none of net.Socket's
 * methods: what the wire's multiplexed streams look like. Proves the gateway
 * and the local proxy depend on nothing but Duplex.
 */
import { createHash } from 'node:crypto'
import http from 'node:http'
import { pipeline } from 'node:stream/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { createGateway } from '../src/tunnel/gateway.js'
import { silentLogger } from '../src/tunnel/log.js'
import { patternSha256, patternStream } from './fixtures/test-backend.js'
import { memoryDuplexPair, readSlowly, request, sleep, startTunnelRig, testAgent, waitFor, type TunnelRig } from './fixtures/tunnel-harness.js'

const MB = 1024 * 1024

let rig: TunnelRig
beforeAll(async () => {
  rig = await startTunnelRig({ transport: 'memory' })
})
afterAll(async () => {
  await rig?.close()
})

describe('tunnel over plain Duplex streams', () => {
  it('memory pair ends really lack socket methods (the point of this file)', () => {
    const [a, b] = memoryDuplexPair()
    expect((a as unknown as { setNoDelay?: unknown }).setNoDelay).toBeUndefined()
    b.on('error', () => {})
    a.destroy()
  })

  it('keep-alive: several requests, one stream', async () => {
    const agent = testAgent(1)
    try {
      const before = rig.streamsOpened()
      for (let i = 0; i < 4; i++) {
        const r = await request(`${rig.url}/echo?id=${i}`, { agent })
        expect(JSON.parse(r.body.toString()).id).toBe(String(i))
      }
      expect(rig.streamsOpened() - before).toBe(1)
    } finally {
      agent.destroy()
    }
  })

  it('20 MB down and up, byte-identical', async () => {
    const size = 20 * MB + 7
    const digest = await new Promise<string>((resolve, reject) => {
      http
        .get(`${rig.url}/download?size=${size}`, { agent: false }, (res) => {
          const h = createHash('sha256')
          res.on('data', (c: Buffer) => h.update(c))
          res.once('end', () => resolve(h.digest('hex')))
        })
        .once('error', reject)
    })
    expect(digest).toBe(patternSha256(size))
    const answer = await new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
      const req = http.request(`${rig.url}/upload`, { method: 'POST', agent: false }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.once('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString())))
      })
      req.once('error', reject)
      pipeline(patternStream(size), req).catch(reject)
    })
    expect(answer).toEqual({ bytes: size, sha256: patternSha256(size) })
  })

  it('WebSocket text, binary and close code', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${rig.port}/ws`)
    const got: Array<[string, boolean]> = []
    ws.on('message', (d: Buffer, binary: boolean) => got.push([binary ? d.toString('hex') : d.toString(), binary]))
    await new Promise((resolve, reject) => {
      ws.once('open', resolve)
      ws.once('error', reject)
    })
    ws.send('ping')
    ws.send(Buffer.from([9, 8, 7]))
    await waitFor(() => got.length === 2, 5_000)
    expect(got).toEqual([
      ['ping', false],
      ['090807', true],
    ])
    const closed = new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)))
    ws.send('close:4003:done')
    expect(await closed).toBe(4003)
  })

  it('a slow reader stalls the stream: its buffers stay small', async () => {
    const id = `mem-slow-${Date.now()}`
    const req = http.get(`${rig.url}/download?size=${200 * MB}&id=${id}`, { agent: false })
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      req.once('response', resolve)
      req.once('error', reject)
    })
    const ahead = await readSlowly(res, 2_000, () => rig.backend.download(id)?.sent ?? 0)
    expect(ahead.max).toBeLessThan(32 * MB)
    expect(ahead.growthAfterWarmup).toBeLessThan(4 * MB)
    req.destroy()
    await waitFor(() => rig.backend.download(id)?.aborted === true, 5_000)
  })

  it('SSE through plain Duplex arrives event by event', async () => {
    const times: number[] = []
    await new Promise<void>((resolve, reject) => {
      http
        .get(`${rig.url}/sse?count=4&interval=120`, { agent: false }, (res) => {
          res.setEncoding('utf8')
          res.on('data', (c: string) => {
            for (const _ of c.matchAll(/^id: /gm)) times.push(performance.now())
          })
          res.once('end', () => resolve())
        })
        .once('error', reject)
    })
    expect(times).toHaveLength(4)
    for (let i = 1; i < times.length; i++) expect((times[i] as number) - (times[i - 1] as number)).toBeGreaterThan(60)
  })
})

describe('gateway on a bare Duplex', () => {
  it('answers a client that half-closes after its request', async () => {
    const gw = createGateway({ backend: rig.backend.origin, isPaid: () => true, logger: silentLogger })
    try {
      const [client, provider] = memoryDuplexPair()
      client.on('error', () => {})
      gw.handleStream(provider, 's1')
      const chunks: Buffer[] = []
      client.on('data', (c: Buffer) => chunks.push(c))
      client.end('GET /echo?id=half HTTP/1.1\r\nHost: localhost\r\n\r\n')
      await new Promise((r) => client.once('end', r))
      const text = Buffer.concat(chunks).toString()
      expect(text).toMatch(/^HTTP\/1\.1 200/)
      expect(text).toContain('"id":"half"')
    } finally {
      await gw.close()
    }
  })

  it('closes a stream left idle past the keep-alive timeout, not one in use', async () => {
    const gw = createGateway({ backend: rig.backend.origin, isPaid: () => true, logger: silentLogger, keepAliveTimeoutMs: 300 })
    try {
      const [client, provider] = memoryDuplexPair()
      client.on('error', () => {})
      gw.handleStream(provider, 's2')
      let received = ''
      client.on('data', (c: Buffer) => (received += c.toString()))
      const ask = async (id: string): Promise<void> => {
        const before = received.length
        client.write(`GET /echo?id=${id} HTTP/1.1\r\nHost: localhost\r\n\r\n`)
        await waitFor(() => received.slice(before).includes(`"id":"${id}"`), 2_000)
      }
      // Requests 200 ms apart keep it alive past 300 ms in total...
      await ask('a')
      await sleep(200)
      await ask('b')
      await sleep(200)
      await ask('c')
      expect(gw.streamCount('s2')).toBe(1)
      // ...then silence closes it.
      await waitFor(() => gw.streamCount('s2') === 0, 2_000)
    } finally {
      await gw.close()
    }
  })

  it('close() cuts streams and refuses new ones', async () => {
    const gw = createGateway({ backend: rig.backend.origin, isPaid: () => true, logger: silentLogger })
    const [a, b] = memoryDuplexPair()
    a.on('error', () => {})
    gw.handleStream(b, 's3')
    expect(gw.streamCount()).toBe(1)
    await gw.close()
    expect(b.destroyed).toBe(true)
    expect(gw.streamCount()).toBe(0)
    const [c, d] = memoryDuplexPair()
    c.on('error', () => {})
    gw.handleStream(d, 's3')
    expect(d.destroyed).toBe(true)
    expect(gw.streamCount()).toBe(0)
  })

  it('rejects a backend that is not a bare origin, saying what to pass', () => {
    const mk = (backend: string) => () => createGateway({ backend, isPaid: () => true, logger: silentLogger })
    expect(mk('http://127.0.0.1:7860/sdapi')).toThrow(/without path or query, e.g. http:\/\/127\.0\.0\.1:7860/)
    expect(mk('ftp://127.0.0.1/')).toThrow(/http: or https:/)
    expect(mk('http://user:pw@127.0.0.1:1/')).toThrow(/credentials/)
    expect(mk('not a url')).toThrow(/not a URL/)
  })
})

describe('local proxy when the provider side breaks', () => {
  it('a stream that breaks before any answer gets a 503 saying so, not an empty reply', async () => {
    const { startLocalProxy } = await import('../src/tunnel/local-proxy.js')
    const proxy = await startLocalProxy({
      port: 0,
      logger: silentLogger,
      openStream: async () => {
        const [near, far] = memoryDuplexPair()
        // the provider's end reads the request, then its connection drops
        far.on('error', () => {})
        far.once('data', () => setTimeout(() => far.destroy(new Error('connection to the provider lost')), 20))
        return near
      },
    })
    try {
      const res = await request(`${proxy.url}page`, { agent: false })
      expect(res.status).toBe(503)
      expect(res.body.toString()).toMatch(/the connection to the provider broke before it answered; .*reload in a moment/)
    } finally {
      await proxy.close()
    }
  })
})
