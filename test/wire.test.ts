import { describe, it, expect, afterEach } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { pipeline } from 'node:stream/promises'
import { Readable, Writable } from 'node:stream'
import { connectedPair, type Connected } from './helpers/swarm-pair.js'
import { Peer } from '../src/wire/peer.js'
import type { WireStream } from '../src/wire/stream.js'
import type { ControlMessage } from '../src/wire/protocol.js'

let pair: Connected | null = null
afterEach(async () => {
  await pair?.destroy()
  pair = null
})

function nextMessage(peer: Peer): Promise<ControlMessage> {
  return once(peer, 'message').then(([m]) => m as ControlMessage)
}

describe('wire', () => {
  it('each side proves its Nostr key over the connection', async () => {
    pair = await connectedPair()
    const p = new Peer(pair.provider.conn, { identity: pair.provider.identity, role: 'provider' })
    const c = new Peer(pair.customer.conn, { identity: pair.customer.identity, role: 'customer', expectedPubkey: pair.provider.identity.pubkey })
    expect(await c.ready).toBe(pair.provider.identity.pubkey)
    expect(await p.ready).toBe(pair.customer.identity.pubkey)
    const got = nextMessage(p)
    c.send({ type: 'cancel', job: 'j1' })
    expect(await got).toEqual({ type: 'cancel', job: 'j1' })
  })

  it('a customer refuses a provider that is not the one it expected', async () => {
    pair = await connectedPair()
    new Peer(pair.provider.conn, { identity: pair.provider.identity, role: 'provider' })
    const c = new Peer(pair.customer.conn, { identity: pair.customer.identity, role: 'customer', expectedPubkey: 'ab'.repeat(32) })
    await expect(c.ready).rejects.toThrow(/not the expected/)
  })

  it('a malformed or oversized message closes only that connection', async () => {
    pair = await connectedPair()
    const p = new Peer(pair.provider.conn, { identity: pair.provider.identity, role: 'provider' })
    const c = new Peer(pair.customer.conn, { identity: pair.customer.identity, role: 'customer' })
    await Promise.all([p.ready, c.ready])
    const closed = once(p, 'close')
    // bypass the encoder: raw bytes that are not a valid message
    ;(c as unknown as { msg: { send(b: Buffer): void } }).msg.send(Buffer.from('{"type":"tick","session":"x"}'))
    const [err] = await closed
    expect((err as Error).message).toMatch(/invalid message/)

    pair.provider.swarm.on('connection', () => {})
    // oversized: a fresh pair, 70 kB of JSON
    await pair.destroy()
    pair = await connectedPair()
    const p2 = new Peer(pair.provider.conn, { identity: pair.provider.identity, role: 'provider' })
    const c2 = new Peer(pair.customer.conn, { identity: pair.customer.identity, role: 'customer' })
    await Promise.all([p2.ready, c2.ready])
    const closed2 = once(p2, 'close')
    ;(c2 as unknown as { msg: { send(b: Buffer): void } }).msg.send(Buffer.from(JSON.stringify({ type: 'cancel', job: 'x'.repeat(70_000) })))
    const [err2] = await closed2
    expect((err2 as Error).message).toMatch(/exceeds/)
  })

  it('streams carry bytes intact both ways, many at once', async () => {
    pair = await connectedPair()
    const streams: WireStream[] = []
    const p = new Peer(pair.provider.conn, {
      identity: pair.provider.identity,
      role: 'provider',
      onStream: (s) => {
        streams.push(s)
        s.pipe(s) // echo
        return true
      },
    })
    const c = new Peer(pair.customer.conn, { identity: pair.customer.identity, role: 'customer' })
    await Promise.all([p.ready, c.ready])
    const runs = Array.from({ length: 8 }, async (_, i) => {
      const data = randomBytes(3 * 1024 * 1024 + i)
      const s = c.openStream('sess1')
      const hash = createHash('sha256')
      let n = 0
      const sink = new Writable({ write(chunk, _e, cb) { hash.update(chunk); n += chunk.length; cb() } })
      await Promise.all([pipeline(Readable.from([data]), s as unknown as Writable), pipeline(s, sink)])
      expect(n).toBe(data.length)
      expect(hash.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'))
    })
    await Promise.all(runs)
    expect(streams.every((s) => s.session === 'sess1')).toBe(true)
  })

  it('corked writes of mixed sizes (an HTTP head, small and large bodies) arrive whole and in order', async () => {
    pair = await connectedPair()
    const got: Buffer[] = []
    const done = new Promise<void>((resolve) => {
      const p = new Peer(pair!.provider.conn, {
        identity: pair!.provider.identity,
        role: 'provider',
        onStream: (s) => {
          s.on('data', (b: Buffer) => got.push(b))
          s.once('end', () => {
            s.end()
            resolve()
          })
          return true
        },
      })
      void p.ready
    })
    const c = new Peer(pair.customer.conn, { identity: pair.customer.identity, role: 'customer' })
    await c.ready
    const s = c.openStream('sess1')
    s.resume()
    const parts = [Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n'), Buffer.from('hello'), randomBytes(3), randomBytes(200 * 1024), randomBytes(10), randomBytes(70 * 1024)]
    s.cork()
    for (const b of parts.slice(0, 3)) s.write(b)
    s.uncork() // a small batch: sent together
    s.cork()
    for (const b of parts.slice(3)) s.write(b)
    s.uncork() // a batch over the coalescing limit: sent chunk by chunk
    s.end()
    await done
    await once(s, 'close')
    expect(Buffer.concat(got).equals(Buffer.concat(parts))).toBe(true)
  })

  it('a slow reader holds back its sender instead of buffering everything', async () => {
    pair = await connectedPair()
    let providerSide: WireStream | null = null
    const p = new Peer(pair.provider.conn, { identity: pair.provider.identity, role: 'provider', onStream: (s) => { s.on('error', () => {}); providerSide = s; return true } })
    const c = new Peer(pair.customer.conn, { identity: pair.customer.identity, role: 'customer' })
    await Promise.all([p.ready, c.ready])
    const s = c.openStream('s')
    s.on('error', () => {})
    // write 32 MB without reading on the other side
    let written = 0
    const chunk = Buffer.alloc(64 * 1024)
    while (written < 32 * 1024 * 1024 && s.write(chunk)) written += chunk.length
    await new Promise((r) => setTimeout(r, 300))
    // the writer saw backpressure long before 32 MB, and the reader holds at most window + its buffer
    expect(written).toBeLessThan(4 * 1024 * 1024)
    expect(providerSide).not.toBeNull()
    expect(providerSide!.readableLength).toBeLessThanOrEqual(2 * 1024 * 1024)
    s.destroy()
  })
})
