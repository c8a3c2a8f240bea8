/**
 * Durable per-mint proof store: `<dataDir>/wallet/<sha256(mintUrl)[:16]>.json`.
 *
 * The whole file is rewritten atomically (temp file, fsync, rename, fsync dir)
 * on every change, so a crash leaves either the state before or after a change,
 * never half of one. Changes are read-modify-write under an exclusive lock file,
 * so two processes (say a running `dvm-session` and a `dvm-wallet balance`) or
 * two Wallet objects in one process never overwrite each other's work.
 *
 * Operations that talk to the mint are journaled here first (see `Operation`):
 * the secrets and blinding factors of every output and the inputs they spend
 * are on disk before the request leaves, so after a crash the outcome can be
 * found out (NUT-09 restore, NUT-07 state) and nothing is lost or counted twice.
 */
import { open, readFile, readdir, rename, link, unlink, mkdir } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import type { Proof } from '@cashu/cashu-ts'
import { writeFileAtomic } from '../util/atomic-file.js'
import { normalizeMintUrl } from './mint-url.js'
import type { BlindedOutput } from './lock.js'

export type ProofState =
  /** ours and spendable */
  | 'unspent'
  /** input of a journaled mint operation whose outcome is not settled yet */
  | 'pending'
  /** P2PK-locked to a payee by us; ours again only through the refund key after locktime */
  | 'locked'
  /** gone: swapped, sent, melted, paid to a payee, or (for foreign inputs) received */
  | 'spent'

export type SpentReason = 'swapped' | 'sent' | 'melted' | 'received' | 'paid' | 'reclaimed' | 'spent-elsewhere'

export interface LockInfo {
  payee: string
  locktime: number
  refund: string
}

export interface StoredProof {
  proof: Proof
  state: ProofState
  addedAt: number
  /** the operation holding this proof while it is pending */
  op?: string
  /** state to go back to if that operation turns out not to have happened */
  was?: 'unspent' | 'locked'
  lock?: LockInfo
  spentAt?: number
  spentBy?: SpentReason
}

/** Who runs an operation: lets a later process tell a live operation from an orphan of a crash. */
export interface OpOwner {
  pid: number
  /** process start time from /proc (Linux), so a reused pid is not mistaken for the owner */
  start?: string
  /** random per process */
  token: string
  /** random per Wallet object */
  instance: string
}

export type OutputRole = 'keep' | 'send' | 'locked'

export interface JournalOutput extends BlindedOutput {
  role: OutputRole
  lock?: LockInfo
}

interface OperationBase {
  id: string
  createdAt: number
  owner: OpOwner
  outputs: JournalOutput[]
  /**
   * The mint carried the operation out (its inputs are settled as spent) but a
   * NUT-09 restore has not yet returned the signatures of `outputs`, which are
   * only the ones still missing: they are asked for again on every recovery.
   */
  swapped?: true
}

export type SwapPurpose = 'receive' | 'send' | 'lock' | 'reclaim' | 'split'

export interface SwapOp extends OperationBase {
  kind: 'swap'
  purpose: SwapPurpose
  /** secrets of proofs in this store that the swap spends */
  inputs: string[]
  /** proofs from outside the store (a received token), spent by the swap */
  foreign: Proof[]
  memo?: string
}

export interface MintOp extends OperationBase {
  kind: 'mint'
  quote: string
  amount: number
  request: string
  /** unix seconds, or null if the mint gave none */
  expiry: number | null
}

export interface MeltOp extends OperationBase {
  kind: 'melt'
  quote: string
  amount: number
  feeReserve: number
  request: string
  inputs: string[]
}

export type Operation = SwapOp | MintOp | MeltOp

/** Operations that can be retired: those that spend inputs and carry our outputs. */
export type RetirableOp = SwapOp | MeltOp

/**
 * A swap or melt the wallet undid although its request may have reached the
 * mint (it timed out, the connection dropped, the process died): if the mint
 * carries it out later, its inputs turn up spent and these outputs hold the new
 * proofs (a melt's: its change, NUT-08). Forgotten once its inputs are spent by
 * a settled operation of ours (then it can never happen), or found unspent at
 * a recovery after a grace period.
 */
export interface RetiredOp {
  op: RetirableOp
  retiredAt: number
}

export interface SentToken {
  at: number
  amount: number
  token: string
}

export interface WalletFile {
  format: 'dvm-wallet'
  version: 1
  mintUrl: string
  proofs: StoredProof[]
  ops: Operation[]
  /** undone swaps whose outcome is not certain yet (absent in files written before it existed) */
  retired: RetiredOp[]
  /** tokens handed out by `send`, kept so a token lost on the way can be taken back with `receive` */
  sent: SentToken[]
}

export interface StoreTotals {
  unspent: number
  pending: number
  locked: number
}

/** Unchanging per process: tells this process's operations and locks from a dead one's with the same pid. */
const PROCESS_TOKEN = randomBytes(8).toString('hex')

const DAY_MS = 24 * 3600 * 1000
/** see prune() */
const SPENT_RETENTION_MS = DAY_MS
const RECEIVED_RETENTION_MS = 30 * DAY_MS
const MAX_SPENT_RECORDS = 10_000
/** tokens handed out by send, kept so a lost one can be taken back */
const SENT_RETENTION_MS = 90 * DAY_MS
const MAX_SENT_TOKENS = 1_000

export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // field 22 (starttime) counted after the ")" that ends the command name
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return rest[19]
  } catch {
    return undefined
  }
}

export function currentOwner(instance: string): OpOwner {
  const start = processStartTime(process.pid)
  return { pid: process.pid, ...(start ? { start } : {}), token: PROCESS_TOKEN, instance }
}

/** True while the process that wrote `owner` still runs. */
export function ownerAlive(owner: Pick<OpOwner, 'pid' | 'start' | 'token'>): boolean {
  if (owner.pid === process.pid) return owner.token === PROCESS_TOKEN
  try {
    process.kill(owner.pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false
  }
  if (owner.start) {
    const now = processStartTime(owner.pid)
    if (now !== undefined && now !== owner.start) return false
  }
  return true
}

export function storePath(dataDir: string, mintUrl: string): string {
  const id = createHash('sha256').update(normalizeMintUrl(mintUrl)).digest('hex').slice(0, 16)
  return join(dataDir, 'wallet', `${id}.json`)
}

function emptyFile(mintUrl: string): WalletFile {
  return { format: 'dvm-wallet', version: 1, mintUrl, proofs: [], ops: [], retired: [], sent: [] }
}

function parseFile(text: string, path: string): WalletFile {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (err) {
    throw new Error(`wallet file ${path} is damaged (${(err as Error).message}); it was left untouched: restore it from a backup or move it aside`)
  }
  const f = data as Partial<WalletFile> | null
  if (!f || f.format !== 'dvm-wallet' || f.version !== 1 || typeof f.mintUrl !== 'string' || !Array.isArray(f.proofs) || !Array.isArray(f.ops)) {
    throw new Error(`${path} is not a dvm-wallet proof store (version 1); it was left untouched`)
  }
  return { ...(f as WalletFile), retired: Array.isArray(f.retired) ? f.retired : [], sent: Array.isArray(f.sent) ? f.sent : [] }
}

export function totals(file: WalletFile): StoreTotals {
  const t = { unspent: 0, pending: 0, locked: 0 }
  for (const p of file.proofs) {
    if (p.state === 'unspent') t.unspent += p.proof.amount
    else if (p.state === 'pending') t.pending += p.proof.amount
    else if (p.state === 'locked') t.locked += p.proof.amount
  }
  // signed by the mint but not returned yet: ours, not spendable until restored
  for (const op of file.ops) if (op.swapped) for (const o of op.outputs) t.pending += o.amount
  return t
}

export interface ProofStoreOptions {
  /** how long to wait for another process's lock before giving up */
  lockTimeoutMs?: number
}

export class ProofStore {
  readonly path: string
  readonly mintUrl: string
  private readonly lockPath: string
  private readonly lockTimeoutMs: number
  private file: WalletFile
  /** serializes this object's own updates so they do not queue on the file lock */
  private chain: Promise<unknown> = Promise.resolve()

  private constructor(path: string, mintUrl: string, file: WalletFile, opts: ProofStoreOptions) {
    this.path = path
    this.mintUrl = mintUrl
    this.lockPath = path + '.lock'
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 30_000
    this.file = file
  }

  static async open(dataDir: string, mintUrl: string, opts: ProofStoreOptions = {}): Promise<ProofStore> {
    const url = normalizeMintUrl(mintUrl)
    const path = storePath(dataDir, url)
    const store = new ProofStore(path, url, emptyFile(url), opts)
    await store.refresh()
    return store
  }

  /** The state as last read or written by this object. Call refresh() to see other processes' changes. */
  get data(): Readonly<WalletFile> {
    return this.file
  }

  async refresh(): Promise<Readonly<WalletFile>> {
    this.file = await this.read()
    return this.file
  }

  /**
   * Apply `fn` to the current on-disk state and make the result durable before
   * resolving. If `fn` throws, nothing is written.
   */
  update<T>(fn: (draft: WalletFile) => T): Promise<T> {
    const run = this.chain.then(() => this.locked(async () => {
      const draft = await this.read()
      const result = fn(draft)
      prune(draft)
      await writeFileAtomic(this.path, JSON.stringify(draft))
      this.file = draft
      return result
    }))
    this.chain = run.catch(() => undefined)
    return run
  }

  private async read(): Promise<WalletFile> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyFile(this.mintUrl)
      throw new Error(`cannot read wallet file ${this.path}: ${(err as Error).message}`)
    }
    const file = parseFile(text, this.path)
    if (normalizeMintUrl(file.mintUrl) !== this.mintUrl) {
      throw new Error(`wallet file ${this.path} belongs to mint ${file.mintUrl}, not ${this.mintUrl}; it was left untouched`)
    }
    return file
  }

  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire()
    try {
      return await fn()
    } finally {
      await unlink(this.lockPath).catch(() => undefined)
    }
  }

  private async acquire(): Promise<void> {
    const deadline = Date.now() + this.lockTimeoutMs
    const me = JSON.stringify({ pid: process.pid, start: processStartTime(process.pid), token: PROCESS_TOKEN })
    let wait = 5
    for (;;) {
      try {
        const fh = await open(this.lockPath, 'wx', 0o600)
        try {
          await fh.writeFile(me)
        } finally {
          await fh.close()
        }
        return
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOENT') {
          // first write ever: the wallet directory does not exist yet
          await mkdir(dirname(this.path), { recursive: true, mode: 0o700 })
          continue
        }
        if (code !== 'EEXIST') throw new Error(`cannot lock wallet file ${this.path}: ${(err as Error).message}`)
      }
      const holder = await readFile(this.lockPath, 'utf8').catch(() => '')
      if (holder && (await this.breakIfStale(holder))) continue
      if (Date.now() > deadline) {
        const pid = safeOwner(holder)?.pid
        throw new Error(
          `the wallet ${this.path} is busy: ${pid ? `process ${pid}` : 'another process'} holds its lock; ` +
            `wait for it to finish, or if no such process runs, delete ${this.lockPath}`,
        )
      }
      await new Promise((r) => setTimeout(r, wait))
      wait = Math.min(wait * 2, 100)
    }
  }

  /**
   * Remove a lock left by a dead process. Renaming it aside first and putting it
   * back (link fails if a new lock appeared) keeps two processes that both saw
   * the same stale lock from deleting each other's fresh one.
   */
  private async breakIfStale(holder: string): Promise<boolean> {
    const owner = safeOwner(holder)
    if (!owner || ownerAlive(owner)) return false
    const aside = `${this.lockPath}.stale-${randomBytes(4).toString('hex')}`
    try {
      await rename(this.lockPath, aside)
    } catch {
      return true // someone else moved it; just retry
    }
    const taken = await readFile(aside, 'utf8').catch(() => '')
    if (taken !== holder) {
      // we moved a live lock taken meanwhile: give it back
      await link(aside, this.lockPath).catch(() => undefined)
    }
    await unlink(aside).catch(() => undefined)
    return true
  }
}

function safeOwner(text: string): { pid: number; start?: string; token: string } | undefined {
  try {
    const o = JSON.parse(text) as { pid?: unknown; start?: unknown; token?: unknown }
    if (typeof o.pid !== 'number' || typeof o.token !== 'string') return undefined
    return { pid: o.pid, token: o.token, ...(typeof o.start === 'string' ? { start: o.start } : {}) }
  } catch {
    return undefined
  }
}

/**
 * Keep the file small: a customer paying one proof per tick would otherwise
 * grow it without bound. Spent records serve only to recognise a token received
 * before (kept a month) and for diagnostics (kept a day); the mint itself
 * remembers every spent secret, so dropping them risks nothing.
 */
function prune(file: WalletFile): void {
  const now = Date.now()
  const keep = (p: StoredProof) =>
    p.state !== 'spent' || now - (p.spentAt ?? 0) < (p.spentBy === 'received' ? RECEIVED_RETENTION_MS : SPENT_RETENTION_MS)
  if (!file.proofs.every(keep)) file.proofs = file.proofs.filter(keep)
  const spent = file.proofs.filter((p) => p.state === 'spent')
  if (spent.length > MAX_SPENT_RECORDS) {
    const cutoff = spent.map((p) => p.spentAt ?? 0).sort((a, b) => b - a)[MAX_SPENT_RECORDS - 1]!
    file.proofs = file.proofs.filter((p) => p.state !== 'spent' || (p.spentAt ?? 0) >= cutoff)
  }
  if (file.sent.length > MAX_SENT_TOKENS || file.sent.some((t) => now - t.at > SENT_RETENTION_MS)) {
    file.sent = file.sent.filter((t) => now - t.at <= SENT_RETENTION_MS).slice(-MAX_SENT_TOKENS)
  }
}

/** Every mint this data dir holds a wallet for (reads each file's mintUrl). */
export async function listWalletMints(dataDir: string): Promise<string[]> {
  const dir = join(dataDir, 'wallet')
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return []
  }
  const mints: string[] = []
  for (const name of names.filter((n) => /^[0-9a-f]{16}\.json$/.test(n)).sort()) {
    try {
      mints.push(parseFile(await readFile(join(dir, name), 'utf8'), join(dir, name)).mintUrl)
    } catch {
      // a damaged file is reported when that wallet is opened, not here
    }
  }
  return mints
}
