import { getDecodedToken, getEncodedTokenV4, type Proof } from '@cashu/cashu-ts'

/** A Cashu token after decoding, whatever its wire version. */
export interface DecodedToken {
  mint: string
  unit: string
  proofs: Proof[]
  memo?: string
  /** 3 for `cashuA…` (JSON), 4 for `cashuB…` (CBOR). */
  version: 3 | 4
}

/**
 * Canonical form of a mint URL, so `HTTP://Mint.example/` and `http://mint.example`
 * name the same wallet file and the same-mint check on receive is not fooled by
 * spelling. Path case is kept (mints may serve under a path).
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
  if (u.search || u.hash) throw new Error(`mint URL ${url} must not carry a query or fragment`)
  const path = u.pathname.replace(/\/+$/, '')
  return `${u.protocol}//${u.host.toLowerCase()}${path}`
}

export function sameMint(a: string, b: string): boolean {
  return normalizeMintUrl(a) === normalizeMintUrl(b)
}

/** Decode `cashuA…` (V3) or `cashuB…` (V4), with or without a `cashu:` URI prefix. */
export function decodeToken(token: string): DecodedToken {
  const text = token.trim().replace(/^(web\+cashu:\/\/|cashu:\/\/|cashu:)/, '')
  const version = text.startsWith('cashuB') ? 4 : text.startsWith('cashuA') ? 3 : undefined
  if (version === undefined) {
    throw new Error('not a Cashu token: it should start with cashuB (V4) or cashuA (V3)')
  }
  let decoded: ReturnType<typeof getDecodedToken>
  try {
    decoded = getDecodedToken(text)
  } catch (err) {
    throw new Error(`the Cashu token could not be decoded (${err instanceof Error ? err.message : String(err)}); check it was copied whole`)
  }
  if (!decoded.mint) throw new Error('the Cashu token names no mint; ask the sender for a token that includes its mint URL')
  if (!Array.isArray(decoded.proofs) || decoded.proofs.length === 0) throw new Error('the Cashu token holds no proofs')
  for (const p of decoded.proofs) {
    if (!Number.isSafeInteger(p.amount) || p.amount <= 0 || typeof p.secret !== 'string' || typeof p.C !== 'string' || typeof p.id !== 'string') {
      throw new Error('the Cashu token holds a malformed proof (amount, secret, C or keyset id); it cannot be received')
    }
  }
  return {
    mint: decoded.mint,
    unit: decoded.unit ?? 'sat',
    proofs: decoded.proofs,
    ...(decoded.memo ? { memo: decoded.memo } : {}),
    version,
  }
}

/**
 * Encode proofs as a V4 (`cashuB`) token. DLEQ proofs (with the blinding factor
 * `r`) travel inside so the receiver can check them without asking the mint.
 */
export function encodeToken(mint: string, proofs: Proof[], opts: { unit?: string; memo?: string } = {}): string {
  if (proofs.length === 0) throw new Error('cannot encode an empty token')
  return getEncodedTokenV4({
    mint,
    proofs,
    unit: opts.unit ?? 'sat',
    ...(opts.memo ? { memo: opts.memo } : {}),
  })
}

export function sumAmounts(proofs: ReadonlyArray<{ amount: number }>): number {
  let total = 0
  for (const p of proofs) total += p.amount
  return total
}
