/**
 * Redeemer: turns held tick proofs into ordinary ecash in the provider's
 * wallet, in batches, so a session costs O(1) mint round trips, not O(ticks).
 *
 * One redemption = one NUT-03 swap at the mint: the held P2PK proofs as inputs
 * (each with a Schnorr witness by the payment key), fresh blinded outputs
 * (powers of two summing to the inputs — fee-free keysets only, see
 * mint-keys.ts) as outputs, at most `maxInputsPerSwap` inputs per request
 * (nutshell's MINT_MAX_REQUEST_LENGTH is 1000).
 *
 * Crash safety: before the request leaves, the batch — inputs' Ys and the
 * outputs' secrets, blinding factors and B_ — is journalled durably in the
 * ReceivedStore. After a crash (or a lost response) the journal is resolved:
 *   1. NUT-09 restore with the journalled B_: if the mint signed them, the
 *      swap happened; unblind and deposit.
 *   2. otherwise NUT-07 check state of the inputs: SPENT ones were taken by
 *      someone else (the customer's refund key after locktime) and are marked
 *      lost; the rest go back to held and are redeemed again.
 * `depositTo` may therefore see the same proofs twice if the process dies
 * between depositing and marking the batch finished: it must be idempotent
 * (dedupe by secret), which Wallet.addProofs is expected to be.
 *
 * Triggers: `countThreshold` held proofs at a mint, the oldest held proof older
 * than `maxHeldAgeMs`, a held proof within `locktimeSafetySec` of its locktime,
 * `sessionEnded()`, and `redeemAll()`. A mint that cannot be reached keeps its
 * proofs held and is retried with exponential backoff.
 */
import { randomBytes } from 'node:crypto'
import { pointFromHex } from './hash-to-curve.js'
import { randomOutput, unblindWithKey } from './lock.js'
import { verifyBlindSignatureDleq } from './dleq.js'
import { SchnorrSigner } from './p2pk.js'
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

interface MintSignature {
  id: string
  amount: number
  C_: string
  dleq?: { e: string; s: string }
}

/** The request never reached the mint (safe to undo the journal at once). */
class NotDeliveredError extends Error {}
/** Outcome unknown or the mint is unwell: keep the journal, retry later. */
class RetryLaterError extends Error {}

function isConnRefused(err: unknown): boolean {
  const cause = (err as { cause?: { code?: string } })?.cause
  return cause?.code === 'ECONNREFUSED' || cause?.code === 'ENOTFOUND' || cause?.code === 'EHOSTUNREACH'
}

/** Proofs refused on their own in one run before the whole swap is taken to be refused. */
const MAX_SKIPPED_ALONE = 3

/** Binary split of `total` into amounts the keyset has keys for. */
export function splitAmount(total: number, keyAmounts: Iterable<string>): number[] {
  const have = new Set(keyAmounts)
  const out: number[] = []
  let rest = total
  for (let bit = 2 ** 52; bit >= 1; bit /= 2) {
    if (rest >= bit) {
      if (!have.has(String(bit))) throw new Error(`the mint's keyset has no key for amount ${bit}; cannot split ${total}`)
      out.push(bit)
      rest -= bit
    }
  }
  return out
}

export class Redeemer {
  readonly #o: Required<Omit<RedeemerOptions, 'log' | 'fetch' | 'now'>> & Pick<RedeemerOptions, 'log'>
  readonly #fetch: typeof fetch
  readonly #now: () => number
  readonly #signer: SchnorrSigner
  readonly #locks = new Map<string, Promise<unknown>>()
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
    for (const j of this.#o.store.pendingRedeems()) if (!byMint.has(j.mintUrl)) byMint.set(j.mintUrl, { count: 0, oldest: now, minLocktime: Infinity })
    for (const [mint, m] of byMint) {
      const due =
        m.count >= this.#o.countThreshold ||
        now - m.oldest >= this.#o.maxHeldAgeMs ||
        m.minLocktime - nowSec <= this.#o.locktimeSafetySec ||
        this.#o.store.pendingRedeems(mint).length > 0 ||
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
    try {
      for (const j of store.pendingRedeems(mint)) await this.#resolveJournal(j, report)
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
    report.remainingProofs = store.held({ mintUrl: mint }).length + store.pendingRedeems(mint).reduce((n, j) => n + j.ys.length, 0)
    return report
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
    const body = { inputs, outputs: j.outputs.map((o) => ({ amount: o.amount, id: o.id, B_: o.B_ })) }
    let res: { status: number; json: unknown }
    try {
      res = await this.#post(j.mintUrl, '/v1/swap', body, report)
    } catch (err) {
      if (err instanceof NotDeliveredError) {
        await this.#o.store.abortRedeem(j.batchId)
        throw new RetryLaterError(err.message)
      }
      throw err
    }
    if (res.status === 200) {
      const sigs = (res.json as { signatures?: MintSignature[] })?.signatures
      if (Array.isArray(sigs) && sigs.length === j.outputs.length) {
        await this.#complete(j, sigs, report)
        return 'done'
      }
      // A 200 without usable signatures: the swap may have happened. Resolve.
    } else if (res.status >= 500) {
      throw new RetryLaterError(`mint ${j.mintUrl} answered HTTP ${res.status} to the swap`)
    }
    const detail = (res.json as { detail?: string; code?: number }) ?? {}
    report.error = `mint refused the swap: ${detail.detail ?? `HTTP ${res.status}`}${detail.code ? ` (code ${detail.code})` : ''}`
    const lostBefore = report.lostProofs
    const resolved = await this.#resolveJournal(j, report)
    if (resolved === 'swapped') {
      delete report.error
      return 'done'
    }
    return report.lostProofs > lostBefore ? 'lost-some' : 'refused'
  }

  /** Find out what happened to a journalled swap (see the module comment). */
  async #resolveJournal(j: RedeemJournal, report: RedeemReport): Promise<'swapped' | 'undone'> {
    const outs = j.outputs.map((o) => ({ amount: o.amount, id: o.id, B_: o.B_ }))
    const restored = await this.#post(j.mintUrl, '/v1/restore', { outputs: outs }, report)
    if (restored.status !== 200) throw new RetryLaterError(`mint ${j.mintUrl} answered HTTP ${restored.status} to restore`)
    const rj = restored.json as { outputs?: { B_: string }[]; signatures?: MintSignature[]; promises?: MintSignature[] }
    const rsigs = rj?.signatures ?? rj?.promises ?? []
    const byB = new Map<string, MintSignature>()
    ;(rj?.outputs ?? []).forEach((o, i) => {
      const s = rsigs[i]
      if (o && s) byB.set(o.B_, s)
    })
    const sigs = j.outputs.map((o) => byB.get(o.B_))
    if (sigs.some((s) => s !== undefined)) {
      if (sigs.some((s) => s === undefined)) this.#o.log?.(`mint ${j.mintUrl} restored only some outputs of batch ${j.batchId}; depositing those`)
      await this.#complete(j, sigs, report)
      return 'swapped'
    }
    // The swap did not happen. Which inputs are still ours to redeem?
    const st = await this.#post(j.mintUrl, '/v1/checkstate', { Ys: j.ys }, report)
    if (st.status !== 200) throw new RetryLaterError(`mint ${j.mintUrl} answered HTTP ${st.status} to checkstate`)
    const states = (st.json as { states?: { Y: string; state: string }[] })?.states ?? []
    const state = new Map(states.map((s) => [s.Y, s.state]))
    if (j.ys.some((y) => state.get(y) === 'PENDING')) throw new RetryLaterError(`mint ${j.mintUrl} reports inputs of batch ${j.batchId} as pending`)
    const lost = j.ys.filter((y) => state.get(y) === 'SPENT')
    await this.#o.store.abortRedeem(j.batchId, lost)
    if (lost.length > 0) {
      report.lostProofs += lost.length
      this.#stats.lostProofs += lost.length
      this.#o.log?.(`${lost.length} held proof(s) at ${j.mintUrl} were already spent by someone else (refund after locktime?); marked lost`)
    }
    return 'undone'
  }

  /** Unblind the mint's signatures, deposit the new proofs, then mark the batch finished. */
  async #complete(j: RedeemJournal, sigs: (MintSignature | undefined)[], report: RedeemReport): Promise<void> {
    const proofs: RedeemedProof[] = []
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
    await this.#o.depositTo(j.mintUrl, proofs)
    await this.#o.store.finishRedeem(j.batchId)
    const amount = proofs.reduce((n, p) => n + p.amount, 0)
    report.batches++
    report.redeemedProofs += j.ys.length
    report.redeemedAmount += amount
    this.#stats.swaps++
    this.#stats.redeemedProofs += j.ys.length
    this.#stats.redeemedAmount += amount
  }

  async #post(mint: string, path: string, body: unknown, report: RedeemReport): Promise<{ status: number; json: unknown }> {
    report.roundTrips++
    this.#stats.roundTrips++
    let res: Response
    try {
      res = await this.#fetch(`${mint}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      })
    } catch (err) {
      if (isConnRefused(err)) throw new NotDeliveredError(`mint ${mint} is not reachable (${(err as { cause?: { code?: string } }).cause?.code})`)
      throw new RetryLaterError(`request ${path} to ${mint} failed: ${(err as Error).message}`)
    }
    let json: unknown
    try {
      json = await res.json()
    } catch {
      json = undefined
    }
    return { status: res.status, json }
  }
}
