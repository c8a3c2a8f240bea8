/**
 * The web backend behind the tunnel benchmark: `/small` answers 64 bytes,
 * `/download?size=N` streams N bytes from one preallocated 64 kB block with
 * backpressure (never buffering the body). Keep-alive, Content-Length set.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Backend {
  origin: string
  close(): Promise<void>
}

const BLOCK = Buffer.alloc(64 * 1024, 0x5a)
const SMALL = Buffer.alloc(64, 0x61)

export async function startBackend(): Promise<Backend> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://backend')
    if (url.pathname === '/small') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': SMALL.length })
      res.end(SMALL)
      return
    }
    if (url.pathname === '/download') {
      const size = Math.max(0, Math.min(Number(url.searchParams.get('size') ?? 0) || 0, 16 * 1024 ** 3))
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size })
      let left = size
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, BLOCK.length)
          left -= n
          if (!res.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) {
            res.once('drain', pump)
            return
          }
        }
        res.end()
      }
      res.once('close', () => (left = 0))
      pump()
      return
    }
    res.writeHead(404, { 'content-length': 0 })
    res.end()
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** GET `url` with `agent`; resolves with status, body bytes and elapsed ms (request start to last byte). */
export function httpGet(url: string, agent: http.Agent): Promise<{ status: number; bytes: number; ms: number }> {
  const t0 = performance.now()
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => {
      let bytes = 0
      res.on('data', (b: Buffer) => (bytes += b.length))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, ms: performance.now() - t0 }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}
