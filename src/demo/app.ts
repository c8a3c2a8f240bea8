/**
 * The built-in demo web app: the backend a demo provider sells through its
 * tunnel. It serves one page, a picture drawn in code, the provider's own
 * figures as JSON, and a WebSocket chat that streams the provider's
 * processor output chunk by chunk.
 */
import http from 'node:http'
import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket } from 'ws'
import type { Processor } from '../processors/types.js'
import { renderPage, type PageInfo } from './page.js'
import { demoPicture } from './png.js'

/** What the provider can tell its own app about itself. */
export interface ProviderView {
  /** sats taken in ticks, over the sessions it holds now */
  paid: number
  sessions: number
  /** sats its wallet gained from redemptions since the demo started */
  redeemed: number
}

export interface DemoAppOptions {
  processor: Processor
  /** Page facts; read per request because the provider is built after the app (it needs the app's origin). */
  about: () => Omit<PageInfo, 'pictureBytes'>
  stats: () => Promise<ProviderView>
  /** job kind given to the processor */
  kind?: number
  /** default 127.0.0.1; only the provider's gateway should reach the app */
  host?: string
  log?: (message: string) => void
}

export interface DemoApp {
  /** e.g. http://127.0.0.1:41234, the provider's `backend` */
  readonly origin: string
  close(): Promise<void>
}

/** Longest chat message accepted, in characters. */
const MAX_PROMPT = 4000

type ClientMessage = { type: 'ask'; text: string } | { type: 'stop' }

function parseClientMessage(data: string): ClientMessage | string {
  let m: unknown
  try {
    m = JSON.parse(data)
  } catch {
    return 'messages must be JSON, e.g. {"type":"ask","text":"hello"}'
  }
  const o = m as { type?: unknown; text?: unknown }
  if (o?.type === 'stop') return { type: 'stop' }
  if (o?.type !== 'ask' || typeof o.text !== 'string') return 'send {"type":"ask","text":"…"} or {"type":"stop"}'
  const text = o.text.trim()
  if (text === '') return 'the message is empty'
  if (text.length > MAX_PROMPT) return `the message is ${text.length} characters; the demo takes at most ${MAX_PROMPT}`
  return { type: 'ask', text }
}

export async function startDemoApp(opts: DemoAppOptions): Promise<DemoApp> {
  const picture = demoPicture()
  const kind = opts.kind ?? 5050
  const sockets = new Set<WebSocket>()

  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://app').pathname
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('only GET and HEAD here\n')
      return
    }
    switch (path) {
      case '/': {
        const html = renderPage({ ...opts.about(), pictureBytes: picture.length })
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html)
        return
      }
      case '/picture.png':
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': picture.length, 'cache-control': 'no-store' }).end(picture)
        return
      case '/api/stats':
        opts.stats().then(
          (s) => res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(s)),
          (err: Error) => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: err.message })),
        )
        return
      case '/favicon.ico':
        res.writeHead(204).end()
        return
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`no ${path} here; the demo serves /, /picture.png, /api/stats and the /chat WebSocket\n`)
    }
  })

  // Chat messages are small; a bigger frame is a mistake or abuse.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 })
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (new URL(req.url ?? '/', 'http://app').pathname !== '/chat') {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws)
      ws.once('close', () => sockets.delete(ws))
      serveChat(ws, opts.processor, kind, opts.log)
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: opts.host ?? '127.0.0.1', port: 0 }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { address, port } = server.address() as AddressInfo
  const origin = `http://${address.includes(':') ? `[${address}]` : address}:${port}`

  let closing: Promise<void> | undefined
  return {
    origin,
    close: () =>
      (closing ??= (async () => {
        for (const ws of sockets) ws.terminate()
        await new Promise<void>((resolve) => wss.close(() => resolve()))
        server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
      })()),
  }
}

/**
 * One chat connection: one answer at a time, streamed as `token` messages and
 * closed by `done` (or `error`). Closing the socket or sending `stop` aborts
 * the processor, so an abandoned answer costs the provider nothing more.
 */
function serveChat(ws: WebSocket, processor: Processor, kind: number, log?: (message: string) => void): void {
  let running: AbortController | null = null
  const send = (m: Record<string, unknown>): void => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(m))
  }
  ws.on('error', () => {})
  ws.on('close', () => running?.abort())
  ws.on('message', (data, isBinary) => {
    const m = isBinary ? 'send text frames, not binary' : parseClientMessage(data.toString())
    if (typeof m === 'string') return send({ type: 'error', message: m })
    if (m.type === 'stop') return running?.abort()
    if (running) return send({ type: 'error', message: 'still answering the last message; wait for it or send {"type":"stop"}' })
    const ac = new AbortController()
    running = ac
    void answer(m.text, ac.signal)
      .catch((err: Error) => {
        log?.(`demo chat: the processor failed: ${err.message}`)
        send({ type: 'error', message: `the processor failed: ${err.message}` })
      })
      .finally(() => {
        if (running === ac) running = null
      })
  })

  async function answer(text: string, signal: AbortSignal): Promise<void> {
    const t0 = Date.now()
    const decoder = new TextDecoder()
    let chunks = 0
    const job = { id: randomUUID(), kind, input: [{ type: 'text' as const, value: text }], params: {}, customer: 'demo-page' }
    for await (const chunk of processor.run(job, signal)) {
      if (signal.aborted) return
      chunks += 1
      send({ type: 'token', text: typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }) })
    }
    if (!signal.aborted) send({ type: 'done', chunks, ms: Date.now() - t0 })
  }
}
