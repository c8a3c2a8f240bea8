import { describe, expect, it } from 'vitest'
import { GroqProcessor, type GroqOptions } from '../src/processors/groq.js'
import { startFakeGroq, type FakeGroq } from './fixtures/fake-groq.js'
import { DEFAULT_TOKENS } from './fixtures/fake-server.js'
import { abortAfterChunks, collect, failure, job, useFakeServer } from './helpers/processors.js'

describe('groq processor against a fake Groq speaking OpenAI SSE', () => {
  let fake: FakeGroq
  useFakeServer(async () => (fake = await startFakeGroq()))
  const make = (o: Partial<GroqOptions> = {}) => new GroqProcessor({ apiKey: fake.apiKey, baseURL: fake.url, model: 'llama-3.1-8b-instant', maxRetries: 0, ...o })

  it('refuses to start without an API key, saying where to get one', async () => {
    expect(await failure(new GroqProcessor({ baseURL: fake.url }).start())).toBe(
      'GROQ_API_KEY is not set; create a key at https://console.groq.com/keys and export GROQ_API_KEY=…',
    )
  })

  it('refuses to start when Groq rejects the key', async () => {
    const msg = await failure(make({ apiKey: 'gsk_wrong' }).start())
    expect(msg).toBe('Groq rejected the API key in GROQ_API_KEY (401: Invalid API Key); check it at https://console.groq.com/keys')
    expect(fake.requests.at(-1)).toMatchObject({ path: '/openai/v1/models', authorization: 'Bearer gsk_wrong' })
  })

  it('refuses to start when Groq cannot be reached', async () => {
    const down = await startFakeGroq()
    const url = down.url
    await down.close()
    expect(await failure(make({ baseURL: url }).start())).toMatch(/^cannot reach Groq at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\); check the network or GROQ_BASE_URL$/)
  })

  it('refuses to start with a model Groq does not offer, listing the chat models', async () => {
    const msg = await failure(make({ model: 'gpt-4o' }).start())
    expect(msg).toBe('Groq does not offer model "gpt-4o" to this key (chat models: llama-3.1-8b-instant, llama-3.3-70b-versatile); choose one of those with --model')
  })

  it('describes the chat models it offers (no speech or retired models), default first', async () => {
    const p = make({ model: 'llama-3.3-70b-versatile' })
    await p.start()
    const info = await p.describe()
    expect(info.name).toBe('groq')
    expect(info.models).toEqual(['llama-3.3-70b-versatile', 'llama-3.1-8b-instant'])
    const props = (info.paramsSchema as { properties: Record<string, { enum?: string[] }> }).properties
    expect(props.model!.enum).toEqual(info.models)
    expect(Object.keys(props).sort()).toEqual(['max_tokens', 'model', 'seed', 'system', 'temperature', 'top_p'])
  })

  it('streams the tokens and sends the params as chat completion fields', async () => {
    const p = make()
    await p.start()
    const out = await collect(
      p.run(job('Say hello', { temperature: '0.2', top_p: '0.5', seed: '3', max_tokens: '64', system: 'Be brief.', model: 'llama-3.3-70b-versatile' }), new AbortController().signal),
    )
    expect(out).toEqual(DEFAULT_TOKENS)
    const req = fake.requests.find((r) => r.path === '/openai/v1/chat/completions')!
    expect(req.authorization).toBe(`Bearer ${fake.apiKey}`)
    expect(req.body).toMatchObject({
      model: 'llama-3.3-70b-versatile',
      stream: true,
      temperature: 0.2,
      top_p: 0.5,
      seed: 3,
      max_completion_tokens: 64,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Say hello' },
      ],
    })
  })

  it('honours max_tokens (the reply stops with finish_reason length)', async () => {
    expect(await collect(make().run(job('hi', { max_tokens: '3' }), new AbortController().signal))).toEqual(['Hello', ',', ' world'])
  })

  it('rejects params Groq does not support before paying for a request', async () => {
    const msg = await failure(collect(make().run(job('hi', { top_k: '40' }), new AbortController().signal)))
    expect(msg).toMatch(/^param top_k is not accepted \(accepted: model, max_tokens, temperature, top_p, seed, system\)$/)
    expect(fake.requests).toHaveLength(0)
  })

  it("fails the job with Groq's message for an unknown model", async () => {
    const msg = await failure(collect(make().run(job('hi', { model: 'nope' }), new AbortController().signal)))
    expect(msg).toBe('Groq has no model "nope" (The model `nope` does not exist or you do not have access to it.)')
  })

  it('fails the job on a server error, after the configured retries', async () => {
    fake.script = { tokens: DEFAULT_TOKENS, status: 503 }
    const msg = await failure(collect(make({ maxRetries: 1 }).run(job('hi'), new AbortController().signal)))
    expect(msg).toBe('Groq answered 503 for model "llama-3.1-8b-instant": scripted failure 503')
    expect(fake.requests.filter((r) => r.path === '/openai/v1/chat/completions')).toHaveLength(2)
  })

  it('fails the job when Groq reports an error inside the stream', async () => {
    fake.script = { tokens: DEFAULT_TOKENS, failAfter: 2, failMessage: 'Service Unavailable' }
    const got: string[] = []
    const msg = await failure((async () => { for await (const c of make().run(job('hi'), new AbortController().signal)) got.push(String(c)) })())
    expect(got).toEqual(['Hello', ','])
    expect(msg).toBe('Groq failed while generating with model "llama-3.1-8b-instant": Service Unavailable')
  })

  it('fails the job when the connection breaks mid-reply', async () => {
    fake.script = { tokens: DEFAULT_TOKENS, cutAfter: 2, delayMs: 20 }
    expect(await failure(collect(make().run(job('hi'), new AbortController().signal)))).toMatch(/^the connection to Groq broke mid-reply/)
  })

  it('fails the job when the stream ends without a finish_reason', async () => {
    fake.script = { tokens: DEFAULT_TOKENS, endAfter: 2 }
    expect(await failure(collect(make().run(job('hi'), new AbortController().signal)))).toMatch(/the stream ended before the reply was complete$/)
  })

  it('streams tokens as they are produced: the first arrives before the stream ends', async () => {
    fake.script = { tokens: ['a', 'b', 'c', 'd', 'e'], delayMs: 120 }
    const before = fake.finished
    const t0 = Date.now()
    const times: number[] = []
    let finishedAtFirst = -1
    for await (const _ of make().run(job('hi'), new AbortController().signal)) {
      if (times.length === 0) finishedAtFirst = fake.finished
      times.push(Date.now() - t0)
    }
    expect(times).toHaveLength(5)
    expect(finishedAtFirst).toBe(before)
    expect(fake.finished).toBe(before + 1)
    expect(times[4]! - times[0]!).toBeGreaterThanOrEqual(400)
  })

  it('stops promptly on abort mid-stream, and the server sees the client hang up', async () => {
    fake.script = { tokens: Array.from({ length: 50 }, (_, i) => `t${i} `), delayMs: 50 }
    const disconnected = fake.waitForDisconnect(3000)
    const { got, stopMs } = await abortAfterChunks(3, (signal) => make().run(job('hi'), signal))
    expect(stopMs).toBeLessThan(200)
    expect(got).toHaveLength(3)
    await disconnected
  })

  it('closes the connection when the consumer stops reading early', async () => {
    fake.script = { tokens: Array.from({ length: 50 }, (_, i) => `t${i} `), delayMs: 30 }
    const disconnected = fake.waitForDisconnect(3000)
    for await (const _ of make().run(job('hi'), new AbortController().signal)) break
    await disconnected
  })
})
