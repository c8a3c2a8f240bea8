/**
 * Experiments used to size suggestions for other modules; switched on by
 * environment variables only, never by `npm run bench`.
 *
 * BENCH_EXPERIMENT_WRITEV=1: give WireStream (src/wire/stream.ts) a _writev
 * that sends the chunks Node has corked together (an HTTP response's head,
 * body and end) as one frame and skips empty ones, instead of one protomux
 * message, one encryption and one credit grant per chunk.
 */
export function experimentWritev(proto: object): void {
  const p = proto as { _write(chunk: Buffer, enc: string, cb: (err?: Error | null) => void): void; _writev?: (chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void) => void }
  p._writev = function (chunks, cb) {
    const bufs = chunks.map((c) => c.chunk).filter((b) => b.length > 0)
    if (bufs.length === 0) return cb()
    this._write(bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs), 'buffer', cb)
  }
}
