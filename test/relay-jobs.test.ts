import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { createServer as createTcpServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import httpProxy from 'http-proxy'
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
import { WalletJobPayments } from '../src/provider/job-payments.js'
import { PubkeyRateLimiter, TokenBucket } from '../src/provider/rate-limit.js'
import { hostRefusal, RelayTargets } from '../src/provider/relay-targets.js'
import { fitResultEvent, MAX_RESULT_EVENT_BYTES, signedEventBytes } from '../src/provider/result-event.js'
import { ciphertextChars, encryptFor } from '../src/nostr/encryption.js'
import { jobCacheKey, ResultCache } from '../src/provider/result-cache.js'
import { PartialStream } from '../src/provider/partial-stream.js'
import { runChain, runRelayJob, type CustomerEvent, type JobSpec, type PayInvoice } from '../src/customer/relay-job.js'
import { startMint, type RunningMint } from '../src/devnet/mint.js'
import { Wallet } from '../src/payments/wallet.js'
import { decodeToken, encodeToken } from '../src/payments/token.js'
import { loadOrCreatePaymentKey } from '../src/payments/payment-key.js'
import { MintKeyCache } from '../src/payments/mint-keys.js'
import { ReceivedStore } from '../src/payments/received-store.js'
import { TickVerifier } from '../src/payments/tick-verifier.js'
import { findRefunds } from '../src/customer/refund-claims.js'

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

async function ownRelay(port?: number, maxMessageBytes?: number): Promise<RunningRelay> {
  const r = await startRelay({ port, log: () => {}, ...(maxMessageBytes ? { maxMessageBytes } : {}) })
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
    // A paid provider takes only requests addressed to it: other test files publish
    // requests to anyone on this relay, and the devnet mint pays every invoice at once.
    ...(opts.pricing ? { acceptUnaddressed: false } : {}),
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

/** Wait (bounded) for `cond`; `refresh` runs between checks when the condition needs a query. */
function until(cond: () => boolean, ms = 5000, refresh?: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + ms
  return new Promise((resolve, reject) => {
    const tick = async (): Promise<void> => {
      if (refresh) await refresh().catch(() => undefined)
      if (cond()) return resolve()
      if (Date.now() > deadline) return reject(new Error('timed out waiting'))
      setTimeout(() => void tick(), refresh ? 50 : 10)
    }
    void tick()
  })
}

/** A relay event cap like strfry's default (64 KiB), as a message limit: `["EVENT",…]` adds a few bytes. */
const RELAY_EVENT_CAP = 64 * 1024 + 16

const count = (activity: JobActivity[], type: JobActivity['type']): number => activity.filter((a) => a.type === type).length

/** Echoes its input, but holds every job until `open()` (or its abort). */
function gatedProcessor(): { processor: Processor; open: () => void } {
  let open!: () => void
  const gate = new Promise<void>((r) => (open = r))
  const echo = new EchoProcessor()
  return {
    open,
    processor: {
      start: () => echo.start(),
      describe: () => echo.describe(),
      async *run(job, signal) {
        await Promise.race([gate, new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }))])
        yield* echo.run(job, signal)
      },
    },
  }
}

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

  it('answers malformed requests within a global limit and drops the rest silently', async () => {
    const p = await provider({ errorReplyLimit: { perMinute: 1, burst: 2 } })
    const c = await customer()
    const crypto = await nostrCrypto()
    // Four keys, so the per-key limit plays no part: the flood comes from everywhere.
    const bad = Array.from({ length: 4 }, (_, n) =>
      crypto.sign({ kind: KIND, created_at: nowSeconds(), content: '', tags: [['i', `x${n}`, 'bogus'], ['p', p.identity.pubkey]] }, newIdentity().secretKey),
    )
    const answers = new Set<string>()
    const sub = c.pool.subscribe([{ kinds: [JOB_FEEDBACK_KIND], '#e': bad.map((e) => e.id) }], {
      onevent: (ev) => {
        const f = parseFeedback(ev)
        if (f.ok && f.value.status === 'error') answers.add(f.value.requestId)
      },
    })
    cleanup.push(() => sub.close())
    for (const ev of bad) await c.pool.publishOrThrow(ev)
    await until(() => count(p.activity, 'rejected') === 4 && count(p.activity, 'unanswered') === 2)
    await until(() => answers.size === 2)
    // Well-formed requests are not limited by it.
    expect((await c.run({ text: 'still served', provider: p.identity.pubkey })).content).toBe('still served')
    // The dropped ones were never signed, so nothing more can arrive for them.
    expect(answers.size).toBe(2)
    expect(await c.pool.query([{ kinds: [JOB_FEEDBACK_KIND], '#e': bad.map((e) => e.id) }])).toHaveLength(2)
  })

  it('drops the echoed request from a result too large for a relay, and still delivers the whole output', async () => {
    // A relay that takes events up to 64 KiB, as strfry does by default.
    const relay = await ownRelay(undefined, RELAY_EVENT_CAP)
    const p = await provider({ relays: [relay.url], resultPublishDeadlineMs: 2000 })
    const c = await customer([relay.url])
    const text = 'word '.repeat(5000).trim()
    // Echoed request (25 kB) + its input tag (25 kB) + the output (50 kB) would be about 100 kB.
    const out = await c.run({ text, params: { repeat: '2' }, provider: p.identity.pubkey }, { timeoutMs: 10_000 })
    expect(out.content).toBe(`${text} ${text}`)
    const [result] = await c.pool.query([{ kinds: [resultKindFor(KIND)], '#e': [out.id] }])
    expect(result!.tags.some((t) => t[0] === 'request' || t[0] === 'i')).toBe(false)
    expect(result!.tags).toContainEqual(['e', out.id])
    expect(result!.tags).toContainEqual(['p', c.identity.pubkey])
    expect(Buffer.byteLength(JSON.stringify(result))).toBeLessThanOrEqual(MAX_RESULT_EVENT_BYTES)
  })

  it('fails an encrypted job whose output cannot fit a relay event, with an error saying so', async () => {
    const relay = await ownRelay(undefined, RELAY_EVENT_CAP)
    const p = await provider({ relays: [relay.url], resultPublishDeadlineMs: 2000 })
    const c = await customer([relay.url])
    // 50 kB of output: fine in the clear, about 76 kB once encrypted.
    const spec = { text: 'word '.repeat(1000).trim(), params: { repeat: '10' }, provider: p.identity.pubkey }
    await expect(c.run({ ...spec, encrypt: true }, { timeoutMs: 10_000 })).rejects.toThrow(/too large for a relay event/)
    expect(count(p.activity, 'result')).toBe(0)
    expect((await c.run(spec, { timeoutMs: 10_000 })).content).toBe(Array(10).fill(spec.text).join(' '))
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

  it('also publishes results to the relays the request names (a provider on the devnet may use loopback ones)', async () => {
    const [a, extra] = [await ownRelay(), await ownRelay()]
    const p = await provider({ relays: [a.url], privateRequestRelays: true })
    const c = await customer([a.url])
    const { event } = await rawRequest(c, { kind: KIND, content: '', tags: [['i', 'hint me', 'text'], ['relays', extra.url], ['p', p.identity.pubkey]] }, 500)
    const extraPool = await newPool([extra.url])
    let found = 0
    // The extra relay is sent to without waiting for it: look until it has the result.
    await until(() => found === 1, 5000, async () => {
      found = (await extraPool.query([{ kinds: [resultKindFor(KIND)], '#e': [event.id] }], { timeoutMs: 1000 })).length
    })
    expect(count(p.activity, 'relays-skipped')).toBe(0)
  })

  it('never connects to loopback or private hosts a request names, only to its own relays', async () => {
    const a = await ownRelay()
    // Stands for a service inside the provider's network: it counts every connection made to it.
    let connections = 0
    const inside = createTcpServer((sock) => {
      connections++
      sock.destroy()
    })
    await new Promise<void>((r) => inside.listen(0, '127.0.0.1', r))
    cleanup.push(() => new Promise((r) => inside.close(() => r(undefined))))
    const port = (inside.address() as { port: number }).port
    const sneaky = [`ws://127.0.0.1:${port}`, `ws://localhost:${port}/`, `ws://2130706433:${port}`, `wss://[::ffff:127.0.0.1]:${port}`, `ws://10.1.2.3:${port}`, `ws://169.254.169.254:${port}`]
    const p = await provider({ relays: [a.url] })
    const c = await customer([a.url])
    const { event } = await rawRequest(c, { kind: KIND, content: '', tags: [['i', 'where to?', 'text'], ['relays', a.url, ...sneaky], ['p', p.identity.pubkey]] }, 500)
    await until(() => count(p.activity, 'result') === 1 && count(p.activity, 'relays-skipped') === 1)
    // The customer still gets the result on the provider's own relay, which the request also named.
    expect(await c.pool.query([{ kinds: [resultKindFor(KIND)], '#e': [event.id] }])).toHaveLength(1)
    const skipped = p.activity.find((x): x is Extract<JobActivity, { type: 'relays-skipped' }> => x.type === 'relays-skipped')!
    expect(skipped.relays.map((r) => r.relay).sort()).toEqual(
      [`ws://127.0.0.1:${port}`, `ws://localhost:${port}`, `wss://[::ffff:7f00:1]:${port}`, `ws://10.1.2.3:${port}`, `ws://169.254.169.254:${port}`].sort(),
    )
    expect(connections).toBe(0)
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

  /** every mint process started here, stopped in afterAll even when the setup failed half way */
  const mints: RunningMint[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dvm-relay-paid-'))
    const funding = await startMint({ dataDir: join(dir, 'mint') })
    mints.push(funding)
    try {
      payer = new Wallet({ dataDir: join(dir, 'payer'), mintUrl: funding.url })
      await payer.load()
      await payer.fund(500, { pollMs: 100 })
    } finally {
      await funding.stop()
    }
    mint = await startMint({ dataDir: join(dir, 'mint'), port: funding.port, env: { FAKEWALLET_BRR: 'false' } })
    mints.push(mint)
  })
  afterAll(async () => {
    // stop() is a no-op for a mint already stopped.
    await Promise.all(mints.map((m) => m.stop()))
    if (dir) await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })
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
    // the customer can see the result before the provider's publish is acknowledged and logged
    await until(() => p.activity.some((a) => a.type === 'result'))
    expect(p.activity.map((a) => a.type)).toEqual(expect.arrayContaining(['payment-required', 'paid', 'result']))
  })

  it('refunds an invoice paid after its job gave up waiting, and forgets nothing across a restart', async () => {
    const wallet = await providerWallet('prov-late')
    const opts = { pricing: { perJob: 5 }, wallet, mintUrl: mint.url, paymentTimeoutMs: 1500, refundRetryMs: 200 }
    const first = await provider(opts)
    const c = await customer()
    let bolt11 = ''
    // The customer is shown the invoice but pays only after the provider stopped waiting.
    const hold = (b: string): Promise<void> => {
      bolt11 = b
      return new Promise(() => {})
    }
    await expect(c.run({ text: 'paid too late', provider: first.identity.pubkey, bidMsats: 5000 }, { pay: hold })).rejects.toThrow(/not paid in time/)
    // ... and while the service is down: the invoice is in its ledger, not in its memory.
    await first.service.stop()
    const before = (await payer.balance()).balance
    const melted = await payer.melt(bolt11)
    expect(melted.paid).toBe(true)
    const p = await provider({ ...opts, identity: first.identity })
    await until(() => p.activity.some((a) => a.type === 'refunded'), 15_000)
    expect((await wallet.balance()).balance).toBe(0)
    // The refund waits on the relay for the customer, who was no longer listening.
    const { refunds } = await findRefunds({ pool: c.pool, identity: c.identity, since: nowSeconds() - 120 })
    expect(refunds).toEqual([expect.objectContaining({ provider: first.identity.pubkey, msats: 5000 })])
    expect((await payer.receive(refunds[0]!.token)).amount).toBe(5)
    expect((await payer.balance()).balance).toBe(before - melted.feePaid)
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

  it('refuses a job as busy before taking its payment, never after', async () => {
    const wallet = await providerWallet('prov-busy')
    const gate = gatedProcessor()
    const p = await provider({ pricing: { perJob: 2 }, wallet, mintUrl: mint.url, processor: gate.processor, maxJobs: 1, maxQueued: 1, resultCache: false })
    const [c1, c2, c3] = [await customer(), await customer(), await customer()]
    const [t1, t2, t3] = [await payer.send(2), await payer.send(2), await payer.send(2)]
    const run = (c: Customer, text: string, cashu: string) => c.run({ text, provider: p.identity.pubkey, encrypt: true, params: { cashu } })
    const first = run(c1, 'first', t1)
    await until(() => count(p.activity, 'started') === 1)
    // The second job is paid and waits for the one slot: it holds its place in the queue.
    const second = run(c2, 'second', t2)
    await until(() => count(p.activity, 'paid') === 2)
    await expect(run(c3, 'third', t3)).rejects.toThrow(/busy/)
    gate.open()
    expect((await first).content).toBe('first')
    expect((await second).content).toBe('second')
    // Paid for the two jobs it ran, not for the one it refused.
    expect((await wallet.balance()).balance).toBe(4)
    expect(count(p.activity, 'paid')).toBe(2)
    // The refused token was never touched: its owner can still spend it.
    expect((await payer.receive(t3)).amount).toBe(2)
  })

  /** The provider's wallet reaches the mint through this, so the test sees every quote check it makes. */
  async function countingMint(): Promise<{ url: string; quoteChecks: () => number }> {
    const proxy = httpProxy.createProxyServer({ target: mint.url })
    let checks = 0
    const server = createHttpServer((req, res) => {
      if (req.method === 'GET' && req.url?.startsWith('/v1/mint/quote/bolt11/')) checks++
      proxy.web(req, res, {}, () => {
        if (!res.headersSent) res.writeHead(502)
        res.end()
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    cleanup.push(() => {
      proxy.close()
      server.closeAllConnections()
      return new Promise((r) => server.close(() => r(undefined)))
    })
    return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, quoteChecks: () => checks }
  }

  /** A provider whose invoice is never paid, with a customer that bid but never pays, and a mint that counts the quote checks. */
  async function unpaidInvoice(name: string) {
    const m = await countingMint()
    const wallet = new Wallet({ dataDir: join(dir, name), mintUrl: m.url })
    await wallet.load()
    const payments = new WalletJobPayments({ mintUrl: m.url, wallet, pollMs: POLL_MS, invoiceTimeoutMs: 60_000 })
    const p = await provider({ pricing: { perJob: 5 }, payments, paymentTimeoutMs: 60_000 })
    const c = await customer()
    const ctl = new AbortController()
    const running = c.run({ text: 'never paid', provider: p.identity.pubkey, bidMsats: 5000 }, { signal: ctl.signal, pay: () => new Promise<void>(() => {}), timeoutMs: 20_000 })
    running.catch(() => {})
    await until(() => count(p.activity, 'payment-required') === 1)
    // The invoice is being watched.
    await until(() => m.quoteChecks() >= 2)
    return { m, p, ctl, running }
  }

  const POLL_MS = 50

  it('stops watching an unpaid invoice once the customer cancels the job', async () => {
    const { m, p, ctl, running } = await unpaidInvoice('prov-cancel')
    ctl.abort()
    await expect(running).rejects.toThrow(/cancelled/)
    await until(() => count(p.activity, 'cancelled') === 1)
    const checks = m.quoteChecks()
    // Watching for absence: a live poller would check about ten times in this window.
    await sleep(POLL_MS * 10)
    expect(m.quoteChecks()).toBe(checks)
  })

  it('stops watching an unpaid invoice when the provider stops, within its grace period', async () => {
    const { m, p, running } = await unpaidInvoice('prov-stop')
    const t0 = Date.now()
    await p.service.stop()
    expect(Date.now() - t0).toBeLessThan(3000)
    await expect(running).rejects.toThrow(/shutting down/)
    const checks = m.quoteChecks()
    await sleep(POLL_MS * 10)
    expect(m.quoteChecks()).toBe(checks)
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

  it('without offline verification, swaps proofs locked to its payment key into its wallet; a lock to another key is refused untouched', async () => {
    const paymentKey = await loadOrCreatePaymentKey(join(dir, 'prov-swap-locked'))
    const wallet = await providerWallet('prov-swap-locked-wallet')
    const p = await provider({ pricing: { perJob: 3 }, wallet, mintUrl: mint.url, paymentPrivkey: paymentKey.privkey })
    const refund = await loadOrCreatePaymentKey(join(dir, 'payer-refund'))
    const lockTo = async (payee: string): Promise<string> =>
      encodeToken(mint.url, await payer.lockForPayee({ amount: 3, payeePubkey: payee, locktime: nowSeconds() + 3600, refundPubkey: refund.pubkey }))
    const c = await customer()
    const out = await c.run({ text: 'locked, swapped', provider: p.identity.pubkey, params: { cashu: await lockTo(paymentKey.pubkey) } })
    expect(out.content).toBe('locked, swapped')
    expect((await wallet.balance()).balance).toBe(3)
    const someoneElse = await loadOrCreatePaymentKey(join(dir, 'someone-else'))
    const elsewhere = await lockTo(someoneElse.pubkey)
    await expect(c.run({ text: 'not yours', provider: p.identity.pubkey, params: { cashu: elsewhere } })).rejects.toThrow(/locked to another key/)
    expect((await wallet.balance()).balance).toBe(3)
    // Untouched: the key it is locked to can still spend it.
    const theirs = await providerWallet('someone-else-wallet')
    expect(await theirs.receive(elsewhere, { privkey: someoneElse.privkey })).toMatchObject({ amount: 3 })
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
    // One proof twice: the first copy is taken, the second refused as a replay. What was
    // taken is owed back (the wallet is empty until the held proofs are redeemed).
    const [a, b] = decodeToken(await lock(2)).proofs
    const doubled = c.run({ text: 'doubled', provider: p.identity.pubkey, params: { cashu: encodeToken(mint.url, [a!, b!, b!]) } })
    await expect(doubled).rejects.toThrow(/a proof in the token was refused: .*already received; the 2 sats paid are owed back to you/)
    const id = c.events.filter((e) => e.type === 'published').at(-1)!.id
    expect(store.counts({ sessionId: id }).held).toBe(2)
    expect(p.activity).toContainEqual(expect.objectContaining({ type: 'refund-owed', id, sats: 2 }))
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

  it('JobQueue keeps a reserved place: a reserved job is never refused, others are once places are promised', async () => {
    const q = new JobQueue(1, 1)
    let release!: () => void
    const first = q.run(() => new Promise<string>((r) => (release = () => r('first'))))
    const slot = q.reserve()!
    expect(slot).toBeDefined()
    expect(q.accepting).toBe(false)
    expect(q.reserve()).toBeUndefined()
    await expect(q.run(async () => 'unreserved')).rejects.toBeInstanceOf(QueueFullError)
    const reserved = q.run(async () => 'reserved', undefined, slot)
    release()
    expect(await first).toBe('first')
    expect(await reserved).toBe('reserved')
    // A place given back unused is free again; giving it back twice changes nothing.
    const spare = q.reserve()!
    spare.release()
    spare.release()
    expect(q.reservedSlots).toBe(0)
    expect(q.active).toBe(0)
  })

  it('TokenBucket gives `burst` at once, then `perMinute`', () => {
    const b = new TokenBucket({ perMinute: 60, burst: 2 }, 0)
    expect([b.take(0), b.take(0), b.take(0)]).toEqual([true, true, false])
    expect(b.take(999)).toBe(false)
    expect(b.take(1000)).toBe(true)
  })

  it('RelayTargets skips non-public hosts and names that resolve to them, caps extras, and keeps own relays', async () => {
    const dns: Record<string, string[]> = { 'relay.example.com': ['203.0.113.7'], 'rebind.example.com': ['203.0.113.8', '10.0.0.5'], 'v6.example.com': ['fd00::1'] }
    const lookup = async (h: string): Promise<string[]> => {
      if (!dns[h]) throw new Error('ENOTFOUND')
      return dns[h]!
    }
    const own = ['ws://127.0.0.1:7777']
    const targets = new RelayTargets({ ownRelays: () => own, allowPrivate: false, lookup, maxExtra: 5 })
    const choice = await targets.choose(['ws://127.0.0.1:7777/', 'wss://relay.example.com', 'wss://rebind.example.com', 'wss://v6.example.com', 'ws://[fe80::1]', 'wss://nowhere.example.com', 'wss://a.example.com'])
    expect(choice.use).toEqual(['wss://relay.example.com'])
    const why = Object.fromEntries(choice.skipped.map((s) => [s.relay, s.reason]))
    expect(why['wss://rebind.example.com']).toMatch(/non-public/)
    expect(why['wss://v6.example.com']).toMatch(/non-public/)
    expect(why['ws://[fe80::1]']).toMatch(/not a public address/)
    expect(why['wss://nowhere.example.com']).toMatch(/does not resolve/)
    expect(why['wss://a.example.com']).toMatch(/more than 5 relays/)
    // On the devnet loopback relays are fine.
    const devnetTargets = new RelayTargets({ ownRelays: () => own, allowPrivate: true, lookup })
    expect((await devnetTargets.choose(['ws://127.0.0.1:8888'])).use).toEqual(['ws://127.0.0.1:8888'])
    for (const host of ['localhost', 'foo.localhost', '127.9.9.9', '[::1]', '[::ffff:a00:1]', '172.20.1.1', '192.168.1.1', '169.254.1.1', '0.0.0.0', '[fc00::1]', '[fe80::2]']) {
      expect(hostRefusal(host), host).toBeDefined()
    }
    for (const host of ['8.8.8.8', '[2001:4860:4860::8888]', 'relay.damus.io']) expect(hostRefusal(host), host).toBeUndefined()
  })

  it('result events stay within what relays take: the echo goes first, and the size is known before encrypting', () => {
    const a = newIdentity()
    const b = newIdentity()
    for (const n of [1, 32, 33, 300, 5000, 40_000, 49_999]) {
      expect(encryptFor(a.secretKey, b.pubkey, 'x'.repeat(n), 'nip44')).toHaveLength(ciphertextChars(n, 'nip44'))
      expect(encryptFor(a.secretKey, b.pubkey, 'x'.repeat(n), 'nip04')).toHaveLength(ciphertextChars(n, 'nip04'))
    }
    const big = { kind: 6050, created_at: nowSeconds(), content: 'o'.repeat(40_000), tags: [['request', 'r'.repeat(30_000)], ['e', 'a'.repeat(64)], ['p', 'b'.repeat(64)], ['i', 'q'.repeat(20_000), 'text']] }
    const fit = fitResultEvent(big)
    expect(fit.ok && fit.echoDropped).toBe(true)
    if (fit.ok) expect(signedEventBytes(fit.template)).toBeLessThanOrEqual(MAX_RESULT_EVENT_BYTES)
    // Escapes count: 40,000 newlines are 80,000 bytes of JSON.
    expect(fitResultEvent({ ...big, content: '\n'.repeat(40_000) }).ok).toBe(false)
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
