import type { Identity } from '../identity/nostr-key.js'
import type { NostrCrypto } from '../nostr/events.js'
import type { RelayPool } from '../nostr/relay-client.js'
import type { Processor } from '../processors/types.js'
import type { JobPayments, JobWallet, OfflineProofAcceptor } from './job-payments.js'
import type { RefundWallet } from './refunds.js'
import type { RateLimitOptions } from './rate-limit.js'
import type { ResultCacheOptions } from './result-cache.js'

/** How the provider's NIP-90 service (relay-jobs.ts) is set up, and what it reports. */
export interface RelayJobServiceOptions {
  identity: Identity
  /** relay URLs (the service opens and closes its own pool) or a pool shared with the rest of the agent */
  relays: string[] | RelayPool
  kinds: number[]
  processor: Processor
  crypto?: NostrCrypto
  /** sats one relay job costs: `perJob` (the provider's Pricing) or `perRequest` (a NIP-89 handler's pricing) */
  pricing?: { perJob?: number; perRequest?: number }
  /** jobs priced below this many sats are served free (an invoice is not worth it) */
  minPrice?: number
  /**
   * the provider's wallet (at `mintUrl`): issues invoices, receives ecash,
   * and sends refunds for paid jobs that end without a result; needed for paid jobs
   */
  wallet?: JobWallet & RefundWallet
  /**
   * where the refund ledger (relay-refunds.json) is kept: what paid jobs owe
   * back, durable across crashes. Default: the wallet's data dir. Without
   * either, a paid job that fails is not refunded automatically.
   */
  dataDir?: string
  /** how often refunds that could not be made or published are tried again (default 60 s) */
  refundRetryMs?: number
  /** the provider's own mint, which issues its invoices */
  mintUrl?: string
  /** mints whose tokens are accepted in a `cashu` param (default: mintUrl) */
  acceptedMints?: string[]
  /** hex private key of the payment key, to redeem tokens locked to it */
  paymentPrivkey?: string
  /** verifies locked 1-sat proofs in a `cashu` param offline (the TickVerifier) */
  offlineProofs?: OfflineProofAcceptor
  /** proofs for a job were stored offline: redeem them when convenient */
  onOfflineProofs?: (jobId: string) => void
  /** replaces the mint-backed payments (tests, other wallets) */
  payments?: JobPayments
  /** jobs running at once (--max-jobs) */
  maxJobs?: number
  /**
   * jobs held beyond those running: waiting for a slot, a payment or an
   * earlier job. A job gets its place when it arrives, before any payment is
   * asked for, so a paid job is never turned away as busy.
   */
  maxQueued?: number
  /** of the held jobs, how many may wait for a payment or for an earlier job in a chain */
  maxWaiting?: number
  /** per customer pubkey; false disables */
  rateLimit?: RateLimitOptions | false
  /**
   * error replies to requests that are malformed, unpayable or refused before
   * any work, for all customers together (a flood from many keys costs a
   * signature each); beyond it they are dropped silently. false disables.
   */
  errorReplyLimit?: { perMinute: number; burst: number } | false
  jobTimeoutMs?: number
  paymentTimeoutMs?: number
  chainTimeoutMs?: number
  /** a free job still running after this gets a `processing` feedback (paid jobs get one at once) */
  processingFeedbackAfterMs?: number
  /** streamed output is sent as `partial` feedback at most this often */
  partialIntervalMs?: number
  /** false disables caching results of identical requests */
  resultCache?: ResultCacheOptions | false
  /** serve requests that name no provider (`p`); default true */
  acceptUnaddressed?: boolean
  /**
   * also publish replies to the relays a request names in its `relays` tag
   * (NIP-90 asks for it; default true). Those are hosts the customer chose:
   * turn this off where outbound connections must stay on known relays.
   */
  requestRelays?: boolean
  /**
   * let a request's `relays` name loopback, private and link-local hosts.
   * Only for a provider on such a network itself (the devnet); elsewhere it
   * lets any customer make the provider connect inside its network.
   */
  privateRequestRelays?: boolean
  /** how long a result is retried while no relay accepts it */
  resultPublishDeadlineMs?: number
  /**
   * Sign replies in a worker thread. Default: only when signing is slow (WASM
   * or pure JS, 0.45–3 ms an event); with native libsecp256k1 (0.065 ms) the
   * hand-off to a thread costs more than the signature, so it signs inline.
   */
  signingThread?: boolean
  /** what the service is doing, for logs and --json output */
  onActivity?: (activity: JobActivity) => void
  /** operational notes (fallbacks, not per-job events) */
  log?: (line: string) => void
}

export type JobActivity =
  | { type: 'request'; id: string; customer: string; kind: number; encrypted: boolean }
  | { type: 'ignored'; id: string; reason: string }
  | { type: 'rejected'; id: string; reason: string }
  | { type: 'payment-required'; id: string; sats: number; bolt11: string }
  | { type: 'paid'; id: string; sats: number; via: 'invoice' | 'cashu' }
  | { type: 'started'; id: string; cached: boolean }
  | { type: 'result'; id: string; bytes: number; relays: number }
  | { type: 'failed'; id: string; reason: string }
  | { type: 'cancelled'; id: string }
  /** a paid job that ended without a result was given its money back (the feedback carrying the token reached a relay) */
  | { type: 'refunded'; id: string; sats: number }
  /** a refund could not be made now; it stays in the ledger and is retried */
  | { type: 'refund-owed'; id: string; sats: number; reason: string }
  | { type: 'publish-failed'; id: string; what: string; reason: string }
  /** an error reply was not sent: the global error-reply limit is spent */
  | { type: 'unanswered'; id: string; reason: string }
  /** relays from the request's `relays` tag that get no replies, and why */
  | { type: 'relays-skipped'; id: string; relays: Array<{ relay: string; reason: string }> }
