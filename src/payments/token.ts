import { getDecodedToken, getEncodedTokenV4, type Proof } from '@cashu/cashu-ts'
import { MAX_SATS, proofAmountProblem } from './amounts.js'

/** A Cashu token after decoding, whatever its wire version. */
export interface DecodedToken {
  mint: string
  unit: string
  proofs: Proof[]
  memo?: string
  /** 3 for `cashuA…` (JSON), 4 for `cashuB…` (CBOR). */
  version: 3 | 4
}

// Kept importable from here: the CLI and job payments name it through token.ts.
export { normalizeMintUrl, sameMint } from './mint-url.js'

/** Longest token text decoded: 1000 proofs with P2PK secrets and DLEQ proofs fit well within it. */
export const MAX_TOKEN_CHARS = 2 * 1024 * 1024
/** Most proofs one token may hold: a mint swaps at most 1000 inputs per request (nutshell's default). */
export const MAX_TOKEN_PROOFS = 1000

/** Decode `cashuA…` (V3) or `cashuB…` (V4), with or without a `cashu:` URI prefix. */
export function decodeToken(token: string): DecodedToken {
  if (token.length > MAX_TOKEN_CHARS) {
    throw new Error(`this Cashu token is too long (${token.length} characters, at most ${MAX_TOKEN_CHARS}); ask the sender for a smaller one`)
  }
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
  // Bounded before anything is blinded or journaled for these proofs.
  if (decoded.proofs.length > MAX_TOKEN_PROOFS) {
    throw new Error(`the Cashu token holds ${decoded.proofs.length} proofs; a token may hold at most ${MAX_TOKEN_PROOFS} proofs (ask the sender to split it)`)
  }
  let total = 0
  for (const p of decoded.proofs) {
    if (typeof p.secret !== 'string' || typeof p.C !== 'string' || typeof p.id !== 'string') {
      throw new Error('the Cashu token holds a malformed proof (secret, C or keyset id); it cannot be received')
    }
    const problem = proofAmountProblem(p.amount)
    if (problem) throw new Error(`the Cashu token holds a proof no mint issues: ${problem}; it cannot be received`)
    total += p.amount
  }
  if (total > MAX_SATS) throw new Error(`the Cashu token claims ${total} sats, more than all the bitcoin there will ever be; it is forged or corrupt`)
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
