import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import http from 'node:http'
import { writeFile, chmod } from 'node:fs/promises'
import { join } from 'node:path'
import { generateSecretKey } from 'nostr-tools'
import { devnet, devnetDir } from './helpers/devnet.js'
import { Agents, until } from './helpers/agents.js'
import { useProcs, tsArgs } from './helpers/procs.js'
import { startFakeOllama, type FakeOllama } from './fixtures/fake-ollama.js'
import { startFakeGroq, type FakeGroq } from './fixtures/fake-groq.js'
import { createProcessor } from '../src/processors/index.js'
import { buyP2PJob } from '../src/customer/buy-job.js'
import { walletFunds } from '../src/customer/wallet-funds.js'
import { runRelayJob } from '../src/customer/relay-job.js'
import { loadNostrCrypto } from '../src/nostr/events.js'
import { RelayPool } from '../src/nostr/relay-client.js'
import { identityFromSecret } from '../src/identity/nostr-key.js'
import type { Provider } from '../src/provider/provider.js'
import { Wallet } from '../src/payments/wallet.js'

/**
 * Every processor, end to end: once as a P2P job paid per chunk and once as a
 * NIP-90 job over the relay, through one real provider each.
 */
const procs = useProcs()
let agents: Agents
let ollama: FakeOllama
let groq: FakeGroq
let httpBackend: http.Server
let httpUrl: string
let execScript: string
let customer: Awaited<ReturnType<Agents['customer']>>
let pool: RelayPool

beforeAll(async () => {
  agents = new Agents(devnet())
  ollama = await startFakeOllama({ models: ['tiny:latest'], script: { tokens: ['Hel', 'lo ', 'from ', 'ollama'] } })
  groq = await startFakeGroq({ apiKey: 'gsk_test', models: [{ id: 'llama-test' }], script: { tokens: ['Hi ', 'from ', 'groq'] } })
  agents.defer(() => ollama.close())
  agents.defer(() => groq.close())
  // an ndjson job backend, as an HTTP processor sees one
  httpBackend = http.createServer((req, res) => {
    if (req.method !== 'POST') return void res.writeHead(405, { allow: 'POST' }).end()
    let body = ''
    req.on('data', (c: Buffer) => (body += c))
    req.on('end', () => {
      const job = JSON.parse(body) as { input: Array<{ value: string }> }
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      for (const w of job.input[0]!.value.split(' ')) res.write(JSON.stringify({ chunk: `<${w}>` }) + '\n')
      res.end()
    })
  })
  await new Promise<void>((r) => httpBackend.listen(0, '127.0.0.1', r))
  httpUrl = `http://127.0.0.1:${(httpBackend.address() as { port: number }).port}/job`
  agents.defer(() => new Promise((r) => httpBackend.close(() => r(undefined))))
  const dir = await agents.dir('dvm-exec-')
  execScript = join(dir, 'reverse.mjs')
  await writeFile(execScript, "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{for(const w of s.trim().split(' ').reverse())console.log(w)})\n")
  await chmod(execScript, 0o755)
  customer = await agents.customer(100)
  pool = new RelayPool({ crypto: await loadNostrCrypto(), relays: devnet().relays })
  agents.defer(async () => pool.close())
})
afterAll(async () => agents.cleanup())

const cases: Array<{ name: string; spec: () => string; env?: () => NodeJS.ProcessEnv; input: string; expected: string }> = [
  { name: 'echo', spec: () => 'echo', input: 'plain echo', expected: 'plain echo' },
  { name: 'exec', spec: () => `exec:${process.execPath} ${execScript}`, input: 'one two three', expected: 'three\ntwo\none\n' },
  { name: 'http', spec: () => httpUrl, input: 'a b', expected: '<a><b>' },
  { name: 'ollama', spec: () => 'ollama', env: () => ({ OLLAMA_HOST: ollama.url }), input: 'hi', expected: 'Hello from ollama' },
  { name: 'groq', spec: () => 'groq', env: () => ({ GROQ_API_KEY: 'gsk_test', GROQ_BASE_URL: groq.url }), input: 'hi', expected: 'Hi from groq' },
]

describe.each(cases)('the $name processor', (c) => {
  let provider: Provider
  const kind = 5300 + cases.indexOf(c)
  beforeAll(async () => {
    const processor = await createProcessor({ spec: c.spec(), env: { ...process.env, ...(c.env?.() ?? {}) } })
    provider = await agents.provider({ kinds: [kind], processor, relays: devnet().relays, pricing: { perMinute: 60, chunksPerSat: 100, perJob: 0 } })
    await until(() => provider.relayJobs !== null, 'relay jobs')
  })

  it('runs a P2P job paid per chunk', async () => {
    const r = await buyP2PJob({ identity: customer.identity, funds: walletFunds(customer.wallet, devnet().mint, customer.refundKey), kind, input: [{ type: 'text', value: c.input }], budget: 3, bootstrap: devnet().bootstrap, providerPubkey: provider.opts.identity.pubkey })
    expect(r.status, r.error).toBe('success')
    expect(r.output).toBe(c.expected)
    expect(r.paid).toBe(1)
  })

  it('runs a NIP-90 job over the relay', async () => {
    await new Promise((r) => setTimeout(r, 200))
    const out = await runRelayJob(
      { kind, inputs: [{ type: 'text', value: c.input }], provider: provider.opts.identity.pubkey },
      { identity: identityFromSecret(generateSecretKey()), pool, crypto: await loadNostrCrypto(), timeoutMs: 15_000 },
    )
    expect(out.content).toBe(c.expected)
  })
})

describe('dvm-customer --via=p2p', () => {
  it('streams a P2P job to the terminal and pays per chunk', async () => {
    const provider = await agents.provider({ kinds: [5050], pricing: { perMinute: 60, chunksPerSat: 2, perJob: 0 } })
    const walletOnDisk = async () => {
      const w = new Wallet({ dataDir: customer.dataDir, mintUrl: devnet().mint })
      await w.load()
      return w.balance()
    }
    const before = await walletOnDisk()
    const p = procs.spawn(
      process.execPath,
      tsArgs('bin/dvm-customer.ts', '--via=p2p', '--kind=5050', '--budget=2', `--provider=${provider.opts.identity.npub}`, `--devnet=${devnetDir()}`, `--data-dir=${customer.dataDir}`, '--json', 'one two three four five six'),
      { timeoutMs: 60_000 },
    )
    const exit = await p.exited
    expect(exit.code, p.output()).toBe(0)
    const lines = p.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.filter((l) => l.type === 'chunk').length).toBe(4)
    // the budget of 2 sats bought 4 chunks of 6, and not one more
    expect(lines.at(-1)).toMatchObject({ type: 'result', status: 'budget', chunks: 4, paid: 2, content: 'one two three four ' })
    // the wallet the command left behind knows both sats went to the provider: none still counted as locked
    const after = await walletOnDisk()
    expect(after.balance).toBe(before.balance - 2)
    expect(after.locked).toBe(before.locked)
  })
})
