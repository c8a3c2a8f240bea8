/**
 * The wallet's bookkeeping on a proof-store draft: journal an operation, settle
 * it from the mint's answer, or revert it (keeping its outputs as a retired
 * swap or melt when the mint may still carry it out). Pure functions on the in-memory
 * file, always run inside ProofStore.update so each is one atomic, durable
 * write. Also input selection, which only looks at proofs.
 */
import type { Proof, SerializedBlindedMessage } from '@cashu/cashu-ts'
import type { JournalOutput, Operation, ProofState, RetirableOp, SpentReason, StoredProof, WalletFile } from './proof-store.js'

/** Journaled outputs as the mint takes them (blinding factors and secrets stay here). */
export function serialize(outputs: ReadonlyArray<JournalOutput>): SerializedBlindedMessage[] {
  return outputs.map((o) => ({ amount: o.amount, id: o.id, B_: o.B_ }))
}

/** Raised when another process changed the store between planning and journaling. */
export class StoreConflict extends Error {}

/** What the mint needs of an input: no DLEQ (ours alone), witness only where one is required. */
export function asInput(p: Proof): Proof {
  return { id: p.id, amount: p.amount, secret: p.secret, C: p.C, ...(p.witness ? { witness: p.witness } : {}) }
}

/**
 * Inputs covering `target`: the smallest single proof that covers what is still
 * missing, else the largest one and go on. Keeps input count (and fees) low.
 */
export function pickInputs(pool: ReadonlyArray<Proof>, target: number): Proof[] | undefined {
  const sorted = [...pool].sort((a, b) => a.amount - b.amount)
  const chosen: Proof[] = []
  let missing = target
  while (missing > 0) {
    const idx = sorted.findIndex((p) => p.amount >= missing)
    const take = idx >= 0 ? sorted.splice(idx, 1)[0] : sorted.pop()
    if (!take) return undefined
    chosen.push(take)
    missing -= take.amount
  }
  return chosen
}

/** Proofs that add up to exactly `amount`, if the greedy largest-first pass finds them. */
export function exactSubset(pool: ReadonlyArray<Proof>, amount: number): Proof[] | undefined {
  const sorted = [...pool].sort((a, b) => b.amount - a.amount)
  const chosen: Proof[] = []
  let rest = amount
  for (const p of sorted) {
    if (p.amount <= rest) {
      chosen.push(p)
      rest -= p.amount
      if (rest === 0) return chosen
    }
  }
  return undefined
}

export function indexBySecret(file: WalletFile): Map<string, StoredProof> {
  return new Map(file.proofs.map((p) => [p.proof.secret, p]))
}

/** Journal an operation: inputs go pending, the op with all output secrets is written. */
export function journal(d: WalletFile, op: Operation, inputs: ReadonlyArray<Proof>, from: ReadonlyArray<ProofState>): void {
  const index = indexBySecret(d)
  for (const p of inputs) {
    const rec = index.get(p.secret)
    if (!rec || !from.includes(rec.state) || (rec.state !== 'unspent' && rec.state !== 'locked')) {
      throw new StoreConflict(`proof ${p.secret.slice(0, 12)}… is no longer available`)
    }
    rec.was = rec.state
    rec.state = 'pending'
    rec.op = op.id
  }
  if (op.kind === 'swap' && op.foreign.length > 0) {
    const busy = new Set(d.ops.flatMap((o) => (o.kind === 'swap' ? o.foreign.map((p) => p.secret) : [])))
    if (op.foreign.some((p) => busy.has(p.secret))) {
      throw new Error('this token is being received right now by another command; wait for it to finish')
    }
  }
  d.ops.push(op)
}

/** Secrets of every proof an operation spends: our own inputs and a received token's. */
export function spentSecrets(op: Operation): string[] {
  if (op.kind === 'mint') return []
  return op.kind === 'swap' ? [...op.inputs, ...op.foreign.map((p) => p.secret)] : op.inputs
}

/** Retired operations spending any of `secrets` can no longer happen: the mint takes each input once. */
function dropRetiredSpending(d: WalletFile, secrets: ReadonlySet<string>, id?: string): void {
  if (d.retired.length === 0) return
  d.retired = d.retired.filter((r) => r.op.id !== id && !spentSecrets(r.op).some((s) => secrets.has(s)))
}

/**
 * Settle an operation the mint carried out: new proofs in, inputs out, op
 * gone, all in one write. Idempotent per secret, so settling twice adds nothing twice.
 * `proofs[i]` belongs to `op.outputs[i]` (undefined: the mint did not return it).
 * A swap or mint is signed whole or not at all, so missing outputs of one are
 * owed, not lost: the op stays journaled (`swapped`) with just those. A melt
 * signs only the blank outputs its change needs, so its missing ones are dropped.
 */
export function settle(d: WalletFile, op: Operation, proofs: ReadonlyArray<Proof | undefined>, mode: { recovered: boolean }): void {
  const now = Date.now()
  const index = indexBySecret(d)
  const reason: SpentReason =
    op.kind === 'melt' ? 'melted' : op.kind === 'swap' && op.purpose === 'reclaim' ? 'reclaimed' : 'swapped'
  const inputs = op.kind === 'mint' ? [] : op.inputs
  for (const secret of inputs) {
    const rec = index.get(secret)
    if (!rec) continue
    markSpent(rec, reason, now)
  }
  if (op.kind === 'swap') {
    for (const p of op.foreign) {
      const rec = index.get(p.secret)
      if (rec) markSpent(rec, 'received', now)
      else {
        const added: StoredProof = { proof: asInput(p), state: 'spent', addedAt: now, spentAt: now, spentBy: 'received' }
        d.proofs.push(added)
        index.set(p.secret, added)
      }
    }
  }
  const missing: JournalOutput[] = []
  op.outputs.forEach((o, i) => {
    const proof = proofs[i]
    if (!proof) {
      missing.push(o)
      return
    }
    if (index.has(proof.secret)) return
    const rec: StoredProof = { proof, state: 'unspent', addedAt: now }
    if (o.role === 'locked' && o.lock) {
      rec.state = 'locked'
      rec.lock = o.lock
    } else if (o.role === 'send' && !mode.recovered) {
      // handed out in the token this settlement records; after a crash the
      // token never reached anyone, so recovered send outputs stay ours
      markSpent(rec, 'sent', now)
    }
    d.proofs.push(rec)
    index.set(proof.secret, rec)
  })
  d.ops = d.ops.filter((x) => x.id !== op.id)
  if (missing.length > 0 && op.kind !== 'melt') d.ops.push({ ...op, outputs: missing, swapped: true })
  dropRetiredSpending(d, new Set(spentSecrets(op)), op.id)
}

/**
 * Undo the journal of an operation the mint did not carry out; inputs it
 * reports spent stay spent. With `retire`, the outputs are kept (see RetiredOp)
 * because the request may still reach the mint.
 */
export function revert(d: WalletFile, op: Operation, spentElsewhere: ReadonlySet<string>, opts: { retire?: boolean } = {}): void {
  const now = Date.now()
  const index = indexBySecret(d)
  const inputs = op.kind === 'mint' ? [] : op.inputs
  for (const secret of inputs) {
    const rec = index.get(secret)
    if (!rec || rec.state !== 'pending' || rec.op !== op.id) continue
    if (spentElsewhere.has(secret)) markSpent(rec, 'spent-elsewhere', now)
    else {
      rec.state = rec.was ?? 'unspent'
      delete rec.op
      delete rec.was
    }
  }
  d.ops = d.ops.filter((x) => x.id !== op.id)
  dropRetiredSpending(d, spentElsewhere)
  if (opts.retire && op.kind !== 'mint' && !d.retired.some((r) => r.op.id === op.id)) {
    d.retired.push({ op: { ...op, outputs: op.outputs.map((o) => ({ ...o })) } as RetirableOp, retiredAt: now })
  }
}

/** Forget a retired swap or melt: it can no longer happen. */
export function forgetRetired(d: WalletFile, id: string): void {
  d.retired = d.retired.filter((r) => r.op.id !== id)
}

/** Forget an operation that has nothing to settle (an expired or foreign-issued quote). */
export function dropOp(d: WalletFile, id: string): void {
  d.ops = d.ops.filter((x) => x.id !== id)
}

/** A proof leaves the balance for good; the record stays a while (see prune in proof-store.ts). */
export function markSpent(rec: StoredProof, reason: SpentReason, at: number): void {
  rec.state = 'spent'
  rec.spentBy = reason
  rec.spentAt = at
  delete rec.op
  delete rec.was
}
