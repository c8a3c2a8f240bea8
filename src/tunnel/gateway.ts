/**
 * Provider side of the tunnel: speaks HTTP on each incoming tunnel stream and
 * forwards what the policy and the payment gate let through to ONE backend
 * origin, with `http-proxy` (plain requests and WebSocket upgrades).
 *
 * The http.Server never listens on a port: the wire hands us each stream and
 * we `emit('connection', stream)`. Where the bytes may go is fixed at
 * construction (http-proxy's `target`), never taken from the request; on top
 * of that the path policy refuses targets that name other hosts, and backend
 * redirects are kept on the origin or refused. Nothing is sent to the backend
 * for a session that `isPaid` says has not paid.
 */
import http from 'node:http'
import https from 'node:https'
import type net from 'node:net'
import type { Duplex } from 'node:stream'
import httpProxy from 'http-proxy'
import { abortStream } from './abort.js'
import { stderrLogger, type TunnelLogger } from './log.js'
import { createPathPolicy, rewriteLocation, type PathPolicy, type PathPolicyOptions } from './path-policy.js'
import { sendRefusal, writeRawRefusal, type Refusal } from './refusal.js'
import { asSocketLike } from './socket-shim.js'

export interface GatewayOptions {
  /** The one origin served, e.g. `http://127.0.0.1:7860`. No path, query or credentials. */
  backend: string | URL
  /**
   * Has this session a verified tick covering now? Asked before every request
   * and upgrade; false (or a throw) answers 402 and sends nothing to the backend.
   */
  isPaid: (sessionId: string) => boolean | Promise<boolean>
  /** A built policy, or the `--allow-path`/`--deny-path` options to build one. Default: allow all but hidden files. */
  policy?: PathPolicy | PathPolicyOptions
  logger?: TunnelLogger
  /**
   * Host header values accepted from the customer's browser (without port).
   * Default: IP literals, `localhost` and `*.localhost`: what a browser sends
   * to a local proxy. Anything else is a page on some other site reaching the
   * customer's local port through DNS rebinding, spending their budget;
   * it gets 421. `'any'` turns the check off.
   */
  allowedClientHosts?: readonly string[] | 'any'
  /** Close a tunnel stream idle this long between requests. Default 65 s. */
  keepAliveTimeoutMs?: number
  /** Longest a client may take to send request headers. Default 30 s. */
  headersTimeoutMs?: number
  /** Answer 504 if the backend sends no response headers within this. Default 0: wait (generation can take minutes). */
  backendTimeoutMs?: number
}

export interface Gateway {
  /** The backend origin, e.g. `http://127.0.0.1:7860`. */
  readonly origin: string
  readonly policy: PathPolicy
  /** Serve HTTP on one incoming tunnel stream paid for by `sessionId`. */
  handleStream(stream: Duplex, sessionId: string): void
  /** Cut every stream of one session (ended, or unpaid after grace). Returns how many were cut. */
  closeSession(sessionId: string): number
  /** Cut every stream of every session. Returns how many were cut. */
  closeAll(): number
  /** Open streams, of one session or of all. */
  streamCount(sessionId?: string): number
  /** closeAll, refuse new streams, drop pooled backend connections. */
  close(): Promise<void>
}

/** Headers that describe one hop, not the message; never copied across the proxy. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'])

/** Parse and check `--backend`. Throws a sentence saying what to pass instead. */
export function parseBackendOrigin(backend: string | URL): URL {
  let url: URL
  try {
    url = new URL(String(backend))
  } catch {
    throw new Error(`backend ${JSON.stringify(String(backend))} is not a URL; pass an origin such as http://127.0.0.1:7860`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`backend ${url.href} must use http: or https:, e.g. http://127.0.0.1:7860`)
  }
  if (url.username || url.password) {
    throw new Error(`backend ${url.origin} must not carry credentials in the URL; the tunnel forwards the customer's own headers`)
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new Error(`backend ${url.href} must be an origin without path or query, e.g. ${url.origin}; use --allow-path to limit paths`)
  }
  return new URL(url.origin)
}

export function createGateway(options: GatewayOptions): Gateway {
  const origin = parseBackendOrigin(options.backend)
  const policy = isPathPolicy(options.policy) ? options.policy : createPathPolicy(options.policy)
  const logger = options.logger ?? stderrLogger
  const hostAllowed = clientHostCheck(options.allowedClientHosts)

  // Pooled keep-alive connections to the backend: a tunnel request should not
  // pay a TCP handshake. Per gateway, never global.
  const AgentClass = origin.protocol === 'https:' ? https.Agent : http.Agent
  const agent = new AgentClass({ keepAlive: true, scheduling: 'lifo' })

  const proxy = httpProxy.createProxyServer({
    // Parsed once: given a string, http-proxy parses it again for every request.
    target: proxyTarget(origin),
    changeOrigin: true, // Host: becomes the backend's own host:port
    xfwd: false, // the customer's addresses are nobody's business
    selfHandleResponse: true, // we vet Location and stream the body ourselves
    followRedirects: false,
    agent,
    proxyTimeout: options.backendTimeoutMs && options.backendTimeoutMs > 0 ? options.backendTimeoutMs : undefined,
  })
  // Every call passes its own error callback; this only keeps a stray event
  // from becoming an uncaught 'error'.
  proxy.on('error', (err) => logger.warn(`backend proxy error: ${err.message}`))

  const sessions = new Map<string, Set<Duplex>>()
  const streamSession = new WeakMap<object, string>()
  /** Client streams whose WebSocket upgrade went through; errors there must not write HTTP. */
  const upgraded = new WeakSet<object>()
  let closed = false

  const server = http.createServer({ requestTimeout: 0, headersTimeout: options.headersTimeoutMs ?? 30_000 })
  server.keepAliveTimeout = options.keepAliveTimeoutMs ?? 65_000
  // The customer's local proxy passes a client's half-close (FIN after the
  // request) through the tunnel. Node's default aborts the request then;
  // with this (long-standing, undocumented) switch it answers and then ends.
  ;(server as http.Server & { httpAllowHalfOpen?: boolean }).httpAllowHalfOpen = true

  server.on('request', (req, res) => onRequest(req, res, false))
  // Expect: 100-continue: decide before the client sends a (possibly huge) body.
  server.on('checkContinue', (req, res) => onRequest(req, res, true))
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => void onUpgrade(req, socket, head))
  server.on('connect', (req, socket: Duplex) => {
    logger.warn(`refused CONNECT ${req.url ?? ''} from session ${sessionOf(socket) ?? '?'}`)
    writeRawRefusal(socket, { status: 405, code: 'method_not_allowed', message: 'the tunnel does not forward CONNECT requests' }, req.headers.accept)
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy()
      return
    }
    writeRawRefusal(socket, { status, code: 'bad_request', message: `malformed request: ${err.message}` }, undefined)
  })

  /**
   * Payment, policy and Host checks for one request. Synchronous when
   * `isPaid` answers synchronously (the provider's does): every request pays
   * for an await otherwise, and each one is a trip through the microtask
   * queue behind whatever else the process has queued.
   */
  function gate(req: http.IncomingMessage, stream: Duplex): Refusal | undefined | Promise<Refusal | undefined> {
    const sessionId = sessionOf(stream)
    if (sessionId === undefined) return { status: 503, code: 'no_session', message: 'this stream is not attached to a session' }
    let paid: boolean | Promise<boolean>
    try {
      paid = options.isPaid(sessionId)
    } catch (err) {
      return paymentCheckFailed(sessionId, err)
    }
    if (typeof paid === 'boolean') return paid ? checkRequest(req, sessionId) : unpaid(sessionId)
    return paid.then(
      (ok) => (ok ? checkRequest(req, sessionId) : unpaid(sessionId)),
      (err: unknown) => paymentCheckFailed(sessionId, err),
    )
  }

  function paymentCheckFailed(sessionId: string, err: unknown): Refusal {
    logger.warn(`payment check for session ${sessionId} failed, refusing: ${(err as Error).message}`)
    return unpaid(sessionId)
  }

  function unpaid(sessionId: string): Refusal {
    return { status: 402, code: 'payment_required', message: `session ${sessionId} has no verified payment; nothing was sent to the provider's backend` }
  }

  function checkRequest(req: http.IncomingMessage, sessionId: string): Refusal | undefined {
    const decision = policy.check(req.method ?? 'GET', req.url ?? '')
    if (!decision.ok) {
      logger.warn(`refused ${req.method} ${JSON.stringify(req.url)} from session ${sessionId}: ${decision.message}`)
      return decision
    }
    const host = req.headers.host
    if (host !== undefined && !hostAllowed(host)) {
      logger.warn(`refused a request for Host ${JSON.stringify(host)} from session ${sessionId} (possible DNS rebinding)`)
      return { status: 421, code: 'misdirected_host', message: `requests for host ${host} are not served through this tunnel; open the local proxy by its address, e.g. http://127.0.0.1:<port>/` }
    }
    req.url = decision.target
    rewriteSameOriginHeaders(req, origin)
    return undefined
  }

  function onRequest(req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean): void {
    const refusal = gate(req, req.socket)
    if (refusal instanceof Promise) void refusal.then((r) => forward(req, res, expectContinue, r))
    else forward(req, res, expectContinue, refusal)
  }

  function forward(req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean, refusal: Refusal | undefined): void {
    if (refusal) {
      // Close after any refusal: a refused body would otherwise have to be
      // drained, and whoever sent a hostile target gets no second try on the
      // same stream. Browsers just open a new connection.
      sendRefusal(res, refusal, req.headers.accept, true)
      return
    }
    if (res.destroyed || req.socket.destroyed) return
    if (expectContinue) {
      // We answered the expectation ourselves; the backend gets a plain request.
      delete req.headers.expect
      res.writeContinue()
    }
    proxy.web(req, res, undefined, (err) => onWebError(err as NodeJS.ErrnoException, req, res))
  }

  async function onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const refusal = await gate(req, socket)
    if (refusal) {
      writeRawRefusal(socket, refusal, req.headers.accept)
      return
    }
    if (socket.destroyed) return
    // A fresh backend connection per WebSocket: upgraded sockets leave the pool anyway.
    proxy.ws(req, socket, head, { agent: false }, (err) => {
      const e = err as NodeJS.ErrnoException
      if (upgraded.has(socket)) {
        socket.destroy()
        return
      }
      logger.warn(`WebSocket to backend ${origin.origin} failed: ${e.code ?? e.message}`)
      writeRawRefusal(socket, backendRefusal(e, origin), req.headers.accept)
    })
  }

  proxy.on('proxyReq', (proxyReq, req, res) => {
    // The browser went away (or closeSession cut it): stop the backend too,
    // or it would keep generating into a paused socket.
    const abort = (): void => {
      if (!res.writableFinished) proxyReq.destroy()
    }
    if (res.destroyed || req.socket.destroyed) abort()
    else res.once('close', abort)
  })

  proxy.on('proxyRes', (proxyRes, req, res) => {
    const location = proxyRes.headers.location
    const status = proxyRes.statusCode ?? 502
    if (location !== undefined) {
      const kept = rewriteLocation(location, origin)
      if (kept === undefined && (status < 300 || status > 399)) {
        // Outside 3xx (e.g. 201 Created) a Location is information the
        // browser does not follow; drop the foreign one, keep the response.
        delete proxyRes.headers.location
      } else if (kept === undefined) {
        proxyRes.destroy()
        logger.warn(`refused a backend redirect to ${JSON.stringify(location)} (outside ${origin.origin})`)
        sendRefusal(
          res,
          { status: 502, code: 'redirect_refused', message: `the backend redirected to ${location}, outside ${origin.origin}; the tunnel serves only that origin and does not follow or pass on such redirects` },
          req.headers.accept,
        )
        return
      } else {
        proxyRes.headers.location = kept
      }
    }
    res.statusCode = status
    if (proxyRes.statusMessage) res.statusMessage = proxyRes.statusMessage
    for (const [name, value] of Object.entries(proxyRes.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name)) continue
      res.setHeader(name, name === 'set-cookie' ? stripCookieDomain(value) : value)
    }
    // A backend that dies mid-body must not look like a complete response:
    // cut the client connection instead of ending the message.
    proxyRes.once('close', () => {
      if (!proxyRes.complete) res.destroy()
    })
    proxyRes.on('error', () => res.destroy())
    // pipe() pauses the backend whenever the tunnel stream is full, so a slow
    // reader holds at most a few buffers here.
    proxyRes.pipe(res)
  })

  proxy.on('proxyReqWs', (proxyReq, _req, socket) => {
    const client = socket as unknown as Duplex
    const beforeUpgrade = (): void => {
      proxyReq.destroy()
    }
    client.once('close', beforeUpgrade)
    proxyReq.on('upgrade', (_res, backendSocket: net.Socket) => {
      client.off('close', beforeUpgrade)
      upgraded.add(client)
      client.once('close', () => {
        // Flush what is in flight, then make sure a backend that ignores
        // our FIN cannot hold the socket forever.
        backendSocket.end()
        setTimeout(() => backendSocket.destroy(), 10_000).unref()
      })
      backendSocket.once('error', () => client.destroy())
    })
  })

  function onWebError(err: NodeJS.ErrnoException, req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.socket.destroyed || res.destroyed) return
    logger.warn(`request ${req.method} ${req.url} to backend ${origin.origin} failed: ${err.code ?? err.message}`)
    sendRefusal(res, backendRefusal(err, origin), req.headers.accept)
  }

  function sessionOf(stream: object): string | undefined {
    return streamSession.get(stream)
  }

  function cut(sessionId: string): number {
    const set = sessions.get(sessionId)
    if (!set) return 0
    // Forget them now, not on their 'close' (a tick later), so that counts
    // are right the moment closeSession returns.
    sessions.delete(sessionId)
    for (const s of set) abortStream(s)
    return set.size
  }

  return {
    origin: origin.origin,
    policy,
    handleStream(stream, sessionId) {
      if (closed) {
        stream.destroy()
        return
      }
      asSocketLike(stream)
      streamSession.set(stream, sessionId)
      let set = sessions.get(sessionId)
      if (!set) sessions.set(sessionId, (set = new Set()))
      set.add(stream)
      // Ours stays after an upgrade, when Node's HTTP server has removed its
      // own listeners; a reset stream must never crash the provider.
      stream.on('error', () => {})
      stream.once('close', () => {
        const s = sessions.get(sessionId)
        if (s?.delete(stream) && s.size === 0) sessions.delete(sessionId)
      })
      server.emit('connection', stream)
    },
    closeSession(sessionId) {
      return cut(sessionId)
    },
    closeAll() {
      let n = 0
      for (const id of [...sessions.keys()]) n += cut(id)
      return n
    },
    streamCount(sessionId) {
      if (sessionId !== undefined) return sessions.get(sessionId)?.size ?? 0
      let n = 0
      for (const set of sessions.values()) n += set.size
      return n
    },
    async close() {
      closed = true
      for (const id of [...sessions.keys()]) cut(id)
      agent.destroy()
      proxy.close()
    },
  }
}

/** Where a connection to `origin` goes: host (an IPv6 address without brackets) and port. */
export function originAddress(origin: URL): { host: string; port: number } {
  return { host: origin.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(origin.port) || (origin.protocol === 'https:' ? 443 : 80) }
}

/**
 * `origin` in the shape url.parse() gives, which is what http-proxy reads
 * from its `target` (hostname without IPv6 brackets, port null when default).
 */
function proxyTarget(origin: URL): httpProxy.ServerOptions['target'] {
  return {
    protocol: origin.protocol,
    host: origin.host,
    hostname: originAddress(origin).host,
    port: origin.port || null,
    path: '/',
  } as unknown as httpProxy.ServerOptions['target']
}

function isPathPolicy(p: PathPolicy | PathPolicyOptions | undefined): p is PathPolicy {
  return p !== undefined && typeof (p as PathPolicy).check === 'function'
}

function backendRefusal(err: NodeJS.ErrnoException, origin: URL): Refusal {
  switch (err.code) {
    case 'ECONNREFUSED':
      return { status: 502, code: 'backend_down', message: `nothing answers at the provider's backend ${origin.origin} (connection refused); the provider has to start it` }
    case 'ECONNRESET':
    case 'EPIPE':
      return { status: 502, code: 'backend_reset', message: `the provider's backend ${origin.origin} closed the connection before answering` }
    case 'ETIMEDOUT':
    case 'ESOCKETTIMEDOUT':
      return { status: 504, code: 'backend_timeout', message: `the provider's backend ${origin.origin} did not answer in time` }
    default:
      return { status: 502, code: 'backend_error', message: `the provider's backend ${origin.origin} failed: ${err.code ?? err.message}` }
  }
}

/**
 * The page the customer's browser shows came "from" the local proxy, so its
 * same-origin requests carry `Origin: http://127.0.0.1:8080`. Backends that
 * compare Origin with Host (ComfyUI, Django, socket.io) would refuse them
 * once Host is rewritten; we rewrite Origin and Referer the same way, but
 * only when they name the same host the request was sent to, so cross-site
 * requests still look cross-site to the backend.
 */
function rewriteSameOriginHeaders(req: http.IncomingMessage, origin: URL): void {
  const host = req.headers.host
  if (!host) return
  for (const name of ['origin', 'referer'] as const) {
    const value = req.headers[name]
    if (typeof value !== 'string') continue
    let url: URL
    try {
      url = new URL(value)
    } catch {
      continue
    }
    if (url.host.toLowerCase() !== host.toLowerCase()) continue
    req.headers[name] = name === 'origin' ? origin.origin : origin.origin + url.pathname + url.search
  }
}

/** Cookies scoped to the backend's host would be refused by a browser on the local proxy's host. */
function stripCookieDomain(value: string | string[]): string | string[] {
  const strip = (c: string): string => c.replace(/;\s*domain=[^;]*/gi, '')
  return Array.isArray(value) ? value.map(strip) : strip(value)
}

function clientHostCheck(allowed: readonly string[] | 'any' | undefined): (hostHeader: string) => boolean {
  if (allowed === 'any') return () => true
  const explicit = allowed?.map((h) => h.toLowerCase())
  return (hostHeader) => {
    const host = stripPort(hostHeader.trim().toLowerCase())
    if (explicit) return explicit.includes(host)
    return host === 'localhost' || host.endsWith('.localhost') || isIpLiteral(host)
  }
}

function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']')
    return end === -1 ? host : host.slice(0, end + 1)
  }
  const colon = host.lastIndexOf(':')
  return colon === -1 ? host : host.slice(0, colon)
}

function isIpLiteral(host: string): boolean {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) return true
  return /^\[[0-9a-f:.]+\]$/.test(host)
}
