/**
 * Redeemer: turns held tick proofs into ordinary ecash in the provider's
 * wallet, in batches, so a session costs O(1) mint round trips, not O(ticks).
 *
 * One redemption = one NUT-03 swap at the mint: the held P2PK proofs as inputs
 * (each with a Schnorr witness by the payment key), fresh blinded outputs
 * (powers of two summing to the inputs — fee-free keysets only, see
 * mint-keys.ts) as outputs, at most `maxInputsPerSwap` inputs per request
 * (nutshell's MINT_MAX_REQUEST_LENGTH is 1000). Mint HTTP goes through
 * MintConnection (wallet-mint.ts), as the wallet's does.
 *
 * Crash safety: before the request leaves, the batch — inputs' Ys and the
 * outputs' secrets, blinding factors and B_ — is journalled durably in the
 * ReceivedStore. After a crash (or a lost response) the journal is resolved:
 *   1. NUT-09 restore with the journalled B_: if the mint signed them, the
 *      swap happened; unblind, and deposit those the mint still calls unspent
 *      (NUT-07): a crash may have come after an earlier deposit and before
 *      `fin`, and the wallet may since have spent and forgotten those proofs.
 *      A restore that returns only some outputs settles those and keeps the
 *      rest journaled.
 *   2. otherwise NUT-07 check state of the inputs: SPENT ones were taken by
 *      someone else (the customer's refund key after locktime) — unless an
 *      earlier batch of ours that timed out spent them (see "retired" in
 *      received-store.ts), which a restore of its outputs tells — and are
 *      marked lost; the rest go back to held and are redeemed again. If the
 *      request may still reach the mint, the batch's outputs are kept (retired).
 * `depositTo` must still be idempotent (dedupe by secret), as Wallet.addProofs is.
 *
 * Triggers: `countThreshold` held proofs at a mint, the oldest held proof older
 * than `maxHeldAgeMs`, a held proof within `locktimeSafetySec` of its locktime,
 * `sessionEnded()`, and `redeemAll()`. A mint that cannot be reached keeps its
 * proofs held and is retried with exponential backoff.
 */
import { randomBytes } from 'node:crypto'
import { HttpResponseError, NetworkError, type SerializedBlindedSignature } from '@cashu/cashu-ts'
import { pointFromHex } from '../crypto/secp256k1.js'
import { randomOutput, unblindWithKey } from './lock.js'
import { verifyBlindSignatureDleq } from './dleq.js'
import { SchnorrSigner } from './p2pk.js'
import { splitAmount } from './amounts.js'
import { MintConnection, MintUnreachableError, describeMintError, isRejection } from './wallet-mint.js'
import type { MintKeyCache } from './mint-keys.js'
import type { JournalOutput, ReceivedEntry, ReceivedStore, RedeemJournal } from './received-store.js'

/** A new, unlocked proof from a redemption, with its DLEQ (NUT-12). */
export interface RedeemedProof {
  id: string
  amount: number
  secret: string
  C: string
  dleq?: { e: string; s: string; r: string }
}

export interface RedeemerOptions {
  store: ReceivedStore
  keys: MintKeyCache
  /** The payment key's private key, hex (see payment-key.ts). */
  paymentPrivkey: string
  /** Put new proofs in the wallet durably (Wallet.addProofs). Must be idempotent. */
  depositTo: (mintUrl: string, proofs: RedeemedProof[]) => Promise<void>
  /** Injected for tests and round-trip counting; defaults to global fetch. */
  fetch?: typeof fetch
  /** Inputs per swap request (nutshell caps inputs and outputs at 1000). */
  maxInputsPerSwap?: number
  /** Redeem a mint's held proofs once there are this many. */
  countThreshold?: number
  /** Redeem once the oldest held proof is this old. */
  maxHeldAgeMs?: number
  /** Redeem once a held proof's locktime is this close (keep it below the verifier's margin). */
  locktimeSafetySec?: number
  /** How often the age/locktime triggers are checked. */
  checkIntervalMs?: number
  backoffInitialMs?: number
  backoffMaxMs?: number
  /** Per HTTP request. */
  timeoutMs?: number
  /** How long an undone batch's outputs are kept while its inputs look unspent (see received-store.ts). */
  retiredGraceMs?: number
  log?: (msg: string) => void
  now?: () => number
}

export interface RedeemReport {
  mintUrl: string
  /** Swaps that went through (including ones recovered from a journal). */
  batches: number
  redeemedProofs: number
  /** Sats now in the wallet from this run. */
  redeemedAmount: number
  /** Inputs the mint says were spent by someone else. */
  lostProofs: number
  /** Proofs still held or redeeming at this mint afterwards. */
  remainingProofs: number
  /** HTTP requests made to the mint during this run. */
  roundTrips: number
  error?: string
}

export interface RedeemerStats {
  swaps: number
  roundTrips: number
  redeemedProofs: number
  redeemedAmount: number
  lostProofs: number
  failures: number
  badDleqFromMint: number
  lastError?: string
}

/** Outcome unknown or the mint is unwell: keep the journal, retry later. */
class RetryLaterError extends Error {}

/** Proofs refused on their own in one run before the whole swap is taken to be refused. */
const MAX_SKIPPED_ALONE = 3

export class Redeemer {
  readonly #o: Required<Omit<RedeemerOptions, 'log' | 'fetch' | 'now'>> & Pick<RedeemerOptions, 'log'>
  readonly #fetch: typeof fetch
  readonly #now: () => number
  readonly #signer: SchnorrSigner
  readonly #locks = new Map<string, Promise<unknown>>()
  readonly #conns = new Map<string, MintConnection>()
  readonly #backoff = new Map<string, { failures: number; nextAt: number }>()
  readonly #sinceLast = new Map<string, number>()
  readonly #stats: RedeemerStats = { swaps: 0, roundTrips: 0, redeemedProofs: 0, redeemedAmount: 0, lostProofs: 0, failures: 0, badDleqFromMint: 0 }
  #timer: NodeJS.Timeout | undefined
  #unsubscribe: (() => void) | undefined
  #stopped = false

  constructor(opts: RedeemerOptions) {
    this.#o = {
      store: opts.store,
      keys: opts.keys,
      paymentPrivkey: opts.paymentPrivkey,
      depositTo: opts.depositTo,
      maxInputsPerSwap: opts.maxInputsPerSwap ?? 1000,
      countThreshold: opts.countThreshold ?? 500,
      maxHeldAgeMs: opts.maxHeldAgeMs ?? 10 * 60_000,
      locktimeSafetySec: opts.locktimeSafetySec ?? 15 * 60,
      checkIntervalMs: opts.checkIntervalMs ?? 5_000,
      backoffInitialMs: opts.backoffInitialMs ?? 1_000,
      backoffMaxMs: opts.backoffMaxMs ?? 5 * 60_000,
      timeoutMs: opts.timeoutMs ?? 30_000,
      retiredGraceMs: opts.retiredGraceMs ?? 10 * 60_000,
      log: opts.log,
    }
    this.#fetch = opts.fetch ?? globalThis.fetch
    this.#now = opts.now ?? Date.now
    this.#signer = new SchnorrSigner(opts.paymentPrivkey)
  }

  /** Start automatic triggers and resolve journals left by a crash. */
  start(): void {
    if (this.#timer) return
    this.#stopped = false
    this.#unsubscribe = this.#o.store.onAccepted((e) => this.#onAccepted(e))
    this.#timer = setInterval(() => this.#check(), this.#o.checkIntervalMs)
    this.#timer.unref()
    // Crash leftovers first; failures just wait for the next check.
    for (const mint of new Set(this.#o.store.pendingRedeems().map((j) => j.mintUrl))) void this.#runAuto(mint)
  }

  /** Stop triggers and wait for redemptions in progress. */
  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = undefined
    this.#unsubscribe?.()
    this.#unsubscribe = undefined
    await Promise.allSettled([...this.#locks.values()])
  }

  stats(): RedeemerStats {
    return { ...this.#stats }
  }

  /** A session ended: redeem what its mint(s) hold now (one swap covers every session at that mint). */
  async sessionEnded(sessionId: string): Promise<RedeemReport[]> {
    const mints = new Set(this.#o.store.held({ sessionId }).map((e) => e.mintUrl))
    return Promise.all([...mints].map((m) => this.redeemMint(m)))
  }

  /** Redeem everything held at every mint now, ignoring backoff (e.g. at shutdown or from the CLI). */
  async redeemAll(): Promise<RedeemReport[]> {
    const mints = new Set([...this.#o.store.heldMints(), ...this.#o.store.pendingRedeems().map((j) => j.mintUrl)])
    return Promise.all([...mints].map((m) => this.redeemMint(m, { force: true })))
  }

  /**
   * Resolve pending journals, then swap all held proofs of one mint. Never
   * throws for mint trouble: the report carries the error and the proofs stay
   * held for a retry with backoff.
   */
  redeemMint(mintUrl: string, opts: { force?: boolean } = {}): Promise<RedeemReport> {
    const prev = this.#locks.get(mintUrl) ?? Promise.resolve()
    const run = prev.catch(() => {}).then(() => this.#redeemMintLocked(mintUrl, opts.force ?? false))
    const tail = run.finally(() => {
      if (this.#locks.get(mintUrl) === tail) this.#locks.delete(mintUrl)
    })
    this.#locks.set(mintUrl, tail)
    return run
  }

  // ------------------------------------------------------------ triggers

  #onAccepted(e: ReceivedEntry): void {
    const n = (this.#sinceLast.get(e.mintUrl) ?? 0) + 1
    this.#sinceLast.set(e.mintUrl, n)
    if (n >= this.#o.countThreshold) {
      this.#sinceLast.set(e.mintUrl, 0)
      void this.#runAuto(e.mintUrl)
    }
  }

  #check(): void {
    if (this.#stopped) return
    const now = this.#now()
    const nowSec = Math.floor(now / 1000)
    const byMint = new Map<string, { count: number; oldest: number; minLocktime: number }>()
    for (const e of this.#o.store.held()) {
      const m = byMint.get(e.mintUrl) ?? { count: 0, oldest: Infinity, minLocktime: Infinity }
      m.count++
      m.oldest = Math.min(m.oldest, e.acceptedAt)
      if (e.locktime !== undefined) m.minLocktime = Math.min(m.minLocktime, e.locktime)
      byMint.set(e.mintUrl, m)
    }
    for (const j of this.#o.store.pendingRedeems()) if (!j.swapped && !byMint.has(j.mintUrl)) byMint.set(j.mintUrl, { count: 0, oldest: now, minLocktime: Infinity })
    for (const [mint, m] of byMint) {
      const due =
        m.count >= this.#o.countThreshold ||
        now - m.oldest >= this.#o.maxHeldAgeMs ||
        m.minLocktime - nowSec <= this.#o.locktimeSafetySec ||
        // (a batch whose outputs the mint still owes is asked for on other runs, not every few seconds)
        this.#o.store.pendingRedeems(mint).some((j) => !j.swapped) ||
        // an earlier attempt failed (mint down): retry once its backoff allows
        this.#backoff.has(mint)
      if (due) void this.#runAuto(mint)
    }
  }

  async #runAuto(mint: string): Promise<void> {
    if (this.#stopped || this.#locks.has(mint)) return
    const b = this.#backoff.get(mint)
    if (b && this.#now() < b.nextAt) return
    await this.redeemMint(mint)
  }

  // ------------------------------------------------------------ the work

  async #redeemMintLocked(mint: string, force: boolean): Promise<RedeemReport> {
    const store = this.#o.store
    const report: RedeemReport = { mintUrl: mint, batches: 0, redeemedProofs: 0, redeemedAmount: 0, lostProofs: 0, remainingProofs: 0, roundTrips: 0 }
    const b = this.#backoff.get(mint)
    if (!force && b && this.#now() < b.nextAt) {
      report.error = `mint ${mint} failed recently; next attempt in ${Math.ceil((b.nextAt - this.#now()) / 1000)}s`
      report.remainingProofs = store.held({ mintUrl: mint }).length
      return report
    }
    this.#sinceLast.set(mint, 0)
    const conn = this.#conn(mint)
    const requestsBefore = conn.requests
    try {
      // Nobody knows whether a journalled request reached the mint.
      for (const j of store.pendingRedeems(mint)) await this.#resolveJournal(j, report, true)
      await this.#reviewRetired(mint, report)
      // Only what is held now: ticks arriving during the swap wait for the
      // next trigger, else a steady trickle would mean a swap per few ticks.
      const todo = new Set(store.held({ mintUrl: mint }).map((e) => e.y))
      let retriedAfterLoss = false
      let batchSize = this.#o.maxInputsPerSwap
      const skipped: string[] = []
      for (;;) {
        const held = store.held({ mintUrl: mint }).filter((e) => todo.has(e.y))
        if (held.length === 0) break
        const outcome = await this.#swapBatch(mint, held.slice(0, batchSize), report)
        if (outcome === 'done') {
          batchSize = Math.min(this.#o.maxInputsPerSwap, batchSize * 2)
          continue
        }
        // The mint refused the swap. If that was because some inputs were
        // spent elsewhere, those are now marked lost: retry the rest once.
        if (outcome === 'lost-some' && !retriedAfterLoss) {
          retriedAfterLoss = true
          continue
        }
        // One proof the mint will not take must not hold back all the others:
        // halve the batch until the refused one is alone, then leave it held
        // (never marked lost: the cause may be ours) and go on with the rest.
        // Several refused alone means the swap itself is refused: stop.
        if (outcome === 'refused' && skipped.length < MAX_SKIPPED_ALONE) {
          if (batchSize > 1) {
            batchSize = Math.ceil(batchSize / 2)
            continue
          }
          skipped.push(held[0]!.y)
          todo.delete(held[0]!.y)
          continue
        }
        // Perhaps the mint rotated its keyset and refuses outputs in the old
        // one: a (rate-limited) key refresh lets the next attempt use the new.
        await this.#o.keys.refresh(mint).catch(() => false)
        throw new RetryLaterError(report.error ?? `mint ${mint} refused the swap`)
      }
      if (skipped.length) throw new RetryLaterError(`mint ${mint} refused ${skipped.length} held proof(s) on their own; they stay held and are tried again later`)
      this.#backoff.delete(mint)
    } catch (err) {
      const msg = (err as Error).message
      const prevFailures = this.#backoff.get(mint)?.failures ?? 0
      const failures = prevFailures + 1
      const delay = Math.min(this.#o.backoffMaxMs, this.#o.backoffInitialMs * 2 ** (failures - 1))
      this.#backoff.set(mint, { failures, nextAt: this.#now() + delay * (0.75 + Math.random() * 0.5) })
      this.#stats.failures++
      this.#stats.lastError = msg
      report.error = msg
      this.#o.log?.(`redeem at ${mint} failed (${msg}); proofs stay held, retrying in ~${Math.round(delay / 1000)}s`)
    }
    report.roundTrips = conn.requests - requestsBefore
    this.#stats.roundTrips += report.roundTrips
    report.remainingProofs = store.held({ mintUrl: mint }).length + store.pendingRedeems(mint).reduce((n, j) => n + (j.swapped ? 0 : j.ys.length), 0)
    return report
  }

  #conn(mint: string): MintConnection {
    let c = this.#conns.get(mint)
    if (!c) {
      c = new MintConnection(mint, { timeoutMs: this.#o.timeoutMs, maxBatch: this.#o.maxInputsPerSwap, fetch: this.#fetch })
      this.#conns.set(mint, c)
    }
    return c
  }

  /** A mint call other than the swap; any failure means: try again later. */
  async #ask<T>(mint: string, what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call()
    } catch (err) {
      throw new RetryLaterError(`${what} at ${mint} failed: ${describeMintError(err)}`)
    }
  }

  /** Journal and send one swap. 'done' | 'refused' | 'lost-some'; throws RetryLaterError when the mint is unreachable. */
  async #swapBatch(mint: string, entries: ReceivedEntry[], report: RedeemReport): Promise<'done' | 'refused' | 'lost-some'> {
    const keys = this.#o.keys
    let keyset = keys.activeKeyset(mint)
    if (!keyset) {
      await keys.sync(mint)
      keyset = keys.activeKeyset(mint)
      if (!keyset) throw new RetryLaterError(`mint ${mint} has no active fee-free keyset to receive new proofs in`)
    }
    const total = entries.reduce((n, e) => n + (e.proof?.amount ?? 0), 0)
    const outputs: JournalOutput[] = splitAmount(total, Object.keys(keyset.keys)).map((amount) => randomOutput(amount, keyset.id))
    const journal: RedeemJournal = { batchId: randomBytes(8).toString('hex'), mintUrl: mint, ys: entries.map((e) => e.y), outputs, startedAt: this.#now() }
    await this.#o.store.beginRedeem(journal)
    return this.#attemptSwap(journal, report)
  }

  async #attemptSwap(j: RedeemJournal, report: RedeemReport): Promise<'done' | 'refused' | 'lost-some'> {
    const inputs = j.ys.map((y) => {
      const p = this.#o.store.get(y)?.proof
      if (!p) throw new Error(`journalled input ${y.slice(0, 16)}… has no stored proof; the received log is inconsistent`)
      return { amount: p.amount, id: p.id, secret: p.secret, C: p.C, witness: this.#signer.witness(p.secret) }
    })
    const outputs = j.outputs.map((o) => ({ amount: o.amount, id: o.id, B_: o.B_ }))
    let signatures: SerializedBlindedSignature[] | undefined
    let refused = false
    try {
      ;({ signatures } = await this.#conn(j.mintUrl).api.swap({ inputs, outputs }))
    } catch (err) {
      if (err instanceof MintUnreachableError) {
        // never sent: the mint cannot act on it, so undo at once
        await this.#o.store.abortRedeem(j.batchId)
        throw new RetryLaterError(err.message)
      }
      // no answer (timeout, dropped connection) or a mint error: find out on the next run
      if (err instanceof NetworkError || (err instanceof HttpResponseError && err.status >= 500)) {
        throw new RetryLaterError(`the swap at ${j.mintUrl} failed: ${describeMintError(err)}`)
      }
      refused = isRejection(err)
      report.error = refused ? `mint refused the swap: ${describeMintError(err).replace(/^the mint refused: /, '')}` : describeMintError(err)
    }
    if (signatures?.length === j.outputs.length) {
      await this.#complete(j, signatures, report, { recovered: false })
      return 'done'
    }
    if (signatures) report.error = `mint ${j.mintUrl} returned ${signatures.length} signatures for ${j.outputs.length} outputs`
    // An answer we cannot use (too large, malformed): the swap may have happened. Resolve now.
    if (!refused) this.#o.log?.(`the swap at ${j.mintUrl} got an unusable answer (${report.error}); asking the mint what happened`)
    const lostBefore = report.lostProofs
    const resolved = await this.#resolveJournal(j, report, !refused)
    if (resolved === 'swapped') {
      delete report.error
      return 'done'
    }
    return report.lostProofs > lostBefore ? 'lost-some' : 'refused'
  }

  /**
   * Find out what happened to a journalled swap (see the module comment).
   * `uncertain`: its request may have reached the mint, or still may.
   */
  async #resolveJournal(j: RedeemJournal, report: RedeemReport, uncertain: boolean): Promise<'swapped' | 'undone' | 'owed'> {
    const mint = j.mintUrl
    const conn = this.#conn(mint)
    const restore = () => this.#ask(mint, 'restore', () => conn.restore(j.outputs))
    const restored = await restore()
    if (restored.size > 0) {
      await this.#settleRestored(j, restored, report)
      return 'swapped'
    }
    if (j.swapped) {
      this.#o.log?.(`mint ${mint} has still not returned ${j.outputs.length} signed output(s) (${sumAmount(j.outputs)} sats) of batch ${j.batchId}; asked again on the next run`)
      return 'owed'
    }
    // The swap did not happen (yet). Which inputs are still ours to redeem?
    const state = await this.#ask(mint, 'checkstate', () => conn.statesByY(j.ys))
    if (j.ys.some((y) => state.get(y) === 'PENDING')) throw new RetryLaterError(`mint ${mint} reports inputs of batch ${j.batchId} as pending`)
    let spent = j.ys.filter((y) => state.get(y) === 'SPENT')
    let accounted = 0
    if (spent.length > 0) {
      if (uncertain) {
        // it may have landed between the restore and the state check
        const again = await restore()
        if (again.size > 0) {
          await this.#settleRestored(j, again, report)
          return 'swapped'
        }
      }
      const byRetired = await this.#recoverRetired(mint, spent, report)
      accounted = byRetired.size
      spent = spent.filter((y) => !byRetired.has(y))
    }
    // With an input spent, this swap can never happen; otherwise it still might.
    const keep = uncertain && spent.length === 0 && accounted === 0
    await this.#o.store.abortRedeem(j.batchId, spent, { keepOutputs: keep })
    if (spent.length > 0) {
      report.lostProofs += spent.length
      this.#stats.lostProofs += spent.length
      this.#o.log?.(`${spent.length} held proof(s) at ${mint} were already spent by someone else (refund after locktime?); marked lost`)
    }
    // Spent only by our own earlier batch, now recovered: nothing failed.
    return accounted > 0 && spent.length === 0 ? 'swapped' : 'undone'
  }

  /**
   * Retired batches of `mint` spending any of `spent`: restore their outputs;
   * the ones the mint signed happened after all and are settled, the others
   * can never happen now. Returns the Ys the settled ones account for.
   */
  async #recoverRetired(mint: string, spent: ReadonlyArray<string>, report: RedeemReport): Promise<Set<string>> {
    const gone = new Set(spent)
    const accounted = new Set<string>()
    for (const r of this.#o.store.retiredRedeems(mint).filter((x) => x.ys.some((y) => gone.has(y)))) {
      const sigs = await this.#ask(mint, 'restore', () => this.#conn(mint).restore(r.outputs))
      if (sigs.size === 0) {
        await this.#o.store.forgetRetired(r.batchId)
        continue
      }
      this.#o.log?.(`batch ${r.batchId} at ${mint}, undone after its request timed out, did reach the mint; recovering its ${r.ys.length} proof(s)`)
      await this.#settleRestored(r, sigs, report)
      for (const y of r.ys) accounted.add(y)
    }
    return accounted
  }

  /**
   * Retired batches older than the grace period: settle those whose inputs the
   * mint reports spent and whose outputs it signed; forget the rest (inputs
   * unspent, so the request did not land; or spent elsewhere).
   */
  async #reviewRetired(mint: string, report: RedeemReport): Promise<void> {
    const due = this.#o.store.retiredRedeems(mint).filter((r) => this.#now() - r.retiredAt >= this.#o.retiredGraceMs)
    for (const r of due) {
      const state = await this.#ask(mint, 'checkstate', () => this.#conn(mint).statesByY(r.ys))
      if (r.ys.some((y) => state.get(y) === 'PENDING')) continue
      const spent = r.ys.filter((y) => state.get(y) === 'SPENT')
      if (spent.length === 0) await this.#o.store.forgetRetired(r.batchId)
      else await this.#recoverRetired(mint, spent, report)
    }
  }

  /** Deposit what a restore returned, minding earlier deposits; settle the batch, wholly or in part. */
  async #settleRestored(j: RedeemJournal, byB: Map<string, SerializedBlindedSignature>, report: RedeemReport): Promise<void> {
    const sigs = j.outputs.map((o) => byB.get(o.B_))
    const got = sigs.filter((x) => x !== undefined).length
    if (got < j.outputs.length) {
      this.#o.log?.(
        `mint ${j.mintUrl} restored only ${got} of ${j.outputs.length} outputs of batch ${j.batchId}; depositing those, ` +
          `the other ${j.outputs.length - got} (${sumAmount(j.outputs.filter((_, i) => !sigs[i]))} sats) stay journaled and are asked for again on the next run`,
      )
    }
    await this.#complete(j, sigs, report, { recovered: true })
  }

  /**
   * Unblind the mint's signatures, deposit the new proofs, then mark the batch
   * finished (or, with outputs missing, partly finished). `recovered`: from a
   * restore, so the proofs may have been deposited (and spent) before.
   */
  async #complete(j: RedeemJournal, sigs: (SerializedBlindedSignature | undefined)[], report: RedeemReport, opts: { recovered: boolean }): Promise<void> {
    let proofs: RedeemedProof[] = []
    j.outputs.forEach((o, i) => {
      const sig = sigs[i]
      if (!sig) return
      const A = this.#o.keys.publicKey(j.mintUrl, sig.id, sig.amount)
      const C_ = pointFromHex(sig.C_)
      if (!A || !C_) throw new RetryLaterError(`mint ${j.mintUrl} returned a signature for keyset ${sig.id} amount ${sig.amount} that cannot be unblinded`)
      if (sig.amount !== o.amount) throw new RetryLaterError(`mint ${j.mintUrl} signed amount ${sig.amount} for an output of ${o.amount}`)
      if (sig.dleq && !verifyBlindSignatureDleq(o.B_, sig.C_, sig.dleq, A)) {
        this.#stats.badDleqFromMint++
        this.#o.log?.(`mint ${j.mintUrl} returned a signature whose DLEQ proof does not verify (batch ${j.batchId}); depositing it anyway`)
      }
      proofs.push(unblindWithKey(o, sig, A))
    })
    if (opts.recovered && proofs.length > 0) {
      // Deposited before a crash, then spent (or being spent) by the wallet,
      // which may have pruned them: depositing again would count them twice.
      const states = await this.#ask(j.mintUrl, 'checkstate', () => this.#conn(j.mintUrl).states(proofs.map((p) => p.secret)))
      const fresh = proofs.filter((p) => states.get(p.secret) === 'UNSPENT')
      if (fresh.length < proofs.length) {
        this.#o.log?.(`${proofs.length - fresh.length} recovered proof(s) of batch ${j.batchId} are already spent: deposited before a restart and used since; not deposited again`)
      }
      proofs = fresh
    }
    if (proofs.length > 0) await this.#o.depositTo(j.mintUrl, proofs)
    const complete = sigs.length === j.outputs.length && sigs.every((x) => x !== undefined)
    if (complete) await this.#o.store.finishRedeem(j.batchId)
    else await this.#o.store.partialRedeem(j.batchId, j.outputs.filter((_, i) => sigs[i]).map((o) => o.B_))
    const amount = sumAmount(proofs)
    if (!j.swapped) {
      report.batches++
      report.redeemedProofs += j.ys.length
      this.#stats.swaps++
      this.#stats.redeemedProofs += j.ys.length
    }
    report.redeemedAmount += amount
    this.#stats.redeemedAmount += amount
  }
}

function sumAmount(xs: ReadonlyArray<{ amount: number }>): number {
  let n = 0
  for (const x of xs) n += x.amount
  return n
}
