import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateSecretKey } from 'nostr-tools/pure'
import { devnet } from './helpers/devnet.js'
import { tsArgs, useProcs } from './helpers/procs.js'
import { identityFromSecret, type Identity } from '../src/identity/nostr-key.js'
import { EchoProcessor } from '../src/processors/echo.js'
import type { Processor } from '../src/processors/types.js'
import { loadNostrCrypto, type NostrCrypto } from '../src/nostr/events.js'
import { decryptFrom } from '../src/nostr/encryption.js'
import { JOB_FEEDBACK_KIND, parseFeedback, type RefundTag } from '../src/nostr/nip90.js'
import { RelayPool } from '../src/nostr/relay-client.js'
import { RelayJobService, type JobActivity, type RelayJobServiceOptions } from '../src/provider/relay-jobs.js'
import { RefundLedger, REFUND_LEDGER_FILE, type RefundEntry } from '../src/provider/refund-ledger.js'
import { Refunds } from '../src/provider/refunds.js'
import { WalletJobPayments, type JobPayments } from '../src/provider/job-payments.js'
import { runRelayJob, type CustomerEvent, type JobSpec, type PayInvoice } from '../src/customer/relay-job.js'
import { Wallet } from '../src/payments/wallet.js'
import { until } from './helpers/until.js'
import { startRelay } from '../src/devnet/relay.js'
import { failingProcessor, hangingProcessor } from './helpers/ending-processors.js'

/**
 * Refunds of paid relay jobs that end without a result (docs/nip90.md,
 * "Refunds"): against the devnet's real relay and nutshell mint. Jobs are paid
 * with ecash in an encrypted request, so the customer's wallet balance shows
 * exactly what left it and what came back.
 */
const KIND = 5050
const PRICE = 5
const procs = useProcs()
const cleanup: Array<() => unknown> = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

let crypto: NostrCrypto
let dir: string
let payer: Wallet

beforeAll(async () => {
  crypto = await loadNostrCrypto()
  dir = await mkdtemp(join(tmpdir(), 'dvm-refunds-'))
  payer = new Wallet({ dataDir: join(dir, 'payer'), mintUrl: devnet().mint })
  await payer.load()
  // The devnet mint pays its own invoices.
  await payer.fund(200, { pollMs: 100 })
})
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })
})

const balance = async (w: Wallet): Promise<number> => (await w.balance()).balance
const receiveRefund = async (token: string): Promise<number> => (await payer.receive(token)).amount

async function newPool(relays = devnet().relays): Promise<RelayPool> {
  const pool = new RelayPool({ crypto, relays, reconnectMinMs: 50, reconnectMaxMs: 300, publishTimeoutMs: 5000 })
  cleanup.push(() => pool.close())
  await pool.waitConnected(3000)
  return pool
}

async function providerWallet(name: string): Promise<Wallet> {
  const w = new Wallet({ dataDir: join(dir, name), mintUrl: devnet().mint })
  await w.load()
  return w
}

interface Provider {
  service: RelayJobService
  identity: Identity
  activity: JobActivity[]
  logs: string[]
}

async function provider(opts: Partial<RelayJobServiceOptions> & { identity?: Identity } = {}): Promise<Provider> {
  const identity = opts.identity ?? identityFromSecret(generateSecretKey())
  const activity: JobActivity[] = []
  const logs: string[] = []
  const service = new RelayJobService({
    identity,
    relays: await newPool(),
    kinds: [KIND],
    processor: new EchoProcessor(),
    crypto,
    rateLimit: false,
    resultCache: false,
    signingThread: false,
    pricing: { perJob: PRICE },
    mintUrl: devnet().mint,
    // Other test files publish requests to anyone on this relay, and the devnet mint
    // pays every invoice at once: answering them would put sats in these wallets.
    acceptUnaddressed: false,
    ...opts,
    onActivity: (a) => activity.push(a),
    log: (l) => logs.push(l),
  })
  await service.start()
  cleanup.push(() => service.stop())
  return { service, identity, activity, logs }
}

interface Customer {
  identity: Identity
  pool: RelayPool
  events: CustomerEvent[]
  run(spec: Partial<JobSpec> & { text?: string }, extra?: { signal?: AbortSignal; pay?: PayInvoice; timeoutMs?: number }): ReturnType<typeof runRelayJob>
}

/** `relays`: where the customer publishes and reads; its requests name them all in their `relays` tag. */
async function customer(relays?: string[]): Promise<Customer> {
  const identity = identityFromSecret(generateSecretKey())
  const pool = await newPool(relays)
  const events: CustomerEvent[] = []
  return {
    identity,
    pool,
    events,
    run: (spec, extra = {}) =>
      runRelayJob(
        { kind: KIND, inputs: [{ type: 'text', value: spec.text ?? 'refund me' }], ...spec },
        {
          identity,
          pool,
          crypto,
          timeoutMs: extra.timeoutMs ?? 20_000,
          receiveRefund,
          onEvent: (e) => events.push(e),
          ...(extra.signal ? { signal: extra.signal } : {}),
          ...(extra.pay ? { pay: extra.pay } : {}),
        },
      ),
  }
}

/** A job paid with ecash, so only an encrypted request may carry it. */
function paidSpec(p: Provider, token: string, text = 'refund me'): Partial<JobSpec> & { text: string } {
  return { text, provider: p.identity.pubkey, encrypt: true, params: { cashu: token } }
}


async function ledgerEntries(dataDir: string): Promise<RefundEntry[]> {
  return (JSON.parse(await readFile(join(dataDir, REFUND_LEDGER_FILE), 'utf8')) as { entries: RefundEntry[] }).entries
}

/** The error feedback events for a request that carry a refund, as any reader of the relay sees them. */
async function refundEvents(pool: RelayPool, requestId: string) {
  const events = await pool.query([{ kinds: [JOB_FEEDBACK_KIND], '#e': [requestId] }])
  return events.filter((e) => e.tags.some((t) => t[0] === 'refund'))
}

describe('refunds of paid relay jobs', () => {
  it('gives the payment back when the processor fails: both wallets end where they started', async () => {
    const wallet = await providerWallet('prov-fail')
    const p = await provider({ wallet, processor: failingProcessor('the model crashed') })
    const c = await customer()
    const before = await balance(payer)
    const token = await payer.send(PRICE)
    const err = await c.run(paidSpec(p, token)).then(
      () => undefined,
      (e: Error) => e,
    )
    expect(err?.message).toBe(`the provider reported an error: the job failed: the model crashed; ${PRICE} sats were refunded to your wallet`)
    expect(c.events).toContainEqual(expect.objectContaining({ type: 'refunded', sats: PRICE, amountMsats: PRICE * 1000 }))
    expect(await balance(payer)).toBe(before)
    expect(await balance(wallet)).toBe(0)
    await until(() => p.activity.some((a) => a.type === 'refunded'))
    // Settled in the ledger, without the token.
    const [entry] = await ledgerEntries(wallet.dataDir)
    expect(entry).toMatchObject({ state: 'refunded', sats: PRICE, reason: 'the job failed: the model crashed' })
    expect(entry!.token).toBeUndefined()
  })

  it('refunds a job whose output is too large for a relay event', async () => {
    const wallet = await providerWallet('prov-large')
    const echo = new EchoProcessor()
    const verbose: Processor = {
      start: () => echo.start(),
      describe: () => echo.describe(),
      async *run() {
        for (let i = 0; i < 20; i++) yield 'x'.repeat(5000)
      },
    }
    const p = await provider({ wallet, processor: verbose })
    const c = await customer()
    const before = await balance(payer)
    await expect(c.run(paidSpec(p, await payer.send(PRICE)))).rejects.toThrow(/too large for a relay event.*; 5 sats were refunded to your wallet$/)
    expect(await balance(payer)).toBe(before)
    expect(await balance(wallet)).toBe(0)
  })

  it('refunds a job the customer cancels after paying', async () => {
    const wallet = await providerWallet('prov-cancel')
    const p = await provider({ wallet, processor: hangingProcessor() })
    const c = await customer()
    const before = await balance(payer)
    const ctl = new AbortController()
    const running = c.run(paidSpec(p, await payer.send(PRICE)), { signal: ctl.signal })
    await until(() => c.events.some((e) => e.type === 'feedback' && e.status === 'processing'))
    expect(await balance(payer)).toBe(before - PRICE)
    ctl.abort()
    await expect(running).rejects.toThrow(`cancelled; ${PRICE} sats were refunded to your wallet`)
    expect(await balance(payer)).toBe(before)
    expect(await balance(wallet)).toBe(0)
    expect(p.activity.map((a) => a.type)).toEqual(expect.arrayContaining(['cancelled', 'refunded']))
  })

  it('refunds a job cut off by the provider stopping', async () => {
    const wallet = await providerWallet('prov-stop')
    const p = await provider({ wallet, processor: hangingProcessor() })
    const c = await customer()
    const before = await balance(payer)
    const running = c.run(paidSpec(p, await payer.send(PRICE)))
    running.catch(() => {})
    await until(() => p.activity.some((a) => a.type === 'started'))
    await p.service.stop()
    await expect(running).rejects.toThrow(`the provider is shutting down; ${PRICE} sats were refunded to your wallet`)
    expect(await balance(payer)).toBe(before)
  })

  it('refunds an invoice the mint counts paid although the job was stopped before its bolt11 went out', async () => {
    const wallet = await providerWallet('prov-instant')
    const real = new WalletJobPayments({ mintUrl: devnet().mint, wallet, pollMs: 100 })
    let stop = (): void => undefined
    const payments: JobPayments = {
      acceptToken: (token, min, id) => real.acceptToken(token, min, id),
      // The provider stops in the instant the mint answers with the invoice.
      invoice: async (sats, signal) => {
        const invoice = await real.invoice(sats, signal)
        stop()
        return invoice
      },
    }
    const p = await provider({ wallet, payments })
    stop = () => void p.service.stop()
    const c = await customer()
    const before = await balance(payer)
    await expect(c.run({ text: 'stopped at the invoice', provider: p.identity.pubkey, bidMsats: PRICE * 1000 }, { pay: async () => {} })).rejects.toThrow(
      `the provider is shutting down; ${PRICE} sats were refunded to your wallet`,
    )
    expect(c.events.some((e) => e.type === 'payment-required')).toBe(false)
    // The devnet mint settles its own invoices: the provider was paid although nobody saw the bolt11, and gave it back.
    expect(await balance(payer)).toBe(before + PRICE)
    expect(await balance(wallet)).toBe(0)
  })

  it('keeps the token from anyone but the customer, even for a plain request', async () => {
    const wallet = await providerWallet('prov-plain')
    const p = await provider({ wallet, processor: failingProcessor('no luck') })
    const c = await customer()
    const before = await balance(payer)
    // A plain request paid by invoice (the devnet mint settles its own invoices).
    await expect(c.run({ text: 'plain and paid', provider: p.identity.pubkey, bidMsats: PRICE * 1000 }, { pay: async () => {} })).rejects.toThrow(
      `no luck; ${PRICE} sats were refunded to your wallet`,
    )
    const requestId = c.events.find((e) => e.type === 'published')!.id
    // What anyone reading the relay sees.
    const observer = await newPool()
    const [ev, ...more] = await refundEvents(observer, requestId)
    expect(more).toHaveLength(0)
    expect(JSON.stringify(ev)).not.toMatch(/cashu[AB]/)
    const tag = parseFeedback(ev!).ok ? (parseFeedback(ev!) as { value: { refund?: RefundTag } }).value.refund! : undefined
    expect(tag?.msats).toBe(PRICE * 1000)
    const stranger = identityFromSecret(generateSecretKey())
    expect(() => decryptFrom(stranger.secretKey, p.identity.pubkey, tag!.ciphertext)).toThrow(/cannot decrypt/)
    expect(decryptFrom(c.identity.secretKey, p.identity.pubkey, tag!.ciphertext).plaintext).toMatch(/^cashuB/)
    // The refund came into the customer's wallet (the invoice was the devnet mint's own gift).
    expect(await balance(payer)).toBe(before + PRICE)
  })

  it('never refunds twice: a provider killed mid-job refunds on restart, also to the relays the request named, and a further restart sends nothing', async () => {
    const provDir = join(dir, 'prov-crash')
    // Spare sats in the provider's wallet: a second refund would find the money to be paid from.
    const pw = new Wallet({ dataDir: provDir, mintUrl: devnet().mint })
    await pw.load()
    await pw.receive(await payer.send(10))
    const sk = generateSecretKey()
    const identity = identityFromSecret(sk)
    const spawn = () =>
      procs.spawn(process.execPath, tsArgs('test/fixtures/refund-provider.ts', provDir, devnet().relays[0]!, devnet().mint, Buffer.from(sk).toString('hex')), { timeoutMs: 40_000 })

    // The customer also reads a relay the provider does not use; its request names both.
    const own = await startRelay({ log: () => {} })
    cleanup.push(() => own.stop())
    const first = spawn()
    await first.waitFor(/"type":"ready"/)
    const c = await customer([devnet().relays[0]!, own.url])
    const before = await balance(payer)
    const running = c.run({ text: 'die mid-job', provider: identity.pubkey, encrypt: true, params: { cashu: await payer.send(PRICE) } }, { timeoutMs: 40_000 })
    running.catch(() => {})
    await first.waitFor(/"type":"started"/)
    first.signal('SIGKILL', true)
    await first.exited
    expect((await ledgerEntries(provDir)).map((e) => e.state)).toEqual(['paid'])
    expect(await balance(payer)).toBe(before - PRICE)

    // Restarted on the same data dir: the job it was running is owed back.
    const second = spawn()
    await second.waitFor(/"type":"refunded"/)
    await expect(running).rejects.toThrow(`the provider stopped before the job finished; ${PRICE} sats were refunded to your wallet`)
    await second.stop()
    expect(await balance(payer)).toBe(before)

    const third = spawn()
    await third.waitFor(/"type":"ready"/)
    await sleep(500)
    await third.stop()
    expect(third.stdout).not.toMatch(/refund/)
    const requestId = c.events.find((e) => e.type === 'published')!.id
    expect(await refundEvents(c.pool, requestId)).toHaveLength(1)
    // The restarted provider had only its ledger to go by, and still published there.
    expect(await refundEvents(await newPool([own.url]), requestId)).toHaveLength(1)
    expect(await balance(pw)).toBe(10)
    expect((await ledgerEntries(provDir)).map((e) => e.state)).toEqual(['refunded'])
  })
})

describe('the refund ledger', () => {
  it('asks the mint about at most 50 unpaid invoices per pass, taking turns; one paid late becomes owed, an expired one is forgotten', async () => {
    const refunds = new Refunds({ ledger: await RefundLedger.open(join(dir, 'late-invoices')), wallet: undefined, secretKey: generateSecretKey(), log: () => undefined })
    const customer = identityFromSecret(generateSecretKey()).pubkey
    const ids = Array.from({ length: 120 }, (_, i) => i.toString(16).padStart(64, '0'))
    for (const [i, id] of ids.entries()) await refunds.invoiced({ id, customer, scheme: 'nip44' }, PRICE, `q${i}`, undefined)
    const asked = new Set<string>()
    let perPass = 0
    const check = async (quote: string): Promise<'paid' | 'unpaid' | 'expired'> => {
      asked.add(quote)
      perPass++
      return quote === 'q7' ? 'paid' : quote === 'q8' ? 'expired' : 'unpaid'
    }
    for (let pass = 0; pass < 5; pass++) {
      perPass = 0
      // the job of q0 is still running: its own watch decides
      await refunds.lateInvoices(check, (id) => id === ids[0])
      expect(perPass).toBeLessThanOrEqual(50)
    }
    expect(asked.has('q0')).toBe(false)
    expect([...asked].length).toBe(119)
    const entries = await ledgerEntries(join(dir, 'late-invoices'))
    expect(entries.find((e) => e.id === ids[7])).toMatchObject({ state: 'owed', reason: 'the invoice was paid after the job had ended' })
    expect(entries.find((e) => e.id === ids[8])).toBeUndefined()
    expect(entries.filter((e) => e.state === 'invoiced')).toHaveLength(118)
  })

  it('a delivered job leaves nothing owed, whether its entry reads paid or still invoiced', async () => {
    const ledger = await RefundLedger.open(join(dir, 'delivered'))
    const customer = identityFromSecret(generateSecretKey()).pubkey
    await ledger.invoiced({ id: 'a'.repeat(64), customer, sats: PRICE, scheme: 'nip44', quote: 'qa' })
    await ledger.paid({ id: 'a'.repeat(64), customer, sats: PRICE, scheme: 'nip44' })
    // the payment was made but its own record could not be written: the entry still reads invoiced
    await ledger.invoiced({ id: 'b'.repeat(64), customer, sats: PRICE, scheme: 'nip44', quote: 'qb' })
    expect(ledger.inState('paid', 'invoiced').map((e) => e.state)).toEqual(['paid', 'invoiced'])
    await ledger.delivered('a'.repeat(64))
    await ledger.delivered('b'.repeat(64))
    expect(await ledgerEntries(join(dir, 'delivered'))).toEqual([])
  })

  it('keeps a refund the wallet cannot pay yet, and publishes one token however often it is retried', async () => {
    const provDir = join(dir, 'ledger')
    const wallet = await providerWallet('ledger')
    const provider = identityFromSecret(generateSecretKey())
    const cust = identityFromSecret(generateSecretKey())
    const logs: string[] = []
    const open = async () => new Refunds({ ledger: await RefundLedger.open(provDir), wallet, secretKey: provider.secretKey, log: (l) => logs.push(l) })
    const id = 'ab'.repeat(32)

    let refunds = await open()
    await refunds.paid({ id, customer: cust.pubkey, scheme: 'nip44' }, PRICE)
    // The payment went elsewhere (say, locked proofs not redeemed yet): the wallet is empty.
    const out = await refunds.settle(id, 'the job failed: boom')
    expect(out.tag).toBeUndefined()
    expect(out.note).toMatch(/5 sats paid are owed back to you/)
    expect(logs.join('\n')).toMatch(/REFUND OWED: job abab.* was paid 5 sats and failed \(the job failed: boom\)/)
    // The obligation is on disk, with what went wrong for the operator.
    const [owed] = await ledgerEntries(provDir)
    expect(owed).toMatchObject({ state: 'owed', attempts: 1 })
    expect(owed!.lastError).toBeTruthy()

    // Reopened (a restart), with money in the wallet: the first publish reaches no relay.
    await wallet.receive(await payer.send(12))
    refunds = await open()
    const published: RefundTag[] = []
    await refunds.retry(async (_e, tag) => (published.push(tag), false))
    expect((await ledgerEntries(provDir))[0]).toMatchObject({ state: 'issued' })
    refunds = await open()
    await refunds.retry(async (_e, tag) => (published.push(tag), true))
    expect((await ledgerEntries(provDir))[0]).toMatchObject({ state: 'refunded' })
    // Restarted once more: nothing left to do.
    refunds = await open()
    await refunds.retry(async (_e, tag) => (published.push(tag), true))

    expect(published).toHaveLength(2)
    const tokens = published.map((t) => decryptFrom(cust.secretKey, provider.pubkey, t.ciphertext).plaintext)
    expect(tokens[0]).toBe(tokens[1])
    expect(await balance(wallet)).toBe(12 - PRICE)
    expect((await payer.receive(tokens[0]!)).amount).toBe(PRICE)
  })

  it('refuses to start over an unreadable ledger rather than forget what it owes', async () => {
    const d = await mkdtemp(join(tmpdir(), 'dvm-ledger-'))
    cleanup.push(() => rm(d, { recursive: true, force: true }))
    const { writeFile } = await import('node:fs/promises')
    await writeFile(join(d, REFUND_LEDGER_FILE), '{"v":1,"entries":[')
    await expect(RefundLedger.open(d)).rejects.toThrow(/refunds owed to customers, so it is not overwritten/)
  })
})
