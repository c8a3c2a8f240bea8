/** commander helpers for repeatable and comma-separated flags. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(',').map((s) => s.trim()).filter(Boolean)]
}

export function parseKinds(values: string[]): number[] {
  const kinds = values.map((v) => Number(v))
  for (const [i, k] of kinds.entries()) {
    if (!Number.isInteger(k) || k < 0 || k > 65535) throw new Error(`--kind "${values[i]}" is not a job kind (a whole number, e.g. 5050)`)
  }
  if (kinds.length === 0) throw new Error('give at least one --kind, e.g. --kind=5050')
  return [...new Set(kinds)]
}

export function parseIntFlag(name: string, value: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be a whole number from ${min} to ${max}, got "${value}"`)
  return n
}
