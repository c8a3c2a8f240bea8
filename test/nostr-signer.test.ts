import { afterEach, describe, expect, it } from 'vitest'
import type { Worker } from 'node:worker_threads'
import { generateSecretKey, getPublicKey } from 'nostr-tools/pure'
import { loadNostrCrypto, type Event, type EventTemplate, type NostrCrypto } from '../src/nostr/events.js'
import { threadedSigner, type EventSigner, type ThreadedSignerOptions } from '../src/nostr/signer.js'
import { tsArgs, useProcs } from './helpers/procs.js'

const procs = useProcs()
const cleanup: Array<() => unknown> = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

/** Every way a request may legitimately end without a signature; anything else is a bug. */
const CLEAR_REJECTION = /^(the signer is closed; nothing more can be signed|the signing thread did not finish within \d+ ms of close; request abandoned)$/

let crypto: NostrCrypto
async function signer(options: ThreadedSignerOptions = {}): Promise<{ signer: EventSigner; pubkey: string }> {
  crypto ??= await loadNostrCrypto()
  const sk = generateSecretKey()
  const notes: string[] = []
  const s = await threadedSigner(crypto, sk, (line) => notes.push(line), options)
  cleanup.push(() => s.close())
  // A fallback to the main thread would make every test below pass without testing the thread.
  expect(s.threaded, notes.join('\n')).toBe(true)
  return { signer: s, pubkey: getPublicKey(sk) }
}

const template = (i: number): EventTemplate => ({ kind: 1, created_at: 1_700_000_000 + i, tags: [['n', String(i)]], content: `request ${i}` })

type Outcome = { signed: Event } | { error: string }
function outcome(p: Promise<Event>): Promise<Outcome> {
  return p.then((signed) => ({ signed }), (err: Error) => ({ error: err.message }))
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
    }),
  ])
}

/** Valid, by this key, for this template. */
function expectSignedFor(ev: Event, pubkey: string, i: number): void {
  expect(ev).toMatchObject({ pubkey, kind: 1, created_at: 1_700_000_000 + i, content: `request ${i}`, tags: [['n', String(i)]] })
  expect(crypto.verify(ev)).toBe(true)
}

describe('threaded event signer', () => {
  it('signs everything asked before close, then refuses with a clear error', async () => {
    const { signer: s, pubkey } = await signer()
    const before = Array.from({ length: 50 }, (_, i) => outcome(s.sign(template(i))))
    const closed = s.close()
    const after = outcome(s.sign(template(99)))
    await withTimeout(closed, 10_000, 'close')
    const results = await withTimeout(Promise.all(before), 10_000, 'requests made before close')
    results.forEach((r, i) => {
      expect(r, `request ${i}`).toHaveProperty('signed')
      expectSignedFor((r as { signed: Event }).signed, pubkey, i)
    })
    expect(await after).toEqual({ error: 'the signer is closed; nothing more can be signed' })
    // A second close is harmless.
    await withTimeout(s.close(), 1000, 'second close')
  })

  it('starts and stops signers repeatedly with requests in flight; each request is signed or refused clearly', async () => {
    let signed = 0
    let refused = 0
    for (let c = 0; c < 12; c++) {
      const { signer: s, pubkey } = await signer()
      const asked = Array.from({ length: 30 }, (_, i) => outcome(s.sign(template(i))))
      // Close with the batch not yet sent, sent and unanswered, or answered.
      if (c % 3 === 1) await new Promise((r) => setImmediate(r))
      if (c % 3 === 2) await asked[0]
      const closed = s.close()
      const late = outcome(s.sign(template(30)))
      await withTimeout(closed, 10_000, `close in cycle ${c}`)
      const results = await withTimeout(Promise.all([...asked, late]), 10_000, `requests in cycle ${c}`)
      results.forEach((r, i) => {
        if ('signed' in r) {
          expectSignedFor(r.signed, pubkey, i)
          signed++
        } else {
          expect(r.error, `cycle ${c}, request ${i}`).toMatch(CLEAR_REJECTION)
          refused++
        }
      })
      // Asked before close: signed. Asked after: refused.
      expect(results.slice(0, 30).every((r) => 'signed' in r), `cycle ${c}`).toBe(true)
      expect(results[30]).toEqual({ error: 'the signer is closed; nothing more can be signed' })
    }
    expect({ signed, refused }).toEqual({ signed: 12 * 30, refused: 12 })
  })

  it('a thread that does not finish in time on close is stopped, and what it had not answered fails with the reason', async () => {
    const { signer: s, pubkey } = await signer({ closeTimeoutMs: 1 })
    // Far more work than a millisecond: the close bound is what ends it.
    const asked = Array.from({ length: 20_000 }, (_, i) => outcome(s.sign(template(i))))
    await withTimeout(s.close(), 10_000, 'close of a busy thread')
    const results = await withTimeout(Promise.all(asked), 10_000, 'requests')
    let abandoned = 0
    results.forEach((r, i) => {
      if ('signed' in r) expectSignedFor(r.signed, pubkey, i)
      else {
        expect(r.error).toBe('the signing thread did not finish within 1 ms of close; request abandoned')
        abandoned++
      }
    })
    expect(abandoned).toBeGreaterThan(0)
  })

  it('a signing thread that crashes fails its requests with the reason, and the process carries on', async () => {
    const { signer: s } = await signer()
    const asked = Array.from({ length: 5 }, (_, i) => outcome(s.sign(template(i))))
    // Fault injection: a message the thread cannot handle makes it throw outside
    // its per-request guard, so it dies with an 'error' event.
    ;(s as unknown as { worker: Worker }).worker.postMessage('not a batch')
    const results = await withTimeout(Promise.all(asked), 10_000, 'requests to a crashed thread')
    for (const r of results) expect(r).toEqual({ error: expect.stringMatching(/^the signing thread crashed: /) })
    // Later requests are refused with the same reason instead of hanging.
    expect(await withTimeout(outcome(s.sign(template(9))), 1000, 'request after the crash')).toEqual({ error: expect.stringMatching(/^the signing thread crashed: /) })
    await withTimeout(s.close(), 1000, 'close after the crash')
  })

  it('churning signers in a process of its own leaves it alive to exit cleanly, with no uncaught error', async () => {
    // No handlers there: an uncaught exception, an unhandled rejection or a
    // crashed thread would end it with a non-zero code or a signal.
    const proc = procs.spawn(process.execPath, tsArgs('test/fixtures/signer-churn.ts', '24', '40'), { timeoutMs: 60_000 })
    const exit = await proc.exited
    expect(exit, proc.output()).toEqual({ code: 0, signal: null, timedOut: false })
    expect(proc.stderr).toBe('')
    const summary = JSON.parse(proc.stdout) as { cycles: number; threaded: number; signed: number; invalid: number; rejected: Record<string, number> }
    expect(summary).toMatchObject({ cycles: 24, threaded: 24, invalid: 0 })
    expect(summary.signed).toBeGreaterThan(0)
    for (const reason of Object.keys(summary.rejected)) expect(reason).toMatch(CLEAR_REJECTION)
    // Three requests after each close, all refused.
    expect(summary.rejected['the signer is closed; nothing more can be signed']).toBe(24 * 3)
  }, 90_000)
})
