/**
 * Crash and timeout recovery for a Wallet: settles journaled operations nobody
 * is running any more (a dead process's, or one this Wallet gave up on) and
 * retired swaps and melts (see RetiredOp in proof-store.ts) from what the mint
 * knows: NUT-09 restore, NUT-07 proof states, NUT-04/05 quote states.
 *
 * Kept apart from wallet.ts so the public API reads on its own; it holds no
 * state beyond its Wallet's (one per Wallet object), and reaches back only
 * through RecoveryContext for what the Wallet owns: which operations it is
 * running, minting a paid quote (its hooks), and unblinding.
 */
import {
  MeltQuoteState,
  MintQuoteState,
  NetworkError,
  type Proof,
  type SerializedBlindedSignature,
} from '@cashu/cashu-ts'
import {
  ownerAlive,
  type JournalOutput,
  type MeltOp,
  type MintOp,
  type Operation,
  type OpOwner,
  type ProofStore,
  type RetirableOp,
  type SwapOp,
} from './proof-store.js'
import { dropOp, forgetRetired, indexBySecret, revert, serialize, settle, spentSecrets } from './wallet-ledger.js'
import { sumAmounts } from './token.js'
import { describeMintError, type MintConnection } from './wallet-mint.js'
import type { MeltResult, RecoveryReport } from './wallet.js'

/** What recovery needs of its Wallet. */
export interface RecoveryContext {
  /** the Wallet's store; a function because it is opened only by load() */
  store: () => ProofStore
  mint: MintConnection
  log: (message: string) => void
  /** true when `owner` is this Wallet object in this process */
  isMine: (owner: OpOwner) => boolean
  /** true while this Wallet object is carrying out the operation: never recovered from under it */
  isRunning: (opId: string) => boolean
  /** how long a retired swap or melt keeps its outputs while its inputs stay unspent */
  retiredGraceMs: number
  /** POST /v1/mint with a paid quote's journaled outputs and settle */
  mintOutputs: (op: MintOp) => Promise<void>
  unblindAll: (outputs: ReadonlyArray<JournalOutput>, sigs: Map<string, SerializedBlindedSignature>) => Promise<Array<Proof | undefined>>
}

/** A rough description of an operation for logs and errors. */
function describeOp(op: Operation): string {
  return op.kind === 'swap' ? `${op.purpose} ${op.id}` : `${op.kind} ${op.id} (quote ${op.quote})`
}

export class WalletRecovery {
  private readonly mint: MintConnection
  private readonly log: (message: string) => void
  #retiredRecovered = 0

  constructor(private readonly ctx: RecoveryContext) {
    this.mint = ctx.mint
    this.log = ctx.log
  }

  private get store(): ProofStore {
    return this.ctx.store()
  }

  /** Retired operations found carried out so far (tells a failed request that its inputs are accounted for). */
  get retiredRecovered(): number {
    return this.#retiredRecovered
  }

  /** See Wallet.recover(). */
  async recover(): Promise<RecoveryReport> {
    const file = await this.store.refresh()
    const report: RecoveryReport = { resolved: 0, unsettled: 0 }
    let unreachable = false
    for (const op of file.ops) {
      if (this.ctx.isMine(op.owner) ? this.ctx.isRunning(op.id) : ownerAlive(op.owner)) continue
      if (unreachable) {
        report.unsettled++
        continue
      }
      try {
        // nobody knows whether its request reached the mint
        if (await this.recoverOp(op, { uncertain: true })) report.resolved++
        else report.unsettled++
      } catch (err) {
        report.unsettled++
        // one timeout is enough: do not make `balance` wait once per operation
        unreachable = err instanceof NetworkError
        this.log(`could not settle interrupted ${op.kind} ${op.id} yet: ${describeMintError(err)}; it stays pending and is retried on the next start`)
      }
    }
    if (!unreachable) {
      await this.reviewRetired(report).catch((err: unknown) => {
        this.log(`could not check operations that timed out earlier: ${describeMintError(err)}; checked again on the next start`)
      })
    }
    return report
  }

  /**
   * Returns true when the operation is settled (and gone from the journal).
   * `uncertain`: its request may have reached the mint (timeout, crash), so
   * if it looks undone, its outputs are kept in case it still lands.
   */
  async recoverOp(op: Operation, opts: { uncertain: boolean; failedJustNow?: boolean }): Promise<boolean> {
    // An operation that failed just now is undone by the code that ran it, whose error
    // says what happened; "interrupted … spendable again" would only confuse.
    const log = opts.failedJustNow ? () => {} : this.log
    if (op.kind === 'mint') return this.recoverMint(op)
    if (op.kind === 'melt') return this.recoverMelt(op, opts.uncertain, log)
    return this.recoverSwap(op, opts.uncertain, log)
  }

  private async recoverSwap(op: SwapOp, uncertain: boolean, logUndo: (line: string) => void): Promise<boolean> {
    const sigs = await this.mint.restore(serialize(op.outputs))
    if (sigs.size > 0) return this.settleRestored(op, sigs)
    if (op.swapped) return this.stillOwed(op)
    const secrets = spentSecrets(op)
    const states = await this.mint.states(secrets)
    if ([...states.values()].includes('PENDING')) return false
    const spent = new Set(secrets.filter((s) => states.get(s) === 'SPENT'))
    if (spent.size > 0 && uncertain) {
      // it may have landed between the restore and the state check
      const again = await this.mint.restore(serialize(op.outputs))
      if (again.size > 0) return this.settleRestored(op, again)
    }
    const { accounted, retire } = await this.undo(op, spent, uncertain)
    logUndo(
      spent.size > 0
        ? `interrupted ${op.purpose} ${op.id}: ${spent.size} input(s) were spent elsewhere; the rest are spendable again`
        : accounted > 0
          ? `interrupted ${op.purpose} ${op.id}: an earlier attempt had already spent its inputs; its new proofs are recovered`
          : retire
            ? `interrupted ${op.purpose} ${op.id} has not reached the mint; its inputs are spendable again (its outputs are kept in case it still arrives)`
            : `${op.purpose} ${op.id} did not happen; its inputs are spendable again`,
    )
    return true
  }

  private async recoverMint(op: MintOp): Promise<boolean> {
    const sigs = await this.mint.restore(serialize(op.outputs))
    if (sigs.size > 0) return this.settleRestored(op, sigs)
    if (op.swapped) return this.stillOwed(op)
    const quote = await this.mint.api.checkMintQuote(op.quote)
    if (quote.state === MintQuoteState.PAID) {
      await this.ctx.mintOutputs(op)
      this.log(`minted ${op.amount} sats for quote ${op.quote}, paid after the wallet stopped waiting`)
      return true
    }
    if (quote.state === MintQuoteState.ISSUED) {
      // issued to our outputs between the restore and the quote check?
      const again = await this.mint.restore(serialize(op.outputs))
      if (again.size > 0) return this.settleRestored(op, again)
    }
    const expired = op.expiry !== null && op.expiry * 1000 < Date.now()
    if (quote.state === MintQuoteState.ISSUED || expired) {
      await this.store.update((d) => dropOp(d, op.id))
      this.log(
        quote.state === MintQuoteState.ISSUED
          ? `quote ${op.quote} was issued to other outputs; dropping it`
          : `unpaid quote ${op.quote} expired; dropping it`,
      )
      return true
    }
    return false // unpaid, not expired: keep waiting for the payer
  }

  /**
   * Settle a swap or mint from the signatures a NUT-09 restore returned. True
   * when all its outputs came back; otherwise the rest stay owed (`swapped`).
   */
  private async settleRestored(op: SwapOp | MintOp, sigs: Map<string, SerializedBlindedSignature>): Promise<boolean> {
    const proofs = await this.ctx.unblindAll(op.outputs, sigs)
    await this.store.update((d) => settle(d, op, proofs, { recovered: true }))
    const got = proofs.filter((p): p is Proof => !!p)
    const owed = op.outputs.filter((_, i) => !proofs[i])
    if (owed.length > 0) {
      this.log(
        `the mint restored only ${got.length} of ${op.outputs.length} outputs of ${describeOp(op)}: ${sumAmounts(got)} sats settled; ` +
          `the other ${owed.length} (${sumAmounts(owed)} sats) stay pending and are asked for again on the next recovery`,
      )
      return false
    }
    this.log(`recovered interrupted ${describeOp(op)}: ${sumAmounts(got)} sats of new proofs`)
    return true
  }

  /** An operation the mint carried out whose remaining outputs it has not returned yet. */
  private stillOwed(op: Operation): false {
    this.log(`still waiting for the mint to return ${op.outputs.length} signed output(s) (${sumAmounts(op.outputs)} sats) of ${describeOp(op)}; asked again on the next recovery`)
    return false
  }

  /**
   * Retired swaps and melts (see RetiredOp) that no running operation is
   * using: settle those the mint carried out after all, forget those that can
   * no longer happen, and those whose inputs are still unspent once the grace is over.
   */
  private async reviewRetired(report: RecoveryReport): Promise<void> {
    const file = await this.store.refresh()
    const busy = new Set(file.proofs.filter((p) => p.state === 'pending').map((p) => p.proof.secret))
    for (const r of file.retired) {
      if (r.op.inputs.some((s) => busy.has(s))) continue // the operation spending them now settles this
      const states = [...(await this.mint.states(spentSecrets(r.op))).values()]
      if (states.includes('PENDING')) continue
      if (states.includes('SPENT')) {
        try {
          if (await this.settleRetired(r.op)) report.resolved++
        } catch (err) {
          // e.g. a melt still being paid: the others are independent of it
          this.log(`could not settle ${describeOp(r.op)}, undone after a timeout, yet: ${describeMintError(err)}; checked again on the next start`)
        }
      } else if (Date.now() - r.retiredAt >= this.ctx.retiredGraceMs) {
        await this.store.update((d) => forgetRetired(d, r.op.id))
      }
    }
  }

  /**
   * A retired operation whose inputs are spent: if the mint carried it out
   * after all, take in its result (true); otherwise it never can, and is
   * forgotten (false). Throws while the outcome is still open (a melt being paid).
   */
  private async settleRetired(op: RetirableOp): Promise<boolean> {
    if (op.kind === 'melt') return this.settleRetiredMelt(op)
    const sigs = await this.mint.restore(serialize(op.outputs))
    if (sigs.size === 0) {
      await this.store.update((d) => forgetRetired(d, op.id))
      return false
    }
    this.#retiredRecovered++
    this.log(`the ${op.purpose} ${op.id} that timed out earlier did reach the mint; taking in its new proofs`)
    await this.settleRestored(op, sigs)
    return true
  }

  /**
   * A melt's change outputs may all be left unsigned (nothing to give back),
   * so the quote, not the restore, says whether it happened; signed change
   * says so too (the quote may lag behind the inputs being spent).
   */
  private async settleRetiredMelt(op: MeltOp): Promise<boolean> {
    const quote = await this.mint.api.checkMeltQuote(op.quote)
    if (quote.state === MeltQuoteState.PENDING) throw new Error(`melt ${op.quote} is still being paid at the mint`)
    const sigs = await this.mint.restore(serialize(op.outputs))
    if (quote.state !== MeltQuoteState.PAID && sigs.size === 0) {
      await this.store.update((d) => forgetRetired(d, op.id))
      return false
    }
    await this.takeInRetiredMelt(op, sigs)
    return true
  }

  /** Settle a retired melt that paid: inputs spent, change in. Returns the change in sats. */
  private async takeInRetiredMelt(op: MeltOp, sigs: Map<string, SerializedBlindedSignature>): Promise<number> {
    this.#retiredRecovered++
    const change = await this.ctx.unblindAll(op.outputs, sigs)
    await this.store.update((d) => settle(d, op, change, { recovered: true }))
    const sats = sumAmounts(change.filter((p): p is Proof => !!p))
    this.log(`melt ${op.quote}, undone after its request timed out, did reach the mint and paid the invoice; its ${op.inputs.length} input(s) are spent and ${sats} sats of change recovered`)
    return sats
  }

  /**
   * An earlier melt of this invoice that timed out (retired) may have paid it
   * after all: then it is settled and reported, so the invoice is not paid
   * twice. Refuses while that melt is still being paid. Undefined otherwise.
   */
  async earlierMeltOf(request: string): Promise<MeltResult | undefined> {
    const file = await this.store.refresh()
    const op = file.retired.map((r) => r.op).find((o): o is MeltOp => o.kind === 'melt' && o.request === request)
    if (!op) return undefined
    const quote = await this.mint.api.checkMeltQuote(op.quote)
    if (quote.state === MeltQuoteState.PENDING) {
      throw new Error(`an earlier attempt to pay this invoice (quote ${op.quote}) is being paid at the mint right now; nothing more was paid: check the balance in a while`)
    }
    if (quote.state !== MeltQuoteState.PAID) return undefined
    const index = indexBySecret(file)
    const spent = sumAmounts(op.inputs.map((s) => index.get(s)?.proof).filter((p): p is Proof => !!p))
    const change = await this.takeInRetiredMelt(op, await this.mint.restore(serialize(op.outputs)))
    return {
      paid: true,
      state: 'PAID',
      ...(quote.payment_preimage ? { preimage: quote.payment_preimage } : {}),
      amount: op.amount,
      feePaid: Math.max(0, spent - op.amount - change),
    }
  }

  /** Settle the retired operations that spend any of `spent`; returns the secrets they account for. */
  private async recoverRetiredSpending(spent: ReadonlySet<string>): Promise<Set<string>> {
    const accounted = new Set<string>()
    const { retired } = await this.store.refresh()
    for (const r of retired.filter((x) => spentSecrets(x.op).some((s) => spent.has(s)))) {
      if (await this.settleRetired(r.op)) for (const s of spentSecrets(r.op)) accounted.add(s)
    }
    return accounted
  }

  /**
   * `uncertain`: the melt request may still reach the mint, so an unpaid melt
   * is retired (its change outputs kept) rather than forgotten: if the mint
   * pays the invoice later, the change is restored and the inputs marked spent.
   */
  private async recoverMelt(op: MeltOp, uncertain: boolean, logUndo: (line: string) => void): Promise<boolean> {
    const quote = await this.mint.api.checkMeltQuote(op.quote)
    if (quote.state === MeltQuoteState.PENDING) return false
    if (quote.state === MeltQuoteState.PAID) {
      const sigs = await this.mint.restore(serialize(op.outputs))
      const proofs = await this.ctx.unblindAll(op.outputs, sigs)
      await this.store.update((d) => settle(d, op, proofs, { recovered: true }))
      this.log(`melt ${op.quote} was paid; ${sumAmounts(proofs.filter((p): p is Proof => !!p))} sats of change recovered`)
      return true
    }
    const states = await this.mint.states(op.inputs)
    if ([...states.values()].includes('PENDING')) return false
    const spent = new Set(op.inputs.filter((s) => states.get(s) === 'SPENT'))
    // it may have been paid between the quote check and the state check
    if (spent.size > 0 && uncertain && (await this.mint.api.checkMeltQuote(op.quote)).state !== MeltQuoteState.UNPAID) return this.recoverMelt(op, false, logUndo)
    const { retire } = await this.undo(op, spent, uncertain)
    logUndo(
      spent.size > 0
        ? `melt ${op.quote} was not paid; ${spent.size} of its inputs were spent elsewhere, the rest are spendable again`
        : retire
          ? `melt ${op.quote} has not been paid so far; its inputs are spendable again (its change outputs are kept in case the request still arrives)`
          : `melt ${op.quote} was not paid; its inputs are spendable again`,
    )
    return true
  }

  /**
   * Revert a swap or melt that did not happen. Inputs an earlier attempt
   * (answer lost) spent are recovered through that attempt and counted in
   * `accounted`; an uncertain one with no input spent is retired, keeping its
   * outputs in case its request still reaches the mint. With any input spent
   * it can never happen any more.
   */
  private async undo(op: SwapOp | MeltOp, spent: Set<string>, uncertain: boolean): Promise<{ accounted: number; retire: boolean }> {
    let accounted = 0
    if (spent.size > 0) {
      for (const s of await this.recoverRetiredSpending(spent)) {
        spent.delete(s)
        accounted++
      }
    }
    const retire = uncertain && spent.size === 0 && accounted === 0
    await this.store.update((d) => revert(d, op, spent, { retire }))
    return { accounted, retire }
  }
}
