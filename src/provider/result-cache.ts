import { createHash } from 'node:crypto'
import type { Job } from '../processors/types.js'
import { LruMap } from '../nostr/bounded.js'

/**
 * Results of identical requests (same kind, inputs, params and output type),
 * so a repeated question is answered without running the processor again.
 * Params that carry payment (`cashu`) are not part of the identity of a job.
 * Bounded by entries and total bytes; entries expire after `ttlMs`.
 */
export interface ResultCacheOptions {
  maxEntries?: number
  maxBytes?: number
  ttlMs?: number
}

interface Entry {
  content: string
  bytes: number
  expires: number
}

/** Params that carry payment, never work: kept out of cache keys and away from processors */
export const PAYMENT_PARAMS = new Set(['cashu'])

export function withoutPaymentParams(params: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(params).filter(([k]) => !PAYMENT_PARAMS.has(k)))
}

export function jobCacheKey(job: Pick<Job, 'kind' | 'input' | 'params' | 'output'>): string {
  const params = Object.entries(withoutPaymentParams(job.params))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const canonical = JSON.stringify([job.kind, job.input.map((i) => [i.type, i.value, i.marker ?? '']), params, job.output ?? ''])
  return createHash('sha256').update(canonical).digest('hex')
}

export class ResultCache {
  private readonly entries: LruMap<string, Entry>
  private bytes = 0
  private readonly maxBytes: number
  private readonly ttlMs: number

  constructor(opts: ResultCacheOptions = {}) {
    this.entries = new LruMap(opts.maxEntries ?? 500, (_k, e) => {
      this.bytes -= e.bytes
    })
    this.maxBytes = opts.maxBytes ?? 16 * 1024 * 1024
    this.ttlMs = opts.ttlMs ?? 10 * 60_000
  }

  get(key: string, now = Date.now()): string | undefined {
    const e = this.entries.get(key)
    if (!e) return undefined
    if (e.expires <= now) {
      this.delete(key)
      return undefined
    }
    return e.content
  }

  set(key: string, content: string, now = Date.now()): void {
    const bytes = Buffer.byteLength(content)
    // One huge result must not flush everything else.
    if (bytes > this.maxBytes / 4) return
    this.delete(key)
    this.entries.set(key, { content, bytes, expires: now + this.ttlMs })
    this.bytes += bytes
    while (this.bytes > this.maxBytes && this.entries.evictOldest()) {
      // evictOldest's callback keeps `bytes` right
    }
  }

  get size(): number {
    return this.entries.size
  }

  get totalBytes(): number {
    return this.bytes
  }

  private delete(key: string): void {
    const e = this.entries.peek(key)
    if (e && this.entries.delete(key)) this.bytes -= e.bytes
  }
}
