import { Ajv2020 } from 'ajv/dist/2020.js'
import { describe, expect, it } from 'vitest'
import { OllamaProcessor, ollamaHost } from '../src/processors/ollama.js'
import { startFakeOllama, type FakeOllama } from './fixtures/fake-ollama.js'
import { DEFAULT_TOKENS } from './fixtures/fake-server.js'
import { abortAfterChunks, collect, failure, job, useFakeServer } from './helpers/processors.js'

describe('ollama processor against a fake Ollama speaking its wire format', () => {
  let fake: FakeOllama
  useFakeServer(async () => (fake = await startFakeOllama({ models: ['llama3.2:latest', 'qwen2.5:0.5b'] })))

  it('reads OLLAMA_HOST the way the ollama CLI does', () => {
    expect(ollamaHost(undefined)).toBe('http://127.0.0.1:11434')
    expect(ollamaHost('')).toBe('http://127.0.0.1:11434')
    expect(ollamaHost('gpu-box')).toBe('http://gpu-box:11434')
    expect(ollamaHost('gpu-box:9000')).toBe('http://gpu-box:9000')
    expect(ollamaHost(':9000')).toBe('http://127.0.0.1:9000')
    expect(ollamaHost('https://ollama.example.com')).toBe('https://ollama.example.com')
  })

  it('starts, and describes the installed models with the default first and an enum in the schema', async () => {
    const p = new OllamaProcessor({ host: fake.host, model: 'qwen2.5:0.5b' })
    await p.start()
    const info = await p.describe()
    expect(info.name).toBe('ollama')
    expect(info.models).toEqual(['qwen2.5:0.5b', 'llama3.2:latest'])
    expect(info.output).toBe('text/plain')
    expect(info.features).toContain('streaming')
    const props = (info.paramsSchema as { properties: Record<string, { enum?: string[]; default?: string }> }).properties
    expect(props.model!.enum).toEqual(['qwen2.5:0.5b', 'llama3.2:latest'])
    expect(props.model!.default).toBe('qwen2.5:0.5b')
    expect(Object.keys(props).sort()).toEqual(['max_tokens', 'model', 'seed', 'system', 'temperature', 'top_k', 'top_p'])

    // A customer checks its params against this schema before paying.
    const check = new Ajv2020({ strict: false }).compile(info.paramsSchema)
    expect(check({ model: 'llama3.2:latest', temperature: '0.7', max_tokens: '256', top_p: '1', top_k: '40', seed: '42' })).toBe(true)
    expect(check({ temperature: '2.5' })).toBe(false)
    expect(check({ max_tokens: '0' })).toBe(false)
    expect(check({ model: 'gpt-4' })).toBe(false)
    expect(check({ foo: 'bar' })).toBe(false)
  })

  it('accepts a model named without its tag, as the ollama CLI does', async () => {
    await new OllamaProcessor({ host: fake.host, model: 'llama3.2' }).start()
  })

  it('refuses to start when Ollama is not running, in one sentence', async () => {
    const down = await startFakeOllama()
    const host = down.host
    await down.close()
    const msg = await failure(new OllamaProcessor({ host }).start())
    expect(msg).toMatch(/^cannot reach Ollama at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\); start it with `ollama serve` or set OLLAMA_HOST$/)
  })

  it('refuses to start with a model that is not installed, naming the installed ones', async () => {
    const msg = await failure(new OllamaProcessor({ host: fake.host, model: 'mistral' }).start())
    expect(msg).toContain('does not have model "mistral"')
    expect(msg).toContain('llama3.2:latest, qwen2.5:0.5b')
    expect(msg).toContain('ollama pull mistral')
  })

  it('refuses to start when no model is installed', async () => {
    const empty = await startFakeOllama({ models: [] })
    try {
      expect(await failure(new OllamaProcessor({ host: empty.host }).start())).toMatch(/has no models installed/)
    } finally {
      await empty.close()
    }
  })

  it('streams the tokens and sends the job params as Ollama options', async () => {
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    await p.start()
    const out = await collect(
      p.run(job('Say hello', { temperature: '0.5', top_p: '0.9', top_k: '40', seed: '7', max_tokens: '100', system: 'Be brief.' }), new AbortController().signal),
    )
    expect(out).toEqual(DEFAULT_TOKENS)
    const chat = fake.requests.find((r) => r.path === '/api/chat')!
    expect(chat.body).toMatchObject({
      model: 'llama3.2:latest',
      stream: true,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Say hello' },
      ],
      options: { temperature: 0.5, top_p: 0.9, top_k: 40, seed: 7, num_predict: 100 },
    })
  })

  it("honours the job's model and max_tokens", async () => {
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    await p.start()
    const out = await collect(p.run(job('hi', { model: 'qwen2.5:0.5b', max_tokens: '2' }), new AbortController().signal))
    expect(out).toEqual(['Hello', ','])
    expect(fake.requests.at(-1)!.body).toMatchObject({ model: 'qwen2.5:0.5b', options: { num_predict: 2 } })
  })

  it('uses the first installed model when none is configured', async () => {
    const p = new OllamaProcessor({ host: fake.host })
    await p.start()
    await collect(p.run(job('hi'), new AbortController().signal))
    expect(fake.requests.at(-1)!.body).toMatchObject({ model: 'llama3.2:latest' })
  })

  it('fails a job with bad params before calling Ollama, naming each problem', async () => {
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    const msg = await failure(collect(p.run(job('hi', { temperature: 'hot', top_k: '0', colour: 'red' }), new AbortController().signal)))
    expect(msg).toContain('param temperature must be a number from 0 to 2, got "hot"')
    expect(msg).toContain('param top_k must be a whole number from 1 to 1000, got "0"')
    expect(msg).toContain('param colour is not accepted')
    expect(fake.requests.filter((r) => r.path === '/api/chat')).toHaveLength(0)
  })

  it("fails the job with Ollama's own error for an unknown model", async () => {
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    const msg = await failure(collect(p.run(job('hi', { model: 'nope' }), new AbortController().signal)))
    expect(msg).toBe(`Ollama refused the job for model "nope" (404: model 'nope' not found); the skill lists the installed models`)
  })

  it('fails the job when Ollama reports an error mid-stream, keeping what came before', async () => {
    fake.script = { tokens: DEFAULT_TOKENS, failAfter: 2, failMessage: 'model runner has unexpectedly stopped' }
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    const got: string[] = []
    const msg = await failure((async () => { for await (const c of p.run(job('hi'), new AbortController().signal)) got.push(String(c)) })())
    expect(got).toEqual(['Hello', ','])
    expect(msg).toBe('Ollama failed while generating with model "llama3.2:latest": model runner has unexpectedly stopped')
  })

  it('fails the job when the connection breaks mid-reply', async () => {
    fake.script = { tokens: DEFAULT_TOKENS, cutAfter: 2, delayMs: 20 }
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    const msg = await failure(collect(p.run(job('hi'), new AbortController().signal)))
    expect(msg).toMatch(/^the connection to Ollama broke mid-reply \(/)
  })

  it('says the connection broke (not that Ollama is down) when it closes before the first token', async () => {
    fake.script = { tokens: DEFAULT_TOKENS, cutAfter: 0 }
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    expect(await failure(collect(p.run(job('hi'), new AbortController().signal)))).toMatch(/^the connection to Ollama broke (before the reply started|mid-reply) \(/)
  })

  it('fails the job when the stream ends without its done record', async () => {
    fake.script = { tokens: DEFAULT_TOKENS, endAfter: 2 }
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    expect(await failure(collect(p.run(job('hi'), new AbortController().signal)))).toMatch(/ended before it was complete/)
  })

  it('a failed job leaves the processor working for the next one', async () => {
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    fake.script = { tokens: DEFAULT_TOKENS, failAfter: 1 }
    await failure(collect(p.run(job('hi'), new AbortController().signal)))
    fake.script = { tokens: DEFAULT_TOKENS }
    expect((await collect(p.run(job('hi'), new AbortController().signal))).join('')).toBe('Hello, world!')
  })

  it('streams tokens as they are produced: the first arrives while the server is still generating', async () => {
    fake.script = { tokens: ['a', 'b', 'c', 'd', 'e'], delayMs: 120 }
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    const t0 = Date.now()
    const times: number[] = []
    let streamingAtFirst = -1
    let finishedAtFirst = -1
    for await (const c of p.run(job('hi'), new AbortController().signal)) {
      if (times.length === 0) {
        streamingAtFirst = fake.streaming
        finishedAtFirst = fake.finished
      }
      times.push(Date.now() - t0)
      expect(typeof c).toBe('string')
    }
    expect(times).toHaveLength(5)
    expect(streamingAtFirst).toBe(1)
    expect(finishedAtFirst).toBe(fake.finished - 1)
    expect(times[4]! - times[0]!).toBeGreaterThanOrEqual(400)
  })

  it('stops promptly on abort mid-stream, and the server sees the client hang up', async () => {
    fake.script = { tokens: Array.from({ length: 50 }, (_, i) => `t${i} `), delayMs: 50 }
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    const disconnected = fake.waitForDisconnect(3000)
    const before = fake.disconnects
    const { got, stopMs } = await abortAfterChunks(3, (signal) => p.run(job('hi'), signal))
    expect(stopMs).toBeLessThan(200)
    expect(got).toHaveLength(3)
    await disconnected
    expect(fake.disconnects).toBe(before + 1)
  })

  it('closes the connection when the consumer stops reading early', async () => {
    fake.script = { tokens: Array.from({ length: 50 }, (_, i) => `t${i} `), delayMs: 30 }
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    const disconnected = fake.waitForDisconnect(3000)
    for await (const c of p.run(job('hi'), new AbortController().signal)) {
      expect(c).toBe('t0 ')
      break
    }
    await disconnected
  })

  it('an abort while waiting for the first token also closes the request', async () => {
    fake.script = { tokens: ['late'], delayMs: 2000 }
    const p = new OllamaProcessor({ host: fake.host, model: 'llama3.2:latest' })
    const ac = new AbortController()
    const disconnected = fake.waitForDisconnect(3000)
    setTimeout(() => ac.abort(), 150)
    const t0 = Date.now()
    expect(await collect(p.run(job('hi'), ac.signal))).toEqual([])
    expect(Date.now() - t0).toBeLessThan(1000)
    await disconnected
  })
})
