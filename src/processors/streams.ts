/**
 * Small incremental parsers shared by the processors: text split into lines
 * as bytes arrive (exec stdout, ndjson bodies), Server-Sent Events, and a
 * bounded tail of a byte stream for error messages. Each holds only its own
 * partial input.
 */
import { StringDecoder } from 'node:string_decoder'

/**
 * Splits a byte stream into lines, keeping each '\n' so that the lines joined
 * are exactly the input. A line longer than `maxLine` characters is cut, so a
 * program that never prints a newline still streams and cannot grow memory.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8')
  private pending = ''

  constructor(private readonly maxLine = 64 * 1024) {}

  push(bytes: Uint8Array | string): string[] {
    this.pending += typeof bytes === 'string' ? bytes : this.decoder.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    return this.take()
  }

  /** Whatever is left after the input ended (no trailing newline). */
  end(): string[] {
    this.pending += this.decoder.end()
    const lines = this.take()
    if (this.pending.length > 0) lines.push(this.pending)
    this.pending = ''
    return lines
  }

  private take(): string[] {
    const lines: string[] = []
    let start = 0
    for (;;) {
      const nl = this.pending.indexOf('\n', start)
      if (nl === -1) break
      let line = this.pending.slice(start, nl + 1)
      while (line.length > this.maxLine) {
        const cut = this.cutAt(line)
        lines.push(line.slice(0, cut))
        line = line.slice(cut)
      }
      lines.push(line)
      start = nl + 1
    }
    this.pending = this.pending.slice(start)
    while (this.pending.length >= this.maxLine) {
      const cut = this.cutAt(this.pending)
      lines.push(this.pending.slice(0, cut))
      this.pending = this.pending.slice(cut)
    }
    return lines
  }

  /** Where to cut an over-long line: never between the two halves of a surrogate pair. */
  private cutAt(s: string): number {
    const code = s.charCodeAt(this.maxLine - 1)
    return code >= 0xd800 && code <= 0xdbff ? this.maxLine - 1 : this.maxLine
  }
}

export interface SseEvent {
  event: string
  data: string
  id?: string
}

/**
 * Server-Sent Events per the WHATWG rules: fields per line, an empty line
 * dispatches, `data` lines join with '\n', comments (':') and `retry` are
 * ignored, CRLF / CR / LF all end a line.
 */
export class SseParser {
  private readonly decoder = new StringDecoder('utf8')
  private buffer = ''
  private data: string[] = []
  private event = ''
  private id: string | undefined
  private sawCr = false

  constructor(private readonly maxEvent = 1024 * 1024) {}

  push(bytes: Uint8Array | string): SseEvent[] {
    this.buffer += typeof bytes === 'string' ? bytes : this.decoder.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    const events: SseEvent[] = []
    let start = 0
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i]
      if (c === '\n' && this.sawCr) {
        // the LF of a CRLF: the line already ended at the CR
        this.sawCr = false
        start = i + 1
        continue
      }
      this.sawCr = c === '\r'
      if (c === '\n' || c === '\r') {
        const ev = this.line(this.buffer.slice(start, i))
        if (ev) events.push(ev)
        start = i + 1
      }
    }
    this.buffer = this.buffer.slice(start)
    if (this.buffer.length + this.data.reduce((n, d) => n + d.length, 0) > this.maxEvent) {
      throw new Error(`an event-stream event is larger than ${this.maxEvent} bytes`)
    }
    return events
  }

  /** At end of input an unterminated event is discarded, as the spec says. */
  end(): SseEvent[] {
    return []
  }

  private line(line: string): SseEvent | undefined {
    if (line === '') {
      if (this.data.length === 0) {
        this.event = ''
        return undefined
      }
      const ev: SseEvent = { event: this.event || 'message', data: this.data.join('\n'), ...(this.id === undefined ? {} : { id: this.id }) }
      this.data = []
      this.event = ''
      return ev
    }
    if (line.startsWith(':')) return undefined
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'data') this.data.push(value)
    else if (field === 'event') this.event = value
    else if (field === 'id' && !value.includes('\0')) this.id = value
    return undefined
  }
}

/** Keeps the last `max` bytes written, for "…and stderr said: …" messages. */
export class TailBuffer {
  private chunks: Buffer[] = []
  private size = 0

  constructor(private readonly max = 2048) {}

  push(bytes: Uint8Array): void {
    const b = Buffer.from(bytes)
    this.chunks.push(b)
    this.size += b.byteLength
    while (this.size - (this.chunks[0]?.byteLength ?? 0) >= this.max) {
      this.size -= this.chunks.shift()!.byteLength
    }
  }

  /** The tail as trimmed text, '…' in front when something was dropped. */
  text(): string {
    const all = Buffer.concat(this.chunks)
    const cut = all.byteLength > this.max
    const s = all.subarray(Math.max(0, all.byteLength - this.max)).toString('utf8').trim()
    return cut ? `…${s}` : s
  }
}

/** The last `max` characters of a string, on one line, for error messages. */
export function tailText(s: string, max = 500): string {
  const flat = s.replace(/\s+/g, ' ').trim()
  return flat.length > max ? `…${flat.slice(flat.length - max)}` : flat
}
