import { afterEach, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateSecretKey } from 'nostr-tools/pure'
import { devnet, devnetDir } from './helpers/devnet.js'
import { tsArgs, useProcs, type Proc } from './helpers/procs.js'
import { identityFromSecret, loadOrCreateIdentity, type Identity } from '../src/identity/nostr-key.js'
import { EchoProcessor } from '../src/processors/echo.js'
import { loadNostrCrypto } from '../src/nostr/events.js'
import { RelayPool } from '../src/nostr/relay-client.js'
import { RelayJobService, type JobActivity, type RelayJobServiceOptions } from '../src/provider/relay-jobs.js'
import { Announcer } from '../src/provider/announce.js'
import { Wallet } from '../src/payments/wallet.js'
import { loadOrCreatePaymentKey } from '../src/payments/payment-key.js'
import { localTime } from '../src/util/local-time.js'
import { until } from './helpers/until.js'
import { failingProcessor, hangingProcessor } from './helpers/ending-processors.js'

const procs = useProcs()
const cleanup: Array<() => unknown> = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dvm-customer-'))
  cleanup.push(() => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }))
  return dir
}

async function provider(opts: Partial<RelayJobServiceOptions> & { kind?: number; announce?: boolean } = {}): Promise<{ identity: Identity; service: RelayJobService }> {
  const identity = identityFromSecret(generateSecretKey())
  const crypto = await loadNostrCrypto()
  const pool = new RelayPool({ crypto, relays: devnet().relays })
  cleanup.push(() => pool.close())
  const kind = opts.kind ?? 5050
  // A paid provider takes only requests addressed to it: other test files publish
  // requests to anyone on this relay, and the devnet mint pays every invoice at once.
  const paid = opts.pricing ? { acceptUnaddressed: false } : {}
  const service = new RelayJobService({ identity, relays: pool, kinds: [kind], processor: new EchoProcessor(), crypto, rateLimit: false, ...paid, ...opts })
  await service.start()
  cleanup.push(() => service.stop())
  if (opts.announce) {
    const announcer = new Announcer({
      identity,
      pool,
      crypto,
      handlers: [{ kind, name: 'echo test provider', about: 'echoes', skill: {}, pricing: {}, mints: [devnet().mint], swarmKey: 'ab'.repeat(32) }],
      capacity: () => ({ free: service.capacity.free, max: service.capacity.max }),
    })
    await announcer.start()
    cleanup.push(() => announcer.stop())
  }
  return { identity, service }
}

async function customer(args: string[], dataDir?: string): Promise<{ proc: Proc; code: number | null; lines: Array<Record<string, unknown>> }> {
  const dir = dataDir ?? (await tempDir())
  const proc = procs.spawn(process.execPath, tsArgs('bin/dvm-customer.ts', '--devnet', devnetDir(), '--data-dir', dir, ...args), { timeoutMs: 40_000 })
  const { code } = await proc.exited
  const lines = args.includes('--json')
    ? proc.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
    : []
  return { proc, code, lines }
}

describe('dvm-customer (relay mode, devnet)', () => {
  it('runs a job and prints the result', async () => {
    const p = await provider()
    const { proc, code } = await customer(['--provider', p.identity.npub, 'hello from the shell'])
    expect(code, proc.output()).toBe(0)
    expect(proc.stdout).toBe('hello from the shell\n')
    expect(proc.stderr).toMatch(/published to 1\/1 relays/)
  })

  it('finds the provider from its NIP-89 handler and heartbeat, and speaks JSON lines', async () => {
    const p = await provider({ kind: 5123, announce: true })
    const { proc, code, lines } = await customer(['--kind', '5123', '--json', 'discover me'])
    expect(code, proc.output()).toBe(0)
    expect(lines[0]).toMatchObject({ type: 'provider', pubkey: p.identity.pubkey, name: 'echo test provider', available: true })
    expect(lines.map((l) => l.type)).toEqual(expect.arrayContaining(['published', 'result']))
    expect(lines.at(-1)).toMatchObject({ type: 'result', content: 'discover me', provider: p.identity.pubkey, paid_msats: 0 })
  })

  it('streams partial output of an encrypted job to the terminal', async () => {
    const p = await provider({ processor: new EchoProcessor({ delayMs: 40 }), partialIntervalMs: 60 })
    const words = Array.from({ length: 15 }, (_, i) => `secret${i}`).join(' ')
    const { proc, code, lines } = await customer(['--provider', p.identity.npub, '--encrypt', '--json', words])
    expect(code, proc.output()).toBe(0)
    const partial = lines.filter((l) => l.type === 'partial').map((l) => l.text).join('')
    expect(partial).toBe(words)
    expect(lines.at(-1)).toMatchObject({ type: 'result', content: words })
  })

  it('runs a chain', async () => {
    const p = await provider()
    const { proc, code } = await customer(['--provider', p.identity.pubkey, 'first step', '--chain', '5050:second step'])
    expect(code, proc.output()).toBe(0)
    expect(proc.stdout).toBe('first step\nsecond step\n')
  })

  it('pays a payment-required from its wallet and the provider is paid', async () => {
    const dir = await tempDir()
    const payer = new Wallet({ dataDir: dir, mintUrl: devnet().mint })
    await payer.load()
    await payer.fund(50, { pollMs: 100 })
    const provDir = await tempDir()
    const wallet = new Wallet({ dataDir: provDir, mintUrl: devnet().mint })
    await wallet.load()
    const p = await provider({ pricing: { perJob: 7 }, wallet, mintUrl: devnet().mint })
    const { proc, code, lines } = await customer(['--provider', p.identity.npub, '--bid', '7000', '--json', 'paid job'], dir)
    expect(code, proc.output()).toBe(0)
    expect(lines.find((l) => l.type === 'payment-required')).toMatchObject({ amount_msats: 7000 })
    // The devnet mint's FakeWallet may settle its own invoice before the melt arrives; then nothing is spent.
    expect(lines.some((l) => l.type === 'paid' || l.type === 'already-paid')).toBe(true)
    expect(lines.at(-1)).toMatchObject({ type: 'result', content: 'paid job', amount_msats: 7000 })
    expect((await wallet.balance()).balance).toBe(7)
  })

  it('takes the refund of a paid job that fails into its wallet and says so', async () => {
    const dir = await tempDir()
    const payer = new Wallet({ dataDir: dir, mintUrl: devnet().mint })
    await payer.load()
    const wallet = new Wallet({ dataDir: await tempDir(), mintUrl: devnet().mint })
    await wallet.load()
    const failing = failingProcessor('out of GPUs')
    const p = await provider({ pricing: { perJob: 7 }, wallet, mintUrl: devnet().mint, processor: failing })
    const { proc, code, lines } = await customer(['--provider', p.identity.npub, '--bid', '7000', '--json', 'doomed job'], dir)
    expect(code, proc.output()).toBe(1)
    expect(lines.find((l) => l.type === 'refunded')).toMatchObject({ sats: 7, amount_msats: 7000, provider: p.identity.pubkey })
    expect(lines.at(-1)).toMatchObject({ type: 'error', error: 'the provider reported an error: the job failed: out of GPUs; 7 sats were refunded to your wallet' })
    // The devnet mint paid its own invoice, so the customer spent nothing and now holds the refund.
    expect((await payer.balance()).balance).toBe(7)
    expect((await wallet.balance()).balance).toBe(0)
  })

  it('dvm-wallet refunds receives a refund that came after the customer stopped waiting, once', async () => {
    const dir = await tempDir()
    const wallet = new Wallet({ dataDir: await tempDir(), mintUrl: devnet().mint })
    await wallet.load()
    const activity: JobActivity[] = []
    const stuck = hangingProcessor()
    const p = await provider({ pricing: { perJob: 7 }, wallet, mintUrl: devnet().mint, processor: stuck, jobTimeoutMs: 1500, onActivity: (a) => activity.push(a) })
    // The customer pays, then is gone (killed) before the job times out and is refunded.
    const proc = procs.spawn(process.execPath, tsArgs('bin/dvm-customer.ts', '--devnet', devnetDir(), '--data-dir', dir, '--provider', p.identity.npub, '--bid', '7000', '--json', 'never finishes'), { timeoutMs: 40_000 })
    await proc.waitFor(/"type":"(already-)?paid"/)
    proc.signal('SIGKILL', true)
    await proc.exited
    await until(() => activity.some((a) => a.type === 'refunded'), 10_000)

    const refunds = async () => {
      const r = procs.spawn(process.execPath, tsArgs('bin/dvm-wallet.ts', '--devnet', devnetDir(), '--data-dir', dir, 'refunds', '--json'), { timeoutMs: 40_000 })
      expect((await r.exited).code, r.output()).toBe(0)
      return JSON.parse(r.stdout.trim()) as { found: number; received: number; balance: number; refunds: Array<Record<string, unknown>> }
    }
    const first = await refunds()
    expect(first).toMatchObject({ found: 1, received: 7, balance: 7 })
    expect(first.refunds).toEqual([expect.objectContaining({ provider: p.identity.pubkey, amountMsats: 7000, state: 'received', sats: 7 })])
    // Asked again: the token is recognised, nothing is counted twice.
    const again = await refunds()
    expect(again).toMatchObject({ found: 1, received: 0, balance: 7 })
    expect(again.refunds).toEqual([expect.objectContaining({ state: 'already-received' })])
  })

  it('exits non-zero with the provider\'s reason on error', async () => {
    const p = await provider()
    const { proc, code } = await customer(['--provider', p.identity.npub, '--input-type', 'event', 'not-an-event-id'])
    expect(code).toBe(1)
    expect(proc.stderr).toMatch(/dvm-customer: the provider reported an error: a "event" input must be a 64-hex event id/)
  })

  it('never pays more than --bid, and nothing without one', async () => {
    // An invoice that is never settled: the customer must refuse before paying anyway.
    const never = { bolt11: 'lnbcrt70n1pjunpaid', sats: 7, quote: 'never-paid', settled: (signal: AbortSignal) => new Promise<void>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))) }
    const p = await provider({ pricing: { perJob: 7 }, payments: { invoice: async () => never, acceptToken: async () => 0 } })
    const noBid = await customer(['--provider', p.identity.npub, 'no bid given'])
    expect(noBid.code).toBe(1)
    expect(noBid.proc.stderr).toMatch(/the provider asks 7000 msats; pass --bid=7000/)
    const lowBid = await customer(['--provider', p.identity.npub, '--bid', '5000', 'low bid'])
    expect(lowBid.code).toBe(1)
    expect(lowBid.proc.stderr).toMatch(/this job costs 7000 msats; your bid of 5000 msats is below it/)
  })

  it('times out with a clear message when nobody answers', async () => {
    const { proc, code } = await customer(['--kind', '5987', '--no-discover', '--timeout', '2', 'anyone?'])
    expect(code).toBe(1)
    expect(proc.stderr).toMatch(/no result within 2 s and no provider answered/)
  })

  it('--via=p2p with an empty wallet says how to fund that very wallet, and pays nothing', async () => {
    const dir = await tempDir()
    const { proc, code } = await customer(['--via', 'p2p', 'x'], dir)
    expect(code).toBe(1)
    expect(proc.stderr).toContain(`the wallet has no spendable sats; fund it: dvm-wallet fund 50 --data-dir=${dir} --devnet=${devnetDir()}`)
  })

  it('--via=p2p with everything locked to earlier jobs says when it comes back', async () => {
    const dir = await tempDir()
    const wallet = new Wallet({ dataDir: dir, mintUrl: devnet().mint })
    await wallet.load()
    await wallet.fund(3, { pollMs: 100 })
    const refund = await loadOrCreatePaymentKey(dir)
    const locktime = Math.floor(Date.now() / 1000) + 600
    await wallet.lockForPayee({ amount: 3, payeePubkey: (await loadOrCreatePaymentKey(await tempDir())).pubkey, locktime, refundPubkey: refund.pubkey })
    const { proc, code } = await customer(['--via', 'p2p', 'x'], dir)
    expect(code).toBe(1)
    const until = localTime(locktime)
    expect(proc.stderr).toContain(`3 sats are locked to providers until ${until} and come back with \`dvm-wallet balance --data-dir=${dir} --devnet=${devnetDir()}\` after that`)
    expect((await wallet.balance()).locked).toBe(3) // nothing moved
  })

  it('uses the identity in its data dir', async () => {
    const dir = await tempDir()
    const me = await loadOrCreateIdentity(dir)
    const p = await provider()
    const { proc, code, lines } = await customer(['--provider', p.identity.npub, '--json', 'who am i'], dir)
    expect(code, proc.output()).toBe(0)
    const published = lines.find((l) => l.type === 'published')!
    const pool = new RelayPool({ crypto: await loadNostrCrypto(), relays: devnet().relays })
    cleanup.push(() => pool.close())
    const [request] = await pool.query([{ ids: [published.id as string] }])
    expect(request!.pubkey).toBe(me.pubkey)
  })
})
