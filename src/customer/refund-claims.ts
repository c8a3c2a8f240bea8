import type { Event } from 'nostr-tools/core'
import type { Identity } from '../identity/nostr-key.js'
import { decryptFrom } from '../nostr/encryption.js'
import { JOB_FEEDBACK_KIND, parseFeedback } from '../nostr/nip90.js'
import type { RelayPool } from '../nostr/relay-client.js'

/**
 * Refunds that reached the relays after the customer stopped listening: a job
 * given up on (timeout, Ctrl-C) or a provider that could only pay its refund
 * later (its relay or its wallet was down) publishes the closing `error` with
 * its `refund` tag whenever it can. These are found again by asking the relays
 * for job feedback addressed to our key, and decrypted here; receiving the
 * tokens is the wallet's business (which also tells one already received).
 */
export interface FoundRefund {
  /** the job request the refund is for */
  jobId: string
  provider: string
  /** what the provider's tag says it is worth */
  msats: number
  /** the decrypted Cashu token */
  token: string
  /** when the feedback was published (unix seconds) */
  at: number
}

export interface UnreadableRefund {
  jobId: string
  provider: string
  msats: number
  reason: string
}

export interface RefundSearch {
  pool: RelayPool
  identity: Identity
  /** unix seconds: feedback published before this is not looked at */
  since: number
  /** how long to wait for the relays' stored events (default 5 s) */
  timeoutMs?: number
}

/** At most this many feedback events are read: a relay flooding us cannot make the search unbounded. */
const MAX_EVENTS = 2000
const TOKEN_RE = /^cashu[AB][A-Za-z0-9_=+/-]+$/

export async function findRefunds(o: RefundSearch): Promise<{ refunds: FoundRefund[]; unreadable: UnreadableRefund[] }> {
  const events = await o.pool.query([{ kinds: [JOB_FEEDBACK_KIND], '#p': [o.identity.pubkey], since: o.since }], { timeoutMs: o.timeoutMs ?? 5000, maxEvents: MAX_EVENTS })
  return readRefunds(events, o.identity)
}

/** The refunds among feedback events, one per token (providers publish the same token again until a relay takes it). */
export function readRefunds(events: ReadonlyArray<Event>, identity: Identity): { refunds: FoundRefund[]; unreadable: UnreadableRefund[] } {
  const refunds = new Map<string, FoundRefund>()
  const unreadable = new Map<string, UnreadableRefund>()
  for (const ev of [...events].sort((a, b) => a.created_at - b.created_at)) {
    const parsed = parseFeedback(ev)
    if (!parsed.ok) continue
    const fb = parsed.value
    // Only the customer of the job is owed its refund; a tag on someone else's feedback is not ours to take.
    if (fb.status !== 'error' || !fb.refund || fb.customer !== identity.pubkey) continue
    const base = { jobId: fb.requestId, provider: fb.provider, msats: fb.refund.msats }
    let token: string
    try {
      token = decryptFrom(identity.secretKey, fb.provider, fb.refund.ciphertext).plaintext.trim()
    } catch (err) {
      unreadable.set(fb.refund.ciphertext, { ...base, reason: `it cannot be decrypted: ${(err as Error).message}` })
      continue
    }
    if (!TOKEN_RE.test(token)) {
      unreadable.set(fb.refund.ciphertext, { ...base, reason: 'it is not a Cashu token' })
      continue
    }
    if (!refunds.has(token)) refunds.set(token, { ...base, token, at: fb.createdAt })
  }
  return { refunds: [...refunds.values()], unreadable: [...unreadable.values()] }
}
