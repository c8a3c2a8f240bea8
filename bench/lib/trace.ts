/**
 * Experiment only (BENCH_TRACE=<dir>, never set by npm run bench): record a
 * CLOCK_MONOTONIC timestamp at every hop a tunnel request passes in this
 * process (TCP socket in/out, tunnel frame in/out) and write them to
 * <dir>/<pid>.json at exit, so timelines of several processes line up.
 */
import net from 'node:net'
import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { WireStream } from '../../src/wire/stream.js'

const dir = process.env.BENCH_TRACE
if (dir) {
  const events: Array<[string, number, number]> = []
  const now = (): number => Number(process.hrtime.bigint() / 1000n)
  const sockPush = net.Socket.prototype.push
  net.Socket.prototype.push = function (chunk: unknown, enc?: BufferEncoding) {
    if (chunk) events.push(['sock-in', now(), (chunk as Buffer).length])
    return sockPush.call(this, chunk, enc)
  }
  const sockWrite = net.Socket.prototype.write as (...a: unknown[]) => boolean
  net.Socket.prototype.write = function (this: net.Socket, ...a: unknown[]) {
    events.push(['sock-out', now(), (a[0] as Buffer).length])
    return sockWrite.apply(this, a)
  } as typeof net.Socket.prototype.write
  const proto = WireStream.prototype as unknown as { onData(b: Buffer): void; writeFrames(b: Buffer): Promise<void> }
  const onData = proto.onData
  proto.onData = function (b: Buffer) {
    events.push(['frame-in', now(), b.length])
    return onData.call(this, b)
  }
  const writeFrames = proto.writeFrames
  proto.writeFrames = function (b: Buffer) {
    events.push(['frame-out', now(), b.length])
    return writeFrames.call(this, b)
  }
  const { createRequire } = await import('node:module')
  const udx = createRequire(import.meta.url)('udx-native/lib/stream.js') as { prototype: { _writev(b: Buffer[], cb: unknown): void; _ondata(r: number): unknown } }
  const uw = udx.prototype._writev
  udx.prototype._writev = function (b: Buffer[], cb: unknown) {
    events.push(['udx-out', now(), b.reduce((n, x) => n + x.length, 0)])
    return uw.call(this, b, cb)
  }
  const ud = udx.prototype._ondata
  udx.prototype._ondata = function (r: number) {
    events.push(['udx-in', now(), r])
    return ud.call(this, r)
  }
  process.on('exit', () => {
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, `${process.argv[2] ?? 'child'}-${process.pid}.json`), JSON.stringify(events))
  })
}
