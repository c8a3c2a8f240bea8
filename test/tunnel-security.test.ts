/**
 * What must never happen: a request reaching another host, or reaching the
 * backend without payment. A second "forbidden" server stands for every
 * other host; it must see no connection at all.
 */
import http from 'node:http'
import type net from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { createGateway } from '../src/tunnel/gateway.js'
import { silentLogger } from '../src/tunnel/log.js'
import { TunnelRefusedError } from '../src/tunnel/refusal.js'
import { rawExchange, request, startTunnelRig, waitFor, type TunnelRig } from './fixtures/tunnel-harness.js'

interface Forbidden {
  port: number
  connections: () => number
  close: () => Promise<void>
}

async function startForbidden(): Promise<Forbidden> {
  let connections = 0
  const sockets = new Set<net.Socket>()
  const server = http.createServer((_req, res) => res.end('you should never see this'))
  server.on('connection', (s) => {
    connections++
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

let rig: TunnelRig
let forbidden: Forbidden
beforeAll(async () => {
  rig = await startTunnelRig({ transport: 'tcp' })
  forbidden = await startForbidden()
})
afterAll(async () => {
  await rig?.close()
  await forbidden?.close()
})
beforeEach(() => {
  rig.setPaid(true)
  rig.backend.requests.length = 0
})

function statusOf(raw: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0)
}

describe('SSRF: nothing leaves the origin', () => {
  const F = (): string => `127.0.0.1:${forbidden?.port}`
  const tricks: Array<[string, () => string]> = [
    ['absolute-form target', () => `GET http://${F()}/ HTTP/1.1\r\nHost: ${F()}\r\n\r\n`],
    ['absolute-form with the backend as userinfo', () => `GET http://127.0.0.1:${rig.backend.port}@${F()}/ HTTP/1.1\r\nHost: localhost\r\n\r\n`],
    ['@host target', () => `GET @${F()}/ HTTP/1.1\r\nHost: localhost\r\n\r\n`],
    ['//host path', () => `GET //${F()}/x HTTP/1.1\r\nHost: localhost\r\n\r\n`],
    ['backslash path', () => `GET /\\${F()}/ HTTP/1.1\r\nHost: localhost\r\n\r\n`],
    ['encoded //', () => `GET /%2f%2f${F()}/ HTTP/1.1\r\nHost: localhost\r\n\r\n`],
    ['encoded dot-dot', () => `GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n`],
    ['dot-dot with encoded slashes', () => `GET /static/..%2f..%2fsecret HTTP/1.1\r\nHost: localhost\r\n\r\n`],
    ['CONNECT', () => `CONNECT ${F()} HTTP/1.1\r\nHost: ${F()}\r\n\r\n`],
    ['TRACE', () => `TRACE / HTTP/1.1\r\nHost: localhost\r\n\r\n`],
    ['OPTIONS *', () => `OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n`],
    [
      'WebSocket upgrade with absolute-form target',
      () =>
        `GET http://${F()}/ws HTTP/1.1\r\nHost: ${F()}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    ],
    [
      'WebSocket upgrade to //host',
      () =>
        `GET //${F()}/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    ],
    ['hidden file', () => `GET /.git/config HTTP/1.1\r\nHost: localhost\r\n\r\n`],
    ['DNS-rebinding Host', () => `GET / HTTP/1.1\r\nHost: attacker.example:8080\r\n\r\n`],
    [
      'CL.TE smuggling an absolute-form request',
      () => `POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://${F()}/ HTTP/1.1\r\nHost: x\r\n\r\n`,
    ],
  ]

  for (const [name, make] of tricks) {
    it(`refuses ${name}, and neither the backend nor another host sees it`, async () => {
      const before = forbidden.connections()
      const raw = await rawExchange(rig.port, make())
      const status = statusOf(raw)
      expect(status, raw.slice(0, 200)).toBeGreaterThanOrEqual(400)
      expect(status).toBeLessThan(500)
      expect(rig.backend.requests).toEqual([])
      expect(forbidden.connections()).toBe(before)
    })
  }

  it('answers a pipelined trick on a kept-alive connection and forwards only the honest request', async () => {
    const raw = await rawExchange(
      rig.port,
      `GET /echo?id=first HTTP/1.1\r\nHost: localhost\r\n\r\nGET http://${F()}/ HTTP/1.1\r\nHost: ${F()}\r\n\r\n`,
    )
    expect(raw).toMatch(/^HTTP\/1\.1 200/)
    expect(raw).toMatch(/}HTTP\/1\.1 400 /)
    expect(rig.backend.requests.map((r) => r.url)).toEqual(['/echo?id=first'])
    expect(forbidden.connections()).toBe(0)
  })

  it('a Host header naming another server still goes to the origin, with Host rewritten', async () => {
    const raw = await rawExchange(rig.port, `GET /echo?id=h HTTP/1.1\r\nHost: ${F()}\r\nConnection: close\r\n\r\n`)
    expect(statusOf(raw)).toBe(200)
    expect(rig.backend.requests[0]?.headers.host).toBe(`127.0.0.1:${rig.backend.port}`)
    expect(forbidden.connections()).toBe(0)
  })

  it('refuses backend redirects to another host instead of following or passing them on', async () => {
    for (const status of [301, 302, 307, 308]) {
      const to = encodeURIComponent(`http://${F()}/stolen`)
      const r = await request(`${rig.url}/redirect?status=${status}&to=${to}`, { agent: false, headers: { accept: 'application/json' } })
      expect(r.status).toBe(502)
      expect(r.headers.location).toBeUndefined()
      expect(JSON.parse(r.body.toString())).toMatchObject({ error: 'redirect_refused' })
    }
    const protoRelative = await request(`${rig.url}/redirect?to=${encodeURIComponent(`//${F()}/x`)}`, { agent: false })
    expect(protoRelative.status).toBe(502)
    // A 201's Location is not followed by browsers: the response stays, the foreign Location goes.
    const created = await request(`${rig.url}/redirect?status=201&to=${encodeURIComponent(`http://${F()}/new`)}`, { agent: false })
    expect(created.status).toBe(201)
    expect(created.headers.location).toBeUndefined()
    expect(forbidden.connections()).toBe(0)
  })

  it('a path allowed by the policy with @ in it stays on the origin', async () => {
    const r = await request(`${rig.url}/@${F()}/x`, { agent: false })
    expect(r.status).toBe(404) // the backend's own 404: it reached the origin, nowhere else
    expect(rig.backend.requests.map((q) => q.url)).toEqual([`/@${F()}/x`])
    expect(forbidden.connections()).toBe(0)
  })
})

describe('payment gate', () => {
  it('unpaid: 402 as JSON for scripts, HTML for browsers; the backend sees nothing', async () => {
    rig.setPaid(false)
    const json = await request(`${rig.url}/api/data.json`, { agent: false, headers: { accept: 'application/json' } })
    expect(json.status).toBe(402)
    expect(json.headers['content-type']).toMatch(/application\/json/)
    expect(JSON.parse(json.body.toString())).toMatchObject({ error: 'payment_required', status: 402 })
    const html = await request(`${rig.url}/`, { agent: false, headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } })
    expect(html.status).toBe(402)
    expect(html.headers['content-type']).toMatch(/text\/html/)
    expect(html.body.toString()).toMatch(/<h1>402 Payment Required<\/h1>/)
    expect(rig.backend.requests).toEqual([])
  })

  it('unpaid: a large upload is refused before its body reaches the backend', async () => {
    rig.setPaid(false)
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${rig.url}/upload`, { method: 'POST', agent: false, headers: { 'content-length': 50 * 1024 * 1024 } }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      req.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)))
      req.write(Buffer.alloc(64 * 1024))
    })
    expect(status).toBe(402)
    expect(rig.backend.requests).toEqual([])
  })

  it('unpaid: a WebSocket upgrade gets 402 and never reaches the backend', async () => {
    rig.setPaid(false)
    const ws = new WebSocket(`ws://127.0.0.1:${rig.port}/ws`)
    const status = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      ws.once('error', () => resolve(-1))
    })
    ws.terminate()
    expect(status).toBe(402)
    expect(rig.backend.requests).toEqual([])
  })

  it('paid again: the same tunnel serves', async () => {
    rig.setPaid(true)
    const r = await request(`${rig.url}/echo?id=paid`, { agent: false })
    expect(r.status).toBe(200)
  })

  it('closeSession cuts open WebSockets and downloads, and the backend stops', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${rig.port}/ws`)
    await new Promise((resolve, reject) => {
      ws.once('open', resolve)
      ws.once('error', reject)
    })
    const wsClosed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
    const id = `cut-${Date.now()}`
    const req = http.get(`${rig.url}/download?size=${500 * 1024 * 1024}&id=${id}`, { agent: false })
    let response: http.IncomingMessage | undefined
    req.once('response', (res) => {
      // A reader that does not read: the download is mid-body when cut.
      res.pause()
      response = res
    })
    const requestFailed = new Promise<void>((resolve) => req.once('error', () => resolve()))
    await waitFor(() => (rig.backend.download(id)?.sent ?? 0) > 0 && rig.gateway.streamCount(rig.sessionId) >= 2, 5_000)
    rig.setPaid(false)
    expect(rig.gateway.closeSession(rig.sessionId)).toBeGreaterThanOrEqual(2)
    expect(await wsClosed).toBe(1006) // no close frame: the tunnel is gone
    // The client learns of the cut when it reads on: the body ends short and
    // is marked incomplete (or the request fails if no headers had come).
    await Promise.race([
      requestFailed,
      waitFor(() => response !== undefined, 5_000).then(
        () =>
          new Promise<void>((resolve) => {
            const res = response as http.IncomingMessage
            res.on('error', () => {})
            res.once('close', () => resolve())
            res.resume()
          }),
      ),
    ])
    if (response) expect(response.complete).toBe(false)
    await waitFor(() => rig.backend.download(id)?.aborted === true, 5_000)
    expect(rig.gateway.streamCount(rig.sessionId)).toBe(0)
  })

  it('a throwing or async payment check is handled: throw means unpaid', async () => {
    const checks: string[] = []
    const rig2 = await startTunnelRig({
      gateway: {
        policy: { allow: ['/echo'] },
      },
    })
    try {
      // Swap in an async isPaid by building a second gateway on the same backend.
      const gw = createGateway({
        backend: rig2.backend.origin,
        logger: silentLogger,
        isPaid: async (s) => {
          checks.push(s)
          if (checks.length > 1) throw new Error('wallet db unavailable')
          return true
        },
      })
      const { memoryDuplexPair } = await import('./fixtures/tunnel-harness.js')
      const send = async (): Promise<string> => {
        const [a, b] = memoryDuplexPair()
        gw.handleStream(b, 'async-session')
        const chunks: Buffer[] = []
        a.on('data', (c: Buffer) => chunks.push(c))
        a.end('GET /echo?id=a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
        await new Promise((r) => a.once('close', r))
        return Buffer.concat(chunks).toString()
      }
      expect(await send()).toMatch(/^HTTP\/1\.1 200/)
      expect(await send()).toMatch(/^HTTP\/1\.1 402/)
      expect(checks).toEqual(['async-session', 'async-session'])
      await gw.close()
      // The allow-list of rig2 refuses other paths with 403.
      expect((await request(`${rig2.url}/api/data.json`, { agent: false })).status).toBe(403)
    } finally {
      await rig2.close()
    }
  })
})

describe('local proxy when no stream can be opened', () => {
  it('answers 402 (HTML or JSON by Accept) when the session is unpaid', async () => {
    const r = await startTunnelRig({ openStream: () => Promise.reject(new TunnelRefusedError('budget of 500 sats is spent', 402)) })
    try {
      const html = await request(`${r.url}/`, { agent: false, headers: { accept: 'text/html' } })
      expect(html.status).toBe(402)
      expect(html.body.toString()).toContain('budget of 500 sats is spent')
      const json = await request(`${r.url}/x`, { agent: false })
      expect(json.status).toBe(402)
      expect(JSON.parse(json.body.toString())).toMatchObject({ error: 'payment_required', message: 'budget of 500 sats is spent' })
      expect(r.backend.requests).toEqual([])
    } finally {
      await r.close()
    }
  })

  it('maps wire errors: code "unpaid" → 402, anything else → 503, a hang → 504', async () => {
    const errors = [Object.assign(new Error('session unpaid'), { code: 'unpaid' }), new Error('not connected to the provider')]
    const r = await startTunnelRig({ openStream: () => Promise.reject(errors.shift()) })
    try {
      expect((await request(`${r.url}/`, { agent: false })).status).toBe(402)
      const down = await request(`${r.url}/`, { agent: false })
      expect(down.status).toBe(503)
      expect(JSON.parse(down.body.toString()).message).toBe('not connected to the provider')
    } finally {
      await r.close()
    }
    const hang = await startTunnelRig({ openStream: () => new Promise(() => {}), proxy: { openTimeoutMs: 200 } })
    try {
      const t = await request(`${hang.url}/`, { agent: false })
      expect(t.status).toBe(504)
    } finally {
      await hang.close()
    }
  })

  it('answers 502 with the reason when the backend is down', async () => {
    const r = await startTunnelRig()
    try {
      await r.backend.close()
      const res = await request(`${r.url}/x`, { agent: false })
      expect(res.status).toBe(502)
      expect(JSON.parse(res.body.toString())).toMatchObject({ error: 'backend_down' })
    } finally {
      await r.close().catch(() => {})
    }
  })
})
