/**
 * ReceivedStore: the provider's durable record of every tick it accepted,
 * keyed by Y = hash_to_curve(secret), the same key mints use (NUT-07).
 *
 * Why it exists: a tick is acknowledged — service is given for it — only once
 * the proof is on disk, so a crash can never lose paid-for ecash, and a proof
 * can never be credited twice (replay), not even across restarts.
 *
 * On disk: one append-only JSON-lines log, `<dataDir>/received.jsonl`, mode
 * 0600. Every line is one record (`t` says which):
 *   {"t":"hdr","v":2,"created":<ms>}                            first line (see "Versions")
 *   {"t":"acc","y","sid","mint","lt"?,"at","p":{proof}}          accepted → held
 *   {"t":"beg","b","mint","ys":[…],"out":[…],"at"}               redeem journal: held → redeeming
 *   {"t":"fin","b","at"}                                         batch redeemed
 *   {"t":"abt","b","lost":[…],"keep"?,"at"}                      batch undone: `lost` spent elsewhere, others held again;
 *                                                                with `keep` its outputs are kept as a retired batch
 *   {"t":"prt","b","got":[B_…],"at"}                             partial restore: inputs redeemed, outputs not in `got` still owed
 *   {"t":"fgt","b","at"}                                         a retired batch can no longer happen: forget it
 *   {"t":"st","y","sid","mint","lt"?,"at","s":"redeemed"|"lost"} compacted form of a finished entry
 *   {"t":"ret","b","mint","ys","out","at","rat"}                 compacted form of a retired batch
 * The `beg` line carries the blinded outputs *and their secrets and blinding
 * factors*, written before the swap request leaves, so that after a crash the
 * new proofs can be recovered with NUT-09 restore. (`beg` with `"sw":true` is
 * the compacted form of a batch after a partial restore.)
 *
 * A retired batch is one undone while its request may still reach the mint (it
 * timed out, the process died): its inputs are held again, but its outputs are
 * kept, so that if the mint carries it out late, the inputs' spending is
 * traced to it and its proofs recovered. A batch that finishes, or marks lost,
 * any of a retired batch's inputs makes it impossible (the mint takes each
 * input once), so the retired batch is forgotten then.
 *
 * Versions: 1 had `acc`, `beg`, `fin`, `abt` (without `keep`) and `st`; 2 adds
 * retired batches and partial restores (`abt` with `keep`, `prt`, `fgt`, `ret`,
 * `beg` with `sw`). A build that reads only version 1 would take those lines
 * for damage (or cut them as a torn tail), so they are written only under a
 * version-2 header: version-1 logs are rewritten as version 2 at open, and an
 * older build then refuses the log with "upgrade dvm-agent" instead. This
 * build refuses logs of later versions the same way, leaving them untouched.
 *
 * Throughput: accepts are group-committed — while one write+fdatasync is in
 * flight, new records queue up and go out together in the next one — so the
 * fsync cost is shared by everything that arrived meanwhile.
 *
 * Crash recovery: a torn or garbled tail (a write that was never fsynced, so
 * never acknowledged) is cut off at open; the cut bytes are kept next to the
 * log as `received.jsonl.corrupt-<ms>` for inspection.
 *
 * Compaction (at open, and online between two group commits once the log is
 * at least twice the live state): the log is replaced by a snapshot in which
 * finished entries shrink to `st` lines, and finished entries whose locktime
 * lies more than `pruneAfterLocktimeSec` in the past are forgotten — a replay
 * of such a proof is refused anyway by the verifier's locktime check. The log
 * is read in chunks, so its size is bounded by the disk, not by JS strings.
 */
import { open, truncate, writeFile, type FileHandle } from 'node:fs/promises'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomic } from '../util/atomic-file.js'
import { secretToYHex } from './hash-to-curve.js'
import type { ProofLike } from './dleq.js'
import type { BlindedOutput } from './lock.js'

export type ReceivedState = 'held' | 'redeeming' | 'redeemed' | 'lost'

/** The proof as stored: exactly what the mint needs, plus the DLEQ for audits. */
export interface StoredProof {
  amount: number
  id: string
  secret: string
  C: string
  dleq?: { e: string; s: string; r?: string }
}

export interface ReceivedEntry {
  y: string
  sessionId: string
  mintUrl: string
  /** Present while the proof is held or being redeemed. */
  proof?: StoredProof
  /** Unix seconds of the proof's P2PK locktime. */
  locktime?: number
  /** Unix ms. */
  acceptedAt: number
  state: ReceivedState
  batchId?: string
}

/** One blinded output of a redemption swap, with what is needed to unblind it later. */
export type JournalOutput = BlindedOutput

export interface RedeemJournal {
  batchId: string
  mintUrl: string
  ys: string[]
  outputs: JournalOutput[]
  startedAt: number
  /**
   * The mint carried this swap out (its inputs are redeemed), but a NUT-09
   * restore has not yet returned the signatures of `outputs`, which are only
   * the ones still owed.
   */
  swapped?: boolean
}

/** A batch undone after an uncertain request, kept in case the swap still lands (see the module comment). */
export interface RetiredRedeem extends RedeemJournal {
  retiredAt: number
}

export type AcceptResult = { ok: true; y: string } | { ok: false; code: 'replayed'; reason: string }

export interface StoreCounts {
  held: number
  redeeming: number
  redeemed: number
  lost: number
  /** Sum of amounts held + redeeming (sats not yet in the wallet). */
  unredeemedAmount: number
  pendingBatches: number
  /** Undone batches whose outputs are kept in case the mint still carries them out. */
  retiredBatches: number
}

export interface ReceivedStoreOptions {
  /** Log file name inside dataDir. */
  fileName?: string
  /** Compact at open once the log has this many more lines than live records. */
  compactSlack?: number
  /** Forget finished entries this long after their locktime (clock-skew grace). */
  pruneAfterLocktimeSec?: number
  /** How often (at most) to count forgettable entries when deciding to compact. */
  pruneScanIntervalMs?: number
  log?: (msg: string) => void
  /** Clock (unix ms), injectable for tests. */
  now?: () => number
}

export const RECEIVED_LOG_FILE = 'received.jsonl'
/** The version this build writes; it reads every version from 1 up to this one. */
export const RECEIVED_LOG_VERSION = 2
const LOG_VERSION = RECEIVED_LOG_VERSION

interface Pending {
  line: string
  resolve: () => void
  reject: (err: Error) => void
}

type Rec =
  | { t: 'hdr'; v: number; created: number }
  | { t: 'acc'; y: string; sid: string; mint: string; lt?: number; at: number; p: StoredProof }
  | { t: 'beg'; b: string; mint: string; ys: string[]; out: JournalOutput[]; at: number; sw?: true }
  | { t: 'fin'; b: string; at: number }
  | { t: 'abt'; b: string; lost: string[]; keep?: true; at: number }
  | { t: 'prt'; b: string; got: string[]; at: number }
  | { t: 'fgt'; b: string; at: number }
  | { t: 'st'; y: string; sid: string; mint: string; lt?: number; at: number; s: 'redeemed' | 'lost' }
  | { t: 'ret'; b: string; mint: string; ys: string[]; out: JournalOutput[]; at: number; rat: number }

export class ReceivedStore {
  readonly file: string
  readonly #opts: ReceivedStoreOptions
  readonly #now: () => number
  #fh: FileHandle | undefined
  readonly #entries = new Map<string, ReceivedEntry>()
  /** Index of entries in state 'held' (the redeemer's work list). */
  readonly #held = new Map<string, ReceivedEntry>()
  readonly #journals = new Map<string, RedeemJournal>()
  readonly #retired = new Map<string, RetiredRedeem>()
  readonly #listeners = new Set<(e: ReceivedEntry) => void>()
  #queue: Pending[] = []
  #flushing = false
  #failed: Error | undefined
  #closed = false
  #lines = 0
  #fsyncs = 0
  /** Finished entries past locktime + grace, as of the last scan (a snapshot drops them). */
  #prunable = 0
  #lastPruneScan = 0
  /** version of the log as found at open (rewritten as LOG_VERSION when older) */
  #foundVersion = LOG_VERSION

  private constructor(file: string, opts: ReceivedStoreOptions) {
    this.file = file
    this.#opts = opts
    this.#now = opts.now ?? Date.now
  }

  /** Open (creating if needed) the store in `dataDir`, replaying and repairing the log. */
  static async open(dataDir: string, opts: ReceivedStoreOptions = {}): Promise<ReceivedStore> {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 })
    const store = new ReceivedStore(join(dataDir, opts.fileName ?? RECEIVED_LOG_FILE), opts)
    await store.#load()
    return store
  }

  // ------------------------------------------------------------ queries

  has(y: string): boolean {
    return this.#entries.has(y)
  }

  get(y: string): ReceivedEntry | undefined {
    return this.#entries.get(y)
  }

  /** Held proofs (oldest first), optionally only one mint's or one session's. */
  held(filter: { mintUrl?: string; sessionId?: string } = {}): ReceivedEntry[] {
    const out: ReceivedEntry[] = []
    for (const e of this.#held.values()) {
      if (filter.mintUrl !== undefined && e.mintUrl !== filter.mintUrl) continue
      if (filter.sessionId !== undefined && e.sessionId !== filter.sessionId) continue
      out.push(e)
    }
    return out
  }

  /** Mints that have held proofs. */
  heldMints(): string[] {
    return [...new Set([...this.#held.values()].map((e) => e.mintUrl))]
  }

  /** Redemptions journalled but not finished (to recover after a crash). */
  pendingRedeems(mintUrl?: string): RedeemJournal[] {
    return [...this.#journals.values()].filter((j) => mintUrl === undefined || j.mintUrl === mintUrl)
  }

  /** Retired batches: undone, outputs kept in case the mint still carries them out. */
  retiredRedeems(mintUrl?: string): RetiredRedeem[] {
    return [...this.#retired.values()].filter((j) => mintUrl === undefined || j.mintUrl === mintUrl)
  }

  counts(filter: { sessionId?: string } = {}): StoreCounts {
    const c: StoreCounts = { held: 0, redeeming: 0, redeemed: 0, lost: 0, unredeemedAmount: 0, pendingBatches: this.#journals.size, retiredBatches: this.#retired.size }
    for (const e of this.#entries.values()) {
      if (filter.sessionId !== undefined && e.sessionId !== filter.sessionId) continue
      c[e.state]++
      if ((e.state === 'held' || e.state === 'redeeming') && e.proof) c.unredeemedAmount += e.proof.amount
    }
    return c
  }

  /** Write statistics: log lines appended and fsyncs done since open. */
  stats(): { lines: number; fsyncs: number } {
    return { lines: this.#lines, fsyncs: this.#fsyncs }
  }

  /** Called after each durable accept. Returns an unsubscribe function. */
  onAccepted(fn: (e: ReceivedEntry) => void): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  // ------------------------------------------------------------ mutations

  /**
   * Record an accepted tick. Resolves only once the record is fsynced — ack
   * the tick after that, never before. A Y seen before (in this run or any
   * earlier one) resolves `{ok:false, code:'replayed'}`. Rejects if the disk
   * write fails; the store then refuses everything until restarted, because
   * it can no longer promise durability.
   */
  accept(sessionId: string, proof: ProofLike, mintUrl: string, info: { y?: string; locktime?: number } = {}): Promise<AcceptResult> {
    if (this.#failed) return Promise.reject(this.#failedError())
    if (this.#closed) return Promise.reject(new Error('the received-proof store is closed'))
    const y = info.y ?? secretToYHex(proof.secret)
    const prev = this.#entries.get(y)
    if (prev) {
      return Promise.resolve({
        ok: false,
        code: 'replayed',
        reason: `this proof (Y=${y.slice(0, 16)}…) was already received in session ${prev.sessionId} (${prev.state})`,
      })
    }
    const p: StoredProof = { amount: proof.amount, id: proof.id, secret: proof.secret, C: proof.C, ...(proof.dleq ? { dleq: { e: proof.dleq.e, s: proof.dleq.s, ...(proof.dleq.r ? { r: proof.dleq.r } : {}) } } : {}) }
    const at = this.#now()
    const entry: ReceivedEntry = { y, sessionId, mintUrl, proof: p, acceptedAt: at, state: 'held', ...(info.locktime !== undefined ? { locktime: info.locktime } : {}) }
    // Claim Y synchronously so a concurrent duplicate is refused even before
    // the first one is on disk. If the write then fails the claim stays: the
    // conservative side (refusing) is the safe one.
    this.#entries.set(y, entry)
    this.#held.set(y, entry)
    const rec: Rec = { t: 'acc', y, sid: sessionId, mint: mintUrl, ...(info.locktime !== undefined ? { lt: info.locktime } : {}), at, p }
    return this.#append(JSON.stringify(rec)).then(() => {
      for (const fn of this.#listeners) {
        try {
          fn(entry)
        } catch {
          // A listener's bug must not turn a durable accept into a failure.
        }
      }
      return { ok: true as const, y }
    })
  }

  /** Journal a redemption (held → redeeming) durably, before the swap request is sent. */
  async beginRedeem(j: RedeemJournal): Promise<void> {
    this.#assertWritable()
    if (this.#journals.has(j.batchId)) throw new Error(`redeem batch ${j.batchId} already exists`)
    for (const y of j.ys) {
      const e = this.#held.get(y)
      if (!e || e.mintUrl !== j.mintUrl) throw new Error(`proof ${y.slice(0, 16)}… is not held for mint ${j.mintUrl}; cannot redeem it`)
    }
    this.#applyBegin(j)
    await this.#append(JSON.stringify({ t: 'beg', b: j.batchId, mint: j.mintUrl, ys: j.ys, out: j.outputs, at: j.startedAt } satisfies Rec))
  }

  /**
   * The batch's new proofs are safely in the wallet: mark its inputs redeemed.
   * Also for a retired batch the mint turned out to have carried out.
   */
  async finishRedeem(batchId: string): Promise<void> {
    this.#assertWritable()
    if (!this.#journals.has(batchId) && !this.#retired.has(batchId)) throw new Error(`no pending redeem batch ${batchId}`)
    this.#applyFinish(batchId)
    await this.#append(JSON.stringify({ t: 'fin', b: batchId, at: this.#now() } satisfies Rec))
  }

  /**
   * A restore returned only some of the batch's outputs (`got`, by B_), whose
   * proofs are in the wallet: the inputs are redeemed, the other outputs stay
   * journaled until the mint returns them.
   */
  async partialRedeem(batchId: string, got: string[]): Promise<void> {
    this.#assertWritable()
    if (!this.#journals.has(batchId) && !this.#retired.has(batchId)) throw new Error(`no pending redeem batch ${batchId}`)
    this.#applyPartial(batchId, got)
    await this.#append(JSON.stringify({ t: 'prt', b: batchId, got, at: this.#now() } satisfies Rec))
  }

  /**
   * Undo a batch that did not happen: `lost` Ys were spent elsewhere; the rest
   * are held again. With `keepOutputs` the batch is retired rather than
   * forgotten, because its request may still reach the mint.
   */
  async abortRedeem(batchId: string, lost: string[] = [], opts: { keepOutputs?: boolean } = {}): Promise<void> {
    this.#assertWritable()
    if (!this.#journals.has(batchId)) throw new Error(`no pending redeem batch ${batchId}`)
    const at = this.#now()
    const keep = opts.keepOutputs === true && lost.length === 0
    this.#applyAbort(batchId, lost, keep ? at : undefined)
    await this.#append(JSON.stringify({ t: 'abt', b: batchId, lost, ...(keep ? { keep: true as const } : {}), at } satisfies Rec))
  }

  /** A retired batch can no longer happen (its inputs are unspent after the grace, or spent elsewhere). */
  async forgetRetired(batchId: string): Promise<void> {
    this.#assertWritable()
    if (!this.#retired.has(batchId)) return
    this.#retired.delete(batchId)
    await this.#append(JSON.stringify({ t: 'fgt', b: batchId, at: this.#now() } satisfies Rec))
  }

  /** Wait for queued writes, then close the file. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    while (this.#flushing || this.#queue.length > 0) await new Promise((r) => setImmediate(r))
    await this.#fh?.close()
    this.#fh = undefined
  }

  // ------------------------------------------------------------ state transitions (shared by live ops and replay)

  #applyAccept(r: Extract<Rec, { t: 'acc' }>): void {
    const e: ReceivedEntry = { y: r.y, sessionId: r.sid, mintUrl: r.mint, proof: r.p, acceptedAt: r.at, state: 'held', ...(r.lt !== undefined ? { locktime: r.lt } : {}) }
    this.#entries.set(r.y, e)
    this.#held.set(r.y, e)
  }

  #applyBegin(j: RedeemJournal): void {
    this.#journals.set(j.batchId, j)
    if (j.swapped) return // its inputs are redeemed already (compacted after a partial restore)
    for (const y of j.ys) {
      const e = this.#entries.get(y)
      if (!e) continue
      e.state = 'redeeming'
      e.batchId = j.batchId
      this.#held.delete(y)
    }
  }

  /** A batch's (or retired batch's) inputs are redeemed. */
  #redeemInputs(j: RedeemJournal): void {
    for (const y of j.ys) {
      const e = this.#entries.get(y)
      if (!e || e.state === 'redeemed' || e.state === 'lost') continue
      // A retired batch's input may be held, or in another batch now; that batch then leaves it alone.
      e.state = 'redeemed'
      delete e.batchId
      delete e.proof // no longer needed; keeps memory per finished tick small
      this.#held.delete(y)
    }
    this.#dropRetiredSpending(j.ys, j.batchId)
  }

  #applyFinish(batchId: string): void {
    const j = this.#journals.get(batchId) ?? this.#retired.get(batchId)
    if (!j) return
    if (!j.swapped) this.#redeemInputs(j)
    this.#journals.delete(batchId)
    this.#retired.delete(batchId)
  }

  #applyPartial(batchId: string, got: string[]): void {
    const j = this.#journals.get(batchId) ?? this.#retired.get(batchId)
    if (!j) return
    if (!j.swapped) this.#redeemInputs(j)
    const done = new Set(got)
    this.#retired.delete(batchId)
    this.#journals.set(batchId, { batchId, mintUrl: j.mintUrl, ys: j.ys, startedAt: j.startedAt, outputs: j.outputs.filter((o) => !done.has(o.B_)), swapped: true })
  }

  #applyAbort(batchId: string, lost: string[], retiredAt?: number): void {
    const j = this.#journals.get(batchId)
    if (!j) return
    const lostSet = new Set(lost)
    for (const y of j.ys) {
      const e = this.#entries.get(y)
      // only what this batch holds: an input may have been settled by a retired batch meanwhile
      if (!e || e.batchId !== batchId) continue
      delete e.batchId
      if (lostSet.has(y)) {
        e.state = 'lost'
        delete e.proof
      } else {
        e.state = 'held'
        this.#held.set(y, e)
      }
    }
    this.#journals.delete(batchId)
    this.#dropRetiredSpending(lost)
    if (retiredAt !== undefined) this.#retired.set(batchId, { ...j, retiredAt })
  }

  /** Retired batches spending any of `ys` can no longer happen: the mint takes each input once. */
  #dropRetiredSpending(ys: ReadonlyArray<string>, except?: string): void {
    if (this.#retired.size === 0 || ys.length === 0) return
    const gone = new Set(ys)
    for (const r of [...this.#retired.values()]) {
      if (r.batchId !== except && r.ys.some((y) => gone.has(y))) this.#retired.delete(r.batchId)
    }
  }

  // ------------------------------------------------------------ disk

  #failedError(): Error {
    return new Error(`the received-proof log ${this.file} could not be written (${this.#failed?.message}); ticks cannot be stored durably — fix the disk and restart the provider`)
  }

  #assertWritable(): void {
    if (this.#failed) throw this.#failedError()
    if (this.#closed) throw new Error('the received-proof store is closed')
  }

  /** Queue one line; resolves after the fdatasync that covers it. */
  #append(line: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ line: line + '\n', resolve, reject })
      if (!this.#flushing) void this.#flushLoop()
    })
  }

  async #flushLoop(): Promise<void> {
    this.#flushing = true
    try {
      while (this.#queue.length > 0) {
        // Take the queue in the same tick as (possibly) snapshotting memory:
        // memory then holds exactly the effects of everything written so far
        // plus this batch, which is what a compaction snapshot must contain.
        const batch = this.#queue
        this.#queue = []
        if (this.#failed) {
          for (const p of batch) p.reject(this.#failedError())
          continue
        }
        try {
          if (this.#shouldCompact()) {
            // The snapshot already includes this batch's records.
            await this.#compact()
          } else {
            const fh = this.#fh
            if (!fh) throw new Error('log file is not open')
            const buf = Buffer.from(batch.map((p) => p.line).join(''), 'utf8')
            let off = 0
            while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten
            await fh.datasync()
            this.#lines += batch.length
          }
          this.#fsyncs++
          for (const p of batch) p.resolve()
        } catch (err) {
          this.#failed = err as Error
          this.#opts.log?.(this.#failedError().message)
          for (const p of batch) p.reject(this.#failedError())
        }
      }
    } finally {
      this.#flushing = false
    }
  }

  /**
   * Compact once the log is at least twice what a snapshot would hold and
   * `compactSlack` lines over it: amortised O(1) per record. Finished entries
   * past their locktime (which a snapshot drops) are counted by a scan at most
   * every `pruneScanIntervalMs`.
   */
  #shouldCompact(): boolean {
    const slack = this.#opts.compactSlack ?? 100_000
    if (this.#lines < slack) return false
    const now = this.#now()
    if (now - this.#lastPruneScan >= (this.#opts.pruneScanIntervalMs ?? 60_000)) {
      this.#lastPruneScan = now
      const pruneBefore = Math.floor(now / 1000) - (this.#opts.pruneAfterLocktimeSec ?? 3600)
      let n = 0
      for (const e of this.#entries.values()) if ((e.state === 'redeemed' || e.state === 'lost') && e.locktime !== undefined && e.locktime < pruneBefore) n++
      this.#prunable = n
    }
    const live = this.#entries.size - this.#prunable + this.#journals.size + this.#retired.size + 1
    return this.#lines - live >= slack && this.#lines >= 2 * live
  }

  /**
   * Replace the log by a snapshot of memory (temp file, fsync, rename, fsync
   * dir: a crash leaves the old log or the new one), forgetting finished
   * entries whose locktime is long past. Must run inside the flush loop (or
   * before the log is opened for appending) so nothing is written meanwhile.
   */
  async #compact(): Promise<void> {
    const nowSec = Math.floor(this.#now() / 1000)
    const pruneBefore = nowSec - (this.#opts.pruneAfterLocktimeSec ?? 3600)
    const before = this.#lines
    const out: string[] = [JSON.stringify({ t: 'hdr', v: LOG_VERSION, created: this.#now() } satisfies Rec)]
    let dropped = 0
    for (const e of [...this.#entries.values()]) {
      const lt = e.locktime !== undefined ? { lt: e.locktime } : {}
      if (e.state === 'redeemed' || e.state === 'lost') {
        // A replay of a proof whose locktime has passed is refused by the
        // verifier's locktime check anyway; the grace covers clock skew.
        if (e.locktime !== undefined && e.locktime < pruneBefore) {
          this.#entries.delete(e.y)
          dropped++
          continue
        }
        out.push(JSON.stringify({ t: 'st', y: e.y, sid: e.sessionId, mint: e.mintUrl, ...lt, at: e.acceptedAt, s: e.state } satisfies Rec))
      } else if (e.proof) {
        out.push(JSON.stringify({ t: 'acc', y: e.y, sid: e.sessionId, mint: e.mintUrl, ...lt, at: e.acceptedAt, p: e.proof } satisfies Rec))
      }
    }
    // Journals after the entries they move to 'redeeming'.
    for (const j of this.#journals.values()) {
      out.push(JSON.stringify({ t: 'beg', b: j.batchId, mint: j.mintUrl, ys: j.ys, out: j.outputs, at: j.startedAt, ...(j.swapped ? { sw: true as const } : {}) } satisfies Rec))
    }
    for (const r of this.#retired.values()) {
      out.push(JSON.stringify({ t: 'ret', b: r.batchId, mint: r.mintUrl, ys: r.ys, out: r.outputs, at: r.startedAt, rat: r.retiredAt } satisfies Rec))
    }
    await this.#fh?.close()
    this.#fh = undefined
    await writeFileAtomic(this.file, out.join('\n') + '\n', 0o600)
    this.#fh = await open(this.file, 'a', 0o600)
    this.#lines = out.length
    this.#prunable = 0
    this.#opts.log?.(`received-proof log compacted: ${before} → ${out.length} lines (${dropped} finished entries past their locktime forgotten)`)
  }

  async #load(): Promise<void> {
    let fh: FileHandle
    try {
      fh = await open(this.file, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read the received-proof log ${this.file}: ${(err as Error).message}`)
      await writeFileAtomic(this.file, JSON.stringify({ t: 'hdr', v: LOG_VERSION, created: this.#now() } satisfies Rec) + '\n', 0o600)
      this.#fh = await open(this.file, 'a', 0o600)
      return
    }

    // Stream the log in chunks (it can outgrow a JS string) and replay
    // complete lines; stop at the first line that is torn or garbled.
    let goodEnd = 0
    let lineCount = 0
    let size = 0
    let stop = false
    /** end of a garbled but newline-terminated line, if one was met */
    let badEnd = -1
    try {
      size = (await fh.stat()).size
      const chunk = Buffer.alloc(1 << 20)
      let carry: Buffer = Buffer.alloc(0)
      let offset = 0 // file offset of carry[0]
      while (!stop) {
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, offset + carry.length)
        if (bytesRead === 0) break
        const buf = carry.length ? Buffer.concat([carry, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead)
        let pos = 0
        for (;;) {
          const nl = buf.indexOf(0x0a, pos)
          if (nl < 0) break
          if (!this.#replayLine(buf.toString('utf8', pos, nl), lineCount)) {
            stop = true
            badEnd = offset + nl + 1
            break
          }
          lineCount++
          pos = nl + 1
          goodEnd = offset + pos
        }
        carry = Buffer.from(buf.subarray(pos))
        offset += pos
      }
    } finally {
      await fh.close()
    }
    // A crash can only tear the last append. A garbled line with intact lines after
    // it is damage, not a torn tail: cutting there would forget acknowledged proofs
    // (unredeemable, and replayable), so refuse to start instead.
    if (stop && badEnd < size && (await hasNewlineAfter(this.file, badEnd, size))) {
      throw new Error(
        `the received-proof log ${this.file} is damaged at line ${lineCount + 1} and intact records follow it; ` +
          'not starting, so no acknowledged proof is lost: repair or remove that line, then start again',
      )
    }
    if (goodEnd < size) {
      // Bytes past the last intact line were never fsynced, hence never acked.
      const keep = `${this.file}.corrupt-${this.#now()}`
      const src = await open(this.file, 'r')
      try {
        const cut = Buffer.alloc(Math.min(size - goodEnd, 16 << 20))
        const { bytesRead } = await src.read(cut, 0, cut.length, goodEnd)
        await writeFile(keep, cut.subarray(0, bytesRead), { mode: 0o600 })
      } finally {
        await src.close()
      }
      await truncate(this.file, goodEnd)
      this.#opts.log?.(`received-proof log ${this.file}: cut ${size - goodEnd} bytes of torn/garbled tail (first 16 MiB saved to ${keep})`)
    }
    if (lineCount === 0) {
      await writeFileAtomic(this.file, JSON.stringify({ t: 'hdr', v: LOG_VERSION, created: this.#now() } satisfies Rec) + '\n', 0o600)
      lineCount = 1
    }
    this.#lines = lineCount
    if (this.#foundVersion < LOG_VERSION) {
      // before anything newer than that version is appended (see "Versions")
      await this.#compact()
      this.#opts.log?.(`received-proof log ${this.file} upgraded from version ${this.#foundVersion} to ${LOG_VERSION}; dvm-agent builds older than this one no longer read it`)
    } else if (this.#shouldCompact()) await this.#compact()
    else this.#fh = await open(this.file, 'a', 0o600)
  }

  /** Parse and apply one line during load; false = torn/garbled (the tail from here is cut). */
  #replayLine(line: string, index: number): boolean {
    let rec: Rec
    try {
      rec = JSON.parse(line) as Rec
    } catch {
      return false
    }
    if (index === 0) {
      if (rec?.t !== 'hdr' || !Number.isSafeInteger(rec.v) || rec.v < 1) {
        throw new Error(`${this.file} is not a dvm-agent received-proof log (no valid header line); it was left untouched: move it away`)
      }
      if (rec.v > LOG_VERSION) {
        throw new Error(
          `${this.file} was written by a newer dvm-agent (log version ${rec.v}; this one reads versions 1 to ${LOG_VERSION}); ` +
            'it was left untouched: upgrade dvm-agent to use it',
        )
      }
      this.#foundVersion = rec.v
      return true
    }
    return this.#replay(rec)
  }

  /** Apply one record during replay; false if it does not make sense (treated like a torn tail). */
  #replay(rec: Rec): boolean {
    switch (rec?.t) {
      case 'acc':
        if (typeof rec.y !== 'string' || !rec.p || typeof rec.p.secret !== 'string') return false
        this.#applyAccept(rec)
        return true
      case 'st': {
        if (typeof rec.y !== 'string') return false
        this.#entries.set(rec.y, { y: rec.y, sessionId: rec.sid, mintUrl: rec.mint, acceptedAt: rec.at, state: rec.s, ...(rec.lt !== undefined ? { locktime: rec.lt } : {}) })
        return true
      }
      case 'beg':
        if (typeof rec.b !== 'string' || !Array.isArray(rec.ys) || !Array.isArray(rec.out)) return false
        this.#applyBegin({ batchId: rec.b, mintUrl: rec.mint, ys: rec.ys, outputs: rec.out, startedAt: rec.at, ...(rec.sw ? { swapped: true } : {}) })
        return true
      case 'fin':
        this.#applyFinish(rec.b)
        return true
      case 'abt':
        this.#applyAbort(rec.b, Array.isArray(rec.lost) ? rec.lost : [], rec.keep ? rec.at : undefined)
        return true
      case 'prt':
        if (typeof rec.b !== 'string' || !Array.isArray(rec.got)) return false
        this.#applyPartial(rec.b, rec.got)
        return true
      case 'fgt':
        this.#retired.delete(rec.b)
        return true
      case 'ret':
        if (typeof rec.b !== 'string' || !Array.isArray(rec.ys) || !Array.isArray(rec.out)) return false
        this.#retired.set(rec.b, { batchId: rec.b, mintUrl: rec.mint, ys: rec.ys, outputs: rec.out, startedAt: rec.at, retiredAt: rec.rat })
        return true
      default:
        return false
    }
  }
}

/** Whether the file has a newline anywhere in [from, size). */
async function hasNewlineAfter(file: string, from: number, size: number): Promise<boolean> {
  const fh = await open(file, 'r')
  try {
    const chunk = Buffer.alloc(1 << 20)
    for (let at = from; at < size; ) {
      const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, size - at), at)
      if (bytesRead === 0) return false
      if (chunk.subarray(0, bytesRead).includes(0x0a)) return true
      at += bytesRead
    }
    return false
  } finally {
    await fh.close()
  }
}
