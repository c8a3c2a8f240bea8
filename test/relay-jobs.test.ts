import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WebSocketServer } from 'ws'
import { generateSecretKey } from 'nostr-tools/pure'
import { devnet } from './helpers/devnet.js'
import { startRelay, type RunningRelay } from '../src/devnet/relay.js'
import { identityFromSecret, type Identity } from '../src/identity/nostr-key.js'
import { EchoProcessor } from '../src/processors/echo.js'
import type { Processor } from '../src/processors/types.js'
import { loadNostrCrypto, nowSeconds, type Event, type EventTemplate, type NostrCrypto } from '../src/nostr/events.js'
import { RelayPool } from '../src/nostr/relay-client.js'
import { parseFeedback, resultKindFor, JOB_FEEDBACK_KIND, type JobFeedback } from '../src/nostr/nip90.js'
import { RelayJobService, type JobActivity, type RelayJobServiceOptions } from '../src/provider/relay-jobs.js'
import { JobQueue, QueueFullError } from '../src/provider/job-queue.js'
import { PubkeyRateLimiter } from '../src/provider/rate-limit.js'
import { jobCacheKey, ResultCache } from '../src/provider/result-cache.js'
import { PartialStream } from '../src/provider/partial-stream.js'
import { runChain, runRelayJob, type CustomerEvent, type JobSpec, type PayInvoice } from '../src/customer/relay-job.js'
import { startMint, type RunningMint } from '../src/devnet/mint.js'
import { Wallet } from '../src/payments/wallet.js'
import { encodeToken } from '../src/payments/token.js'
import { loadOrCreatePaymentKey } from '../src/payments/payment-key.js'
import { MintKeyCache } from '../src/payments/mint-keys.js'
import { ReceivedStore } from '../src/payments/received-store.js'
import { TickVerifier } from '../src/payments/tick-verifier.js'

const KIND = 5050
const cleanup: Array<() => unknown> = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

let crypto: NostrCrypto
async function nostrCrypto(): Promise<NostrCrypto> {
  crypto ??= await loadNostrCrypto()
  return crypto
}

function newIdentity(): Identity {
  return identityFromSecret(generateSecretKey())
}

async function ownRelay(port?: number): Promise<RunningRelay> {
  const r = await startRelay({ port, log: () => {} })
  cleanup.push(() => r.stop())
  return r
}

async function newPool(relays: string[]): Promise<RelayPool> {
  const pool = new RelayPool({ crypto: await nostrCrypto(), relays, reconnectMinMs: 50, reconnectMaxMs: 300, publishTimeoutMs: 5000 })
  cleanup.push(() => pool.close())
  await pool.waitConnected(3000, relays.length)
  return pool
}

interface Provider {
  service: RelayJobService
  identity: Identity
  activity: JobActivity[]
}

async function provider(opts: Partial<RelayJobServiceOptions> & { relays?: string[] | RelayPool } = {}): Promise<Provider> {
  const identity = newIdentity()
  const activity: JobActivity[] = []
  const relays = opts.relays ?? devnet().relays
  const pool = Array.isArray(relays) ? await newPool(relays) : relays
  const service = new RelayJobService({
    identity,
    kinds: [KIND],
    processor: new EchoProcessor(),
    crypto: await nostrCrypto(),
    rateLimit: false,
    ...opts,
    relays: pool,
    onActivity: (a) => activity.push(a),
  })
  await service.start()
  cleanup.push(() => service.stop())
  return { service, identity, activity }
}

interface Customer {
  identity: Identity
  pool: RelayPool
  events: CustomerEvent[]
  run(spec: Partial<JobSpec> & { text?: string }, extra?: { timeoutMs?: number; signal?: AbortSignal; pay?: PayInvoice }): ReturnType<typeof runRelayJob>
}

async function customer(relays = devnet().relays): Promise<Customer> {
  const identity = newIdentity()
  const pool = await newPool(relays)
  const events: CustomerEvent[] = []
  return {
    identity,
    pool,
    events,
    run: async (spec, extra = {}) =>
      runRelayJob(
        { kind: KIND, inputs: [{ type: 'text', value: spec.text ?? 'hello world' }], ...spec },
        {
          identity,
          pool,
          crypto: await nostrCrypto(),
          timeoutMs: extra.timeoutMs ?? 15_000,
          onEvent: (e) => events.push(e),
          ...(extra.signal ? { signal: extra.signal } : {}),
          ...(extra.pay ? { pay: extra.pay } : {}),
        },
      ),
  }
}

/** Publish a hand-made request and collect the provider's feedback to it. */
async function rawRequest(c: Customer, template: Omit<EventTemplate, 'created_at'>, waitMs = 1500): Promise<{ event: Event; feedback: JobFeedback[] }> {
  const event = (await nostrCrypto()).sign({ ...template, created_at: nowSeconds() }, c.identity.secretKey)
  const feedback: JobFeedback[] = []
  const sub = c.pool.subscribe([{ kinds: [JOB_FEEDBACK_KIND], '#e': [event.id] }], {
    onevent: (ev) => {
      const f = parseFeedback(ev)
      if (f.ok) feedback.push(f.value)
    },
  })
  await c.pool.publishOrThrow(event)
  await until(() => feedback.length > 0, waitMs).catch(() => {})
  sub.close()
  return { event, feedback }
}

function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) return resolve()
      if (Date.now() > deadline) return reject(new Error('timed out waiting'))
      setTimeout(tick, 10)
    }
    tick()
  })
}

const count = (activity: JobActivity[], type: JobActivity['type']): number => activity.filter((a) => a.type === type).length

describe('relay jobs end to end (devnet relay)', () => {
  it('runs a plain job and publishes a well-formed result', async () => {
    const p = await provider()
    const c = await customer()
    const out = await c.run({ text: 'hello relay world', provider: p.identity.pubkey })
    expect(out.content).toBe('hello relay world')
    expect(out.provider).toBe(p.identity.pubkey)

    const [result] = await c.pool.query([{ kinds: [resultKindFor(KIND)], '#e': [out.id] }])
    expect(result).toBeDefined()
    const tagNames = result!.tags.map((t) => t[0])
    expect(tagNames).toEqual(expect.arrayContaining(['request', 'e', 'p', 'i']))
    expect(result!.tags.find((t) => t[0] === 'i')).toEqual(['i', 'hello relay world', 'text'])
    expect(JSON.parse(result!.tags.find((t) => t[0] === 'request')![1]!).id).toBe(out.id)
    expect(result!.tags.find((t) => t[0] === 'p')![1]).toBe(c.identity.pubkey)
  })

  it('runs an encrypted job: request, partials and result are unreadable on the relay', async () => {
    const p = await provider({ processor: new EchoProcessor({ delayMs: 40 }), partialIntervalMs: 60 })
    const c = await customer()
    const secret = 'the secret prompt has several words in it so that it streams'
    const out = await c.run({ text: secret, provider: p.identity.pubkey, encrypt: true })
    expect(out.content).toBe(secret)
    const stored = await c.pool.query([{ '#e': [out.id] }, { ids: [out.id] }])
    expect(stored.length).toBeGreaterThan(2)
    for (const ev of stored) {
      expect(ev.content).not.toContain('secret')
      expect(JSON.stringify(ev.tags)).not.toContain('secret prompt')
    }
    const request = stored.find((e) => e.id === out.id)!
    expect(request.tags).toContainEqual(['encrypted'])
    expect(request.tags).toContainEqual(['p', p.identity.pubkey])
    const partials = c.events.filter((e): e is Extract<CustomerEvent, { type: 'partial' }> => e.type === 'partial')
    expect(partials.length).toBeGreaterThan(0)
    expect(partials.map((e) => e.text).join('')).toBe(secret)
  })

  it('streams partial output in order and ends with success feedback', async () => {
    const p = await provider({ processor: new EchoProcessor({ delayMs: 30 }), partialIntervalMs: 50 })
    const c = await customer()
    const text = Array.from({ length: 20 }, (_, i) => `w${i}`).join(' ')
    const out = await c.run({ text, provider: p.identity.pubkey })
    expect(out.content).toBe(text)
    const statuses = c.events.filter((e) => e.type === 'feedback').map((e) => (e as { status: string }).status)
    expect(statuses[0]).toBe('processing')
    const partials = c.events.filter((e): e is Extract<CustomerEvent, { type: 'partial' }> => e.type === 'partial')
    expect(partials.length).toBeGreaterThan(1)
    expect(partials.map((e) => e.text).join('')).toBe(text)
    expect(statuses.at(-1)).toBe('success')
  })

  it('cancels a running job when the customer publishes a kind 5 deletion', async () => {
    const p = await provider({ processor: new EchoProcessor({ delayMs: 100 }), partialIntervalMs: 50 })
    const c = await customer()
    const ctl = new AbortController()
    const text = Array.from({ length: 60 }, (_, i) => `w${i}`).join(' ')
    const running = c.run({ text, provider: p.identity.pubkey }, { signal: ctl.signal })
    await until(() => c.events.some((e) => e.type === 'partial'))
    ctl.abort()
    await expect(running).rejects.toThrow(/cancelled/)
    await until(() => count(p.activity, 'cancelled') === 1)
    await new Promise((r) => setTimeout(r, 300))
    expect(count(p.activity, 'result')).toBe(0)
  })

  it('runs a chained job: the second step waits for the first one\'s output', async () => {
    const p = await provider({ processor: new EchoProcessor({ delayMs: 20 }) })
    const c = await customer()
    const [first, second] = await runChain(
      [
        { kind: KIND, inputs: [{ type: 'text', value: 'step one output' }], provider: p.identity.pubkey },
        { kind: KIND, inputs: [{ type: 'text', value: 'step two' }], provider: p.identity.pubkey },
      ],
      { identity: c.identity, pool: c.pool, crypto: await nostrCrypto(), timeoutMs: 15_000 },
    )
    expect(first!.content).toBe('step one output')
    expect(second!.content).toBe('step one output\nstep two')
  })

  it('chains across providers through the relays, trusting only the provider step one addressed', async () => {
    const a = await provider({ processor: new EchoProcessor({ delayMs: 150 }) })
    const b = await provider()
    const c = await customer()
    const impostor = newIdentity()
    const crypto = await nostrCrypto()
    const running = runChain(
      [
        { kind: KIND, inputs: [{ type: 'text', value: 'from provider a' }], provider: a.identity.pubkey },
        { kind: KIND, inputs: [{ type: 'text', value: 'then b' }], provider: b.identity.pubkey },
      ],
      { identity: c.identity, pool: c.pool, crypto, timeoutMs: 15_000, onEvent: (e) => c.events.push(e) },
    )
    // While a is still working, someone else publishes a "result" for step one.
    await until(() => c.events.some((e) => e.type === 'published' && e.step === 0))
    const stepOne = c.events.find((e): e is Extract<CustomerEvent, { type: 'published' }> => e.type === 'published' && e.step === 0)!.id
    await c.pool.publishOrThrow(crypto.sign({ kind: resultKindFor(KIND), created_at: nowSeconds(), content: 'forged output', tags: [['e', stepOne], ['p', c.identity.pubkey]] }, impostor.secretKey))
    const [first, second] = await running
    expect(first!.provider).toBe(a.identity.pubkey)
    expect(second!.provider).toBe(b.identity.pubkey)
    expect(second!.content).toBe('from provider a\nthen b')
  })

  it('fails a chained job at once when the job it builds on fails', async () => {
    const p = await provider()
    const c = await customer()
    const t0 = Date.now()
    await expect(
      runChain(
        [
          { kind: KIND, inputs: [{ type: 'url', value: 'ftp://nowhere' }], provider: p.identity.pubkey },
          { kind: KIND, inputs: [{ type: 'text', value: 'step two' }], provider: p.identity.pubkey },
        ],
        { identity: c.identity, pool: c.pool, crypto: await nostrCrypto(), timeoutMs: 15_000 },
      ),
    ).rejects.toThrow(/http\(s\) URL/)
    expect(Date.now() - t0).toBeLessThan(5000)
    // Step two ends too: failed on its own, or cancelled by the customer, whichever came first.
    await until(() => p.activity.some((a) => (a.type === 'failed' && /builds on failed/.test(a.reason)) || a.type === 'cancelled' || (a.type === 'ignored' && /cancelled/.test(a.reason))))
  })

  it('answers identical requests from its result cache', async () => {
    let runs = 0
    const echo = new EchoProcessor()
    const counting: Processor = { start: () => echo.start(), describe: () => echo.describe(), run: (job, signal) => (runs++, echo.run(job, signal)) }
    const p = await provider({ processor: counting })
    // Two customers: one customer asking twice in the same second would sign the very same event.
    const [c1, c2] = [await customer(), await customer()]
    expect((await c1.run({ text: 'same question', provider: p.identity.pubkey })).content).toBe('same question')
    expect((await c2.run({ text: 'same question', provider: p.identity.pubkey })).content).toBe('same question')
    expect(runs).toBe(1)
    expect(p.activity.filter((a) => a.type === 'started' && a.cached)).toHaveLength(1)
  })

  it('ignores requests addressed only to other providers', async () => {
    const p = await provider()
    const c = await customer()
    const other = newIdentity().pubkey
    const { event, feedback } = await rawRequest(c, { kind: KIND, content: '', tags: [['i', 'hi', 'text'], ['p', other]] }, 800)
    expect(feedback).toHaveLength(0)
    expect(p.activity).toContainEqual({ type: 'ignored', id: event.id, reason: 'addressed to other providers' })
  })

  it('answers malformed and over-limit requests with an error saying why', async () => {
    const p = await provider()
    const c = await customer()
    const me = p.identity.pubkey
    const cases: Array<[string[][], RegExp]> = [
      [[['i', 'x', 'bogus'], ['p', me]], /input type "bogus"/],
      [[['i', 'x', 'text'], ['bid', 'lots'], ['p', me]], /"bid" must be a whole number/],
      [[['p', me]], /no input/],
      [[['i', 'not-an-id', 'job'], ['p', me]], /64-hex event id/],
      [[...Array.from({ length: 21 }, (_, i) => ['i', `in${i}`, 'text']), ['p', me]], /more than 20 inputs/],
      [[['i', 'y'.repeat(40_000), 'text'], ['p', me]], /an input is 40000 bytes, limit 32768/],
      [[['i', 'x', 'text'], ['relays', 'http://not-a-relay'], ['p', me]], /not a ws/],
    ]
    for (const [tags, why] of cases) {
      const { feedback } = await rawRequest(c, { kind: KIND, content: '', tags })
      expect(feedback).toHaveLength(1)
      expect(feedback[0]!.status).toBe('error')
      expect(feedback[0]!.extra).toMatch(why)
    }
    // An encrypted request that does not decrypt is answered too.
    const { feedback } = await rawRequest(c, { kind: KIND, content: 'bm90IGNpcGhlcnRleHQ=', tags: [['p', me], ['encrypted']] })
    expect(feedback[0]?.extra).toMatch(/neither NIP-44|cannot decrypt/)
    expect(count(p.activity, 'rejected')).toBe(cases.length + 1)
  })

  it('rate limits one customer without affecting others', async () => {
    const p = await provider({ rateLimit: { perMinute: 1, burst: 2 } })
    const c = await customer()
    await c.run({ text: 'one', provider: p.identity.pubkey })
    await c.run({ text: 'two', provider: p.identity.pubkey })
    await expect(c.run({ text: 'three', provider: p.identity.pubkey })).rejects.toThrow(/rate limited/)
    const other = await customer()
    expect((await other.run({ text: 'four', provider: p.identity.pubkey })).content).toBe('four')
  })

  it('fails a job that runs past the job timeout', async () => {
    const p = await provider({ processor: new EchoProcessor({ delayMs: 200 }), jobTimeoutMs: 300 })
    const c = await customer()
    await expect(c.run({ text: 'a b c d e f g h', provider: p.identity.pubkey })).rejects.toThrow(/ran longer than/)
    expect(count(p.activity, 'failed')).toBe(1)
  })

  it('runs jobs at most --max-jobs at a time', async () => {
    let running = 0
    let peak = 0
    const slow = new EchoProcessor({ delayMs: 30 })
    const tracking: Processor = {
      start: () => slow.start(),
      describe: () => slow.describe(),
      async *run(job, signal) {
        running++
        peak = Math.max(peak, running)
        try {
          yield* slow.run(job, signal)
        } finally {
          running--
        }
      },
    }
    const p = await provider({ processor: tracking, maxJobs: 2, resultCache: false })
    const c = await customer()
    const outs = await Promise.all([1, 2, 3, 4, 5].map((i) => c.run({ text: `job ${i} a b c`, provider: p.identity.pubkey })))
    expect(outs.map((o) => o.content)).toEqual([1, 2, 3, 4, 5].map((i) => `job ${i} a b c`))
    expect(peak).toBe(2)
  })
})

describe('relay jobs across relays', () => {
  it('processes a request delivered by two relays once', async () => {
    const [a, b] = [await ownRelay(), await ownRelay()]
    const p = await provider({ relays: [a.url, b.url] })
    const c = await customer([a.url, b.url])
    const out = await c.run({ text: 'once only', provider: p.identity.pubkey })
    expect(out.content).toBe('once only')
    await new Promise((r) => setTimeout(r, 300))
    expect(count(p.activity, 'request')).toBe(1)
    expect(count(p.activity, 'result')).toBe(1)
    // The result went to both relays.
    for (const url of [a.url, b.url]) {
      const only = await newPool([url])
      expect(await only.query([{ kinds: [resultKindFor(KIND)], '#e': [out.id] }])).toHaveLength(1)
    }
  })

  it('also publishes results to the relays the request names', async () => {
    const [a, extra] = [await ownRelay(), await ownRelay()]
    const p = await provider({ relays: [a.url] })
    const c = await customer([a.url])
    const { event } = await rawRequest(c, { kind: KIND, content: '', tags: [['i', 'hint me', 'text'], ['relays', extra.url], ['p', p.identity.pubkey]] }, 500)
    const extraPool = await newPool([extra.url])
    await until(() => count(p.activity, 'result') === 1)
    expect(await extraPool.query([{ kinds: [resultKindFor(KIND)], '#e': [event.id] }])).toHaveLength(1)
  })

  it('finishes a job across a relay restart', async () => {
    const relay = await ownRelay()
    const port = relay.port
    const p = await provider({ relays: [relay.url], processor: new EchoProcessor({ delayMs: 100 }), partialIntervalMs: 100 })
    const c = await customer([relay.url])
    const text = Array.from({ length: 15 }, (_, i) => `w${i}`).join(' ')
    const running = c.run({ text, provider: p.identity.pubkey }, { timeoutMs: 20_000 })
    await until(() => count(p.activity, 'started') === 1)
    await relay.stop()
    await new Promise((r) => setTimeout(r, 400))
    await ownRelay(port)
    const out = await running
    expect(out.content).toBe(text)
  })

  it('drops events with bad signatures from a hostile relay and still serves the real ones', async () => {
    const crypto = await nostrCrypto()
    const c = newIdentity()
    // Dated a little ahead: the provider only takes requests from after its start.
    const at = nowSeconds() + 5
    const good = crypto.sign({ kind: KIND, created_at: at, content: '', tags: [['i', 'genuine', 'text']] }, c.secretKey)
    const forged = { ...crypto.sign({ kind: KIND, created_at: at, content: '', tags: [['i', 'original', 'text']] }, c.secretKey), tags: [['i', 'forged', 'text']] }
    const badSig = { ...good, sig: good.sig.replace(/^./, (ch) => (ch === 'a' ? 'b' : 'a')) }
    const url = await scriptedRelay([forged, badSig, good])
    const honest = await ownRelay()
    const pool = await newPool([honest.url, url])
    const p = await provider({ relays: pool })
    await until(() => count(p.activity, 'result') === 1)
    expect(p.activity.filter((a) => a.type === 'request')).toEqual([{ type: 'request', id: good.id, customer: c.pubkey, kind: KIND, encrypted: false }])
    expect(pool.stats.invalid).toBe(2)
  })

  it('drops expired requests silently (a relay that does not enforce NIP-40 delivers them)', async () => {
    const crypto = await nostrCrypto()
    const c = newIdentity()
    const expired = crypto.sign({ kind: KIND, created_at: nowSeconds() + 5, content: '', tags: [['i', 'old news', 'text'], ['expiration', String(nowSeconds() - 1)]] }, c.secretKey)
    const p = await provider({ relays: await newPool([await scriptedRelay([expired])]) })
    await until(() => p.activity.length > 0)
    expect(p.activity).toEqual([{ type: 'ignored', id: expired.id, reason: 'expired' }])
  })
})

/**
 * A fake relay that answers the provider's job subscription with `events`
 * exactly as given (no checks), and OKs everything published to it.
 */
async function scriptedRelay(events: object[]): Promise<string> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise<void>((r) => wss.once('listening', () => r()))
  cleanup.push(() => new Promise((r) => wss.close(() => r(undefined))))
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as unknown[]
      if (msg[0] === 'REQ' && (msg[2] as { kinds?: number[] }).kinds?.includes(KIND)) {
        for (const ev of events) ws.send(JSON.stringify(['EVENT', msg[1], ev]))
      }
      if (msg[0] === 'EVENT') ws.send(JSON.stringify(['OK', (msg[1] as Event).id, true, '']))
    })
  })
  return `ws://127.0.0.1:${(wss.address() as { port: number }).port}`
}

/**
 * Paid jobs need a mint where an invoice is paid only when someone pays it.
 * The devnet mint's FakeWallet pays every invoice it issues by itself
 * (FAKEWALLET_BRR), so these tests run their own: started once with BRR to
 * fund the customer, then restarted on the same database without it, so the
 * provider's invoice is settled by the customer's melt and nothing else.
 */
describe('paid relay jobs (own mint, invoices paid only by melt)', () => {
  let dir: string
  let mint: RunningMint
  let payer: Wallet

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dvm-relay-paid-'))
    const funding = await startMint({ dataDir: join(dir, 'mint') })
    payer = new Wallet({ dataDir: join(dir, 'payer'), mintUrl: funding.url })
    await payer.load()
    await payer.fund(500, { pollMs: 100 })
    const port = funding.port
    await funding.stop()
    mint = await startMint({ dataDir: join(dir, 'mint'), port, env: { FAKEWALLET_BRR: 'false' } })
  })
  afterAll(async () => {
    await mint?.stop()
    await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })
  })

  async function providerWallet(name: string): Promise<Wallet> {
    const w = new Wallet({ dataDir: join(dir, name), mintUrl: mint.url })
    await w.load()
    return w
  }

  const melt: PayInvoice = async (bolt11) => {
    await payer.melt(bolt11)
  }

  it('asks for payment, starts when the invoice is paid by melt, and the provider\'s wallet holds the sats', async () => {
    const wallet = await providerWallet('prov-invoice')
    const p = await provider({ pricing: { perJob: 21 }, wallet, mintUrl: mint.url })
    const c = await customer()
    const before = (await payer.balance()).balance
    const out = await c.run({ text: 'worth paying for', provider: p.identity.pubkey, bidMsats: 30_000 }, { pay: melt })
    expect(out.content).toBe('worth paying for')
    expect(out.paidMsats).toBe(21_000)
    expect(out.amountMsats).toBe(21_000)
    expect(before - (await payer.balance()).balance).toBe(21)
    expect((await wallet.balance()).balance).toBe(21)
    const seen = c.events.map((e) => e.type)
    expect(seen.indexOf('payment-required')).toBeLessThan(seen.indexOf('paid'))
    expect(p.activity.map((a) => a.type)).toEqual(expect.arrayContaining(['payment-required', 'paid', 'result']))
  })

  it('never pays more than the bid, and refuses to pay without one', async () => {
    const p = await provider({ pricing: { perJob: 21 }, wallet: await providerWallet('prov-bid'), mintUrl: mint.url })
    const c = await customer()
    const before = (await payer.balance()).balance
    // A bid below the price is refused by the provider before any invoice.
    await expect(c.run({ text: 'cheap', provider: p.identity.pubkey, bidMsats: 20_000 }, { pay: melt })).rejects.toThrow(/costs 21000 msats; your bid of 20000/)
    // Without a bid the customer does not pay what it is asked.
    await expect(c.run({ text: 'no bid', provider: p.identity.pubkey }, { pay: melt })).rejects.toThrow(/pass --bid=21000/)
    expect((await payer.balance()).balance).toBe(before)
  })

  it('serves jobs priced below --min-price for free', async () => {
    const p = await provider({ pricing: { perJob: 5 }, minPrice: 10, wallet: await providerWallet('prov-free'), mintUrl: mint.url })
    const c = await customer()
    const out = await c.run({ text: 'on the house', provider: p.identity.pubkey })
    expect(out.content).toBe('on the house')
    expect(out.paidMsats).toBe(0)
    expect(c.events.some((e) => e.type === 'payment-required')).toBe(false)
  })

  it('takes ecash sent in an encrypted request (swapped online)', async () => {
    const wallet = await providerWallet('prov-token')
    const p = await provider({ pricing: { perJob: 8 }, wallet, mintUrl: mint.url })
    const c = await customer()
    const token = await payer.send(8)
    const out = await c.run({ text: 'paid in ecash', provider: p.identity.pubkey, encrypt: true, params: { cashu: token } })
    expect(out.content).toBe('paid in ecash')
    expect(out.amountMsats).toBe(8000)
    expect((await wallet.balance()).balance).toBe(8)
    expect(p.activity).toContainEqual({ type: 'paid', id: out.id, sats: 8, via: 'cashu' })
    // The same token again is refused: the mint knows it is spent.
    const again = await customer()
    await expect(again.run({ text: 'paid twice?', provider: p.identity.pubkey, encrypt: true, params: { cashu: token } })).rejects.toThrow(/could not be received|spent/)
  })

  it('verifies 1-sat proofs locked to its payment key offline, and refuses a short token untouched', async () => {
    const provDir = join(dir, 'prov-locked')
    const paymentKey = await loadOrCreatePaymentKey(provDir)
    const keys = new MintKeyCache({ dataDir: provDir, mints: [mint.url] })
    await keys.load()
    await keys.start()
    const store = await ReceivedStore.open(provDir)
    cleanup.push(() => store.close())
    const verifier = new TickVerifier({ paymentPubkey: paymentKey.pubkey, keys, minLocktimeMarginSec: 60, store })
    const settled: string[] = []
    const p = await provider({
      pricing: { perJob: 3 },
      wallet: await providerWallet('prov-locked-wallet'),
      mintUrl: mint.url,
      offlineProofs: verifier,
      onOfflineProofs: (id) => settled.push(id),
    })
    const refund = await loadOrCreatePaymentKey(join(dir, 'payer-refund'))
    const lock = async (n: number): Promise<string> =>
      encodeToken(mint.url, await payer.lockForPayee({ amount: n, payeePubkey: paymentKey.pubkey, locktime: nowSeconds() + 3600, refundPubkey: refund.pubkey }))
    const c = await customer()
    // Locked proofs are safe in a plain request: only the provider can spend them.
    const out = await c.run({ text: 'locked ecash', provider: p.identity.pubkey, params: { cashu: await lock(3) } })
    expect(out.content).toBe('locked ecash')
    expect(store.counts({ sessionId: out.id }).held).toBe(3)
    expect(settled).toEqual([out.id])
    await expect(c.run({ text: 'too little', provider: p.identity.pubkey, params: { cashu: await lock(2) } })).rejects.toThrow(/holds 2 sats; this job costs 3/)
  })
})

describe('building blocks', () => {
  it('JobQueue runs at most `concurrency` tasks, refuses past maxQueued, and drops aborted waiters', async () => {
    const q = new JobQueue(1, 1)
    let release!: () => void
    const first = q.run(() => new Promise<string>((r) => (release = () => r('first'))))
    const ctl = new AbortController()
    const second = q.run(async () => 'second', ctl.signal)
    await expect(q.run(async () => 'third')).rejects.toBeInstanceOf(QueueFullError)
    ctl.abort(new Error('gone'))
    await expect(second).rejects.toThrow('gone')
    expect(q.queued).toBe(0)
    const fourth = q.run(async () => 'fourth')
    release()
    expect(await first).toBe('first')
    expect(await fourth).toBe('fourth')
    expect(q.active).toBe(0)
  })

  it('PubkeyRateLimiter refills over time, tells once, and forgets the least recent keys', () => {
    const rl = new PubkeyRateLimiter({ perMinute: 60, burst: 2, maxKeys: 2 })
    expect(rl.take('a', 0)).toEqual({ ok: true })
    expect(rl.take('a', 0)).toEqual({ ok: true })
    expect(rl.take('a', 0)).toEqual({ ok: false, retryAfterMs: 1000, notify: true })
    expect(rl.take('a', 10)).toMatchObject({ ok: false, notify: false })
    expect(rl.take('a', 1010)).toEqual({ ok: true })
    rl.take('b', 1010)
    rl.take('c', 1010) // evicts 'a'
    expect(rl.take('a', 1010)).toEqual({ ok: true })
  })

  it('ResultCache keys on what is computed (not on payment), expires, and stays within its byte budget', () => {
    const job = { kind: 5050, input: [{ type: 'text' as const, value: 'q' }], params: { b: '2', a: '1' }, output: 'text/plain' }
    expect(jobCacheKey(job)).toBe(jobCacheKey({ ...job, params: { a: '1', b: '2', cashu: 'cashuBxyz' } }))
    expect(jobCacheKey(job)).not.toBe(jobCacheKey({ ...job, params: { a: '1', b: '3' } }))
    const cache = new ResultCache({ maxEntries: 10, maxBytes: 100, ttlMs: 1000 })
    cache.set('k1', 'x'.repeat(20), 0)
    expect(cache.get('k1', 500)).toBe('x'.repeat(20))
    expect(cache.get('k1', 1000)).toBeUndefined()
    for (let i = 0; i < 10; i++) cache.set(`k${i}`, 'y'.repeat(20), 0)
    expect(cache.totalBytes).toBeLessThanOrEqual(100)
    expect(cache.get('k9', 1)).toBe('y'.repeat(20))
    cache.set('huge', 'z'.repeat(60), 0)
    expect(cache.get('huge', 1)).toBeUndefined()
  })

  it('PartialStream sends nothing for a fast job and everything, in order, for a slow one', async () => {
    const sent: string[] = []
    const fast = new PartialStream(async (p) => void sent.push(p), 1000, 100)
    fast.push('all at once')
    await fast.finish()
    expect(sent).toEqual([])

    const slow = new PartialStream(async (p) => {
      await new Promise((r) => setTimeout(r, 30))
      sent.push(p)
    }, 20, 4)
    for (const w of ['ab', 'cd', 'ef', 'gh']) {
      slow.push(w)
      await new Promise((r) => setTimeout(r, 25))
    }
    slow.push('ij')
    await slow.finish()
    expect(sent.join('')).toBe('abcdefghij')
    expect(sent.every((p) => p.length <= 4)).toBe(true)
  })
})
