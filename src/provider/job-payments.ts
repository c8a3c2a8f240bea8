import { decodeToken, sameMint, type DecodedToken } from '../payments/token.js'
import { quoteState, watchQuote } from './invoice-watch.js'

/**
 * How a relay job gets paid, from the provider's side.
 *
 * - Lightning without a node: the provider's wallet asks its own mint for a
 *   mint quote (NUT-04) and journals it; the bolt11 goes to the customer in a
 *   `payment-required` feedback; once the quote is paid the wallet mints the
 *   ecash. Because the quote is journaled first, an invoice paid after a crash
 *   or a timeout is still minted on the wallet's next start. The wait for the
 *   payment is watched here (invoice-watch.ts), not in the wallet's own loop,
 *   so it ends with the job.
 * - Cashu in the request, in a `cashu` param:
 *   - 1-sat proofs P2PK-locked (NUT-11) to the provider's payment key, with
 *     DLEQ proofs (NUT-12) and a locktime, are verified offline by the tick
 *     verifier and stored for batch redemption, like P2P session ticks: no
 *     mint round trip while the customer waits. Such a token is safe even in
 *     a plain request: only the provider can spend it.
 *   - Other proofs locked to the payment key are swapped online, signed with it.
 *   - Unlocked proofs are received online by the wallet (NUT-03 swap), which
 *     proves them unspent and makes them ours. They must travel in an
 *     encrypted request, or anyone reading the relay could take them first.
 */
export interface Invoice {
  bolt11: string
  sats: number
  /** the mint quote behind it: a payment that arrives after the job is over is found through it */
  quote: string
  /** epoch ms after which it can no longer be paid, when the mint says */
  expiresAt?: number
  /**
   * Resolves once paid and the ecash is in the wallet; rejects on expiry, mint
   * failure, or when `signal` aborts first. An abort also stops watching the
   * invoice. If the last look at an aborted invoice finds it paid after all,
   * this resolves: the money arrived, and the caller decides what follows.
   */
  settled(signal: AbortSignal): Promise<void>
}

export interface JobPayments {
  /** An invoice for `sats`; `signal` ends every wait on it (the job was cancelled, timed out, or the provider stops). */
  invoice(sats: number, signal?: AbortSignal): Promise<Invoice>
  /** Take a Cashu token worth at least `minSats` for job `jobId`; resolve the sats received. Throws PaymentRefused saying why. */
  acceptToken(encoded: string, minSats: number, jobId: string): Promise<number>
  /**
   * An invoice whose job is over: `paid` once its money is in the wallet (it
   * is minted here if it was not yet), `unpaid` while it may still be paid
   * (or the mint cannot be asked), `expired` once it never can be.
   */
  lateInvoice?(quote: string, expiresAt: number | undefined): Promise<'paid' | 'unpaid' | 'expired'>
}

/** What the provider's wallet offers (the project's Wallet fits). */
export interface JobWallet {
  fund(amount: number, opts: { onInvoice?: (bolt11: string, quoteId: string, expiry: number | null) => void | Promise<void>; timeoutMs?: number; pollMs?: number }): Promise<unknown>
  /** settle journaled operations no longer running: mints a quote paid after fund() stopped waiting */
  recover(): Promise<unknown>
  /** swap a token's proofs for the wallet's own, journaled; `privkey` signs proofs locked to its key */
  receive(token: string, opts?: { privkey?: string }): Promise<{ amount: number }>
}

/** Offline verification of locked 1-sat proofs (the project's TickVerifier fits). */
export interface OfflineProofAcceptor {
  verify(proof: unknown, mintUrl: string): { ok: true } | { ok: false; reason: string }
  /** verify again and store durably (the replay check that counts) */
  accept(sessionId: string, proof: unknown, mintUrl: string): Promise<{ ok: true } | { ok: false; reason: string }>
}

export class PaymentRefused extends Error {
  override name = 'PaymentRefused'
  /**
   * @param receivedSats what was taken before the payment fell short (fees, a
   *   replayed proof among fresh ones): the caller owes it back.
   */
  constructor(message: string, readonly receivedSats = 0) {
    super(message)
  }
}

export interface WalletJobPaymentsOptions {
  /** the provider's own mint: its wallet's mint, which issues the invoices */
  mintUrl: string
  wallet: JobWallet
  /** mints whose tokens are accepted in requests (default: just mintUrl) */
  acceptedMints?: string[]
  /** hex private key of the payment key, to swap proofs locked to it */
  paymentPrivkey?: string
  /** verifies locked 1-sat proofs offline; without it every token is swapped online */
  offline?: OfflineProofAcceptor
  /** called once proofs for `jobId` were stored offline, so they can be redeemed */
  onOfflineAccepted?: (jobId: string) => void
  /** how long an invoice is watched (the wallet keeps the quote after that, and mints it if it is paid later) */
  invoiceTimeoutMs?: number
  pollMs?: number
}

const MAX_TOKEN_CHARS = 16 * 1024
/** how long the wallet may take to mint once the invoice was seen paid */
const MINT_AFTER_PAYMENT_MS = 60_000
const MAX_TOKEN_PROOFS = 64

/** A NUT-10 secret is a JSON array starting with its kind: `["P2PK", {…}]`. */
function isP2PKSecret(secret: string): boolean {
  return /^\s*\[\s*"P2PK"/.test(secret)
}

export class WalletJobPayments implements JobPayments {
  constructor(private readonly opts: WalletJobPaymentsOptions) {}

  invoice(sats: number, signal?: AbortSignal): Promise<Invoice> {
    if (!Number.isSafeInteger(sats) || sats <= 0) return Promise.reject(new RangeError(`an invoice needs a positive whole number of sats, got ${sats}`))
    const pollMs = this.opts.pollMs ?? 500
    const timeoutMs = this.opts.invoiceTimeoutMs ?? 600_000
    return new Promise((resolveInvoice, rejectInvoice) => {
      let invoiceGiven = false
      // Ends the watch: the caller's signal, or the one given to settled().
      const stop = new AbortController()
      const onStop = (): void => {
        stop.abort(signal?.reason)
        // Nobody waits for an invoice any more: do not hold the caller until the mint answers.
        if (!invoiceGiven) rejectInvoice(signal?.reason)
      }
      if (signal?.aborted) return onStop()
      signal?.addEventListener('abort', onStop, { once: true })
      const funded: Promise<unknown> = this.opts.wallet.fund(sats, {
        // Only the minting after the payment runs inside the wallet's own loop, which
        // takes no signal: it starts once our watch saw the quote paid, and is short.
        timeoutMs: MINT_AFTER_PAYMENT_MS,
        pollMs,
        onInvoice: (bolt11, quoteId, expiry) => {
          // Abandoned before the mint answered: nobody will see this bolt11, so nobody
          // can pay it. It is not watched; the wallet keeps the quote until it expires.
          if (stop.signal.aborted) return Promise.reject(new PaymentRefused('the invoice was no longer wanted when the mint made it'))
          invoiceGiven = true
          const paid = watchQuote({ mintUrl: this.opts.mintUrl, quoteId, pollMs, deadline: Date.now() + timeoutMs, signal: stop.signal })
            .then((outcome) => {
              if (outcome === 'aborted') throw stop.signal.reason instanceof Error ? stop.signal.reason : new PaymentRefused('stopped waiting for the invoice')
              if (outcome === 'expired') throw new PaymentRefused(`the invoice was not paid within ${Math.round(timeoutMs / 1000)} s`)
            })
            .finally(() => signal?.removeEventListener('abort', onStop))
          resolveInvoice({
            bolt11,
            sats,
            quote: quoteId,
            ...(expiry !== null ? { expiresAt: expiry * 1000 } : {}),
            settled: (s) => {
              const onAbort = (): void => stop.abort(s.reason)
              if (s.aborted) onAbort()
              else s.addEventListener('abort', onAbort, { once: true })
              // Once paid, wait for the minting even if the job is gone: that is the customer's money arriving.
              return paid
                .then(() => funded)
                .then(() => undefined)
                .finally(() => s.removeEventListener('abort', onAbort))
            },
          })
          // The wallet waits here: a rejection ends fund() with the quote journaled,
          // so an invoice paid after all is still minted by the wallet's next recovery.
          return paid
        },
      })
      funded.catch((err: unknown) => {
        if (invoiceGiven) return
        signal?.removeEventListener('abort', onStop)
        rejectInvoice(new Error(`cannot get an invoice from the mint ${this.opts.mintUrl}: ${(err as Error).message}`))
      })
    })
  }

  async lateInvoice(quote: string, expiresAt: number | undefined): Promise<'paid' | 'unpaid' | 'expired'> {
    const state = await quoteState(this.opts.mintUrl, quote, AbortSignal.timeout(10_000)).catch(() => undefined)
    if (state === 'PAID') {
      // The wallet journaled the quote when it was made: its recovery mints it.
      await this.opts.wallet.recover()
      const after = await quoteState(this.opts.mintUrl, quote, AbortSignal.timeout(10_000)).catch(() => undefined)
      return after === 'ISSUED' ? 'paid' : 'unpaid'
    }
    if (state === 'ISSUED') return 'paid'
    // Unpaid (or the mint did not answer): only the clock can end the wait.
    return expiresAt !== undefined && Date.now() > expiresAt ? 'expired' : 'unpaid'
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
    // Check the amount first: a short token is refused untouched, so the customer keeps it.
    if (total < minSats) throw new PaymentRefused(`the token holds ${total} sats; this job costs ${minSats}`)

    const locked = token.proofs.map((p) => isP2PKSecret(p.secret))
    if (this.opts.offline && token.proofs.every((p, i) => p.amount === 1 && locked[i])) return this.acceptOffline(this.opts.offline, token, jobId)
    if (!sameMint(token.mint, this.opts.mintUrl)) {
      throw new PaymentRefused(`only 1-sat proofs locked to this provider's payment key are taken from ${token.mint}; other tokens must come from ${this.opts.mintUrl}`)
    }
    if (locked.some(Boolean)) return this.swapLocked(encoded, minSats)
    let got: number
    try {
      got = (await this.opts.wallet.receive(encoded)).amount
    } catch (err) {
      throw new PaymentRefused(`the token could not be received: ${(err as Error).message}`)
    }
    if (got < minSats) throw new PaymentRefused(`the token was worth ${got} sats after the mint's fees; this job costs ${minSats}`, got)
    return got
  }

  private async acceptOffline(offline: OfflineProofAcceptor, token: DecodedToken, jobId: string): Promise<number> {
    // Verify all before storing any, so a token with one bad proof is refused whole.
    for (const p of token.proofs) {
      const v = offline.verify(p, token.mint)
      if (!v.ok) throw new PaymentRefused(`a proof in the token was refused: ${v.reason}`)
    }
    let got = 0
    try {
      for (const p of token.proofs) {
        const v = await offline.accept(jobId, p, token.mint).catch((err: Error) => ({ ok: false as const, reason: `it could not be stored (${err.message})` }))
        // the ones stored before it are taken (and redeemed): they are owed back
        if (!v.ok) throw new PaymentRefused(`a proof in the token was refused: ${v.reason}`, got)
        got += p.amount
      }
    } finally {
      if (got > 0) this.opts.onOfflineAccepted?.(jobId)
    }
    return got
  }

  /** Proofs locked to the payment key, swapped online through the wallet (journaled, so a crash loses nothing). */
  private async swapLocked(encoded: string, minSats: number): Promise<number> {
    if (!this.opts.paymentPrivkey) throw new PaymentRefused('this provider cannot redeem locked proofs online; send unlocked ecash in an encrypted request')
    let got: number
    try {
      got = (await this.opts.wallet.receive(encoded, { privkey: this.opts.paymentPrivkey })).amount
    } catch (err) {
      throw new PaymentRefused(`the token could not be received: ${(err as Error).message}`)
    }
    if (got < minSats) throw new PaymentRefused(`the token was worth ${got} sats after the mint's fees; this job costs ${minSats}`, got)
    return got
  }
}
