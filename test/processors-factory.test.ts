import { existsSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createProcessor, EchoProcessor, ExecProcessor, GroqProcessor, HttpProcessor, OllamaProcessor } from '../src/processors/index.js'
import { startFakeGroq, type FakeGroq } from './fixtures/fake-groq.js'
import { startFakeOllama, type FakeOllama } from './fixtures/fake-ollama.js'
import { failure, job, text } from './helpers/processors.js'

describe('createProcessor (--processor=…)', () => {
  let ollama: FakeOllama
  let groq: FakeGroq

  beforeAll(async () => {
    ;[ollama, groq] = await Promise.all([startFakeOllama(), startFakeGroq()])
  })
  afterAll(async () => {
    await Promise.all([ollama.close(), groq.close()])
  })

  it('builds each kind of processor', async () => {
    expect(await createProcessor({ spec: 'echo' })).toBeInstanceOf(EchoProcessor)
    expect(await createProcessor({ spec: 'ollama', env: {} })).toBeInstanceOf(OllamaProcessor)
    expect(await createProcessor({ spec: 'groq', env: {} })).toBeInstanceOf(GroqProcessor)
    expect(await createProcessor({ spec: 'exec:cat -u', env: {} })).toBeInstanceOf(ExecProcessor)
    expect(await createProcessor({ spec: 'http://127.0.0.1:9/jobs' })).toBeInstanceOf(HttpProcessor)
    expect(await createProcessor({ spec: 'https://backend.example/jobs' })).toBeInstanceOf(HttpProcessor)
  })

  it('refuses what it does not understand, in one sentence', async () => {
    expect(await failure(createProcessor({ spec: 'llama' }))).toBe('unknown processor "llama"; use echo, ollama, groq, exec:<command> or an http(s):// URL')
    expect(await failure(createProcessor({ spec: 'exec:' }))).toMatch(/^exec: no command given/)
    expect(await failure(createProcessor({ spec: `exec:sh -c 'oops` }))).toMatch(/unterminated ' quote/)
    expect(await failure(createProcessor({ spec: 'exec:cat', env: { DVM_EXEC_TIMEOUT: '10s' } }))).toBe('DVM_EXEC_TIMEOUT must be a whole number from 1 to 604800, not "10s"')
  })

  it('wires OLLAMA_HOST and --model into a working ollama processor', async () => {
    const p = await createProcessor({ spec: 'ollama', model: 'qwen2.5:0.5b', env: { OLLAMA_HOST: ollama.host } })
    await p.start()
    expect(await text(p.run(job('hi'), new AbortController().signal))).toBe('Hello, world!')
    expect(ollama.requests.at(-1)!.body).toMatchObject({ model: 'qwen2.5:0.5b' })
  })

  it('wires GROQ_API_KEY, GROQ_BASE_URL and --model into a working groq processor', async () => {
    const p = await createProcessor({ spec: 'groq', model: 'llama-3.3-70b-versatile', env: { GROQ_API_KEY: groq.apiKey, GROQ_BASE_URL: groq.url } })
    await p.start()
    expect(await text(p.run(job('hi'), new AbortController().signal))).toBe('Hello, world!')
    expect(groq.requests.at(-1)!.body).toMatchObject({ model: 'llama-3.3-70b-versatile' })
  })

  it('groq without GROQ_API_KEY fails at start, not at construction', async () => {
    const p = await createProcessor({ spec: 'groq', env: {} })
    expect(await failure(p.start())).toMatch(/^GROQ_API_KEY is not set/)
  })

  it('exec honours DVM_EXEC_TIMEOUT and gives the program the environment it was given', async () => {
    const p = await createProcessor({ spec: 'exec:printenv MARKER', env: { PATH: process.env.PATH, MARKER: 'from-env', DVM_EXEC_TIMEOUT: '5' } })
    await p.start()
    expect(await text(p.run(job(''), new AbortController().signal))).toBe('from-env\n')
  })

  it('the spec words reach the program literally', async () => {
    const p = await createProcessor({ spec: `exec:printf '%s|' "$(touch /tmp/dvm-factory-mark)" ';' '\`id\`'`, env: { PATH: process.env.PATH } })
    await p.start()
    expect(await text(p.run(job(''), new AbortController().signal))).toBe('$(touch /tmp/dvm-factory-mark)|;|`id`|')
    expect(existsSync('/tmp/dvm-factory-mark')).toBe(false)
  })
})
