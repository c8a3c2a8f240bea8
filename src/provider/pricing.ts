/**
 * The provider's prices. A tick is one 1-sat proof, so a price is really a
 * rate: how long (sessions) or how much output (jobs) one sat buys.
 */
export interface Pricing {
  /** sats per minute of a time-based session (tunnel, interactive use) */
  perMinute: number
  /** one sat buys this many chunks of streamed job output */
  chunksPerSat: number
  /** sats for a whole relay (NIP-90) job; 0 = free */
  perJob: number
}

export const DEFAULT_PRICING: Pricing = { perMinute: 60, chunksPerSat: 10, perJob: 0 }

export function validatePricing(p: Pricing): Pricing {
  if (!Number.isInteger(p.perMinute) || p.perMinute < 1 || p.perMinute > 6000) {
    throw new Error(`--price-per-minute must be a whole number of sats from 1 to 6000 (one 1-sat tick every 10 ms at most), got ${p.perMinute}`)
  }
  if (!Number.isInteger(p.chunksPerSat) || p.chunksPerSat < 1) throw new Error(`--chunks-per-sat must be a positive whole number, got ${p.chunksPerSat}`)
  if (!Number.isInteger(p.perJob) || p.perJob < 0) throw new Error(`--price-per-job must be a whole number of sats, got ${p.perJob}`)
  return p
}

/** Milliseconds of session time one 1-sat tick buys. */
export function tickMs(p: Pricing): number {
  return Math.floor(60_000 / p.perMinute)
}
