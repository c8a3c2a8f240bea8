/**
 * The amount a BOLT-11 invoice asks for, read from its human-readable part
 * (`ln` + currency + amount + multiplier). The customer checks it against the
 * `amount` tag and its `--bid` before paying anything; no signature check is
 * needed for that, because the mint pays exactly what the invoice says.
 */
const MULTIPLIER_MSATS: Record<string, bigint> = {
  '': 100_000_000_000n,
  m: 100_000_000n,
  u: 100_000n,
  n: 100n,
}

/** Millisats the invoice asks for; undefined for an amountless invoice; throws on something that is not an invoice. */
export function bolt11AmountMsats(invoice: string): number | undefined {
  const lower = invoice.trim().toLowerCase()
  const sep = lower.lastIndexOf('1')
  if (!lower.startsWith('ln') || sep < 4 || lower.length > 7089) throw new Error('not a BOLT-11 invoice')
  const hrp = lower.slice(2, sep)
  const m = /^([a-z]+?)(?:(\d+)([munp]?))?$/.exec(hrp)
  if (!m) throw new Error('not a BOLT-11 invoice (malformed prefix)')
  if (m[2] === undefined) return undefined
  const amount = BigInt(m[2])
  const unit = m[3] ?? ''
  let msats: bigint
  if (unit === 'p') {
    // pico-bitcoin: 1 p = 0.1 msat; a valid invoice asks for whole millisats
    if (amount % 10n !== 0n) throw new Error('invoice amount is not a whole number of millisats')
    msats = amount / 10n
  } else {
    msats = amount * MULTIPLIER_MSATS[unit]!
  }
  if (msats > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('invoice amount is too large')
  return Number(msats)
}
