import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HttpProcessor, eventPart } from '../src/processors/http.js'
import type { Chunk, Job } from '../src/processors/types.js'
import { abortAfterChunks, collectChunks, failure, job as textJob } from './helpers/processors.js'

const job = (text: string, params: Record<string, string> = {}): Job => textJob(text, params, { id: 'job-7', kind: 5100 })

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Seen {
  path: string
  method: string
  headers: IncomingMessage['headers']
  body: unknown
}

/** A job backend on loopback: one route per response shape the processor must handle. */
class Backend {
  server!: Server
  url = ''
  seen: Seen[] = []
  disconnects = 0
  finished = 0
  private waiters: Array<() => void> = []

  waitForDisconnect(ms = 3000): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the backend saw no disconnect')), ms)
      this.waiters.push(() => (clearTimeout(t), resolve()))
    })
  }

  private watch(res: ServerResponse): () => boolean {
    let gone = false
    res.on('close', () => {
      if (!res.writableFinished) {
        gone = true
        this.disconnects++
        this.waiters.splice(0).forEach((w) => w())
      } else this.finished++
    })
    return () => gone
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res))
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r))
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((r) => this.server.close(() => r()))
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const text = Buffer.concat(chunks).toString('utf8')
    this.seen.push({ path: req.url ?? '/', method: req.method ?? 'GET', headers: req.headers, body: text ? JSON.parse(text) : undefined })
    const gone = this.watch(res)
    switch (req.url) {
      case '/ndjson':
        res.writeHead(200, { 'content-type': 'application/x-ndjson' })
        res.write('{"chunk":"a"}\n{"text":"b"}\n{"status":"thinking"}\n')
        res.write('"c"\n\n{"message":{"role":"assistant","content":"d"}}\r\n')
        res.write(`{"data":"${Buffer.from([0, 1, 2, 255]).toString('base64')}","encoding":"base64"}\n`)
        res.end('{"done":true}\n{"chunk":"after done"}\n')
        return
      case '/sse':
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write(': comment\n\ndata: {"choices":[{"delta":{"content":"Hi"}}]}\n\n')
        res.write('event: message\r\ndata: plain\r\ndata: text\r\n\r\n')
        res.end('data: [DONE]\n\ndata: ignored\n\n')
        return
      case '/sse-error':
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.end('data: {"chunk":"x"}\n\nevent: error\ndata: GPU fell over\n\n')
        return
      case '/text':
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' })
        res.write(Buffer.from('héllo ')) // é is two bytes: split across writes below
        res.write(Buffer.from([0xe2, 0x82]))
        res.end(Buffer.from([0xac, 0x21])) // "€!"
        return
      case '/json':
        res.writeHead(200, { 'content-type': 'application/json' })
        res.write('{"result":')
        res.end(' 42}')
        return
      case '/png':
        res.writeHead(200, { 'content-type': 'image/png' })
        res.end(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
        return
      case '/error500':
        res.writeHead(500, 'Internal Server Error', { 'content-type': 'text/plain' })
        res.end('x'.repeat(3000) + ' CUDA out of memory')
        return
      case '/redirect':
        res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' })
        res.end()
        return
      case '/ndjson-error':
        res.writeHead(200, { 'content-type': 'application/x-ndjson' })
        res.end('{"chunk":"a"}\n{"error":{"message":"out of memory"}}\n')
        return
      case '/bad-ndjson':
        res.writeHead(200, { 'content-type': 'application/x-ndjson' })
        res.end('{"chunk":"a"}\nnot json at all\n')
        return
      case '/cut':
        res.writeHead(200, { 'content-type': 'application/x-ndjson' })
        res.write('{"chunk":"a"}\n')
        await sleep(30)
        res.socket?.destroy()
        return
      case '/slow':
      case '/big':
        res.writeHead(200, { 'content-type': 'application/x-ndjson' })
        for (let i = 0; i < 40; i++) {
          if (req.url === '/slow') await sleep(100)
          if (gone()) return
          res.write(JSON.stringify({ chunk: `${i}:${req.url === '/big' ? 'y'.repeat(1000) : ''}` }) + '\n')
        }
        res.end()
        return
      default:
        res.writeHead(404, { 'content-type': 'text/plain' })
        res.end('no such route')
    }
  }
}

describe('http processor: the JSON/ndjson job backend', () => {
  const backend = new Backend()
  const at = (path: string, extra: Partial<ConstructorParameters<typeof HttpProcessor>[0]> = {}) => new HttpProcessor({ url: backend.url + path, ...extra })

  beforeAll(async () => {
    await backend.start()
  })
  afterAll(async () => {
    await backend.close()
  })

  it('refuses URLs it cannot use', () => {
    expect(() => new HttpProcessor({ url: 'not a url' })).toThrow(/is not a valid URL/)
    expect(() => new HttpProcessor({ url: 'ftp://x/y' })).toThrow(/must start with http:\/\/ or https:\/\//)
  })

  it('start() accepts any HTTP answer, and fails in one sentence when nothing listens', async () => {
    await at('/no-such-route').start()
    const other = new Backend()
    await other.start()
    const url = other.url
    await other.close()
    expect(await failure(new HttpProcessor({ url: `${url}/jobs` }).start())).toMatch(/^cannot reach the backend at http:\/\/127\.0\.0\.1:\d+\/jobs \(ECONNREFUSED\); start it or fix the URL$/)
  })

  it('describes itself without disclosing the backend', async () => {
    const info = await at('/ndjson', { output: 'image/png' }).describe()
    expect(info).toMatchObject({ name: 'http', models: [], output: 'image/png', features: ['streaming'] })
    expect(JSON.stringify(info)).not.toContain('127.0.0.1')
  })

  it('POSTs the job as JSON and streams ndjson events, understanding common shapes, until done', async () => {
    const out = await collectChunks(at('/ndjson').run(job('draw a cat', { steps: '20' }), new AbortController().signal))
    expect(out.slice(0, 4)).toEqual(['a', 'b', 'c', 'd'])
    expect(out[4]).toBeInstanceOf(Uint8Array)
    expect([...(out[4] as Uint8Array)]).toEqual([0, 1, 2, 255])
    expect(out).toHaveLength(5)
    const req = backend.seen.find((s) => s.path === '/ndjson')!
    expect(req.method).toBe('POST')
    expect(req.headers['content-type']).toBe('application/json')
    expect(req.body).toEqual({ id: 'job-7', kind: 5100, input: [{ type: 'text', value: 'draw a cat' }], params: { steps: '20' } })
  })

  it('streams SSE: JSON data by its text field, other data as text, until [DONE]', async () => {
    expect(await collectChunks(at('/sse').run(job('x'), new AbortController().signal))).toEqual(['Hi', 'plain\ntext'])
  })

  it('fails the job on an SSE error event', async () => {
    expect(await failure(collectChunks(at('/sse-error').run(job('x'), new AbortController().signal)))).toBe('the backend reported an error: GPU fell over')
  })

  it('streams text, keeping multi-byte characters whole across reads', async () => {
    expect((await collectChunks(at('/text').run(job('x'), new AbortController().signal))).join('')).toBe('héllo €!')
  })

  it('returns a plain JSON document whole, as it is', async () => {
    expect(await collectChunks(at('/json').run(job('x'), new AbortController().signal))).toEqual(['{"result": 42}'])
  })

  it('streams other types as bytes', async () => {
    const out = await collectChunks(at('/png').run(job('x'), new AbortController().signal))
    expect(Buffer.concat(out.map((c) => Buffer.from(c as Uint8Array)))[1]).toBe(0x50)
  })

  it('fails the job with the status and the tail of the body', async () => {
    const msg = await failure(collectChunks(at('/error500').run(job('x'), new AbortController().signal)))
    expect(msg).toMatch(/^the backend answered 500 Internal Server Error: …x+ CUDA out of memory$/)
    expect(msg.length).toBeLessThan(700)
  })

  it('never follows a redirect to another host', async () => {
    const msg = await failure(collectChunks(at('/redirect').run(job('x'), new AbortController().signal)))
    expect(msg).toBe('the backend redirected (302); redirects are not followed, so the processor must point at the final URL')
  })

  it('fails the job on an error event, after the output before it', async () => {
    const got: Chunk[] = []
    const msg = await failure((async () => { for await (const c of at('/ndjson-error').run(job('x'), new AbortController().signal)) got.push(c) })())
    expect(got).toEqual(['a'])
    expect(msg).toBe('the backend reported an error: out of memory')
  })

  it('fails the job on an ndjson line that is not JSON', async () => {
    expect(await failure(collectChunks(at('/bad-ndjson').run(job('x'), new AbortController().signal)))).toBe('the backend sent an ndjson line that is not JSON: not json at all')
  })

  it('fails the job when the connection breaks mid-response', async () => {
    expect(await failure(collectChunks(at('/cut').run(job('x'), new AbortController().signal)))).toMatch(/^the connection to the backend broke after \d+ bytes/)
  })

  it('stops a response over the output cap', async () => {
    expect(await failure(collectChunks(at('/big', { maxOutputBytes: 5000 }).run(job('x'), new AbortController().signal)))).toBe('the backend sent more than 5000 bytes for one job; the job was stopped')
  })

  it('streams as the backend produces, and an abort closes the connection promptly', async () => {
    const disconnected = backend.waitForDisconnect()
    const t0 = Date.now()
    const { got, abortedAt, stopMs } = await abortAfterChunks(3, (signal) => at('/slow').run(job('x'), signal))
    // 3 pieces at 100 ms each: they came as produced, not after the 4 s body.
    expect(abortedAt - t0).toBeLessThan(1500)
    expect(stopMs).toBeLessThan(200)
    expect(got).toEqual(['0:', '1:', '2:'])
    await disconnected
  })

  it('closes the connection when the consumer stops reading early', async () => {
    const disconnected = backend.waitForDisconnect()
    for await (const _ of at('/slow').run(job('x'), new AbortController().signal)) break
    await disconnected
  })

  it('sends URL credentials as Basic auth, and never shows them in messages', async () => {
    const u = new URL(backend.url + '/error500')
    u.username = 'agent'
    u.password = 's3cret'
    const msg = await failure(collectChunks(new HttpProcessor({ url: u.toString() }).run(job('x'), new AbortController().signal)))
    expect(msg).not.toContain('s3cret')
    expect(backend.seen.at(-1)!.headers.authorization).toBe(`Basic ${Buffer.from('agent:s3cret').toString('base64')}`)
  })

  it('understands the event shapes of common backends', () => {
    expect(eventPart('x')).toEqual({ chunk: 'x' })
    expect(eventPart({ response: 'r', done: false })).toEqual({ chunk: 'r', done: false })
    expect(eventPart({ choices: [{ delta: { content: 'o' } }] })).toEqual({ chunk: 'o', done: false })
    expect(eventPart({ error: 'bad' })).toEqual({ error: 'bad' })
    expect(eventPart({ error: { message: 'worse' } })).toEqual({ error: 'worse' })
    expect(eventPart({ progress: 0.5 })).toEqual({ done: false })
    expect(eventPart(42)).toEqual({})
  })
})
