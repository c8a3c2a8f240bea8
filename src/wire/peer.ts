import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import c from 'compact-encoding'
import Protomux from 'protomux'
import type { Channel, Message } from 'protomux'
import type { NoiseSecretStream } from 'hyperswarm'
import type { Identity } from '../identity/nostr-key.js'
import { signHandshake, verifyHandshake } from './identity-proof.js'
import {
  CONTROL_PROTOCOL, PROTOCOL_VERSION, STREAM_PROTOCOL, WireError, decodeControl, encodeControl,
  type ControlMessage,
} from './protocol.js'
import { WireStream } from './stream.js'

export const AGENT = 'dvm-agent/0.1'

export interface PeerOptions {
  identity: Identity
  role: 'provider' | 'customer'
  /** hex pubkey the remote must prove it owns on this connection (the customer's check of its provider) */
  expectedPubkey?: string
  /** provider: called for every stream the remote opens; return false to refuse it */
  onStream?: (stream: WireStream) => boolean
  helloTimeoutMs?: number
}

/**
 * One connection to one remote agent: the Noise stream, its protomux, the
 * control channel and any number of tunnel streams. Emits 'message' with each
 * validated control message after the identity handshake, and 'close' once.
 * A malformed or oversized message closes this connection only.
 */
export class Peer extends EventEmitter {
  remotePubkey: string | null = null
  readonly ready: Promise<string>
  readonly mux: Protomux
  private readonly channel: Channel
  private readonly msg: Message<Buffer>
  private closed = false
  private resolveReady!: (pubkey: string) => void
  private rejectReady!: (err: Error) => void
  private helloTimer: NodeJS.Timeout

  constructor(readonly conn: NoiseSecretStream, private readonly opts: PeerOptions) {
    super()
    this.ready = new Promise<string>((resolve, reject) => {
      this.resolveReady = resolve
      this.rejectReady = reject
    })
    this.ready.catch(() => {}) // observed via close/error too
    this.mux = Protomux.from(conn)
    const channel = this.mux.createChannel({
      protocol: CONTROL_PROTOCOL,
      messages: [{ encoding: c.raw, onmessage: (buf: Buffer) => this.onRaw(buf) }],
      onopen: () => this.sendHello(),
      onclose: () => this.close(new WireError('closed', 'the peer closed the control channel')),
    })
    if (!channel) throw new WireError('duplicate', 'a control channel is already open on this connection')
    this.channel = channel
    this.msg = channel.messages[0] as Message<Buffer>
    channel.open()

    if (opts.onStream) {
      this.mux.pair({ protocol: STREAM_PROTOCOL }, (id) => this.acceptStream(id))
    }
    this.helloTimer = setTimeout(
      () => this.close(new WireError('timeout', 'the peer did not prove its identity in time')),
      opts.helloTimeoutMs ?? 10_000,
    )
    conn.on('close', () => this.close(new WireError('closed', 'connection closed')))
    conn.on('error', (err: Error) => this.close(err))
  }

  private sendHello(): void {
    this.sendRaw({
      type: 'hello',
      v: PROTOCOL_VERSION,
      agent: AGENT,
      role: this.opts.role,
      pubkey: this.opts.identity.pubkey,
      sig: signHandshake(this.conn.handshakeHash, this.opts.identity.secretKey),
    })
  }

  private onRaw(buf: Buffer): void {
    let msg: ControlMessage
    try {
      msg = decodeControl(buf)
    } catch (err) {
      const e = err as WireError
      this.sendRaw({ type: 'error', code: e.code ?? 'malformed', message: e.message })
      this.close(e)
      return
    }
    if (this.remotePubkey === null) return this.onHello(msg)
    if (msg.type === 'hello') return this.protocolError('hello sent twice')
    this.emit('message', msg)
  }

  private onHello(msg: ControlMessage): void {
    if (msg.type !== 'hello') return this.protocolError(`expected hello, got ${msg.type}`)
    if (msg.v !== PROTOCOL_VERSION) return this.protocolError(`peer speaks protocol v${msg.v}, this agent speaks v${PROTOCOL_VERSION}; upgrade the older side`)
    if (msg.role === this.opts.role) return this.protocolError(`both ends are ${msg.role}s`)
    if (!verifyHandshake(this.conn.handshakeHash, msg.pubkey, msg.sig)) {
      return this.protocolError('identity proof does not verify for this connection', 'bad-identity')
    }
    if (this.opts.expectedPubkey && msg.pubkey !== this.opts.expectedPubkey) {
      return this.protocolError(`peer is ${msg.pubkey}, not the expected ${this.opts.expectedPubkey}`, 'identity-mismatch')
    }
    clearTimeout(this.helloTimer)
    this.remotePubkey = msg.pubkey
    this.resolveReady(msg.pubkey)
  }

  private protocolError(message: string, code = 'protocol'): void {
    this.sendRaw({ type: 'error', code, message })
    this.close(new WireError(code, message))
  }

  private sendRaw(msg: ControlMessage): boolean {
    if (this.closed || this.channel.closed) return false
    return this.msg.send(encodeControl(msg))
  }

  /** Send a control message; false if the connection is gone. */
  send(msg: ControlMessage): boolean {
    if (this.remotePubkey === null) throw new WireError('not-ready', 'cannot send before the identity handshake')
    return this.sendRaw(msg)
  }

  /** Open a tunnel stream paid for by `session`. */
  openStream(session: string): WireStream {
    if (this.closed) throw new WireError('closed', 'connection is closed')
    const stream = new WireStream(this.mux, session)
    stream.attach(randomBytes(16))
    return stream
  }

  private acceptStream(id: Buffer | null): void {
    if (!id || this.remotePubkey === null || this.closed) return
    const stream = new WireStream(this.mux)
    stream.attach(id, (hs) => {
      stream.session = hs.session
      if (!this.opts.onStream?.(stream)) stream.destroy()
    })
  }

  /** Flush what was sent (e.g. a final `end`) and close; gives up waiting after `timeoutMs`. */
  async end(timeoutMs = 1000): Promise<void> {
    if (this.closed) return
    const closed = new Promise<void>((resolve) => this.once('close', () => resolve()))
    this.conn.end()
    const t = setTimeout(() => this.close(), timeoutMs)
    await closed
    clearTimeout(t)
  }

  close(err?: Error): void {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.helloTimer)
    this.rejectReady(err ?? new WireError('closed', 'connection closed'))
    this.conn.destroy()
    this.emit('close', err)
  }

  get isClosed(): boolean {
    return this.closed
  }
}
