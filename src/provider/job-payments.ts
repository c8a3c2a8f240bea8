import { CashuMint, CashuWallet, type Proof } from '@cashu/cashu-ts'
import { decodeToken, sameMint, type DecodedToken } from '../payments/token.js'

/**
 * How a relay job gets paid, from the provider's side. Two ways in:
 *
 * - Lightning without a node: the provider asks its own mint for a mint quote
 *   (NUT-04), hands the bolt11 to the customer in a `payment-required`
 *   feedback, polls the quote, and once it is paid mints the ecash and adds it
 *   to its wallet.
 * - Cashu in the request: a token in a `cashu` param.
 *   - 1-sat proofs P2PK-locked (NUT-11) to the provider's payment key, with
 *     DLEQ proofs and a locktime, are verified offline by the tick verifier
 *     and stored for batch redemption, exactly like P2P session ticks: no mint
 *     round trip while the customer waits. Such a token is safe to send in a
 *     plain request, since only the provider can spend it.
 *   - Anything else (unlocked proofs, other denominations, proofs without
 *     DLEQ) is swapped online at the mint (NUT-03), which proves it unspent
 *     and makes it ours; locked proofs are signed with the payment key. An
 *     unlocked token must travel in an encrypted request, or anyone reading
 *     the relay can take it first.
 */
export interface Invoice {
  bolt11: string
  sats: number
  /** resolves once paid and the ecash is in the wallet; rejects on expiry, abort or mint failure */
  settled(signal: AbortSignal): Promise<void>
}

export interface JobPayments {
  invoice(sats: number, description?: string): Promise<Invoice>
  /** Take a Cashu token worth at least `minSats` for job `jobId`; resolve the sats received. Throws PaymentRefused saying why. */
  acceptToken(encoded: string, minSats: number, jobId: string): Promise<number>
}

/** Offline verification of locked 1-sat proofs: the project's TickVerifier fits. */
export interface OfflineProofAcceptor {
  verify(proof: unknown, mintUrl: string): { ok: true } | { ok: false; reason: string }
  /** verify again and store durably (the replay check that counts) */
  accept(sessionId: string, proof: unknown, mintUrl: string): Promise<{ ok: true } | { ok: false; reason: string }>
}

/** What a wallet needs to offer to receive ecash (the project's Wallet does). */
export interface ProofSink {
  addProofs(proofs: Proof[]): Promise<unknown> | unknown
}

export class PaymentRefused extends Error {
  override name = 'PaymentRefused'
}

export interface MintJobPaymentsOptions {
  /** the provider's own mint: invoices come from here */
  mintUrl: string
  wallet: ProofSink
  /** mints whose tokens are accepted in requests (default: just mintUrl) */
  acceptedMints?: string[]
  /** hex private key of the payment key, to redeem P2PK-locked proofs */
  paymentPrivkey?: string
  pollMs?: number
  /** refuse tokens whose swap would cost input fees (default: refuse any fee) */
  maxInputFeePpk?: number
  /** verifies locked 1-sat proofs offline; without it every token is swapped online */
  offline?: OfflineProofAcceptor
  /** called once proofs for `jobId` were stored offline, so they can be redeemed */
  onOfflineAccepted?: (jobId: string) => void
}

const MAX_TOKEN_CHARS = 16 * 1024
const MAX_TOKEN_PROOFS = 64

/** A NUT-10 secret is a JSON array starting with the kind: `["P2PK", {…}]`. */
function isP2PKSecret(secret: string): boolean {
  return /^\s*\[\s*"P2PK"/.test(secret)
}

export class MintJobPayments implements JobPayments {
  private readonly cashu: CashuWallet
  private loaded: Promise<void> | undefined
  private readonly pollMs: number

  constructor(private readonly opts: MintJobPaymentsOptions) {
    this.cashu = new CashuWallet(new CashuMint(opts.mintUrl), { unit: 'sat' })
    this.pollMs = opts.pollMs ?? 500
  }

  private load(): Promise<void> {
    this.loaded ??= this.cashu.loadMint().catch((err: unknown) => {
      this.loaded = undefined
      throw new Error(`cannot reach the mint ${this.opts.mintUrl} (${(err as Error).message}); is it running?`)
    })
    return this.loaded
  }

  async invoice(sats: number, description?: string): Promise<Invoice> {
    if (!Number.isSafeInteger(sats) || sats <= 0) throw new RangeError(`an invoice needs a positive whole number of sats, got ${sats}`)
    await this.load()
    const quote = await this.cashu.createMintQuote(sats, description)
    return {
      bolt11: quote.request,
      sats,
      settled: (signal) => this.settle(quote.quote, sats, quote.expiry, signal),
    }
  }

  private async settle(quoteId: string, sats: number, expiry: number | null | undefined, signal: AbortSignal): Promise<void> {
    for (;;) {
      signal.throwIfAborted()
      const q = await this.cashu.checkMintQuote(quoteId)
      if (q.state === 'PAID') break
      if (q.state === 'ISSUED') throw new Error(`mint quote ${quoteId} was already issued; the ecash for it was minted elsewhere`)
      if (expiry && Date.now() / 1000 > expiry) throw new Error('the invoice expired unpaid')
      await sleep(this.pollMs, signal)
    }
    // Minting is not abortable: once paid, the ecash must land in the wallet.
    const proofs = await this.cashu.mintProofs(sats, quoteId)
    await this.opts.wallet.addProofs(proofs)
  }

  async acceptToken(encoded: string, minSats: number, jobId: string): Promise<number> {
    if (encoded.length > MAX_TOKEN_CHARS) throw new PaymentRefused(`the cashu token is ${encoded.length} characters, limit ${MAX_TOKEN_CHARS}`)
    let token: DecodedToken
    try {
      token = decodeToken(encoded)
    } catch (err) {
      throw new PaymentRefused(`the cashu param is not usable: ${(err as Error).message}`)
    }
    const accepted = this.opts.acceptedMints ?? [this.opts.mintUrl]
    if (!accepted.some((m) => sameMint(m, token.mint))) {
      throw new PaymentRefused(`tokens from ${token.mint} are not accepted; this provider takes ${accepted.join(', ')}`)
    }
    if (token.unit !== 'sat') throw new PaymentRefused(`token unit "${token.unit}" is not accepted; send sats`)
    if (token.proofs.length > MAX_TOKEN_PROOFS) throw new PaymentRefused(`a token may hold at most ${MAX_TOKEN_PROOFS} proofs`)
    const total = token.proofs.reduce((n, p) => n + p.amount, 0)
    // Check the amount before anything else: a short token is refused
    // untouched, so the customer keeps it.
    if (total < minSats) throw new PaymentRefused(`the token holds ${total} sats; this job costs ${minSats}`)

    const offline = this.opts.offline
    if (offline && token.proofs.every((p) => p.amount === 1 && isP2PKSecret(p.secret))) {
      return this.acceptOffline(offline, token, jobId)
    }
    return this.swapOnline(token, minSats)
  }

  private async acceptOffline(offline: OfflineProofAcceptor, token: DecodedToken, jobId: string): Promise<number> {
    // Verify all before storing any, so a token with one bad proof is refused whole.
    for (const p of token.proofs) {
      const v = offline.verify(p, token.mint)
      if (!v.ok) throw new PaymentRefused(`a proof in the token was refused: ${v.reason}`)
    }
    let got = 0
    for (const p of token.proofs) {
      const v = await offline.accept(jobId, p, token.mint)
      if (!v.ok) {
        if (got > 0) this.opts.onOfflineAccepted?.(jobId)
        throw new PaymentRefused(`a proof in the token was refused: ${v.reason}`)
      }
      got += p.amount
    }
    this.opts.onOfflineAccepted?.(jobId)
    return got
  }

  private async swapOnline(token: DecodedToken, minSats: number): Promise<number> {
    if (!sameMint(token.mint, this.opts.mintUrl)) {
      throw new PaymentRefused(`tokens that are not locked to this provider's payment key are swapped at ${this.opts.mintUrl}; send a token from that mint`)
    }
    await this.load()
    const fee = this.cashu.getFeesForProofs(token.proofs)
    if (fee > 0 && (this.opts.maxInputFeePpk ?? 0) === 0) {
      throw new PaymentRefused(`the mint charges ${fee} sat in input fees for this token; this provider only takes fee-free keysets`)
    }
    let proofs: Proof[]
    try {
      proofs = await this.cashu.receive({ mint: token.mint, unit: token.unit, proofs: token.proofs }, this.opts.paymentPrivkey ? { privkey: this.opts.paymentPrivkey } : undefined)
    } catch (err) {
      throw new PaymentRefused(`the mint refused the token (${(err as Error).message}); it may be spent already or locked to another key`)
    }
    await this.opts.wallet.addProofs(proofs)
    const received = proofs.reduce((n, p) => n + p.amount, 0)
    if (received < minSats) throw new PaymentRefused(`the token was worth ${received} sats after fees; this job costs ${minSats}`)
    return received
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(t)
      reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
