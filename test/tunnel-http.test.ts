/**
 * End to end on loopback: client → local proxy → TCP socket pair (standing in
 * for a wire stream) → gateway → test backend.
 */
import { createHash } from 'node:crypto'
import http from 'node:http'
import net from 'node:net'
import { pipeline } from 'node:stream/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { BLOCK, DATA_JSON, patternSha256, patternStream } from './fixtures/test-backend.js'
import { memoryDuplexPair, readSlowly, request, startTunnelRig, testAgent, waitFor, type TunnelRig } from './fixtures/tunnel-harness.js'
import { createGateway } from '../src/tunnel/gateway.js'
import { silentLogger } from '../src/tunnel/log.js'

const MB = 1024 * 1024

let rig: TunnelRig
beforeAll(async () => {
  rig = await startTunnelRig({ transport: 'tcp' })
})
afterAll(async () => {
  await rig?.close()
})

describe('tunnel over TCP socket pairs', () => {
  it('serves several requests on one keep-alive connection through one stream', async () => {
    const agent = testAgent(1)
    try {
      const before = rig.streamsOpened()
      const results = []
      for (let i = 0; i < 5; i++) results.push(await request(`${rig.url}/echo?id=${i}`, { agent }))
      expect(results.map((r) => JSON.parse(r.body.toString()).id)).toEqual(['0', '1', '2', '3', '4'])
      expect(results.slice(1).every((r) => r.reusedSocket)).toBe(true)
      expect(rig.streamsOpened() - before).toBe(1)
    } finally {
      agent.destroy()
    }
  })

  it('rewrites Host to the backend and sends no X-Forwarded-* headers', async () => {
    const r = await request(`${rig.url}/echo?id=host`, { agent: false, headers: { origin: rig.url, referer: `${rig.url}/page?q=1` } })
    const seen = JSON.parse(r.body.toString())
    expect(seen.host).toBe(`127.0.0.1:${rig.backend.port}`)
    // Same-origin Origin/Referer follow the Host rewrite; cross-site ones would not.
    expect(seen.origin).toBe(rig.backend.origin)
    expect(seen.referer).toBe(`${rig.backend.origin}/page?q=1`)
    expect(seen.forwardedFor).toBeUndefined()
    const cross = JSON.parse((await request(`${rig.url}/echo`, { agent: false, headers: { origin: 'http://elsewhere.example' } })).body.toString())
    expect(cross.origin).toBe('http://elsewhere.example')
  })

  it('serves binary content byte for byte (PNG) and HTML, CSS, JSON with their types', async () => {
    const img = await request(`${rig.url}/image.png`, { agent: false })
    expect(img.status).toBe(200)
    expect(img.headers['content-type']).toBe('image/png')
    expect(img.body.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
    const json = await request(`${rig.url}/api/data.json`, { agent: false })
    expect(JSON.parse(json.body.toString())).toEqual(DATA_JSON)
    const html = await request(`${rig.url}/`, { agent: false })
    expect(html.headers['content-type']).toMatch(/text\/html/)
    const css = await request(`${rig.url}/style.css`, { agent: false })
    expect(css.headers['content-type']).toMatch(/text\/css/)
    const none = await request(`${rig.url}/no-content`, { agent: false })
    expect(none.status).toBe(204)
  })

  it('delivers SSE event by event, as the backend produces them', async () => {
    const interval = 150
    const arrivals = await new Promise<number[]>((resolve, reject) => {
      const times: number[] = []
      const req = http.get(`${rig.url}/sse?count=5&interval=${interval}`, { agent: false }, (res) => {
        expect(res.headers['content-type']).toBe('text/event-stream')
        let buf = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          buf += chunk
          let i: number
          while ((i = buf.indexOf('\n\n')) !== -1) {
            const event = buf.slice(0, i)
            buf = buf.slice(i + 2)
            if (event.startsWith('id:')) times.push(performance.now())
          }
        })
        res.once('end', () => resolve(times))
      })
      req.once('error', reject)
    })
    expect(arrivals).toHaveLength(5)
    // Each event arrived on its own, separated by roughly the backend's
    // interval: a buffering proxy would deliver them all at the end together.
    for (let i = 1; i < arrivals.length; i++) {
      expect((arrivals[i] as number) - (arrivals[i - 1] as number)).toBeGreaterThan(interval / 2)
    }
  })

  it('delivers ndjson line by line', async () => {
    const interval = 120
    const lines = await new Promise<Array<{ i: number; at: number }>>((resolve, reject) => {
      const out: Array<{ i: number; at: number }> = []
      http
        .get(`${rig.url}/ndjson?count=4&interval=${interval}`, { agent: false }, (res) => {
          let buf = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => {
            buf += c
            let n: number
            while ((n = buf.indexOf('\n')) !== -1) {
              out.push({ i: JSON.parse(buf.slice(0, n)).i, at: performance.now() })
              buf = buf.slice(n + 1)
            }
          })
          res.once('end', () => resolve(out))
        })
        .once('error', reject)
    })
    expect(lines.map((l) => l.i)).toEqual([0, 1, 2, 3])
    for (let i = 1; i < lines.length; i++) expect((lines[i] as { at: number }).at - (lines[i - 1] as { at: number }).at).toBeGreaterThan(interval / 2)
  })

  it('answers 50 parallel requests, each with its own answer', async () => {
    const agent = testAgent(50)
    try {
      const ids = Array.from({ length: 50 }, (_, i) => `p${i}-${Math.random().toString(36).slice(2)}`)
      const results = await Promise.all(ids.map((id) => request(`${rig.url}/echo?id=${id}`, { agent })))
      expect(results.map((r) => r.status)).toEqual(ids.map(() => 200))
      expect(results.map((r) => JSON.parse(r.body.toString()).id)).toEqual(ids)
    } finally {
      agent.destroy()
    }
  })

  it('downloads 100 MB byte-identical', async () => {
    const size = 100 * MB
    const { digest, bytes } = await new Promise<{ digest: string; bytes: number }>((resolve, reject) => {
      http
        .get(`${rig.url}/download?size=${size}`, { agent: false }, (res) => {
          expect(res.headers['content-length']).toBe(String(size))
          const hash = createHash('sha256')
          let bytes = 0
          res.on('data', (c: Buffer) => {
            bytes += c.byteLength
            hash.update(c)
          })
          res.once('end', () => resolve({ digest: hash.digest('hex'), bytes }))
          res.once('error', reject)
        })
        .once('error', reject)
    })
    expect(bytes).toBe(size)
    expect(digest).toBe(patternSha256(size))
  })

  it('uploads 100 MB byte-identical (content-length) and a chunked body', async () => {
    for (const [size, chunked] of [
      [100 * MB, false],
      [5 * MB + 123, true],
    ] as const) {
      const answer = await new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
        const req = http.request(
          `${rig.url}/upload`,
          { method: 'POST', agent: false, headers: chunked ? { 'content-type': 'application/octet-stream' } : { 'content-length': size } },
          (res) => {
            const chunks: Buffer[] = []
            res.on('data', (c: Buffer) => chunks.push(c))
            res.once('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString())))
          },
        )
        req.once('error', reject)
        pipeline(patternStream(size), req).catch(reject)
      })
      expect(answer.bytes).toBe(size)
      expect(answer.sha256).toBe(patternSha256(size))
    }
  })

  it('handles Expect: 100-continue uploads', async () => {
    const size = 3 * MB
    const answer = await new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
      const req = http.request(`${rig.url}/upload`, { method: 'PUT', agent: false, headers: { 'content-length': size, expect: '100-continue' } }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.once('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString())))
      })
      req.once('continue', () => pipeline(patternStream(size), req).catch(reject))
      req.once('error', reject)
    })
    expect(answer).toEqual({ bytes: size, sha256: patternSha256(size) })
  })

  it('echoes WebSocket text and binary frames and passes the close code', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${rig.port}/ws`)
    const messages: Array<{ data: Buffer; binary: boolean }> = []
    ws.on('message', (data: Buffer, binary: boolean) => messages.push({ data, binary }))
    await new Promise((resolve, reject) => {
      ws.once('open', resolve)
      ws.once('error', reject)
    })
    const big = Buffer.alloc(3 * MB, 7)
    ws.send('hello ☃')
    ws.send(Buffer.from([0, 1, 2, 254, 255]))
    ws.send(big)
    await waitFor(() => messages.length === 3, 10_000)
    expect(messages[0]).toEqual({ data: Buffer.from('hello ☃'), binary: false })
    expect(messages[1]).toEqual({ data: Buffer.from([0, 1, 2, 254, 255]), binary: true })
    expect(messages[2]?.binary).toBe(true)
    expect(messages[2]?.data.equals(big)).toBe(true)
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
    ws.send('close:4001:bye now')
    expect(await closed).toEqual({ code: 4001, reason: 'bye now' })
  })

  it('client-initiated WebSocket close reaches the backend with its code', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${rig.port}/ws`)
    await new Promise((resolve, reject) => {
      ws.once('open', resolve)
      ws.once('error', reject)
    })
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
    ws.close(4002, 'client done')
    // The echo server answers the close frame with the same code.
    expect(await closed).toBe(4002)
  })

  it('a slow reader does not make the tunnel buffer the body', async () => {
    const id = `slow-${Date.now()}`
    const size = 200 * MB
    const req = http.get(`${rig.url}/download?size=${size}&id=${id}`, { agent: false })
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      req.once('response', resolve)
      req.once('error', reject)
    })
    const ahead = await readSlowly(res, 2_500, () => rig.backend.download(id)?.sent ?? 0)
    // Bytes the backend wrote that the client has not read sit in buffers
    // along the way, mostly the kernel's: three loopback TCP connections, each
    // may autotune to several MB here (tcp_rmem max 32 MB). What matters: it
    // is a bounded amount far below the body, and it stops growing once the
    // buffers are full, because the backend then only writes as fast as the
    // client reads.
    expect(ahead.received).toBeGreaterThan(BLOCK)
    expect(ahead.max).toBeLessThan(32 * MB)
    expect(ahead.growthAfterWarmup).toBeLessThan(4 * MB)
    expect(rig.backend.download(id)?.sent ?? 0).toBeLessThan(size / 2)
    // Going away stops the backend too.
    req.destroy()
    await waitFor(() => rig.backend.download(id)?.aborted === true, 5_000)
  })

  it('keeps same-origin redirects on the proxy and strips cookie domains', async () => {
    const abs = await request(`${rig.url}/redirect?to=${encodeURIComponent(`${rig.backend.origin}/login?next=%2F`)}`, { agent: false })
    expect(abs.status).toBe(302)
    expect(abs.headers.location).toBe('/login?next=%2F')
    const rel = await request(`${rig.url}/redirect?to=${encodeURIComponent('/done')}`, { agent: false })
    expect(rel.headers.location).toBe('/done')
    const cookie = await request(`${rig.url}/set-cookie`, { agent: false })
    expect(cookie.headers['set-cookie']).toEqual(['a=1; Path=/; HttpOnly', 'b=2; Path=/'])
  })

  it('answers a JSON or HTML 404 from the backend as it is', async () => {
    const r = await request(`${rig.url}/nope`, { agent: false })
    expect(r.status).toBe(404)
    expect(r.body.toString()).toContain('/nope')
  })
})

describe('local proxy', () => {
  it('opens no stream for a connection that never sends a request', async () => {
    const before = rig.streamsOpened()
    const s = net.connect({ port: rig.port, host: '127.0.0.1' })
    await new Promise((resolve) => s.once('connect', resolve))
    s.end()
    await new Promise((resolve) => s.once('close', resolve))
    await waitFor(() => rig.proxy.connectionCount() === 0, 2_000)
    expect(rig.streamsOpened()).toBe(before)
  })

  it('answers a client that half-closes right after its request', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const s = net.connect({ port: rig.port, host: '127.0.0.1', allowHalfOpen: true })
      const chunks: Buffer[] = []
      s.on('data', (c: Buffer) => chunks.push(c))
      s.once('end', () => {
        s.destroy()
        resolve(Buffer.concat(chunks).toString())
      })
      s.once('error', reject)
      s.end('GET /echo?id=half HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    })
    expect(answer).toMatch(/^HTTP\/1\.1 200/)
    expect(answer).toContain('"id":"half"')
  })


  it('binds 127.0.0.1 by default and reports the port it picked', async () => {
    expect(rig.proxy.host).toBe('127.0.0.1')
    expect(rig.proxy.port).toBeGreaterThan(0)
    expect(rig.proxy.url).toBe(`http://127.0.0.1:${rig.proxy.port}/`)
  })

  it('warns when bound to a non-loopback host', async () => {
    const { startLocalProxy } = await import('../src/tunnel/local-proxy.js')
    const warnings: string[] = []
    const p = await startLocalProxy({
      port: 0,
      host: '0.0.0.0',
      openStream: () => Promise.reject(new Error('unused')),
      logger: { info: () => {}, warn: (m) => warnings.push(m) },
    })
    try {
      expect(warnings.join('\n')).toMatch(/0\.0\.0\.0.*--host=127\.0\.0\.1/s)
      expect(p.url).toBe(`http://127.0.0.1:${p.port}/`)
    } finally {
      await p.close()
    }
  })

  it('says clearly when the port is taken', async () => {
    const { startLocalProxy } = await import('../src/tunnel/local-proxy.js')
    await expect(startLocalProxy({ port: rig.port, openStream: () => Promise.reject(new Error('unused')) })).rejects.toThrow(
      new RegExp(`port ${rig.port} .* already in use; .*--port`),
    )
  })
})

describe('gateway backend origins', () => {
  it('forwards to an IPv6 loopback backend and names it [::1]:port in Host', async () => {
    const backend = http.createServer((req, res) => res.end(JSON.stringify({ host: req.headers.host, url: req.url })))
    await new Promise<void>((resolve) => backend.listen(0, '::1', resolve))
    const port = (backend.address() as net.AddressInfo).port
    const gateway = createGateway({ backend: `http://[::1]:${port}`, isPaid: () => true, logger: silentLogger })
    try {
      const [client, server] = memoryDuplexPair()
      gateway.handleStream(server, 's1')
      client.end('GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n')
      const chunks: Buffer[] = []
      for await (const c of client) chunks.push(c as Buffer)
      const text = Buffer.concat(chunks).toString()
      expect(text).toMatch(/^HTTP\/1\.1 200/)
      expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toEqual({ host: `[::1]:${port}`, url: '/a?b=1' })
    } finally {
      await gateway.close()
      backend.closeAllConnections()
      await new Promise<void>((resolve) => backend.close(() => resolve()))
    }
  })
})
