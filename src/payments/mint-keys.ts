/**
 * MintKeyCache: the public keys of the mints a provider accepts, fetched once
 * (NUT-01 /v1/keys, NUT-02 /v1/keysets) and persisted in the data dir, so that
 * ticks verify offline — also while a mint is down or unreachable.
 *
 * Policy decisions, made here once:
 * - Keysets with `input_fee_ppk > 0` are refused. A fee is charged per input
 *   at redemption (NUT-02: ceil(sum(ppk)/1000) per swap), so with 1-sat ticks
 *   a 1,000 ppk keyset eats the whole tick and the default nutshell 100 ppk
 *   eats 10%: the provider would be paid less than its price, silently. We
 *   refuse rather than account for it; the refusal names the keyset and fee.
 * - Only keysets of one unit (default 'sat') count: a tick is one *sat*.
 * - A keyset id we have never seen is refused (`unknown-keyset`). The caller
 *   may ask for `refresh(mint)`, which fetches again at most once per
 *   `refreshMinIntervalMs` per mint, so a peer sending made-up ids cannot make
 *   us hammer the mint.
 * - Version-00 keyset ids are checked against their keys (NUT-02 derivation),
 *   so a cached keyset cannot silently carry keys that do not match its id.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { writeFileAtomic } from '../util/atomic-file.js'
import { pointFromHex } from '../crypto/secp256k1.js'
import { readMintJson, readMintText } from './mint-http.js'
import { normalizeMintUrl } from './mint-url.js'

// One normalisation for all payment code (see mint-url.ts); still importable from here.
export { normalizeMintUrl }

export interface KeysetInfo {
  id: string
  unit: string
  active: boolean
  inputFeePpk: number
  /** amount (decimal string) → 33-byte compressed public key hex. Empty for keysets of other units. */
  keys: Record<string, string>
}

export interface MintRecord {
  url: string
  /** Unix ms of the last successful fetch. */
  fetchedAt: number
  keysets: Record<string, KeysetInfo>
}

export type KeysetRefusalCode = 'unknown-mint' | 'unknown-keyset' | 'wrong-unit' | 'keyset-has-fees'

export type KeysetLookup = { ok: true; keyset: KeysetInfo } | { ok: false; code: KeysetRefusalCode; reason: string }

export interface MintSyncResult {
  mintUrl: string
  ok: boolean
  /** Keysets usable for ticks after this sync. */
  usable: string[]
  /** Keysets listed by the mint but refused, with the reason. */
  refused: { id: string; reason: string }[]
  /** Set when the mint could not be reached or answered nonsense. */
  error?: string
  /** True if an older cached copy is still in use because the fetch failed. */
  usingCache?: boolean
}

export interface MintKeyCacheOptions {
  dataDir: string
  /** Mint URLs this provider accepts (normalised internally). */
  mints: string[]
  /** Unit of a tick. */
  unit?: string
  /** Minimum gap between two fetches for one mint triggered by `refresh`. */
  refreshMinIntervalMs?: number
  /** Per-request timeout. */
  timeoutMs?: number
  /** Injected for tests and round-trip counting; defaults to global fetch. */
  fetch?: typeof fetch
  log?: (msg: string) => void
}

export const MINT_KEYS_FILE = 'mint-keys.json'
const FILE_VERSION = 1

/** NUT-02 version-00 keyset id: "00" + first 7 bytes of sha256(concatenated keys sorted by amount). */
export function deriveKeysetIdV00(keys: Record<string, string>): string {
  const sorted = Object.entries(keys).sort(([a], [b]) => {
    const x = BigInt(a)
    const y = BigInt(b)
    return x < y ? -1 : x > y ? 1 : 0
  })
  const h = createHash('sha256')
  for (const [, pk] of sorted) h.update(Buffer.from(pk, 'hex'))
  return '00' + h.digest('hex').slice(0, 14)
}

interface KeysResponseKeyset {
  id: string
  unit: string
  active?: boolean
  input_fee_ppk?: number
  keys: Record<string, string>
}

export class MintKeyCache {
  readonly #opts: Required<Omit<MintKeyCacheOptions, 'log' | 'fetch'>> & Pick<MintKeyCacheOptions, 'log'>
  readonly #fetch: typeof fetch
  readonly #file: string
  readonly #accepted: Set<string>
  readonly #records = new Map<string, MintRecord>()
  /** Decoded keys: `${mint}\n${id}` → amount → point. Filled lazily, dropped on sync. */
  readonly #decoded = new Map<string, Map<string, Buffer>>()
  /** Raw URL strings seen on the wire → normalised form (saves a URL parse per tick). */
  readonly #urlMemo = new Map<string, string | null>()
  readonly #lastFetchAt = new Map<string, number>()
  readonly #inflight = new Map<string, Promise<MintSyncResult>>()
  #writeChain: Promise<void> = Promise.resolve()

  constructor(opts: MintKeyCacheOptions) {
    this.#opts = {
      dataDir: opts.dataDir,
      mints: opts.mints,
      unit: opts.unit ?? 'sat',
      refreshMinIntervalMs: opts.refreshMinIntervalMs ?? 60_000,
      timeoutMs: opts.timeoutMs ?? 10_000,
      log: opts.log,
    }
    this.#fetch = opts.fetch ?? globalThis.fetch
    this.#file = join(opts.dataDir, MINT_KEYS_FILE)
    this.#accepted = new Set(opts.mints.map(normalizeMintUrl))
  }

  /** Accepted mints, normalised. */
  mints(): string[] {
    return [...this.#accepted]
  }

  /** The normalised URL if `url` is an accepted mint, else undefined. */
  accepted(url: string): string | undefined {
    let n = this.#urlMemo.get(url)
    if (n === undefined) {
      try {
        n = normalizeMintUrl(url)
        if (!this.#accepted.has(n)) n = null
      } catch {
        n = null
      }
      // Bounded: junk URLs from peers must not grow memory without limit.
      if (this.#urlMemo.size < 1024) this.#urlMemo.set(url, n)
    }
    return n ?? undefined
  }

  /** Read the persisted keys. A missing file is fine (first start). */
  async load(): Promise<void> {
    let text: string
    try {
      text = await readFile(this.#file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw new Error(`cannot read the mint key cache ${this.#file}: ${(err as Error).message}`)
    }
    let data: { version?: number; mints?: Record<string, MintRecord> }
    try {
      data = JSON.parse(text)
    } catch {
      // The cache is re-fetchable; a broken file must not stop the provider.
      this.#opts.log?.(`mint key cache ${this.#file} is not valid JSON; ignoring it and fetching keys again`)
      return
    }
    if (data.version !== FILE_VERSION || !data.mints) return
    for (const [stored, rec] of Object.entries(data.mints)) {
      // Keyed by whatever normalisation wrote the file: bring it to today's form.
      let url: string
      try {
        url = normalizeMintUrl(stored)
      } catch {
        continue
      }
      if (!this.#accepted.has(url)) continue
      const keysets: Record<string, KeysetInfo> = {}
      for (const [id, ks] of Object.entries(rec.keysets ?? {})) {
        if (this.#keysetProblem(ks) === undefined) keysets[id] = ks
      }
      this.#records.set(url, { url, fetchedAt: rec.fetchedAt ?? 0, keysets })
    }
  }

  /**
   * load() then fetch every accepted mint. Never throws for an unreachable
   * mint: the result says which mints are usable from the cache and which are
   * not usable at all yet.
   */
  async start(): Promise<MintSyncResult[]> {
    await this.load()
    return Promise.all(this.mints().map((m) => this.sync(m)))
  }

  /** Fetch keysets and keys of one mint now (shares an in-flight fetch). */
  sync(mintUrl: string): Promise<MintSyncResult> {
    const url = this.accepted(mintUrl)
    if (!url) return Promise.resolve({ mintUrl, ok: false, usable: [], refused: [], error: `${mintUrl} is not an accepted mint` })
    const running = this.#inflight.get(url)
    if (running) return running
    const p = this.#doSync(url).finally(() => this.#inflight.delete(url))
    this.#inflight.set(url, p)
    return p
  }

  /**
   * Rate-limited sync, for when a peer shows a keyset id we do not know
   * (e.g. the mint rotated keys). Returns true if a fetch ran and succeeded.
   */
  async refresh(mintUrl: string, now = Date.now()): Promise<boolean> {
    const url = this.accepted(mintUrl)
    if (!url) return false
    const running = this.#inflight.get(url)
    if (running) return (await running).ok
    const last = this.#lastFetchAt.get(url) ?? 0
    if (now - last < this.#opts.refreshMinIntervalMs) return false
    return (await this.sync(url)).ok
  }

  /** Look a keyset up for a tick: known, of our unit, and fee-free — or why not. */
  lookup(mintUrl: string, keysetId: string): KeysetLookup {
    const url = this.accepted(mintUrl)
    if (!url) return { ok: false, code: 'unknown-mint', reason: `mint ${mintUrl} is not one this provider accepts (accepted: ${this.mints().join(', ')})` }
    const rec = this.#records.get(url)
    if (!rec) return { ok: false, code: 'unknown-keyset', reason: `the keys of mint ${url} have never been fetched (the mint was unreachable); retry once it is reachable` }
    const ks = rec.keysets[keysetId]
    if (!ks) return { ok: false, code: 'unknown-keyset', reason: `keyset ${keysetId} is not among the keysets of mint ${url}; if the mint rotated its keys, a refresh will pick it up` }
    if (ks.unit !== this.#opts.unit) return { ok: false, code: 'wrong-unit', reason: `keyset ${keysetId} is in unit "${ks.unit}", but a tick is 1 ${this.#opts.unit}` }
    if (ks.inputFeePpk > 0) {
      return {
        ok: false,
        code: 'keyset-has-fees',
        reason: `keyset ${keysetId} of ${url} charges input_fee_ppk=${ks.inputFeePpk}; redeeming 1-sat ticks would cost fees, so this provider only accepts fee-free keysets (run the mint with input_fee_ppk 0 or pay from a fee-free keyset)`,
      }
    }
    return { ok: true, keyset: ks }
  }

  /** The mint's public key for `amount` in a keyset (decoded once, then cached). */
  publicKey(mintUrl: string, keysetId: string, amount: number | string): Buffer | undefined {
    const url = this.accepted(mintUrl)
    if (!url) return undefined
    const ks = this.#records.get(url)?.keysets[keysetId]
    if (!ks) return undefined
    const k = `${url}\n${keysetId}`
    let m = this.#decoded.get(k)
    if (!m) {
      m = new Map()
      this.#decoded.set(k, m)
    }
    const a = String(amount)
    let P = m.get(a)
    if (!P) {
      P = pointFromHex(ks.keys[a])
      if (!P) return undefined
      m.set(a, P)
    }
    return P
  }

  /** The active, fee-free keyset of our unit to ask for new proofs in (redemption outputs). */
  activeKeyset(mintUrl: string): KeysetInfo | undefined {
    const url = this.accepted(mintUrl)
    if (!url) return undefined
    const rec = this.#records.get(url)
    if (!rec) return undefined
    return Object.values(rec.keysets).find((ks) => ks.active && ks.unit === this.#opts.unit && ks.inputFeePpk === 0 && Object.keys(ks.keys).length > 0)
  }

  /** When the mint's keys were last fetched (unix ms), if ever. */
  fetchedAt(mintUrl: string): number | undefined {
    const url = this.accepted(mintUrl)
    return url ? this.#records.get(url)?.fetchedAt : undefined
  }

  // -------------------------------------------------------------------------

  #keysetProblem(ks: KeysetInfo): string | undefined {
    if (typeof ks.id !== 'string' || typeof ks.unit !== 'string' || typeof ks.inputFeePpk !== 'number') return 'has a malformed description'
    if (ks.unit !== this.#opts.unit) return undefined // kept without keys, so lookups can say "wrong unit"
    for (const [amount, pk] of Object.entries(ks.keys ?? {})) {
      if (!/^[0-9]{1,20}$/.test(amount) || !pointFromHex(pk)) return `has an invalid key for amount ${amount}`
    }
    if (/^00[0-9a-f]{14}$/.test(ks.id) && deriveKeysetIdV00(ks.keys) !== ks.id) return 'has keys that do not match its id (NUT-02 derivation)'
    return undefined
  }

  async #getJson(url: string): Promise<unknown> {
    const res = await this.#fetch(url, { signal: AbortSignal.timeout(this.#opts.timeoutMs), headers: { accept: 'application/json' } })
    if (!res.ok) throw new Error(`GET ${url} answered HTTP ${res.status}: ${(await readMintText(res, `GET ${url}`).catch(() => '')).slice(0, 200)}`)
    return readMintJson(res, `GET ${url}`)
  }

  async #doSync(url: string): Promise<MintSyncResult> {
    this.#lastFetchAt.set(url, Date.now())
    const previous = this.#records.get(url)
    try {
      const listing = (await this.#getJson(`${url}/v1/keysets`)) as { keysets?: { id: string; unit: string; active?: boolean; input_fee_ppk?: number }[] }
      if (!Array.isArray(listing?.keysets)) throw new Error(`${url}/v1/keysets did not return {keysets: [...]}`)
      const withKeys = new Map<string, KeysResponseKeyset>()
      // /v1/keys returns the active keysets with their keys in one request.
      const active = (await this.#getJson(`${url}/v1/keys`)) as { keysets?: KeysResponseKeyset[] }
      for (const ks of active?.keysets ?? []) withKeys.set(ks.id, ks)
      const keysets: Record<string, KeysetInfo> = {}
      const refused: { id: string; reason: string }[] = []
      for (const meta of listing.keysets) {
        if (typeof meta?.id !== 'string' || typeof meta.unit !== 'string') continue
        const info: KeysetInfo = { id: meta.id, unit: meta.unit, active: meta.active !== false, inputFeePpk: meta.input_fee_ppk ?? 0, keys: {} }
        if (meta.unit === this.#opts.unit) {
          // Keys of a keyset never change (its id is derived from them), so
          // an inactive keyset is fetched once and then served from cache.
          let keys = withKeys.get(meta.id)?.keys ?? previous?.keysets[meta.id]?.keys
          if (!keys || Object.keys(keys).length === 0) {
            const one = (await this.#getJson(`${url}/v1/keys/${encodeURIComponent(meta.id)}`)) as { keysets?: KeysResponseKeyset[] }
            keys = one?.keysets?.find((k) => k.id === meta.id)?.keys
          }
          info.keys = Object.fromEntries(Object.entries(keys ?? {}).map(([a, k]) => [String(a), String(k)]))
        }
        const problem = this.#keysetProblem(info)
        if (problem) {
          refused.push({ id: meta.id, reason: `keyset ${meta.id} ${problem}` })
          continue
        }
        if (info.unit === this.#opts.unit && info.inputFeePpk > 0) {
          refused.push({ id: meta.id, reason: `keyset ${meta.id} charges input_fee_ppk=${info.inputFeePpk}; fee-charging keysets are refused for 1-sat ticks` })
        }
        keysets[meta.id] = info
      }
      const rec: MintRecord = { url, fetchedAt: Date.now(), keysets }
      this.#records.set(url, rec)
      for (const k of [...this.#decoded.keys()]) if (k.startsWith(`${url}\n`)) this.#decoded.delete(k)
      await this.#persist()
      const usable = Object.values(keysets)
        .filter((k) => k.unit === this.#opts.unit && k.inputFeePpk === 0)
        .map((k) => k.id)
      for (const r of refused) this.#opts.log?.(`mint ${url}: ${r.reason}`)
      if (usable.length === 0) this.#opts.log?.(`mint ${url} has no fee-free "${this.#opts.unit}" keyset: ticks from it will all be refused`)
      return { mintUrl: url, ok: true, usable, refused }
    } catch (err) {
      const msg = (err as Error).message
      const usingCache = previous !== undefined
      this.#opts.log?.(`mint ${url} unreachable for keys (${msg}); ${usingCache ? 'verifying with the cached keys' : 'its ticks are refused until it can be reached'}`)
      return { mintUrl: url, ok: false, usable: [], refused: [], error: msg, usingCache }
    }
  }

  /** Persist all records; writes are serialised so the last one wins. */
  #persist(): Promise<void> {
    const snapshot = JSON.stringify({ version: FILE_VERSION, mints: Object.fromEntries(this.#records) }, null, 1) + '\n'
    this.#writeChain = this.#writeChain.catch(() => {}).then(() => writeFileAtomic(this.#file, snapshot, 0o600))
    return this.#writeChain
  }
}
