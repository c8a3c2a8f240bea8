/**
 * The one canonical form of a mint URL, used for wallet files, the key cache,
 * the received-proof log and same-mint checks alike, so `HTTP://Mint.example/`
 * and `http://mint.example` are one mint everywhere.
 *
 * Strict on purpose: a query or fragment is refused rather than dropped, since
 * two URLs differing only there would otherwise silently share one wallet.
 * For every URL it accepts, the result equals what the earlier, lenient
 * normaliser of the key cache produced, so data stored under it still loads.
 */
export function normalizeMintUrl(url: string): string {
  let u: URL
  try {
    u = new URL(url.trim())
  } catch {
    throw new Error(`"${url}" is not a mint URL; give one like http://127.0.0.1:3338 or https://mint.example.com`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new Error(`mint URL ${url} must start with http:// or https://`)
  }
  if (u.search || u.hash) throw new Error(`mint URL ${url} must not carry a query or fragment; give the mint's base URL`)
  // Path case is kept: mints may serve under a path.
  const path = u.pathname.replace(/\/+$/, '')
  return `${u.protocol}//${u.host.toLowerCase()}${path}`
}

export function sameMint(a: string, b: string): boolean {
  return normalizeMintUrl(a) === normalizeMintUrl(b)
}

/** sameMint for a URL someone else sent (a provider's terms or handler): one that is not a mint URL matches nothing. */
export function sameMintSafe(a: string, b: string): boolean {
  try {
    return sameMint(a, b)
  } catch {
    return false
  }
}
