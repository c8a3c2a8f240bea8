import { LruMap } from '../nostr/bounded.js'

/**
 * Per-pubkey token buckets: each customer gets `burst` requests at once and
 * `perMinute` more every minute. Relay requests are free to send, so without
 * this one key could fill the queue for everyone.
 *
 * Memory is bounded (`maxKeys` buckets, least recently seen forgotten first):
 * a flood of fresh keys costs a forgotten bucket, which at worst gives that
 * key its burst again — never unbounded growth.
 */
export interface RateLimitOptions {
  perMinute: number
  burst: number
  maxKeys?: number
}

export type RateDecision =
  | { ok: true }
  /** `notify`: tell the customer once per refill period, then drop silently (answering every flood message costs a signature) */
  | { ok: false; retryAfterMs: number; notify: boolean }

interface Bucket {
  tokens: number
  updated: number
  notifiedAt: number
}

export class PubkeyRateLimiter {
  private readonly buckets: LruMap<string, Bucket>
  private readonly ratePerMs: number

  constructor(private readonly opts: RateLimitOptions) {
    if (!(opts.perMinute > 0) || !(opts.burst >= 1)) throw new RangeError('rate limit needs perMinute > 0 and burst >= 1')
    this.buckets = new LruMap(opts.maxKeys ?? 10_000)
    this.ratePerMs = opts.perMinute / 60_000
  }

  take(pubkey: string, now = Date.now()): RateDecision {
    let b = this.buckets.get(pubkey)
    if (!b) {
      b = { tokens: this.opts.burst, updated: now, notifiedAt: -Infinity }
      this.buckets.set(pubkey, b)
    }
    b.tokens = Math.min(this.opts.burst, b.tokens + (now - b.updated) * this.ratePerMs)
    b.updated = now
    if (b.tokens >= 1) {
      b.tokens -= 1
      return { ok: true }
    }
    const retryAfterMs = Math.ceil((1 - b.tokens) / this.ratePerMs)
    const notify = now - b.notifiedAt >= 60_000
    if (notify) b.notifiedAt = now
    return { ok: false, retryAfterMs, notify }
  }
}

/**
 * One token bucket for the whole service: bounds work that per-key limits
 * cannot, because a flood may come from many fresh keys (each signed reply
 * costs a signature and a publish).
 */
export class TokenBucket {
  private tokens: number
  private updated: number
  private readonly ratePerMs: number

  constructor(
    private readonly opts: { perMinute: number; burst: number },
    now = Date.now(),
  ) {
    if (!(opts.perMinute > 0) || !(opts.burst >= 1)) throw new RangeError('a token bucket needs perMinute > 0 and burst >= 1')
    this.tokens = opts.burst
    this.updated = now
    this.ratePerMs = opts.perMinute / 60_000
  }

  /** Take one token; false when none is left (the caller drops the work). */
  take(now = Date.now()): boolean {
    this.tokens = Math.min(this.opts.burst, this.tokens + Math.max(0, now - this.updated) * this.ratePerMs)
    this.updated = now
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}
