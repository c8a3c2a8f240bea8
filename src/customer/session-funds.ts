import type { WireProof } from '../wire/protocol.js'

/**
 * What a session needs from the customer's wallet: 1-sat proofs locked to the
 * provider in one swap, kept durably until they are acknowledged, and the
 * unsent ones reclaimable with the refund key after their locktime.
 */
export interface SessionFunds {
  /** the mint these proofs come from */
  readonly mintUrl: string
  /** the customer's refund key (hex, compressed) */
  readonly refundPubkey: string
  /** One swap: `amount` proofs of 1 sat locked to `payeePubkey` until `locktime` (unix s). */
  lock(amount: number, payeePubkey: string, locktime: number): Promise<WireProof[]>
  /** The provider acknowledged these: they are its now. */
  markSpent(proofs: WireProof[]): Promise<void>
}
