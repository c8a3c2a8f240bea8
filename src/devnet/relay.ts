import { createServer, type IncomingMessage as HttpRequest, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer, type WebSocket, type RawData } from 'ws'
import { NostrRelay } from '@nostr-relay/core'
import { EventUtils, LogLevel } from '@nostr-relay/common'
import type { ClientContext, Event, HandleMessageResult, IncomingMessage, Logger } from '@nostr-relay/common'
import { MemoryEventRepository, matchesFilter } from './relay-store.js'
import { parseClientMessage } from './relay-protocol.js'

export interface RelayOptions {
  /** 0 (default) picks a free port. */
  port?: number
  /** Loopback unless told otherwise: the devnet is never reachable from outside. */
  host?: string
  /** Text frames above this are answered with a NOTICE and dropped (default 256 kB). */
  maxMessageBytes?: number
  maxEvents?: number
  /** Where the relay's own warnings go (default: stderr). */
  log?: (line: string) => void
}

export interface RunningRelay {
  url: string
  port: number
  host: string
  /** Closes every client and the listening socket; the port is free when this resolves. */
  stop(): Promise<void>
}

const DEFAULT_MAX_MESSAGE = 256 * 1024
/**
 * Frames between the soft limit and this are read and refused with a NOTICE
 * (the client learns why); beyond it `ws` closes the connection with 1009
 * "Max payload size exceeded" without buffering the rest.
 */
const HARD_LIMIT_FACTOR = 4
const MAX_SUBSCRIPTIONS = 256

/**
 * Live fan-out with complete NIP-01 matching. The library's own broadcast
 * ignores `#tag` filters, so this replaces it: it sees every client context
 * through a message plugin and sends each event to the subscriptions that
 * really match.
 */
class Fanout {
  readonly contexts = new Map<WebSocket, ClientContext>()

  send(event: Event): void {
    for (const ctx of this.contexts.values()) {
      if (!ctx.isOpen) continue
      ctx.subscriptions.forEach((filters, subId) => {
        if (filters.some((f) => matchesFilter(event, f))) ctx.sendMessage(['EVENT', subId, event])
      })
    }
  }
}

function quietLogger(log: (line: string) => void): Logger {
  // The library logs every handled error at INFO and up; only real errors matter here.
  return {
    setLogLevel() {},
    debug() {},
    info() {},
    warn(message: string) { log(`relay: ${message}`) },
    error(message: string) { log(`relay: ${message}`) },
  }
}

function relayInfo(res: ServerResponse, maxMessageBytes: number): void {
  // NIP-11, so clients that probe the relay over HTTP get a real answer.
  res.writeHead(200, { 'content-type': 'application/nostr+json', 'access-control-allow-origin': '*' })
  res.end(JSON.stringify({
    name: 'dvm-agent devnet relay',
    description: 'In-memory NIP-01 relay for local development and tests',
    software: 'dvm-agent (@nostr-relay/core)',
    supported_nips: [1, 9, 11, 40],
    limitation: { max_message_length: maxMessageBytes, max_subscriptions: MAX_SUBSCRIPTIONS, auth_required: false, payment_required: false },
  }))
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening)
      if (err.code === 'EADDRINUSE') {
        reject(new Error(`relay: port ${port} on ${host} is already in use; stop whatever holds it or choose another port (0 picks a free one)`))
      } else {
        reject(new Error(`relay: cannot listen on ${host}:${port} (${err.message})`))
      }
    }
    const onListening = () => {
      server.off('error', onError)
      resolve()
    }
    server.once('error', onError)
    server.once('listening', onListening)
    server.listen(port, host)
  })
}

/** Start a NIP-01 relay (EVENT/REQ/CLOSE/OK/EOSE/CLOSED/NOTICE, signatures checked) on loopback. */
export async function startRelay(options: RelayOptions = {}): Promise<RunningRelay> {
  const host = options.host ?? '127.0.0.1'
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'))

  const repository = new MemoryEventRepository({ maxEvents: options.maxEvents })
  const fanout = new Fanout()
  const relay = new NostrRelay(repository, {
    logger: quietLogger(log),
    logLevel: LogLevel.WARN,
    // Both caches trade correctness for speed against a slow database: the
    // filter cache serves results up to a second stale, the handling cache
    // replays a first verdict for the same id for ten minutes. Memory is fast.
    filterResultCacheTtl: 0,
    eventHandlingResultCacheTtl: 0,
    // The library silently drops the oldest subscription beyond this; a DVM
    // client waiting on many jobs over one connection must not lose any.
    maxSubscriptionsPerClient: MAX_SUBSCRIPTIONS,
  })
  relay.register({
    // The library answers "duplicate" to a known id before checking the
    // signature; check it first for that (rare) case so a forged copy is refused.
    beforeHandleEvent(event: Event) {
      if (!repository.has(event.id)) return { canHandle: true }
      const why = EventUtils.validate(event)
      return why ? { canHandle: false, message: why } : { canHandle: true }
    },
  })
  relay.register({
    async handleMessage(ctx: ClientContext, message: IncomingMessage, next: () => Promise<HandleMessageResult>) {
      fanout.contexts.set(ctx.client as WebSocket, ctx)
      const result = await next()
      // The library stores deletion requests through the repository but never
      // broadcasts them; NIP-90 cancellation (kind 5) needs subscribers to see them.
      if (message[0] === 'EVENT' && message[1].kind === 5 && result?.messageType === 'EVENT' &&
          result.success && !result.message?.startsWith('duplicate')) {
        fanout.send(message[1])
      }
      return result
    },
  })
  relay.register({
    async broadcast(event: Event) {
      fanout.send(event) // deliberately not calling next(): the library's matcher ignores tag filters
    },
  })

  const server = createServer((req: HttpRequest, res: ServerResponse) => {
    if ((req.headers.accept ?? '').includes('application/nostr+json')) return relayInfo(res, maxMessageBytes)
    res.writeHead(426, { 'content-type': 'text/plain' })
    res.end('This is a Nostr relay: connect with a WebSocket client.\n')
  })
  const wss = new WebSocketServer({ server, maxPayload: maxMessageBytes * HARD_LIMIT_FACTOR })

  wss.on('connection', (ws: WebSocket, req: HttpRequest) => {
    relay.handleConnection(ws, req.socket.remoteAddress)
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength
      if (isBinary) {
        ws.send(JSON.stringify(['NOTICE', 'invalid: binary frames are not Nostr messages; send JSON text']))
        return
      }
      if (size > maxMessageBytes) {
        ws.send(JSON.stringify(['NOTICE', `invalid: message of ${size} bytes exceeds this relay's limit of ${maxMessageBytes} bytes`]))
        return
      }
      const parsed = parseClientMessage(data.toString())
      if (!parsed.ok) {
        ws.send(JSON.stringify(parsed.reply))
        return
      }
      relay.handleMessage(ws, parsed.message).catch((err: unknown) => {
        const why = err instanceof Error ? err.message : String(err)
        log(`relay: failed to handle ${parsed.message[0]}: ${why}`)
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(['NOTICE', `error: ${why}`]))
      })
    })
    ws.on('close', () => {
      relay.handleDisconnect(ws)
      fanout.contexts.delete(ws)
    })
    // Oversized frames and protocol errors end up here; ws closes the socket itself.
    ws.on('error', () => {})
  })

  // ws re-emits the HTTP server's errors (a busy port included); listen() reports those.
  wss.on('error', () => {})
  try {
    await listen(server, options.port ?? 0, host)
  } catch (err) {
    wss.close()
    await relay.destroy()
    throw err
  }
  const port = (server.address() as AddressInfo).port

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      for (const ws of wss.clients) ws.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await relay.destroy()
      await repository.destroy()
    })()
    return stopping
  }

  return { url: `ws://${host}:${port}`, port, host, stop }
}
