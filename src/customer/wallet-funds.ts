import type { Wallet } from '../payments/wallet.js'
import type { PaymentKey } from '../payments/payment-key.js'
import type { SessionFunds } from './session-funds.js'
import type { WireProof } from '../wire/protocol.js'
import { sameXOnly } from '../payments/p2pk.js'
import { localTime } from '../util/local-time.js'
import { sumAmounts } from '../payments/token.js'

/** Session funds drawn from a Wallet, with the agent's payment key as the refund key. */
export function walletFunds(wallet: Wallet, mintUrl: string, refundKey: PaymentKey): SessionFunds {
  return {
    mintUrl,
    refundPubkey: refundKey.pubkey,
    lock: async (amount, payeePubkey, locktime) =>
      (await wallet.lockForPayee({ amount, payeePubkey, locktime, refundPubkey: refundKey.pubkey })) as WireProof[],
    markSpent: async (proofs) => {
      await wallet.markLockedPaid(proofs)
    },
  }
}

/**
 * Take back locked proofs whose locktime has passed and that the payee never
 * redeemed. Safe to call any time: proofs the payee did redeem are just
 * marked spent.
 */
export async function reclaimExpiredLocks(wallet: Wallet, refundKey: PaymentKey, nowSec = Math.floor(Date.now() / 1000)): Promise<{ reclaimed: number; alreadySpent: number; waiting: number; nextAt: number | null }> {
  const locked = await wallet.lockedProofs()
  const due = locked.filter((l) => l.lock.locktime < nowSec && sameXOnly(l.lock.refund, refundKey.pubkey))
  const later = locked.filter((l) => l.lock.locktime >= nowSec)
  let reclaimed = 0
  let alreadySpent = 0
  if (due.length > 0) {
    const r = await wallet.reclaimLocked(due.map((l) => l.proof), refundKey.privkey)
    reclaimed = r.reclaimed
    alreadySpent = r.alreadySpent
  }
  const nextAt = later.length ? Math.min(...later.map((l) => l.lock.locktime)) : null
  return { reclaimed, alreadySpent, waiting: later.length, nextAt }
}

/**
 * The error for a wallet with nothing to spend. It names the command that
 * funds this very wallet (`walletFlags`: its --data-dir and --devnet/--mint),
 * and says when sats locked to earlier sessions and jobs come back.
 */
export async function emptyWalletError(wallet: Wallet, o: { amount: number; walletFlags: string }): Promise<Error> {
  const locked = await wallet.lockedProofs().catch(() => [])
  const back = locked.length
    ? `; ${sumAmounts(locked.map((l) => l.proof))} sats are locked to providers until ${localTime(Math.max(...locked.map((l) => l.lock.locktime)))} and come back with \`dvm-wallet balance ${o.walletFlags}\` after that`
    : ''
  return new Error(`the wallet has no spendable sats${back}; fund it: dvm-wallet fund ${o.amount} ${o.walletFlags}`)
}
