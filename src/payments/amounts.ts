/**
 * Cashu amounts: every proof carries a power of two (NUT-00). The checks on
 * amounts that come from outside (tokens) and the split of a sum into
 * denominations are shared by the wallet and the redeemer.
 */

/** All the sats there will ever be (21 million BTC): no honest token holds more. */
export const MAX_SATS = 2_100_000_000_000_000
/** The largest power of two below MAX_SATS: no honest proof is bigger. */
export const MAX_PROOF_AMOUNT = 2 ** 50
/** Most outputs one split may make; a mint takes at most 1000 per request. */
const MAX_PARTS = 1000

export function isPowerOfTwo(n: number): boolean {
  if (!Number.isSafeInteger(n) || n <= 0) return false
  let m = n
  while (m % 2 === 0) m /= 2
  return m === 1
}

/** Why a proof amount from outside cannot be genuine, or undefined if it can. */
export function proofAmountProblem(amount: unknown): string | undefined {
  if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount <= 0) return `a proof amount must be a whole number of sats above 0, got ${String(amount)}`
  if (amount > MAX_PROOF_AMOUNT) return `a proof of ${amount} sats is more than all the bitcoin there will ever be`
  if (!isPowerOfTwo(amount)) return `a proof amount must be a power of two (1, 2, 4, 8, …), got ${amount}`
  return undefined
}

/**
 * `amount` as denominations the keyset has keys for, largest first
 * (13 → [8, 4, 1] for a power-of-two keyset).
 */
export function splitAmount(amount: number, keyAmounts: Iterable<string | number>): number[] {
  if (!Number.isSafeInteger(amount) || amount < 0) throw new Error(`cannot split ${amount} sats: not a whole number of sats`)
  const denoms = [...new Set([...keyAmounts].map(Number))].filter((n) => Number.isSafeInteger(n) && n > 0).sort((a, b) => b - a)
  const out: number[] = []
  let rest = amount
  for (const d of denoms) {
    const k = Math.floor(rest / d)
    if (k === 0) continue
    if (out.length + k > MAX_PARTS) break
    for (let i = 0; i < k; i++) out.push(d)
    rest -= k * d
  }
  if (rest !== 0) {
    throw new Error(`cannot make ${amount} sats from the keyset's denominations (${denoms.slice(-4).join(', ')}${denoms.length > 4 ? ', …' : ''}) in at most ${MAX_PARTS} outputs`)
  }
  return out
}
