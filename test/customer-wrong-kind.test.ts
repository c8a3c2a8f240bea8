import { afterEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { generateSecretKey } from 'nostr-tools/pure'
import { devnet, devnetDir } from './helpers/devnet.js'
import { Agents } from './helpers/agents.js'
import { tsArgs, useProcs } from './helpers/procs.js'
import { identityFromSecret, type Identity } from '../src/identity/nostr-key.js'
import { loadNostrCrypto } from '../src/nostr/events.js'
import { HANDLER_KIND } from '../src/nostr/nip89.js'
import { RelayPool } from '../src/nostr/relay-client.js'
import { Announcer } from '../src/provider/announce.js'
import { RelayJobService } from '../src/provider/relay-jobs.js'
import { EchoProcessor } from '../src/processors/echo.js'
import { connectToProvider } from '../src/customer/connect.js'
import { runRelayJob, type CustomerEvent } from '../src/customer/relay-job.js'
import { paymentKeyFromPrivkey } from '../src/payments/payment-key.js'

// A customer that names a provider which does not serve the kind it asks for
// is told so in seconds, from the provider's NIP-89 handlers or its skill
// descriptor, instead of waiting out its whole timeout.

const procs = useProcs()
const agents = new Agents(devnet())
const cleanup: Array<() => unknown> = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
  await agents.cleanup()
})

/** Kinds no other test file uses, so no other test's provider or customer meets ours. */
function freshKind(): number {
  return 5400 + Math.floor(Math.random() * 500)
}

async function pool(): Promise<RelayPool> {
  const p = new RelayPool({ crypto: await loadNostrCrypto(), relays: devnet().relays })
  cleanup.push(() => p.close())
  await p.waitConnected(3000)
  return p
}

/** Wait (bounded) until the relay holds a handler of `pubkey` for `kind`. */
async function handlerVisible(pubkey: string, kind: number): Promise<void> {
  const p = await pool()
  const deadline = Date.now() + 5000
  while ((await p.query([{ kinds: [HANDLER_KIND], authors: [pubkey], '#k': [String(kind)] }], { timeoutMs: 2000 })).length === 0) {
    if (Date.now() > deadline) throw new Error(`the handler of ${pubkey} for kind ${kind} never reached the relay`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** A relay-job provider of `kind`; with `announce`, it also publishes its NIP-89 handler. */
async function relayProvider(kind: number, announce: boolean): Promise<Identity> {
  const identity = identityFromSecret(generateSecretKey())
  const crypto = await loadNostrCrypto()
  const p = await pool()
  const service = new RelayJobService({ identity, relays: p, kinds: [kind], processor: new EchoProcessor(), crypto, rateLimit: false })
  await service.start()
  cleanup.push(() => service.stop())
  if (announce) {
    const announcer = new Announcer({
      identity,
      pool: p,
      crypto,
      handlers: [{ kind, name: 'wrong-kind test provider', about: 'echoes', skill: {}, pricing: {}, mints: [devnet().mint], swarmKey: 'ab'.repeat(32) }],
      capacity: () => ({ free: 1, max: 1 }),
    })
    await announcer.start()
    cleanup.push(() => announcer.stop())
    await handlerVisible(identity.pubkey, kind)
  }
  return identity
}

describe('dvm-session --provider of another kind', () => {
  it('fails in seconds, saying which kinds the provider serves', async () => {
    const served = freshKind()
    const provider = await agents.provider({ kinds: [served], relays: devnet().relays })
    await handlerVisible(provider.opts.identity.pubkey, served)
    const customer = await agents.customer(5)
    const started = Date.now()
    const proc = procs.spawn(
      process.execPath,
      tsArgs('bin/dvm-session.ts', '--devnet', devnetDir(), '--data-dir', customer.dataDir, '--provider', provider.opts.identity.npub, '--no-proxy'),
      { timeoutMs: 14_000 },
    )
    const { code, timedOut } = await proc.exited
    expect(timedOut, proc.output()).toBe(false)
    expect(code, proc.output()).toBe(1)
    const short = provider.opts.identity.pubkey.slice(0, 8)
    expect(proc.stderr).toContain(`provider ${short}… serves kind ${served}, not 5100; pick a provider of kind 5100 or pass --kind=${served}`)
    expect(Date.now() - started).toBeLessThan(10_000)
  }, 20_000)
})

describe('connectToProvider', () => {
  it('the named provider whose skill descriptor lacks the kind is refused at once', async () => {
    const served = freshKind()
    const provider = await agents.provider({ kinds: [served] })
    const customer = await agents.customer(0)
    const started = Date.now()
    const err = await connectToProvider({
      identity: customer.identity,
      bootstrap: devnet().bootstrap,
      kind: served + 1,
      providerPubkey: provider.opts.identity.pubkey,
      providerSwarmKey: provider.swarmPublicKey,
      timeoutMs: 10_000,
    }).then(
      () => null,
      (e: Error) => e,
    )
    expect(err?.message).toBe(`provider ${provider.opts.identity.pubkey.slice(0, 8)}… serves kind ${served}, not ${served + 1}; pick a provider of kind ${served + 1} or pass --kind=${served}`)
    expect(Date.now() - started).toBeLessThan(8000)
  }, 20_000)

  it('lists each refusal once, with a count, and says the named provider was not found', async () => {
    const kind = freshKind()
    await agents.provider({ kinds: [kind] })
    const customer = await agents.customer(0)
    const stranger = paymentKeyFromPrivkey(randomBytes(32)).pubkey.slice(2)
    const err = await connectToProvider({ identity: customer.identity, bootstrap: devnet().bootstrap, kind, providerPubkey: stranger, timeoutMs: 7000 }).then(
      () => null,
      (e: Error) => e,
    )
    const message = err?.message ?? ''
    expect(message).toMatch(new RegExp(`^provider ${stranger.slice(0, 8)}… was not found among the providers of kind ${kind} within 7 s`))
    // the provider is redialed and refused each time; the sentence appears once
    expect(message.match(/not the expected/g)).toHaveLength(1)
  }, 20_000)

  it('with no provider of the kind at all, says none was found', async () => {
    const kind = freshKind()
    const customer = await agents.customer(0)
    await expect(connectToProvider({ identity: customer.identity, bootstrap: devnet().bootstrap, kind, timeoutMs: 2000 })).rejects.toThrow(
      new RegExp(`^no provider of kind ${kind} was found within 2 s`),
    )
  }, 20_000)
})

describe('relay job for a --provider that announces other kinds', () => {
  it('dvm-customer fails at once, before publishing anything', async () => {
    const served = freshKind()
    const asked = served + 1
    const provider = await relayProvider(served, true)
    const started = Date.now()
    const proc = procs.spawn(
      process.execPath,
      tsArgs('bin/dvm-customer.ts', '--devnet', devnetDir(), '--data-dir', await agents.dir(), '--kind', String(asked), '--provider', provider.npub, 'hello'),
      { timeoutMs: 14_000 },
    )
    const { code, timedOut } = await proc.exited
    expect(timedOut, proc.output()).toBe(false)
    expect(code, proc.output()).toBe(1)
    expect(proc.stderr).toContain(`provider ${provider.pubkey.slice(0, 8)}… serves kind ${served}, not ${asked}; pick a provider of kind ${asked} or pass --kind=${served}`)
    expect(proc.stderr).not.toMatch(/published/)
    expect(Date.now() - started).toBeLessThan(10_000)
  }, 20_000)

  it('runRelayJob: a provider that announces nothing is still asked, and answers', async () => {
    const kind = freshKind()
    const provider = await relayProvider(kind, false)
    const customer = identityFromSecret(generateSecretKey())
    const events: CustomerEvent[] = []
    const out = await runRelayJob(
      { kind, inputs: [{ type: 'text', value: 'still served' }], provider: provider.pubkey },
      { identity: customer, pool: await pool(), crypto: await loadNostrCrypto(), timeoutMs: 10_000, onEvent: (e) => events.push(e) },
    )
    expect(out.content).toBe('still served')
  }, 20_000)

  it('runRelayJob: a provider that announces the kind is asked as before', async () => {
    const kind = freshKind()
    const provider = await relayProvider(kind, true)
    const out = await runRelayJob(
      { kind, inputs: [{ type: 'text', value: 'announced' }], provider: provider.pubkey },
      { identity: identityFromSecret(generateSecretKey()), pool: await pool(), crypto: await loadNostrCrypto(), timeoutMs: 10_000 },
    )
    expect(out.content).toBe('announced')
  }, 20_000)
})
