/**
 * Customer side of the tunnel: a local TCP server the browser talks to.
 *
 * Every accepted connection becomes its own tunnel stream (`openStream()`),
 * and bytes are piped both ways untouched. Not parsing HTTP here is the point:
 * keep-alive, chunked bodies, SSE/ndjson, WebSocket upgrades and binary
 * bodies of any size all work because the provider's gateway speaks HTTP to
 * the browser directly; each stream's own backpressure reaches the browser's
 * TCP window, so nothing is buffered whole on this side.
 */
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { joinStreams } from './join.js'
import { stderrLogger, type TunnelLogger } from './log.js'
import { refusalFromError, writeRawRefusal, type Refusal } from './refusal.js'

export interface LocalProxyOptions {
  /**
   * Open one tunnel stream to the provider. Rejects when it cannot, with the
   * reason the browser will see (a TunnelRefusedError picks the status; an
   * error whose `code` means payment becomes 402, anything else 503).
   */
  openStream: () => Promise<Duplex>
  /** TCP port; default 8080; 0 picks a free one (read it from `.port`). */
  port?: number
  /** Interface to bind; default 127.0.0.1. Anything not loopback logs a warning. */
  host?: string
  logger?: TunnelLogger
  /** Give up on a stream that takes longer than this to open, answering 504. Default 15 s. */
  openTimeoutMs?: number
  /** Most browser connections held at once; more are refused by the OS backlog. Default 256. */
  maxConnections?: number
}

export interface LocalProxy {
  readonly host: string
  /** The port actually bound (useful with port 0). */
  readonly port: number
  /** What to open in a browser, e.g. http://127.0.0.1:8080/ */
  readonly url: string
  /** Browser connections currently open. */
  connectionCount(): number
  /** Stop accepting, cut every open connection and its stream. Idempotent. */
  close(): Promise<void>
}

export const DEFAULT_LOCAL_PORT = 8080
const IDLE_BEFORE_FIRST_BYTE_MS = 60_000
export const DEFAULT_LOCAL_HOST = '127.0.0.1'

/** How much of a refused request we read to find its Accept header. */
const MAX_HEAD_PEEK = 16 * 1024
const CONNECTION_LOST: Refusal = {
  status: 503,
  code: 'provider_connection_lost',
  message: 'the connection to the provider broke before it answered; dvm-session reconnects by itself, so reload in a moment',
}
/** After a refusal, how long we drain the rest of the request before cutting it. */
const REFUSAL_LINGER_MS = 2_000

/** Is this a name or address that only this machine can reach? */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  if (h === 'localhost' || h.endsWith('.localhost') || h === '::1') return true
  if (net.isIPv4(h)) return h.startsWith('127.')
  // IPv4-mapped IPv6 loopback, e.g. ::ffff:127.0.0.1
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h)
  return mapped !== null && (mapped[1] as string).startsWith('127.')
}

export async function startLocalProxy(options: LocalProxyOptions): Promise<LocalProxy> {
  const host = options.host ?? DEFAULT_LOCAL_HOST
  const requestedPort = options.port ?? DEFAULT_LOCAL_PORT
  const logger = options.logger ?? stderrLogger
  const openTimeoutMs = options.openTimeoutMs ?? 15_000
  if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
    throw new Error(`--port must be an integer from 0 to 65535, got ${requestedPort}`)
  }

  const sockets = new Set<net.Socket>()
  let closing = false

  // allowHalfOpen: a client that shuts down its sending side after the
  // request must still receive the response; joinStreams ends each direction
  // on its own.
  const server = net.createServer({ allowHalfOpen: true, noDelay: true })
  server.maxConnections = options.maxConnections ?? 256

  server.on('connection', (socket) => {
    if (closing) {
      socket.destroy()
      return
    }
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    // Errors are final for this connection only; 'close' follows and cleans up.
    socket.on('error', () => {})
    // Open the stream on the first byte, not on accept: browsers open
    // speculative connections that never carry a request, and each would
    // otherwise cost a stream (and a payment check) on the provider.
    const leftEarly = (): void => {
      socket.destroy()
    }
    socket.once('end', leftEarly)
    // a speculative connection that never speaks must not hold one of the slots forever
    socket.setTimeout(IDLE_BEFORE_FIRST_BYTE_MS, leftEarly)
    socket.once('data', (first: Buffer) => {
      socket.setTimeout(0)
      socket.off('timeout', leftEarly)
      // Hold the bytes until the stream exists; pipe() resumes from here.
      socket.pause()
      socket.unshift(first)
      socket.off('end', leftEarly)
      void attach(socket)
    })
  })

  async function attach(socket: net.Socket): Promise<void> {
    let stream: Duplex
    try {
      stream = await openWithTimeout(options.openStream, openTimeoutMs)
    } catch (err) {
      const refusal = refusalFromError(err)
      logger.info(`refused a browser connection: ${refusal.message}`)
      refuse(socket, refusal)
      return
    }
    if (socket.destroyed || closing) {
      stream.destroy()
      return
    }
    // The provider's side broke before it answered (its connection dropped,
    // say): tell the browser so, rather than an empty reply it cannot explain.
    // Registered before joinStreams, so this runs before the pipe cuts the socket.
    let explained = false
    const brokeBeforeAnswer = (): void => {
      if (explained || socket.destroyed || socket.bytesWritten > 0) return
      explained = true
      writeRawRefusal(socket, CONNECTION_LOST, undefined)
    }
    stream.once('error', brokeBeforeAnswer)
    stream.once('close', brokeBeforeAnswer)
    // an explained socket is ended cleanly, not reset (a reset could drop the answer)
    joinStreams(socket, stream, undefined, () => explained)
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(listenError(err, host, requestedPort))
    server.once('error', onError)
    server.listen({ host, port: requestedPort, exclusive: true }, () => {
      server.off('error', onError)
      resolve()
    })
  })
  server.on('error', (err) => logger.warn(`local proxy server error: ${err.message}`))

  const address = server.address() as net.AddressInfo
  // A wildcard bind is reachable on loopback too; a browser cannot open 0.0.0.0.
  const shownHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host
  const urlHost = shownHost.includes(':') ? `[${shownHost.replace(/^\[|\]$/g, '')}]` : shownHost
  const url = `http://${urlHost}:${address.port}/`
  if (!isLoopbackHost(host)) {
    logger.warn(
      `listening on ${host}:${address.port}, which other machines may reach: anyone who can connect can use ` +
        `this paid session and see the provider's backend. Use --host=127.0.0.1 unless that is what you want.`,
    )
  }

  return {
    host,
    port: address.port,
    url,
    connectionCount: () => sockets.size,
    close: async () => {
      if (!closing) {
        closing = true
        for (const s of sockets) s.destroy()
      }
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function openWithTimeout(open: () => Promise<Duplex>, ms: number): Promise<Duplex> {
  return new Promise<Duplex>((resolve, reject) => {
    let settled = false
    const timer = setTimeout(() => {
      settled = true
      reject(Object.assign(new Error(`the provider did not open a tunnel stream within ${ms} ms`), { status: 504, code: 'stream_timeout' }))
    }, ms)
    open().then(
      (stream) => {
        clearTimeout(timer)
        // Too late: the browser already got its 504; don't leak the stream.
        if (settled) stream.destroy()
        else resolve(stream)
        settled = true
      },
      (err: unknown) => {
        clearTimeout(timer)
        if (!settled) reject(err)
        settled = true
      },
    )
  })
}

/** Answer a request we cannot tunnel with a small HTTP error, in the form its Accept header asks for. */
function refuse(socket: net.Socket, refusal: Refusal): void {
  if (socket.destroyed) return
  const buffered = socket.read() as Buffer | null
  const head = buffered ? buffered.subarray(0, MAX_HEAD_PEEK).toString('latin1') : ''
  const accept = /\r\naccept:[ \t]*([^\r\n]*)/i.exec(head)?.[1]
  writeRawRefusal(socket, refusal, accept)
  // Read and discard whatever the client still sends: closing a socket with
  // unread input makes the kernel send RST, and the browser may then drop our
  // answer before showing it.
  socket.resume()
  const linger = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS)
  linger.unref()
  socket.once('end', () => socket.destroy())
  socket.once('close', () => clearTimeout(linger))
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  switch (err.code) {
    case 'EADDRINUSE':
      return new Error(`port ${port} on ${host} is already in use; choose another with --port, or --port=0 to pick a free one`)
    case 'EACCES':
      return new Error(`not allowed to listen on ${host}:${port} (ports below 1024 need privileges); choose a port above 1024 with --port`)
    case 'EADDRNOTAVAIL':
      return new Error(`${host} is not an address of this machine; use --host=127.0.0.1 or one of this machine's addresses`)
    case 'ENOTFOUND':
      return new Error(`--host ${host} does not resolve to an address; use an IP address such as 127.0.0.1`)
    default:
      return new Error(`cannot listen on ${host}:${port}: ${err.message}`)
  }
}
