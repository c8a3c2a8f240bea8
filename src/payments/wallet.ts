/**
 * A Cashu wallet for one mint, backed by a durable proof store.
 *
 * Every operation that hands proofs or outputs to the mint follows one pattern:
 *   1. journal: mark the inputs pending and write the outputs' secrets and
 *      blinding factors to the store (fsynced) before any request leaves;
 *   2. ask the mint;
 *   3. settle: store the new proofs and mark the inputs spent, in one atomic write.
 * If the process dies between 1 and 3, the next load() finds the orphaned
 * operation and settles it from what the mint knows: NUT-09 restore returns
 * signatures it already made on our outputs, NUT-07 tells whether our inputs
 * were spent, NUT-04/05 quote state tells where a mint or melt stands.
 * A swap or melt undone while its request may still reach the mint (a
 * timeout, a crash) keeps its outputs as "retired" until that can no longer
 * happen, so a late landing is recovered too: a swap's new proofs, a melt's
 * change (see RetiredOp in proof-store.ts). A partial restore settles what
 * came back and keeps the rest owed (`swapped`). That recovery lives in
 * wallet-recovery.ts; this file is the public Wallet API.
 *
 * Input fees (NUT-02) are paid where the wallet spends proofs. For 1-sat
 * locking the wallet refuses keysets with input_fee_ppk > 0: each tick would
 * cost the payee a fee share when redeemed, so the price of a tick would no
 * longer be one sat.
 */
import { randomBytes } from 'node:crypto'
import { MeltQuoteState, type MintKeys, type PartialMeltQuoteResponse, type Proof, type SerializedBlindedSignature } from '@cashu/cashu-ts'
import {
  ProofStore,
  currentOwner,
  ownerAlive,
  totals,
  type JournalOutput,
  type LockInfo,
  type MeltOp,
  type MintOp,
  type Operation,
  type OpOwner,
  type ProofState,
  type StoredProof,
  type SwapOp,
  type SwapPurpose,
  type WalletFile,
} from './proof-store.js'
import { blindSecret, randomOutput, unblind } from './lock.js'
import { SchnorrSigner, claimsP2PKLock, makeP2PKSecret, normalizePubkey, parseP2PKSecret, pubkeyOf, sameXOnly, withWitness } from './p2pk.js'
import { StoreConflict, asInput, exactSubset, indexBySecret, journal, markSpent, pickInputs, serialize, settle } from './wallet-ledger.js'
import { decodeToken, encodeToken, sumAmounts } from './token.js'
import { normalizeMintUrl, sameMint } from './mint-url.js'
import { proofAmountProblem, splitAmount } from './amounts.js'
import { MintConnection, MintUnreachableError, describeMintError, isRejection } from './wallet-mint.js'
import { WaitAborted, abortReason, waitWhileUnpaid } from './quote-wait.js'
import { WalletRecovery } from './wallet-recovery.js'

export interface WalletHooks {
  /** called after the journal is on disk, just before the request goes to the mint */
  beforeMintCall?: (op: Operation) => void | Promise<void>
  /** called after the mint answered, before the result is stored */
  afterMintCall?: (op: Operation) => void | Promise<void>
}

export interface WalletOptions {
  dataDir: string
  mintUrl: string
  /** per mint request; default 30 s */
  timeoutMs?: number
  /** for melt (waits on Lightning); default 120 s */
  meltTimeoutMs?: number
  /** most inputs or outputs per mint request; default 1000 (nutshell's MINT_MAX_REQUEST_LENGTH) */
  maxBatch?: number
  /** how long a swap or melt undone after a timeout keeps its outputs while its inputs stay unspent; default 10 min */
  retiredGraceMs?: number
  /** progress and recovery notes for humans; default: silent */
  log?: (message: string) => void
  /** fault injection for crash tests */
  hooks?: WalletHooks
}

export interface Balance {
  /** spendable sats */
  balance: number
  /** sats in flight to the mint or locked to a payee (includes `locked`) */
  pending: number
  /** sats P2PK-locked to payees and not yet marked paid or reclaimed */
  locked: number
}

export interface FundOptions {
  /** shown the invoice to pay; called once the quote is journaled (`expiry`: unix seconds, when the mint says) */
  onInvoice?: (bolt11: string, quoteId: string, expiry: number | null) => void | Promise<void>
  /** how long to wait for the invoice to be paid; default 10 min */
  timeoutMs?: number
  /** quote polling interval; default 1 s */
  pollMs?: number
  /**
   * Stops the wait for the invoice to be paid (rejects with an AbortError). The
   * quote stays journaled, so a payment made later is still minted by the next
   * recovery (`load()`/`recover()`, e.g. the next wallet command). Once the
   * quote is seen paid, minting goes on regardless: that is money arriving.
   */
  signal?: AbortSignal
}

export interface FundResult {
  amount: number
  quote: string
  request: string
}

/** A token the wallet will not receive because it was received before: by this wallet, or (`spent`) by anyone. */
export class TokenAlreadyTaken extends Error {
  override readonly name = 'TokenAlreadyTaken'
  constructor(readonly by: 'this-wallet' | 'spent', message: string) {
    super(message)
  }
}

export interface ReceiveResult {
  /** sats added to the balance (token amount minus input fees) */
  amount: number
  fee: number
  memo?: string
}

export interface MeltResult {
  paid: boolean
  state: 'PAID' | 'PENDING' | 'UNPAID'
  preimage?: string
  /** invoice amount */
  amount: number
  /** sats spent beyond the invoice amount (Lightning fee and input fees) */
  feePaid: number
}

export interface LockForPayeeOptions {
  /** number of 1-sat proofs to make */
  amount: number
  /** the payee's payment key (compressed hex, or x-only hex) */
  payeePubkey: string
  /** unix seconds after which the refund key can take back what the payee did not redeem */
  locktime: number
  /** our key for taking back unspent proofs after locktime */
  refundPubkey: string
}

export interface LockedProof {
  proof: Proof
  lock: LockInfo
}

export interface ReclaimResult {
  /** sats back in the balance */
  reclaimed: number
  /** sats the payee had already redeemed */
  alreadySpent: number
  /** sats whose state the mint reports as pending; try again later */
  stillPending: number
}

export interface RecoveryReport {
  /** orphaned operations settled */
  resolved: number
  /** operations still unsettled (mint unreachable, Lightning pending, invoice unpaid) */
  unsettled: number
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

function assertAmount(amount: number, what = 'amount'): void {
  if (!Number.isSafeInteger(amount) || amount <= 0) throw new Error(`${what} must be a whole number of sats above 0, got ${amount}`)
}

function bitLength(n: number): number {
  return n <= 0 ? 0 : Math.floor(Math.log2(n)) + 1
}

/**
 * For a token with P2PK-locked proofs: checks each can be spent with `privkey`
 * alone (its lock key, one signature, inputs-only) and returns what adds the
 * witness. Throws a sentence saying why not; undefined when nothing is locked.
 */
function lockedProofSigner(proofs: ReadonlyArray<Proof>, privkey: string | Uint8Array | undefined): ((p: Proof) => Proof) | undefined {
  const locked = proofs.filter((p) => claimsP2PKLock(p.secret))
  if (locked.length === 0) return undefined
  if (privkey === undefined) throw new Error('this token holds P2PK-locked proofs; only the holder of the lock key can redeem them')
  const mine = pubkeyOf(privkey)
  for (const p of locked) {
    const parsed = parseP2PKSecret(p.secret)
    if (!parsed.ok) throw new Error(`this token holds a locked proof that cannot be redeemed: ${parsed.reason}`)
    if (![parsed.secret.pubkey, ...parsed.secret.extraPubkeys].some((k) => sameXOnly(k, mine))) throw new Error('this token holds proofs locked to another key; they cannot be redeemed with this one')
    if (parsed.secret.sigflag !== 'SIG_INPUTS' || parsed.secret.nSigs > 1) {
      throw new Error('this token holds proofs that need more than one signature or signed outputs (SIG_ALL); they are not accepted')
    }
  }
  const signer = new SchnorrSigner(privkey)
  return (p) => (claimsP2PKLock(p.secret) ? withWitness(p, signer) : p)
}

interface SwapPlan {
  purpose: SwapPurpose
  /** proofs from this store */
  inputs: Proof[]
  /** proofs from outside (a received token) */
  foreign?: Proof[]
  outputs: JournalOutput[]
  /** states the store inputs may be in; default unspent */
  from?: ProofState[]
  /** adds witnesses just before sending (refund signatures are not journaled) */
  sign?: (p: Proof) => Proof
  /** extra changes made in the same atomic write as the settlement */
  onSettle?: (draft: WalletFile, proofs: Array<Proof | undefined>) => void
  memo?: string
}

export class Wallet {
  readonly mintUrl: string
  readonly dataDir: string
  private readonly mint: MintConnection
  private readonly instance = randomBytes(8).toString('hex')
  /** operations this object is carrying out right now; never recovered from under it */
  private readonly running = new Set<string>()
  private readonly log: (message: string) => void
  private readonly hooks: WalletHooks
  private readonly recovery: WalletRecovery
  private storeRef?: ProofStore

  constructor(opts: WalletOptions) {
    this.mintUrl = normalizeMintUrl(opts.mintUrl)
    this.dataDir = opts.dataDir
    this.mint = new MintConnection(this.mintUrl, {
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.meltTimeoutMs !== undefined ? { slowTimeoutMs: opts.meltTimeoutMs } : {}),
      ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
    })
    this.log = opts.log ?? (() => undefined)
    this.hooks = opts.hooks ?? {}
    this.recovery = new WalletRecovery({
      store: () => this.store,
      mint: this.mint,
      log: (message) => this.log(message),
      isMine: (owner) => owner.instance === this.instance && owner.token === this.owner().token,
      isRunning: (id) => this.running.has(id),
      retiredGraceMs: opts.retiredGraceMs ?? 10 * 60_000,
      mintOutputs: (op) => this.mintOutputs(op),
      unblindAll: (outputs, sigs) => this.unblindAll(outputs, sigs),
    })
  }

  /** Open the store and settle operations a crashed process left behind (best effort: works offline). */
  async load(): Promise<RecoveryReport> {
    this.storeRef ??= await ProofStore.open(this.dataDir, this.mintUrl)
    return this.recover()
  }

  private get store(): ProofStore {
    if (!this.storeRef) throw new Error('wallet not loaded: call `await wallet.load()` first')
    return this.storeRef
  }

  /** Where this wallet's proofs live on disk. */
  get path(): string {
    return this.store.path
  }

  private owner(): OpOwner {
    return currentOwner(this.instance)
  }

  private newId(): string {
    return `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`
  }

  async balance(): Promise<Balance> {
    const t = totals(await this.store.refresh())
    return { balance: t.unspent, pending: t.pending + t.locked, locked: t.locked }
  }

  /** Spendable proofs (copies). */
  async proofs(): Promise<Proof[]> {
    const file = await this.store.refresh()
    return file.proofs.filter((p) => p.state === 'unspent').map((p) => ({ ...p.proof }))
  }

  /** Proofs this wallet locked to payees and has not marked paid or reclaimed, e.g. after a restart. */
  async lockedProofs(filter: { payeePubkey?: string } = {}): Promise<LockedProof[]> {
    const file = await this.store.refresh()
    return file.proofs
      .filter((p): p is StoredProof & { lock: LockInfo } => p.state === 'locked' && p.lock !== undefined)
      .filter((p) => !filter.payeePubkey || sameXOnly(p.lock.payee, filter.payeePubkey))
      .map((p) => ({ proof: { ...p.proof }, lock: { ...p.lock } }))
  }

  // ---------------------------------------------------------------- recovery

  /**
   * Settle journaled operations nobody is running any more: those of dead
   * processes and those this object gave up on (e.g. after a timeout). Then
   * look at retired swaps and melts. Mint errors leave everything as it is for the next try.
   */
  async recover(): Promise<RecoveryReport> {
    return this.recovery.recover()
  }

  private async unblindAll(outputs: ReadonlyArray<JournalOutput>, sigs: Map<string, SerializedBlindedSignature> | ReadonlyArray<SerializedBlindedSignature | undefined>): Promise<Array<Proof | undefined>> {
    const result: Array<Proof | undefined> = []
    for (let i = 0; i < outputs.length; i++) {
      const o = outputs[i]!
      const sig = sigs instanceof Map ? sigs.get(o.B_) : sigs[i]
      if (!sig) {
        result.push(undefined)
        continue
      }
      const keys: MintKeys = await this.mint.keys(sig.id)
      result.push(unblind(o, sig, keys))
    }
    return result
  }

  // -------------------------------------------------------------- swapping

  /** Journal, swap, settle. Returns the new proofs in output order. */
  private async runSwap(plan: SwapPlan): Promise<Proof[]> {
    const op: SwapOp = {
      kind: 'swap',
      id: this.newId(),
      createdAt: Date.now(),
      owner: this.owner(),
      purpose: plan.purpose,
      inputs: plan.inputs.map((p) => p.secret),
      foreign: (plan.foreign ?? []).map((p) => ({ ...p })),
      outputs: plan.outputs,
      ...(plan.memo ? { memo: plan.memo } : {}),
    }
    const from = plan.from ?? ['unspent']
    this.running.add(op.id)
    try {
      await this.store.update((d) => journal(d, op, plan.inputs, from))
      await this.hooks.beforeMintCall?.(op)
      const sign = plan.sign ?? ((p: Proof) => p)
      const inputs = [...plan.inputs, ...(plan.foreign ?? [])].map((p) => asInput(sign(p)))
      let signatures: SerializedBlindedSignature[]
      try {
        ;({ signatures } = await this.mint.api.swap({ inputs, outputs: serialize(op.outputs) }))
      } catch (err) {
        // The swap may have gone through with its answer lost (timeout, dropped
        // connection): if the mint signed our outputs, carry on as if it had answered.
        const found = isRejection(err) ? undefined : await this.mint.restore(serialize(op.outputs)).catch(() => undefined)
        const all = found && op.outputs.every((o) => found.has(o.B_)) ? op.outputs.map((o) => found.get(o.B_)!) : undefined
        if (!all) throw await this.afterFailure(op, err)
        signatures = all
      }
      await this.hooks.afterMintCall?.(op)
      if (signatures.length !== op.outputs.length) {
        throw await this.afterFailure(op, new Error(`mint returned ${signatures.length} signatures for ${op.outputs.length} outputs`))
      }
      const proofs = await this.unblindAll(op.outputs, signatures)
      await this.store.update((d) => {
        settle(d, op, proofs, { recovered: false })
        plan.onSettle?.(d, proofs)
      })
      return proofs as Proof[]
    } finally {
      this.running.delete(op.id)
    }
  }

  /**
   * After a failed request, settle the operation from the mint's view right
   * away if possible, and build the error the caller sees.
   */
  private async afterFailure(op: Operation, err: unknown): Promise<Error> {
    this.running.delete(op.id)
    // refused, or never sent: the mint did not and will not act on it
    const certain = isRejection(err) || err instanceof MintUnreachableError
    const recoveredBefore = this.recovery.retiredRecovered
    let settled = false
    try {
      settled = await this.recovery.recoverOp(op, { uncertain: !certain, failedJustNow: true })
    } catch {
      // mint unreachable: the journal keeps the operation for the next load()
    }
    const what = describeMintError(err)
    const owed = this.store.data.ops.find((o) => o.id === op.id && o.swapped)
    if (owed) {
      return new Error(
        `${what}. The mint carried the ${op.kind === 'swap' ? op.purpose : op.kind} out but has returned only ${op.outputs.length - owed.outputs.length} of ${op.outputs.length} new proofs so far; ` +
          `the other ${sumAmounts(owed.outputs)} sats stay pending and are asked for again on the next wallet start`,
      )
    }
    // An earlier attempt that timed out had spent these inputs after all; its
    // proofs are in now, so the caller may simply plan again (retryOnConflict).
    if (this.recovery.retiredRecovered > recoveredBefore) return new StoreConflict(`${what}; an earlier attempt had spent these proofs and was recovered`)
    if (settled) {
      const retired = this.store.data.retired.some((r) => r.op.id === op.id)
      if (!retired) return new Error(what)
      return new Error(
        op.kind === 'melt'
          ? `${what}. The invoice has not been paid so far and your sats are spendable again; if the request still reaches the mint and it pays, ` +
              `a later wallet start marks those sats spent and takes back the change`
          : `${what}. Your sats are spendable again; if the request still reaches the mint, the next wallet start recovers its result`,
      )
    }
    const amount =
      op.kind === 'mint'
        ? op.amount
        : sumAmounts(this.store.data.proofs.filter((p) => p.op === op.id).map((p) => p.proof)) + (op.kind === 'swap' ? sumAmounts(op.foreign) : 0)
    return new Error(
      `${what}. The outcome is not known yet: the ${amount} sats involved stay pending in the journal and are settled automatically on the next wallet start`,
    )
  }

  /**
   * Pick unspent inputs worth at least `amount` plus their own input fee; merges
   * small proofs first if more than one request's worth would be needed.
   */
  private async selectInputs(amount: number): Promise<{ inputs: Proof[]; total: number; fee: number }> {
    // Operations running right now (here or in another process) will give change
    // back: wait for them rather than report a shortfall that is only momentary.
    const waitUntil = Date.now() + 30_000
    let merges = 0
    for (;;) {
      const file = await this.store.refresh()
      const pool = file.proofs.filter((p) => p.state === 'unspent').map((p) => p.proof)
      let fee = 0
      let outcome: 'wait' | 'merge' | undefined
      for (let i = 0; i < 8 && !outcome; i++) {
        const picked = pickInputs(pool, amount + fee)
        if (!picked) {
          const t = totals(file)
          const inFlight = file.ops.some(
            (op) => op.kind !== 'mint' && !op.swapped && (this.running.has(op.id) || (op.owner.instance !== this.instance && ownerAlive(op.owner))),
          )
          if (inFlight && t.unspent + t.pending >= amount + fee && Date.now() < waitUntil) {
            outcome = 'wait'
            break
          }
          throw new Error(
            `not enough ecash: need ${amount + fee} sats${fee ? ` (including ${fee} in mint fees)` : ''}, ` +
              `have ${t.unspent} spendable${t.pending ? ` and ${t.pending} pending` : ''}; fund the wallet first`,
          )
        }
        if (picked.length > this.mint.maxBatch) {
          outcome = 'merge'
          break
        }
        const needFee = await this.mint.inputFee(picked)
        const total = sumAmounts(picked)
        if (total >= amount + needFee) return { inputs: picked, total, fee: needFee }
        fee = needFee
      }
      if (outcome === 'wait') {
        await sleep(25)
        continue
      }
      if (outcome !== 'merge' || ++merges > 3) {
        throw new Error(`could not gather inputs for ${amount} sats within the mint's limit of ${this.mint.maxBatch} per request`)
      }
      await this.consolidate()
    }
  }

  /** Swap the smallest proofs (one request's worth) into fewer, larger ones. */
  private async consolidate(): Promise<void> {
    const file = await this.store.refresh()
    const small = file.proofs
      .filter((p) => p.state === 'unspent')
      .map((p) => p.proof)
      .sort((a, b) => a.amount - b.amount)
      .slice(0, this.mint.maxBatch)
    const fee = await this.mint.inputFee(small)
    const keep = sumAmounts(small) - fee
    if (keep <= 0) throw new Error('the smallest proofs are worth less than the fee to merge them')
    const keyset = await this.mint.activeKeyset()
    const keys = await this.mint.keys(keyset.id)
    const outputs = splitAmount(keep, Object.keys(keys.keys)).map((a) => ({ ...randomOutput(a, keyset.id), role: 'keep' as const }))
    this.log(`merging ${small.length} small proofs before paying`)
    await this.runSwap({ purpose: 'split', inputs: small, outputs })
  }

  private async keepOutputs(amount: number): Promise<JournalOutput[]> {
    if (amount <= 0) return []
    const keyset = await this.mint.activeKeyset()
    const keys = await this.mint.keys(keyset.id)
    return splitAmount(amount, Object.keys(keys.keys)).map((a) => ({ ...randomOutput(a, keyset.id), role: 'keep' as const }))
  }

  /** Run `fn`, retrying when another process took the chosen proofs in between. */
  private async retryOnConflict<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn()
      } catch (err) {
        if (!(err instanceof StoreConflict) || attempt >= 3) throw err
      }
    }
  }

  // ------------------------------------------------------------- public ops

  /**
   * NUT-04: ask for a quote, show the invoice, wait (bounded, abortable) for it
   * to be paid, mint. The quote and its outputs are journaled first, so an
   * invoice paid after a crash, a timeout or an abort is still minted by the
   * next load().
   */
  async fund(amount: number, opts: FundOptions = {}): Promise<FundResult> {
    assertAmount(amount)
    const { signal } = opts
    if (signal?.aborted) throw new WaitAborted(`fund stopped before asking the mint for an invoice (${abortReason(signal)}); nothing was created`)
    const keyset = await this.mint.activeKeyset()
    const keys = await this.mint.keys(keyset.id)
    const quote = await this.mint.api.createMintQuote({ unit: 'sat', amount }).catch((err: unknown) => {
      throw new Error(`the mint would not issue an invoice for ${amount} sats: ${describeMintError(err)}`)
    })
    const op: MintOp = {
      kind: 'mint',
      id: this.newId(),
      createdAt: Date.now(),
      owner: this.owner(),
      quote: quote.quote,
      amount,
      request: quote.request,
      expiry: typeof quote.expiry === 'number' ? quote.expiry : null,
      outputs: splitAmount(amount, Object.keys(keys.keys)).map((a) => ({ ...randomOutput(a, keyset.id), role: 'keep' as const })),
    }
    this.running.add(op.id)
    try {
      await this.store.update((d) => d.ops.push(op))
      const kept = `quote ${quote.quote} is kept: if it is paid later, the next wallet command mints the ${amount} sats`
      if (signal?.aborted) throw new WaitAborted(`stopped waiting for the invoice (${abortReason(signal)}); ${kept}`)
      await opts.onInvoice?.(quote.request, quote.quote, op.expiry)
      const waited = await waitWhileUnpaid({
        initial: quote.state,
        check: async () => (await this.mint.api.checkMintQuote(quote.quote)).state,
        pollMs: opts.pollMs ?? 1000,
        deadline: Date.now() + (opts.timeoutMs ?? 600_000),
        signal,
        onCheckError: (err) => this.log(`checking the quote failed (${describeMintError(err)}); retrying`),
      })
      if (waited.end === 'aborted') throw new WaitAborted(`stopped waiting for the invoice (${abortReason(signal!)}); ${kept}`)
      if (waited.end === 'timeout') throw new Error(`invoice not paid within ${Math.round((opts.timeoutMs ?? 600_000) / 1000)} s; ${kept}`)
      await this.mintOutputs(op)
      return { amount, quote: quote.quote, request: quote.request }
    } finally {
      this.running.delete(op.id)
    }
  }

  /** POST /v1/mint with the journaled outputs and settle. */
  private async mintOutputs(op: MintOp): Promise<void> {
    await this.hooks.beforeMintCall?.(op)
    let signatures: Array<SerializedBlindedSignature | undefined>
    try {
      const res = await this.mint.api.mint({ quote: op.quote, outputs: serialize(op.outputs) })
      signatures = op.outputs.map((_, i) => res.signatures[i])
    } catch (err) {
      // an earlier attempt may have minted these outputs and lost the answer
      const found = await this.mint.restore(serialize(op.outputs)).catch(() => new Map<string, SerializedBlindedSignature>())
      if (found.size === 0) {
        throw new Error(`${describeMintError(err)}; quote ${op.quote} stays journaled and is retried on the next wallet start`)
      }
      signatures = op.outputs.map((o) => found.get(o.B_))
    }
    await this.hooks.afterMintCall?.(op)
    const proofs = await this.unblindAll(op.outputs, signatures)
    await this.store.update((d) => settle(d, op, proofs, { recovered: false }))
    const owed = op.outputs.filter((_, i) => !proofs[i])
    if (owed.length > 0) {
      throw new Error(
        `the mint issued quote ${op.quote} but returned only ${op.outputs.length - owed.length} of ${op.outputs.length} new proofs; ` +
          `the other ${sumAmounts(owed)} sats stay pending and are asked for again on the next wallet start`,
      )
    }
  }

  /**
   * A V4 token worth exactly `amount`, with DLEQ proofs. Uses stored proofs as
   * they are when they add up exactly (no mint round trip), else swaps for change.
   * The token is recorded in the store (`sent`) before it is returned.
   */
  async send(amount: number, opts: { memo?: string } = {}): Promise<string> {
    assertAmount(amount)
    return this.retryOnConflict(async () => {
      const file = await this.store.refresh()
      // a retired swap may still spend these: they leave only through a swap, which would notice
      const uncertain = new Set(file.retired.flatMap((r) => r.op.inputs))
      const pool = file.proofs.filter((p) => p.state === 'unspent' && p.proof.dleq && !uncertain.has(p.proof.secret)).map((p) => p.proof)
      const exact = exactSubset(pool, amount)
      if (exact) {
        const token = encodeToken(this.mintUrl, exact, opts)
        await this.store.update((d) => {
          const index = indexBySecret(d)
          const now = Date.now()
          const recs = exact.map((p) => index.get(p.secret))
          if (recs.some((r) => !r || r.state !== 'unspent')) throw new StoreConflict('proofs changed while sending')
          for (const r of recs) markSpent(r!, 'sent', now)
          d.sent.push({ at: now, amount, token })
        })
        return token
      }
      const { inputs, total, fee } = await this.selectInputs(amount)
      const keyset = await this.mint.activeKeyset()
      const keys = await this.mint.keys(keyset.id)
      const outputs: JournalOutput[] = [
        ...splitAmount(amount, Object.keys(keys.keys)).map((a) => ({ ...randomOutput(a, keyset.id), role: 'send' as const })),
        ...(await this.keepOutputs(total - amount - fee)),
      ]
      let token = ''
      await this.runSwap({
        purpose: 'send',
        inputs,
        outputs,
        onSettle: (d, proofs) => {
          const send = proofs.filter((p, i): p is Proof => !!p && outputs[i]!.role === 'send')
          token = encodeToken(this.mintUrl, send, opts)
          d.sent.push({ at: Date.now(), amount, token })
        },
      })
      return token
    })
  }

  /**
   * Receive a V4 or V3 token from this wallet's mint: swap its proofs for new
   * ones at the mint, so the sender can no longer spend them. Proofs P2PK-locked
   * (NUT-11) to `opts.privkey`'s key are signed with it; the swap is journaled
   * like any other, so a crash after the mint signed loses nothing.
   */
  async receive(token: string, opts: { privkey?: string | Uint8Array } = {}): Promise<ReceiveResult> {
    const decoded = decodeToken(token)
    if (!sameMint(decoded.mint, this.mintUrl)) {
      throw new Error(
        `this token is from mint ${decoded.mint}, but this wallet uses ${this.mintUrl}; ` +
          `receive it with a wallet for that mint (dvm-wallet --mint ${decoded.mint} receive …)`,
      )
    }
    if (decoded.unit !== 'sat') throw new Error(`this token is in unit "${decoded.unit}"; this wallet holds sats only`)
    const sign = lockedProofSigner(decoded.proofs, opts.privkey)
    const file = await this.store.refresh()
    const index = indexBySecret(file)
    const amount = sumAmounts(decoded.proofs)
    for (const p of decoded.proofs) {
      const rec = index.get(p.secret)
      if (!rec) continue
      if (rec.state === 'spent' && rec.spentBy === 'received') {
        throw new TokenAlreadyTaken('this-wallet', 'this token was already received by this wallet; the balance is unchanged')
      }
      if (rec.state !== 'spent') throw new Error('this token holds proofs that are already in this wallet; nothing to receive')
      // spent by us as 'sent': taking back our own token is fine; the mint decides
    }
    if (decoded.proofs.length > this.mint.maxBatch) {
      throw new Error(`this token holds ${decoded.proofs.length} proofs; this wallet takes at most ${this.mint.maxBatch} per token (the mint's limit per request)`)
    }
    const keysets = new Set((await this.mint.keysets()).map((k) => k.id))
    const unknown = decoded.proofs.find((p) => !keysets.has(p.id))
    if (unknown) throw new Error(`this token uses keyset ${unknown.id}, which mint ${this.mintUrl} does not list; it cannot be received here`)
    for (const id of new Set(decoded.proofs.map((p) => p.id))) {
      const keys = await this.mint.keys(id)
      const odd = decoded.proofs.find((p) => p.id === id && !keys.keys[p.amount])
      if (odd) throw new Error(`this token holds a proof of ${odd.amount} sats in keyset ${id}, which has no key for that amount; it is not genuine ecash`)
    }
    const fee = await this.mint.inputFee(decoded.proofs)
    if (amount - fee <= 0) throw new Error(`this token is worth ${amount} sats, not more than the mint's fee of ${fee} to receive it`)
    const outputs = await this.keepOutputs(amount - fee)
    try {
      await this.runSwap({ purpose: 'receive', inputs: [], foreign: decoded.proofs, outputs, ...(sign ? { sign } : {}), ...(decoded.memo ? { memo: decoded.memo } : {}) })
    } catch (err) {
      // an earlier attempt whose answer was lost may have received it after all (see RetiredOp)
      const index = indexBySecret(await this.store.refresh())
      if (decoded.proofs.every((p) => index.get(p.secret)?.spentBy === 'received')) {
        return { amount: amount - fee, fee, ...(decoded.memo ? { memo: decoded.memo } : {}) }
      }
      if (/already spent|11001/i.test(String((err as Error).message))) {
        throw new TokenAlreadyTaken('spent', 'this token was already spent (received before by this or another wallet); the balance is unchanged')
      }
      throw err
    }
    return { amount: amount - fee, fee, ...(decoded.memo ? { memo: decoded.memo } : {}) }
  }

  /**
   * NUT-05: pay a bolt11 invoice from the balance. Inputs cover the amount plus
   * the mint's fee reserve; blank outputs (NUT-08) bring back whatever the
   * payment did not use. `maxSats` caps everything spent: invoice, the mint's
   * fee reserve and input fees. A melt whose answer is lost and whose quote
   * then reads UNPAID is retired (see RetiredOp); paying the same invoice again
   * first settles such a melt if it turned out paid, rather than paying twice.
   */
  async melt(bolt11: string, opts: { maxSats?: number } = {}): Promise<MeltResult> {
    const request = bolt11.trim().replace(/^lightning:/i, '')
    if (!/^ln(bc|tb|bcrt|tbs|sb)[0-9a-z]+$/i.test(request)) throw new Error('that is not a bolt11 invoice (it should start with lnbc, lntb or lnbcrt)')
    const earlier = await this.recovery.earlierMeltOf(request)
    if (earlier) {
      this.log(`this invoice was already paid by an earlier attempt whose answer was lost; nothing more was paid`)
      return earlier
    }
    const quote = await this.mint.api.createMeltQuote({ unit: 'sat', request }).catch((err: unknown) => {
      throw new Error(`the mint would not quote this invoice: ${describeMintError(err)}`)
    })
    return this.retryOnConflict(async () => {
      const { inputs, total, fee } = await this.selectInputs(quote.amount + quote.fee_reserve)
      const most = quote.amount + quote.fee_reserve + fee
      if (opts.maxSats !== undefined && most > opts.maxSats) {
        throw new Error(`paying this invoice could cost up to ${most} sats (${quote.amount} + fee reserve ${quote.fee_reserve} + input fees ${fee}), above the limit of ${opts.maxSats}; nothing was paid`)
      }
      const keyset = await this.mint.activeKeyset()
      const overpay = total - quote.amount - fee
      const outputs: JournalOutput[] = Array.from({ length: bitLength(overpay) }, () => ({ ...randomOutput(1, keyset.id), role: 'keep' as const }))
      const op: MeltOp = {
        kind: 'melt',
        id: this.newId(),
        createdAt: Date.now(),
        owner: this.owner(),
        quote: quote.quote,
        amount: quote.amount,
        feeReserve: quote.fee_reserve,
        request,
        inputs: inputs.map((p) => p.secret),
        outputs,
      }
      this.running.add(op.id)
      try {
        await this.store.update((d) => journal(d, op, inputs, ['unspent']))
        await this.hooks.beforeMintCall?.(op)
        let res: PartialMeltQuoteResponse
        try {
          res = await this.mint.slowApi.melt({ quote: quote.quote, inputs: inputs.map(asInput), outputs: serialize(outputs) })
        } catch (err) {
          // a lost answer: the quote's state says whether the payment went out
          const q = isRejection(err) ? undefined : await this.mint.api.checkMeltQuote(quote.quote).catch(() => undefined)
          if (!q || q.state === MeltQuoteState.UNPAID) throw await this.afterFailure(op, err)
          res = q
        }
        await this.hooks.afterMintCall?.(op)
        if (res.state === MeltQuoteState.PAID) {
          const change = await this.unblindAll(outputs, res.change?.length ? res.change : await this.mint.restore(serialize(outputs)))
          await this.store.update((d) => settle(d, op, change, { recovered: false }))
          const changeTotal = sumAmounts(change.filter((p): p is Proof => !!p))
          return {
            paid: true,
            state: 'PAID',
            ...(res.payment_preimage ? { preimage: res.payment_preimage } : {}),
            amount: quote.amount,
            feePaid: total - quote.amount - changeTotal,
          }
        }
        if (res.state === MeltQuoteState.PENDING) {
          this.log(`payment pending at the mint; ${total} sats stay pending until it settles`)
          return { paid: false, state: 'PENDING', amount: quote.amount, feePaid: 0 }
        }
        const settled = await this.recovery.recoverOp(op, { uncertain: false, failedJustNow: true }).catch(() => false)
        throw new Error(
          `the mint could not pay the invoice; ${settled ? `your ${total} sats are spendable again` : `${total} sats stay pending and are settled on the next wallet start`}`,
        )
      } finally {
        this.running.delete(op.id)
      }
    })
  }

  /**
   * Deposit proofs that are already ours alone (e.g. fresh from a redeem swap).
   * Duplicates by secret are ignored, so a retried deposit never counts twice.
   */
  async addProofs(proofs: ReadonlyArray<Proof>): Promise<{ added: number; amount: number }> {
    for (const p of proofs) {
      const problem = proofAmountProblem(p.amount)
      if (problem) throw new Error(`addProofs got a proof no mint issues (${problem}); nothing was added`)
      if (typeof p.secret !== 'string' || typeof p.C !== 'string' || typeof p.id !== 'string') throw new Error('addProofs got a malformed proof; nothing was added')
    }
    return this.store.update((d) => {
      const index = indexBySecret(d)
      const now = Date.now()
      let added = 0
      let amount = 0
      for (const p of proofs) {
        if (index.has(p.secret)) continue
        const rec: StoredProof = { proof: { id: p.id, amount: p.amount, secret: p.secret, C: p.C, ...(p.dleq ? { dleq: p.dleq } : {}) }, state: 'unspent', addedAt: now }
        d.proofs.push(rec)
        index.set(p.secret, rec)
        added++
        amount += p.amount
      }
      return { added, amount }
    })
  }

  /**
   * One swap (per `maxBatch` outputs) turning `amount` sats into `amount` 1-sat
   * proofs P2PK-locked (NUT-11, SIG_INPUTS) to the payee, with locktime and our
   * refund key, each carrying its DLEQ proof (NUT-12). They stay in the store as
   * `locked` until marked paid (markLockedPaid) or reclaimed (reclaimLocked).
   * Amounts above one request are split into several swaps; if a later one
   * fails, the earlier ones stay locked (see lockedProofs()).
   */
  async lockForPayee(opts: LockForPayeeOptions): Promise<Proof[]> {
    assertAmount(opts.amount)
    const payee = normalizePubkey(opts.payeePubkey, 'payee key')
    const refund = normalizePubkey(opts.refundPubkey, 'refund key')
    if (sameXOnly(payee, refund)) throw new Error('the refund key must differ from the payee key')
    const now = Math.floor(Date.now() / 1000)
    if (!Number.isSafeInteger(opts.locktime) || opts.locktime <= now) {
      throw new Error(`locktime ${opts.locktime} is not in the future (now ${now}); the payee would refuse proofs it cannot safely redeem`)
    }
    const info = await this.mint.info()
    if (!info.nuts['11']?.supported || !info.nuts['12']?.supported) {
      throw new Error(`mint ${this.mintUrl} does not support P2PK locks (NUT-11) and DLEQ proofs (NUT-12), which per-tick payment needs; use another mint`)
    }
    const keyset = await this.mint.activeKeyset()
    if ((keyset.input_fee_ppk ?? 0) > 0) {
      throw new Error(
        `mint ${this.mintUrl} charges an input fee of ${keyset.input_fee_ppk} ppk per proof (keyset ${keyset.id}), ` +
          `so every 1-sat tick would cost the payee a fee share when redeemed; this wallet refuses to lock 1-sat proofs at such a mint. ` +
          `Use a mint with input_fee_ppk = 0 (nutshell: MINT_INPUT_FEE_PPK=0)`,
      )
    }
    const keys = await this.mint.keys(keyset.id)
    if (!keys.keys[1]) throw new Error(`keyset ${keyset.id} of mint ${this.mintUrl} has no 1-sat key`)
    const lock: LockInfo = { payee, locktime: opts.locktime, refund }
    const locked: Proof[] = []
    let remaining = opts.amount
    while (remaining > 0) {
      const chunk = await this.retryOnConflict(async () => {
        let count = Math.min(remaining, this.mint.maxBatch - 1)
        for (;;) {
          const sel = await this.selectInputs(count)
          const change = splitAmount(sel.total - count - sel.fee, Object.keys(keys.keys))
          if (count + change.length > this.mint.maxBatch) {
            count = this.mint.maxBatch - change.length
            continue
          }
          const outputs: JournalOutput[] = [
            ...Array.from({ length: count }, () => ({ ...blindSecret(makeP2PKSecret({ pubkey: payee, locktime: lock.locktime, refundKeys: [refund] }), 1, keyset.id), role: 'locked' as const, lock })),
            ...change.map((a) => ({ ...randomOutput(a, keyset.id), role: 'keep' as const })),
          ]
          const proofs = await this.runSwap({ purpose: 'lock', inputs: sel.inputs, outputs })
          return proofs.filter((_, i) => outputs[i]!.role === 'locked')
        }
      })
      const noDleq = chunk.filter((p) => !p.dleq).length
      if (noDleq > 0) {
        throw new Error(
          `mint ${this.mintUrl} signed ${noDleq} locked proofs without DLEQ proofs (NUT-12); a payee will refuse them. ` +
            `They stay locked in the wallet and can be reclaimed after locktime ${lock.locktime}`,
        )
      }
      locked.push(...chunk)
      remaining -= chunk.length
    }
    return locked
  }

  /** The payee accepted these locked proofs: they are no longer ours to reclaim. Durable before it resolves. */
  async markLockedPaid(proofs: ReadonlyArray<Pick<Proof, 'secret'>>): Promise<number> {
    return this.store.update((d) => {
      const index = indexBySecret(d)
      const now = Date.now()
      let n = 0
      for (const p of proofs) {
        const rec = index.get(p.secret)
        if (rec?.state === 'locked') {
          markSpent(rec, 'paid', now)
          n += rec.proof.amount
        }
      }
      return n
    })
  }

  /**
   * After locktime, take back locked proofs the payee did not redeem: spend them
   * with the refund key's signature (NUT-11 refund path) into fresh proofs.
   * Proofs the payee already redeemed are marked spent.
   */
  async reclaimLocked(proofs: ReadonlyArray<Proof>, refundPrivkey: string | Uint8Array): Promise<ReclaimResult> {
    const result: ReclaimResult = { reclaimed: 0, alreadySpent: 0, stillPending: 0 }
    if (proofs.length === 0) return result
    const refundPub = pubkeyOf(refundPrivkey)
    const signer = new SchnorrSigner(refundPrivkey)
    const now = Math.floor(Date.now() / 1000)
    for (const p of proofs) {
      const parsed = parseP2PKSecret(p.secret)
      if (!parsed.ok) throw new Error(`proof ${p.secret.slice(0, 12)}… is not P2PK-locked; nothing to reclaim`)
      const lock = parsed.secret
      if (!lock.refundKeys.some((k) => sameXOnly(k, refundPub))) throw new Error('the given private key is not the refund key of these proofs')
      if (lock.locktime === undefined || lock.locktime >= now) {
        throw new Error(`these proofs are locked to the payee until ${lock.locktime ?? 'forever'} (now ${now}); reclaim them after that`)
      }
    }
    const states = await this.mint.states(proofs.map((p) => p.secret))
    const spent = proofs.filter((p) => states.get(p.secret) === 'SPENT')
    const unspent = proofs.filter((p) => states.get(p.secret) === 'UNSPENT')
    result.alreadySpent = sumAmounts(spent)
    result.stillPending = sumAmounts(proofs.filter((p) => states.get(p.secret) === 'PENDING'))
    if (spent.length > 0) {
      await this.store.update((d) => {
        const index = indexBySecret(d)
        for (const p of spent) {
          const rec = index.get(p.secret)
          if (rec && rec.state === 'locked') markSpent(rec, 'paid', Date.now())
        }
      })
    }
    const file = await this.store.refresh()
    const index = indexBySecret(file)
    const sign = (p: Proof) => withWitness(p, signer)
    for (let i = 0; i < unspent.length; i += this.mint.maxBatch - 64) {
      const batch = unspent.slice(i, i + this.mint.maxBatch - 64)
      const ours = batch.filter((p) => index.get(p.secret)?.state === 'locked').map((p) => index.get(p.secret)!.proof)
      const foreign = batch.filter((p) => !index.has(p.secret))
      const fee = await this.mint.inputFee([...ours, ...foreign])
      const keep = sumAmounts([...ours, ...foreign]) - fee
      if (keep <= 0) continue
      await this.runSwap({ purpose: 'reclaim', inputs: ours, foreign, from: ['locked'], sign, outputs: await this.keepOutputs(keep) })
      result.reclaimed += keep
    }
    return result
  }
}
