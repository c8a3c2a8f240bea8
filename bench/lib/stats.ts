/** Small statistics helpers for the benchmarks: percentiles, rates and number formatting. */

/** The p-th percentile (0–100) of the samples, nearest-rank. NaN for no samples. */
export function percentile(samples: readonly number[], p: number, sorted = false): number {
  if (samples.length === 0) return NaN
  const s = sorted ? samples : [...samples].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * s.length) - 1
  return s[Math.min(s.length - 1, Math.max(0, rank))] as number
}

export interface Summary {
  n: number
  p50: number
  p90: number
  p99: number
  max: number
  mean: number
}

export function summarize(samples: readonly number[]): Summary {
  const s = [...samples].sort((a, b) => a - b)
  const mean = s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN
  return { n: s.length, p50: percentile(s, 50, true), p90: percentile(s, 90, true), p99: percentile(s, 99, true), max: s.length ? (s[s.length - 1] as number) : NaN, mean }
}

export function median(samples: readonly number[]): number {
  return percentile(samples, 50)
}

/** A number with thousands separators and a fixed number of decimals. */
export function fmt(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return String(x)
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** Megabytes (10^6 bytes) per second. */
export function mbps(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000)
}
