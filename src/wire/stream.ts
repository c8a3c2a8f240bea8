import { Duplex } from 'node:stream'
import c from 'compact-encoding'
import type Protomux from 'protomux'
import type { Channel, Message } from 'protomux'
import { STREAM_PROTOCOL, StreamOpen, WireError } from './protocol.js'

/** Largest data frame; bigger writes are split. */
export const MAX_FRAME = 64 * 1024
/** Bytes a sender may have in flight before the receiver grants more. Bounds buffering per stream. */
export const WINDOW = 1024 * 1024
/**
 * Credit goes back in grants of at least this much: small request/response
 * exchanges then cost no credit messages at all, and bulk transfers one per
 * quarter window instead of one per frame.
 */
export const GRANT_BATCH = WINDOW / 4
/** Corked writes totalling at most this are sent as one frame. */
const COALESCE_LIMIT = 16 * 1024

/**
 * One tunnel stream over a protomux channel, as a Node Duplex with its own
 * credit-based flow control: the receiver grants bytes as its reader consumes
 * them, so a slow reader stalls only its own stream, never the connection.
 */
export class WireStream extends Duplex {
  session: string
  private channel!: Channel
  private dataMsg!: Message<Buffer>
  private creditMsg!: Message<number>
  private endMsg!: Message<number>
  private credit = WINDOW
  /** received but not yet consumed by our reader */
  private owed = 0
  /** consumed by our reader, not yet granted back */
  private consumed = 0
  private creditWaiter: (() => void) | null = null
  private remoteEnded = false
  private localEnded = false
  private readonly mux: Protomux

  constructor(mux: Protomux, session = '') {
    super({ allowHalfOpen: true, highWaterMark: 256 * 1024 })
    this.mux = mux
    this.session = session
  }

  /** Create (initiator) or answer (responder) the protomux channel with `id`. */
  attach(id: Buffer, onopen?: (handshake: { session: string }) => void): boolean {
    const channel = this.mux.createChannel({
      protocol: STREAM_PROTOCOL,
      id,
      handshake: c.json,
      messages: [
        { encoding: c.raw, onmessage: (buf: Buffer) => this.onData(buf) },
        { encoding: c.uint, onmessage: (n: number) => this.onCredit(n) },
        { encoding: c.uint, onmessage: () => this.onRemoteEnd() },
      ],
      onopen: (handshake: unknown) => {
        // only the opener's handshake names the session; the answer carries none
        if (!onopen) return
        const parsed = StreamOpen.safeParse(handshake)
        if (!parsed.success) {
          this.destroy(new WireError('malformed', 'stream handshake names no valid session'))
          return
        }
        onopen?.(parsed.data)
      },
      onclose: () => {
        this.wake()
        if (!this.remoteEnded) this.destroy(new WireError('reset', 'stream closed by the peer before it finished'))
        // everything the peer sent has arrived: let the reader take it before closing
        else if (this.readableEnded) this.destroy()
        else this.once('end', () => this.destroy())
      },
      ondrain: () => this.wake(),
    })
    if (!channel) return false
    this.channel = channel
    this.dataMsg = channel.messages[0] as Message<Buffer>
    this.creditMsg = channel.messages[1] as Message<number>
    this.endMsg = channel.messages[2] as Message<number>
    channel.open(onopen ? {} : { session: this.session })
    return true
  }

  private onData(buf: Buffer): void {
    if (this.remoteEnded || buf.byteLength > MAX_FRAME) {
      this.destroy(new WireError('malformed', `stream frame of ${buf.byteLength} bytes after end or over ${MAX_FRAME}`))
      return
    }
    // Consumed immediately if the readable buffer had room; otherwise the grant
    // waits for _read, which is how a slow reader pushes back on the sender.
    if (this.push(buf)) this.grant(buf.byteLength)
    else this.owed += buf.byteLength
  }

  private grant(n: number): void {
    this.consumed += n
    if (this.consumed >= GRANT_BATCH && this.channel && !this.channel.closed) {
      this.creditMsg.send(this.consumed)
      this.consumed = 0
    }
  }

  private onCredit(n: number): void {
    this.credit += n
    if (this.credit > 4 * WINDOW) this.destroy(new WireError('malformed', 'peer granted more credit than the window allows'))
    else this.wake()
  }

  private onRemoteEnd(): void {
    this.remoteEnded = true
    this.push(null)
    this.maybeClose()
  }

  private wake(): void {
    const w = this.creditWaiter
    this.creditWaiter = null
    w?.()
  }

  private async waitCredit(): Promise<void> {
    await new Promise<void>((resolve) => (this.creditWaiter = resolve))
  }

  override _read(): void {
    const n = this.owed
    this.owed = 0
    this.grant(n)
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writeFrames(chunk).then(() => cb(), cb)
  }

  /**
   * Node's HTTP server writes a response's head and a small body as two
   * corked writes; sent apart they would cost two frames, two encryptions
   * and two datagrams. Small batches go out as one frame; big chunks as
   * they are (copying them would cost more than it saves).
   */
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    let total = 0
    for (const c of chunks) total += c.chunk.byteLength
    if (total <= COALESCE_LIMIT) {
      this.writeFrames(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk), total)).then(() => cb(), cb)
      return
    }
    const each = async (): Promise<void> => {
      for (const c of chunks) await this.writeFrames(c.chunk)
    }
    each().then(() => cb(), cb)
  }

  private async writeFrames(chunk: Buffer): Promise<void> {
    let off = 0
    while (off < chunk.byteLength) {
      if (this.destroyed || this.channel.closed) throw new WireError('closed', 'stream is closed')
      if (this.credit <= 0) {
        await this.waitCredit()
        continue
      }
      const n = Math.min(MAX_FRAME, this.credit, chunk.byteLength - off)
      const frame = chunk.subarray(off, off + n)
      off += n
      this.credit -= n
      // false: the connection's write buffer is full; wait for it to drain
      if (!this.dataMsg.send(frame)) await this.waitCredit()
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.localEnded = true
    if (!this.channel.closed) this.endMsg.send(0)
    this.maybeClose()
    cb()
  }

  private maybeClose(): void {
    if (this.localEnded && this.remoteEnded && !this.channel.closed) this.channel.close()
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.channel && !this.channel.closed) this.channel.close()
    this.wake()
    cb(err)
  }
}
