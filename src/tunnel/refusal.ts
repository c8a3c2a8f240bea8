/**
 * How the tunnel says "no" to a browser or a script: one small HTTP response,
 * JSON for programs and an HTML page for people, chosen by the request's
 * Accept header. Shared by the customer's local proxy (the stream could not be
 * opened) and the provider's gateway (unpaid, refused path, backend down).
 */
import { STATUS_CODES, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'

/**
 * Reject `openStream()` with this to choose the status the local proxy shows.
 * Any other error becomes 503, or 402 when its `code` says payment.
 */
export class TunnelRefusedError extends Error {
  override readonly name = 'TunnelRefusedError'
  constructor(
    message: string,
    /** HTTP status for the browser: 402 unpaid/budget spent, 503 no session, 504 timed out… */
    readonly status: number = 503,
    /** Stable machine-readable reason, e.g. `payment_required`. */
    readonly code: string = status === 402 ? 'payment_required' : 'tunnel_unavailable',
  ) {
    super(message)
  }
}

export interface Refusal {
  status: number
  code: string
  message: string
}

/** Codes (from the wire or the session) that mean "pay first". */
const PAYMENT_CODES = new Set(['payment_required', 'unpaid', 'budget', 'budget_exhausted', 'budget_spent', 'insufficient_funds'])

/** Map whatever `openStream()` rejected with to a status, code and sentence. */
export function refusalFromError(err: unknown): Refusal {
  const e = (err ?? {}) as { status?: unknown; statusCode?: unknown; code?: unknown; message?: unknown }
  const message = typeof e.message === 'string' && e.message !== '' ? e.message : String(err)
  const code = typeof e.code === 'string' ? e.code : 'tunnel_unavailable'
  const explicit = typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : undefined
  if (explicit !== undefined && explicit >= 400 && explicit <= 599) return { status: explicit, code, message }
  if (PAYMENT_CODES.has(code.toLowerCase())) return { status: 402, code, message }
  return { status: 503, code, message }
}

/** Does this Accept header prefer an HTML page (a browser navigating) over JSON? */
export function wantsHtml(accept: string | undefined): boolean {
  if (!accept) return false
  // Browsers navigating send text/html first; fetch() sends */* and scripts
  // usually application/json. A full q-value parse buys nothing here.
  const html = accept.indexOf('text/html')
  const json = accept.indexOf('application/json')
  return html !== -1 && (json === -1 || html < json)
}

export interface RenderedRefusal {
  contentType: string
  body: Buffer
}

/** The body of a refusal in the form the client asked for. */
export function renderRefusal(refusal: Refusal, accept: string | undefined): RenderedRefusal {
  const hint = hintFor(refusal.status)
  if (wantsHtml(accept)) {
    const title = `${refusal.status} ${STATUS_CODES[refusal.status] ?? 'Error'}`
    const html =
      `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>` +
      `<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}` +
      `code{background:#f3f3f3;padding:0 .3em}</style></head><body>` +
      `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(refusal.message)}</p>` +
      (hint ? `<p>${escapeHtml(hint)}</p>` : '') +
      `<p><small>dvm-agent tunnel · <code>${escapeHtml(refusal.code)}</code></small></p></body></html>\n`
    return { contentType: 'text/html; charset=utf-8', body: Buffer.from(html) }
  }
  const json = { error: refusal.code, status: refusal.status, message: refusal.message, ...(hint ? { hint } : {}) }
  return { contentType: 'application/json; charset=utf-8', body: Buffer.from(JSON.stringify(json) + '\n') }
}

/** Answer on a live ServerResponse (normal requests). Closes the connection when asked. */
export function sendRefusal(res: ServerResponse, refusal: Refusal, accept: string | undefined, close = false): void {
  if (res.headersSent) {
    // Too late for a status line: cutting the connection is the only honest signal.
    res.destroy()
    return
  }
  const { contentType, body } = renderRefusal(refusal, accept)
  res.statusCode = refusal.status
  res.setHeader('content-type', contentType)
  res.setHeader('content-length', body.byteLength)
  res.setHeader('cache-control', 'no-store')
  if (close) res.setHeader('connection', 'close')
  res.end(body)
}

/**
 * Answer on a raw byte stream (an upgrade request, or the local proxy, which
 * never parses HTTP) and end it.
 */
export function writeRawRefusal(stream: Duplex, refusal: Refusal, accept: string | undefined): void {
  if (stream.destroyed || !stream.writable) {
    stream.destroy()
    return
  }
  const { contentType, body } = renderRefusal(refusal, accept)
  const head =
    `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? 'Error'}\r\n` +
    `content-type: ${contentType}\r\ncontent-length: ${body.byteLength}\r\n` +
    `cache-control: no-store\r\nconnection: close\r\n\r\n`
  stream.end(Buffer.concat([Buffer.from(head, 'latin1'), body]))
}

function hintFor(status: number): string | undefined {
  switch (status) {
    case 402:
      return 'The session has no verified payment for this stream. Check the session budget and wallet, then reload.'
    case 502:
      return "The provider's backend did not answer properly; the provider has to fix or restart it."
    case 503:
      return 'No tunnel stream could be opened. Check that the session is running and connected to the provider.'
    case 504:
      return 'The provider did not answer in time. Check the connection, then reload.'
    default:
      return undefined
  }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}
