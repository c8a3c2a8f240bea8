import type { Filter } from 'nostr-tools/filter'
import { afterEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import DHT from 'hyperdht'
import Hyperswarm, { type NoiseSecretStream } from 'hyperswarm'
import WebSocket from 'ws'
import { Relay, useWebSocketImplementation } from 'nostr-tools/relay'
import { finalizeEvent, generateSecretKey, type Event } from 'nostr-tools/pure'
import { CashuMint, CashuWallet } from '@cashu/cashu-ts'
import { devnetDhtOptions, startMint, startRelay } from '../src/devnet/index.js'
import { parseDevnetConfig } from '../src/config/devnet-config.js'
import { devnet } from './helpers/devnet.js'
import { tsArgs, useProcs } from './helpers/procs.js'

useWebSocketImplementation(WebSocket)

const procs = useProcs()
/** Whatever a test starts, stopped after it even when it fails. */
let cleanups: Array<() => Promise<unknown> | unknown> = []
afterEach(async () => {
  const list = cleanups.reverse()
  cleanups = []
  for (const fn of list) await fn()
})

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms) }),
  ])
}

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function connectRelay(url: string): Promise<Relay> {
  const relay = await withTimeout(Relay.connect(url), 5000, `connect ${url}`)
  cleanups.push(() => relay.close())
  return relay
}

function note(tags: string[][], content = 'hello devnet', kind = 1): Event {
  return finalizeEvent({ kind, created_at: Math.floor(Date.now() / 1000), tags, content }, generateSecretKey())
}

/** Subscribe and collect events; `eose` resolves once stored events were sent. */
function collect(relay: Relay, filter: Filter) {
  const events: Event[] = []
  let onEvent: (() => void) | undefined
  let eoseDone: () => void = () => {}
  const eose = new Promise<void>((r) => { eoseDone = r })
  const sub = relay.subscribe([filter], {
    onevent: (e) => { events.push(e); onEvent?.() },
    oneose: () => eoseDone(),
  })
  cleanups.push(() => sub.close())
  const next = (count: number) => new Promise<Event[]>((resolve) => {
    const check = () => { if (events.length >= count) resolve(events) }
    onEvent = check
    check()
  })
  return { events, eose, next }
}

/**
 * A subscription on a bare WebSocket, resolved once the relay sent EOSE (it is
 * live from then on): `events` is every EVENT the relay sent for it, unfiltered.
 */
async function rawSubscription(url: string, filter: Filter) {
  const ws = new WebSocket(url)
  cleanups.push(() => ws.terminate())
  await withTimeout(new Promise((r, j) => { ws.once('open', r); ws.once('error', j) }), 5000, 'ws open')
  const events: Event[] = []
  let eose = false
  let changed = () => {}
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString()) as unknown[]
    if (m[0] === 'EVENT' && m[1] === 'raw') events.push(m[2] as Event)
    if (m[0] === 'EOSE' && m[1] === 'raw') eose = true
    changed()
  })
  const until = (cond: () => boolean) => new Promise<void>((resolve) => {
    changed = () => { if (cond()) resolve() }
    changed()
  })
  ws.send(JSON.stringify(['REQ', 'raw', filter]))
  await withTimeout(until(() => eose), 5000, 'EOSE on the raw subscription')
  return { events, received: (id: string) => until(() => events.some((e) => e.id === id)) }
}

describe('devnet: HyperDHT testnet', () => {
  it('two swarm peers find each other on a topic and exchange bytes', async () => {
    const { bootstrap } = devnet()
    expect(bootstrap.every((b) => b.host === '127.0.0.1')).toBe(true)
    const server = new Hyperswarm({ dht: new DHT(devnetDhtOptions(bootstrap)) })
    const client = new Hyperswarm({ dht: new DHT(devnetDhtOptions(bootstrap)) })
    cleanups.push(() => Promise.all([server.destroy(), client.destroy()]))

    const exchange = (swarm: Hyperswarm, send: string) => new Promise<string>((resolve) => {
      swarm.once('connection', (conn: NoiseSecretStream) => {
        conn.on('error', () => {})
        conn.once('data', (data: Buffer) => resolve(data.toString()))
        conn.write(send)
      })
    })
    const atServer = exchange(server, 'hello from the server')
    const atClient = exchange(client, 'hello from the client')
    const topic = randomBytes(32)
    await server.join(topic, { server: true, client: false }).flushed()
    client.join(topic, { server: false, client: true })

    const [serverGot, clientGot] = await withTimeout(Promise.all([atServer, atClient]), 10_000, 'swarm exchange')
    expect(serverGot).toBe('hello from the client')
    expect(clientGot).toBe('hello from the server')
  }, 20_000)
})

describe('devnet: Nostr relay', () => {
  it('sends a published event to a matching subscription, and only to matching ones', async () => {
    const url = devnet().relays[0]!
    const relay = await connectRelay(url)
    const topic = randomBytes(8).toString('hex')
    const matching = collect(relay, { kinds: [1], '#t': [topic] })
    // What the relay itself sends for a filter nothing below matches until the
    // marker (nostr-tools would drop a wrong event on the client side and hide it).
    const other = await rawSubscription(url, { kinds: [1], '#t': [topic + '-other'] })
    await withTimeout(matching.eose, 5000, 'EOSE')

    const event = note([['t', topic]])
    await withTimeout(relay.publish(event), 5000, 'publish')
    const [got] = await withTimeout(matching.next(1), 5000, 'live event')
    expect(got!.id).toBe(event.id)

    // Tag filters hold for live events too (the relay library alone ignores them).
    // Both subscriptions were live (EOSE) before anything was published. A
    // marker that both match comes last: the relay answers one connection in
    // order, so once the marker is in, a wrongly sent event would be too.
    const unrelated = note([['t', 'unrelated-' + topic]])
    await withTimeout(relay.publish(unrelated), 5000, 'publish unrelated')
    const marker = note([['t', topic], ['t', topic + '-other']], 'marker')
    await withTimeout(relay.publish(marker), 5000, 'publish marker')
    await withTimeout(Promise.all([matching.next(2), other.received(marker.id)]), 5000, 'marker on both subscriptions')
    expect(other.events.map((e) => e.id)).toEqual([marker.id])
    expect(matching.events.map((e) => e.id)).toEqual([event.id, marker.id])

    // Stored events come back to a later REQ, honouring since/limit.
    const later = collect(relay, { kinds: [1], '#t': [topic], since: event.created_at, limit: 5 })
    await withTimeout(later.eose, 5000, 'EOSE on stored events')
    expect(later.events.map((e) => e.id).sort()).toEqual([event.id, marker.id].sort())
  })

  it('delivers a deletion (kind 5, NIP-90 cancellation) to subscribers and forgets the deleted event', async () => {
    const relay = await connectRelay(devnet().relays[0]!)
    const sk = generateSecretKey()
    const job = finalizeEvent({ kind: 5050, created_at: Math.floor(Date.now() / 1000), tags: [['i', 'hi', 'text']], content: '' }, sk)
    await relay.publish(job)
    const cancels = collect(relay, { kinds: [5], '#e': [job.id] })
    await withTimeout(cancels.eose, 5000, 'EOSE')
    const cancel = finalizeEvent({ kind: 5, created_at: job.created_at, tags: [['e', job.id], ['k', '5050']], content: 'cancelled' }, sk)
    await relay.publish(cancel)
    const [got] = await withTimeout(cancels.next(1), 5000, 'deletion event')
    expect(got!.id).toBe(cancel.id)
    const gone = collect(relay, { ids: [job.id] })
    await withTimeout(gone.eose, 5000, 'EOSE')
    expect(gone.events).toHaveLength(0)
  })

  it('refuses an event whose signature is wrong, also when its id is already stored', async () => {
    const relay = await connectRelay(devnet().relays[0]!)
    const good = note([['t', randomBytes(8).toString('hex')]])
    const badSig = (e: Event): Event => ({ ...e, sig: (e.sig[0] === '0' ? '1' : '0') + e.sig.slice(1) })

    const fresh = note([['t', randomBytes(8).toString('hex')]])
    await expect(relay.publish(badSig(fresh))).rejects.toThrow(/signature is wrong/)

    await relay.publish(good)
    await expect(relay.publish(badSig(good))).rejects.toThrow(/signature is wrong/)

    const tampered = { ...good, content: 'changed after signing' }
    await expect(relay.publish(tampered)).rejects.toThrow(/invalid/)
  })

  it('answers malformed and oversized messages with a clear NOTICE', async () => {
    const ws = new WebSocket(devnet().relays[0]!)
    cleanups.push(() => ws.terminate())
    await withTimeout(new Promise((r, j) => { ws.once('open', r); ws.once('error', j) }), 5000, 'ws open')
    const replies: unknown[] = []
    ws.on('message', (d) => replies.push(JSON.parse(d.toString())))
    const reply = (n: number) => withTimeout((async () => {
      while (replies.length < n) await new Promise((r) => setTimeout(r, 10))
      return replies[n - 1]
    })(), 5000, 'relay reply')

    ws.send('not json')
    expect(await reply(1)).toEqual(['NOTICE', expect.stringMatching(/^invalid: .*JSON/)])
    ws.send(JSON.stringify(['REQ', 'x', { kinds: ['one'] }]))
    expect(await reply(2)).toEqual(['CLOSED', 'x', expect.stringMatching(/^invalid: kinds/)])
    ws.send(JSON.stringify(['EVENT', note([], 'x'.repeat(300 * 1024))]))
    expect(await reply(3)).toEqual(['NOTICE', expect.stringMatching(/exceeds this relay's limit of 262144 bytes/)])
    // The connection stays usable after a refusal.
    ws.send(JSON.stringify(['REQ', 'y', { kinds: [1], limit: 0 }]))
    expect(await reply(4)).toEqual(['EOSE', 'y'])
  })

  it('restarts on the same port, and names a busy port in one sentence', async () => {
    const first = await startRelay({ port: 0, log: () => {} })
    cleanups.push(() => first.stop())
    await expect(startRelay({ port: first.port, log: () => {} }))
      .rejects.toThrow(`port ${first.port} on 127.0.0.1 is already in use`)

    const client = await connectRelay(first.url)
    const closed = new Promise<void>((r) => { client.onclose = () => r() })
    await first.stop()
    await withTimeout(closed, 5000, 'client sees the relay go away')

    const second = await startRelay({ port: first.port, log: () => {} })
    cleanups.push(() => second.stop())
    expect(second.url).toBe(first.url)
    const relay = await connectRelay(second.url)
    const topic = randomBytes(8).toString('hex')
    const sub = collect(relay, { '#t': [topic] })
    await withTimeout(sub.eose, 5000, 'EOSE')
    await relay.publish(note([['t', topic]]))
    await withTimeout(sub.next(1), 5000, 'event after restart')
  })
})

describe('devnet: Cashu mint', () => {
  it('answers /v1/info and /v1/keysets with input_fee_ppk 0', async () => {
    const mint = devnet().mint
    expect(mint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    const info = await (await fetch(`${mint}/v1/info`, { signal: AbortSignal.timeout(5000) })).json() as { version: string; nuts: Record<string, unknown> }
    expect(info.version).toMatch(/^Nutshell\/0\.19\.2/)
    for (const nut of ['4', '5', '7', '11', '12']) expect(info.nuts).toHaveProperty(nut)
    const { keysets } = await (await fetch(`${mint}/v1/keysets`, { signal: AbortSignal.timeout(5000) })).json() as {
      keysets: Array<{ id: string; unit: string; active: boolean; input_fee_ppk: number }>
    }
    const active = keysets.filter((k) => k.unit === 'sat' && k.active)
    expect(active.length).toBeGreaterThan(0)
    expect(keysets.every((k) => k.input_fee_ppk === 0)).toBe(true)
  })

  it('keeps ecash valid across a restart on the same data dir', async () => {
    const dataDir = tempDir('dvm-mint-restart-')
    const first = await startMint({ dataDir })
    cleanups.push(() => first.kill())
    const wallet = new CashuWallet(new CashuMint(first.url))
    const quote = await wallet.createMintQuote(21)
    const proofs = await wallet.mintProofs(21, quote.quote)
    expect(proofs.reduce((n, p) => n + p.amount, 0)).toBe(21)
    await first.stop()

    const second = await startMint({ dataDir, port: first.port })
    cleanups.push(() => second.kill())
    const again = new CashuWallet(new CashuMint(second.url))
    await again.loadMint()
    expect(again.keysetId).toBe(proofs[0]!.id)
    const states = await again.checkProofsStates(proofs)
    expect(states.map((s) => s.state)).toEqual(proofs.map(() => 'UNSPENT'))
    const { send } = await again.send(5, proofs)
    expect(send.reduce((n, p) => n + p.amount, 0)).toBe(5)
  }, 60_000)
})

describe('dvm-devnet CLI', () => {
  it('starts everything, writes devnet.json, and stops every process on SIGTERM', async () => {
    const dir = tempDir('dvm-devnet-cli-')
    const cli = procs.spawn(process.execPath, tsArgs('bin/dvm-devnet.ts', `--dir=${dir}`), { timeoutMs: 60_000 })
    const [line] = await cli.waitFor(/^devnet ready: .*$/m, 45_000)
    expect(line).toContain(join(dir, 'devnet.json'))

    const text = readFileSync(join(dir, 'devnet.json'), 'utf8').trim()
    expect(text).toMatch(/^\{"bootstrap":\[\{"host":"127\.0\.0\.1","port":\d+\}(,\{"host":"127\.0\.0\.1","port":\d+\})*\],"relays":\["ws:\/\/127\.0\.0\.1:\d+"\],"mint":"http:\/\/127\.0\.0\.1:\d+"\}$/)
    const config = parseDevnetConfig(JSON.parse(text))
    expect((await fetch(`${config.mint}/v1/info`, { signal: AbortSignal.timeout(5000) })).ok).toBe(true)
    const relay = await connectRelay(config.relays[0]!)
    relay.close()
    const mintPid = Number(readFileSync(join(dir, 'mint', 'mint.pid'), 'utf8'))
    expect(mintPid).toBeGreaterThan(0)

    cli.signal('SIGTERM')
    const exit = await withTimeout(cli.exited, 15_000, 'dvm-devnet exit after SIGTERM')
    expect(exit, cli.output()).toEqual({ code: 0, signal: null, timedOut: false })
    expect(() => process.kill(mintPid, 0)).toThrow()
    expect(existsSync(join(dir, 'devnet.json'))).toBe(false)
  }, 90_000)

  it('prints --help and rejects unknown flags', async () => {
    const help = procs.spawn(process.execPath, tsArgs('bin/dvm-devnet.ts', '--help'), { timeoutMs: 20_000 })
    expect((await help.exited).code).toBe(0)
    expect(help.stdout).toContain('--dir <dir>')
    const bad = procs.spawn(process.execPath, tsArgs('bin/dvm-devnet.ts', '--bogus'), { timeoutMs: 20_000 })
    expect((await bad.exited).code).not.toBe(0)
    expect(bad.stderr).toMatch(/dvm-devnet: unknown option '--bogus'/)
  }, 30_000)
})
