import { Duplex } from 'node:stream'

/** Bytes that went through a set of tunnel streams, each way. */
export interface ByteCounter {
  /** browser → provider */
  up: number
  /** provider → browser */
  down: number
}

export function newByteCounter(): ByteCounter {
  return { up: 0, down: 0 }
}

/**
 * Wrap a tunnel stream so every byte through it is counted, without changing
 * how it behaves: writes complete only when the inner stream took them, reads
 * pause the inner stream when our reader is full (so the wire's per-stream
 * backpressure still reaches the browser), an end or half-close passes
 * through, and a reset of either side resets the other.
 */
export function countingDuplex(inner: Duplex, counter: ByteCounter): Duplex {
  return new CountingDuplex(inner, counter)
}

class CountingDuplex extends Duplex {
  constructor(
    private readonly inner: Duplex,
    private readonly counter: ByteCounter,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024 })
    inner.on('data', (chunk: Buffer) => {
      counter.down += chunk.byteLength
      if (!this.push(chunk)) inner.pause()
    })
    inner.once('end', () => this.push(null))
    inner.once('error', (err: Error) => this.destroy(err))
    // A close without a clean end (the provider reset the stream) must reach
    // the browser as a reset, not hang or look like a finished response.
    inner.once('close', () => {
      if (!this.destroyed && !inner.readableEnded) this.destroy(new Error('tunnel stream closed before it finished'))
    })
  }

  override _read(): void {
    this.inner.resume()
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.counter.up += chunk.byteLength
    this.inner.write(chunk, encoding, (err) => cb(err ?? null))
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.inner.end(() => cb())
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.inner.destroyed) this.inner.destroy(err ?? undefined)
    cb(err)
  }
}
