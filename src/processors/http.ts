import { StringDecoder } from 'node:string_decoder'
import { defineParams } from './params.js'
import { isAbortError, networkReason, safeUrl } from './net.js'
import { LineSplitter, SseParser, tailText } from './streams.js'
import type { Chunk, Job, Processor, ProcessorInfo } from './types.js'

export interface HttpOptions {
  /** the backend endpoint jobs are POSTed to */
  url: string
  /** MIME type of the output, for the skill (default text/plain) */
  output?: string
  /** bytes one job's response may have (default 64 MiB) */
  maxOutputBytes?: number
  /** how long start() waits for the origin, ms (default 5000) */
  checkTimeoutMs?: number
}

const PARAMS = defineParams({}, { additional: 'allow', maxValueLength: 8192 })

/** What one JSON event (an ndjson line, an SSE data field) contributes to the output. */
interface EventPart {
  chunk?: Chunk
  error?: string
  done?: boolean
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}

/**
 * A streamed event's text. Our own shape is `{"chunk": "…"}` (or
 * `{"data": "<base64>", "encoding": "base64"}` for bytes, `{"error": "…"}`,
 * `{"done": true}`); the fields of common backends are understood too, so an
 * Ollama- or OpenAI-style server can sit behind this processor unchanged.
 * Events with none of these (status, progress) carry no output.
 */
export function eventPart(v: unknown): EventPart {
  if (typeof v === 'string') return { chunk: v }
  if (!v || typeof v !== 'object') return {}
  const o = v as Record<string, unknown>
  if (o.error) {
    const e = o.error as { message?: unknown }
    return { error: str(o.error) ?? str(e.message) ?? JSON.stringify(o.error) }
  }
  const done = o.done === true
  if (typeof o.data === 'string' && o.encoding === 'base64') return { chunk: new Uint8Array(Buffer.from(o.data, 'base64')), done }
  const message = o.message as { content?: unknown } | undefined
  const choice = (Array.isArray(o.choices) ? o.choices[0] : undefined) as { delta?: { content?: unknown }; text?: unknown } | undefined
  const text = str(o.chunk) ?? str(o.text) ?? str(o.content) ?? str(o.response) ?? str(o.output) ?? str(o.delta) ?? str(message?.content) ?? str(choice?.delta?.content) ?? str(choice?.text)
  return text ? { chunk: text, done } : { done }
}

type BodyMode = 'ndjson' | 'sse' | 'json' | 'text' | 'bytes'

function modeOf(contentType: string | null): BodyMode {
  const ct = (contentType ?? '').split(';')[0]!.trim().toLowerCase()
  if (ct === 'application/x-ndjson' || ct === 'application/ndjson' || ct === 'application/jsonl' || ct === 'application/jsonlines' || ct === 'application/x-jsonlines') return 'ndjson'
  if (ct === 'text/event-stream') return 'sse'
  if (ct === 'application/json' || ct.endsWith('+json')) return 'json'
  if (ct.startsWith('text/') || ct === '') return 'text'
  return 'bytes'
}

/**
 * A JSON/ndjson job backend: each job is POSTed as JSON
 * `{id, kind, input, params, output?}` and the response streams back as
 * chunks: ndjson and SSE event by event, text as it arrives, other types as
 * bytes, a plain JSON document whole. Redirects are refused, so a job can
 * never be sent to a host other than the configured one.
 */
export class HttpProcessor implements Processor {
  readonly url: URL
  private readonly auth: string | undefined

  constructor(private readonly opts: HttpOptions) {
    let url: URL
    try {
      url = new URL(opts.url)
    } catch {
      throw new Error(`the backend URL "${opts.url}" is not a valid URL; use e.g. http://127.0.0.1:8000/jobs`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`the backend URL must start with http:// or https://, not ${url.protocol}`)
    // fetch refuses URLs with credentials: send them as Basic auth instead.
    if (url.username || url.password) {
      this.auth = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
      url.username = ''
      url.password = ''
    }
    this.url = url
  }

  /** The URL for messages: never the credentials. */
  private get shown(): string {
    return safeUrl(this.url)
  }

  async start(): Promise<void> {
    try {
      const res = await fetch(this.url, { method: 'HEAD', redirect: 'manual', signal: AbortSignal.timeout(this.opts.checkTimeoutMs ?? 5000), headers: this.headers() })
      // Any status proves something is listening; the job path may well refuse HEAD.
      await res.body?.cancel()
    } catch (err) {
      throw new Error(`cannot reach the backend at ${this.shown} (${networkReason(err)}); start it or fix the URL`)
    }
  }

  async describe(): Promise<ProcessorInfo> {
    return {
      name: 'http',
      // The backend's address is the provider's business, never published.
      models: [],
      output: this.opts.output ?? 'text/plain',
      paramsSchema: { ...PARAMS.schema, description: "sent to the backend as the JSON body's params" },
      features: ['streaming'],
    }
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...extra, ...(this.auth ? { authorization: this.auth } : {}) }
  }

  /** Failures reach the customer, so they never name the backend's address (the skill does not either). */
  async *run(job: Job, signal: AbortSignal): AsyncIterable<Chunk> {
    PARAMS.parse(job.params)
    if (signal.aborted) return
    const cap = this.opts.maxOutputBytes ?? 64 * 1024 * 1024
    const local = new AbortController()
    const onAbort = () => local.abort()
    signal.addEventListener('abort', onAbort, { once: true })
    let received = 0
    try {
      let res: Response
      try {
        res = await fetch(this.url, {
          method: 'POST',
          redirect: 'manual',
          signal: local.signal,
          headers: this.headers({
            'content-type': 'application/json',
            accept: 'application/x-ndjson, text/event-stream, application/json;q=0.9, text/plain;q=0.9, */*;q=0.5',
          }),
          body: JSON.stringify({ id: job.id, kind: job.kind, input: job.input, params: job.params, ...(job.output ? { output: job.output } : {}) }),
        })
      } catch (err) {
        if (signal.aborted || isAbortError(err)) return
        throw new Error(`cannot reach the backend (${networkReason(err)})`)
      }
      if (res.status >= 300 && res.status < 400) {
        await res.body?.cancel()
        throw new Error(`the backend redirected (${res.status}); redirects are not followed, so the processor must point at the final URL`)
      }
      if (!res.ok) {
        const body = await readTail(res, 64 * 1024)
        throw new Error(`the backend answered ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${body ? `: ${tailText(body)}` : ''}`)
      }
      if (!res.body) return

      const mode = modeOf(res.headers.get('content-type'))
      const parts = new BodyParts(mode)
      for await (const bytes of res.body as AsyncIterable<Uint8Array>) {
        if (signal.aborted) return
        received += bytes.byteLength
        if (received > cap) throw new Error(`the backend sent more than ${cap} bytes for one job; the job was stopped`)
        for (const p of parts.push(bytes)) {
          if (p.error) throw new Error(`the backend reported an error: ${p.error}`)
          if (p.chunk !== undefined) yield p.chunk
          if (p.done) return
        }
      }
      for (const p of parts.end()) {
        if (p.error) throw new Error(`the backend reported an error: ${p.error}`)
        if (p.chunk !== undefined) yield p.chunk
      }
    } catch (err) {
      if (signal.aborted || isAbortError(err)) return
      if (err instanceof TypeError) throw new Error(`the connection to the backend broke after ${received} bytes (${networkReason(err)})`)
      throw err
    } finally {
      signal.removeEventListener('abort', onAbort)
      // Also closes the connection when the consumer stopped iterating early.
      local.abort()
    }
  }
}

/** Turns response bytes into output parts according to the body's type. */
class BodyParts {
  private readonly lines = new LineSplitter(8 * 1024 * 1024)
  private readonly sse = new SseParser()
  private readonly text = new StringDecoder('utf8')
  private json: Buffer[] = []

  constructor(private readonly mode: BodyMode) {}

  push(bytes: Uint8Array): EventPart[] {
    switch (this.mode) {
      case 'ndjson':
        return this.lines.push(bytes).flatMap((l) => this.ndjsonLine(l))
      case 'sse':
        return this.sse.push(bytes).flatMap((ev) => {
          if (ev.event === 'error') return [{ error: ev.data || 'error event without data' }]
          if (ev.data === '[DONE]') return [{ done: true }]
          let v: unknown
          try {
            v = JSON.parse(ev.data)
          } catch {
            return [{ chunk: ev.data }]
          }
          return [eventPart(v)]
        })
      case 'json':
        // A single document is the result as a whole: kept until complete, then sent as it is.
        this.json.push(Buffer.from(bytes))
        return []
      case 'text': {
        const s = this.text.write(Buffer.from(bytes))
        return s ? [{ chunk: s }] : []
      }
      case 'bytes':
        return [{ chunk: bytes }]
    }
  }

  end(): EventPart[] {
    switch (this.mode) {
      case 'ndjson':
        return this.lines.end().flatMap((l) => this.ndjsonLine(l))
      case 'json': {
        const s = Buffer.concat(this.json).toString('utf8')
        return s ? [{ chunk: s }] : []
      }
      case 'text': {
        const s = this.text.end()
        return s ? [{ chunk: s }] : []
      }
      default:
        return []
    }
  }

  private ndjsonLine(line: string): EventPart[] {
    const t = line.trim()
    if (!t) return []
    try {
      return [eventPart(JSON.parse(t))]
    } catch {
      throw new Error(`the backend sent an ndjson line that is not JSON: ${tailText(t, 120)}`)
    }
  }
}

/** The end of an error response body, at most `max` bytes read. */
async function readTail(res: Response, max: number): Promise<string> {
  if (!res.body) return ''
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const b of res.body as AsyncIterable<Uint8Array>) {
      chunks.push(Buffer.from(b))
      size += b.byteLength
      if (size > max) break
    }
  } catch {
    // a body cut short still says something
  }
  return Buffer.concat(chunks).toString('utf8')
}
