/**
 * The wallet's view of one mint: HTTP with timeouts (cashu-ts's fetch has none,
 * and a hung mint must not hang a session), keysets and verified keys, input
 * fees, and NUT-07/NUT-09 calls split to the mint's per-request cap.
 */
import {
  CashuMint,
  HttpResponseError,
  MintOperationError,
  NetworkError,
  deriveKeysetId,
  type GetInfoResponse,
  type MintKeys,
  type MintKeyset,
  type SerializedBlindedMessage,
  type SerializedBlindedSignature,
} from '@cashu/cashu-ts'
import { secretToYHex } from './hash-to-curve.js'

type CustomRequest = NonNullable<ConstructorParameters<typeof CashuMint>[1]>
type RequestOptions = Parameters<CustomRequest>[0]

/** nutshell's MINT_MAX_REQUEST_LENGTH default: inputs, outputs, Ys per request. */
export const DEFAULT_MAX_BATCH = 1000

function timedRequest(mintUrl: string, timeoutMs: number): CustomRequest {
  return async function request<T>(options: RequestOptions): Promise<T> {
    const { endpoint, requestBody, headers, ...init } = options
    const body = requestBody ? JSON.stringify(requestBody) : undefined
    let res: Response
    try {
      res = await fetch(endpoint, {
        ...init,
        body,
        headers: { Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (err) {
      const e = err as Error
      const why = e.name === 'TimeoutError' ? `no answer within ${Math.round(timeoutMs / 1000)} s` : e.message
      throw new NetworkError(`could not reach the mint at ${mintUrl} (${why}); check that it is running and reachable`)
    }
    if (!res.ok) {
      const detail = (await res.json().catch(() => ({}))) as { code?: unknown; detail?: unknown; error?: unknown }
      if (res.status === 400 && typeof detail.code === 'number' && typeof detail.detail === 'string') {
        throw new MintOperationError(detail.code, detail.detail)
      }
      const text = typeof detail.detail === 'string' ? detail.detail : typeof detail.error === 'string' ? detail.error : res.statusText
      throw new HttpResponseError(`mint ${mintUrl} answered HTTP ${res.status}: ${text}`, res.status)
    }
    try {
      return (await res.json()) as T
    } catch {
      throw new HttpResponseError(`mint ${mintUrl} sent a response that is not JSON`, res.status)
    }
  } as CustomRequest
}

/**
 * True when the mint certainly did not carry out the request (it refused it).
 * Anything else (timeouts, connection drops, 5xx) leaves the outcome unknown.
 */
export function isRejection(err: unknown): boolean {
  if (err instanceof MintOperationError) return true
  return err instanceof HttpResponseError && err.status >= 400 && err.status < 500
}

export function describeMintError(err: unknown): string {
  if (err instanceof MintOperationError) return `the mint refused: ${err.message.replace(/\.$/, '')}${err.code ? ` (code ${err.code})` : ''}`
  return err instanceof Error ? err.message : String(err)
}

/** Denominations (powers of two the keyset signs), largest first, e.g. 13 → [8, 4, 1]. */
export function splitAmount(amount: number, keys: MintKeys): number[] {
  const denoms = Object.keys(keys.keys)
    .map(Number)
    .filter((n) => Number.isSafeInteger(n) && n > 0)
    .sort((a, b) => b - a)
  const out: number[] = []
  let rest = amount
  for (const d of denoms) {
    while (rest >= d) {
      out.push(d)
      rest -= d
    }
  }
  if (rest !== 0) throw new Error(`keyset ${keys.id} cannot represent ${amount} sats`)
  return out
}

export interface MintConnectionOptions {
  timeoutMs?: number
  /** for melt, which waits for a Lightning payment */
  slowTimeoutMs?: number
  maxBatch?: number
}

export class MintConnection {
  readonly url: string
  readonly api: CashuMint
  /** same mint, longer timeout: melts wait for Lightning */
  readonly slowApi: CashuMint
  readonly maxBatch: number
  private keysetList?: MintKeyset[]
  private readonly keyCache = new Map<string, MintKeys>()
  private infoCache?: GetInfoResponse

  constructor(url: string, opts: MintConnectionOptions = {}) {
    this.url = url
    this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH
    this.api = new CashuMint(url, timedRequest(url, opts.timeoutMs ?? 30_000))
    this.slowApi = new CashuMint(url, timedRequest(url, opts.slowTimeoutMs ?? 120_000))
  }

  async info(): Promise<GetInfoResponse> {
    this.infoCache ??= await this.api.getInfo()
    return this.infoCache
  }

  /** The mint's `sat` keysets with hex ids (base64 ids are pre-2024 and unsupported). */
  async keysets(force = false): Promise<MintKeyset[]> {
    if (!this.keysetList || force) {
      const { keysets } = await this.api.getKeySets()
      this.keysetList = keysets.filter((k) => k.unit === 'sat' && /^[0-9a-f]{16}$/i.test(k.id))
      if (this.keysetList.length === 0) throw new Error(`mint ${this.url} has no keyset for sats; use a mint that issues sat ecash`)
    }
    return this.keysetList
  }

  /** The active sat keyset with the lowest input fee: where new outputs go. */
  async activeKeyset(): Promise<MintKeyset> {
    const active = (await this.keysets()).filter((k) => k.active)
    active.sort((a, b) => (a.input_fee_ppk ?? 0) - (b.input_fee_ppk ?? 0))
    const best = active[0]
    if (!best) throw new Error(`mint ${this.url} has no active sat keyset; it cannot issue ecash now`)
    return best
  }

  /** Keys of one keyset, checked against its id so a mint cannot swap keys under a known id. */
  async keys(id: string): Promise<MintKeys> {
    const cached = this.keyCache.get(id)
    if (cached) return cached
    const { keysets } = await this.api.getKeys(id)
    const keys = keysets.find((k) => k.id === id)
    if (!keys) throw new Error(`mint ${this.url} did not return keys for keyset ${id}`)
    if (id.startsWith('00') && deriveKeysetId(keys.keys) !== id) {
      throw new Error(`mint ${this.url} returned keys that do not match keyset id ${id}; refusing to use them`)
    }
    this.keyCache.set(id, keys)
    return keys
  }

  /** NUT-02 input fee for spending these proofs: ceil(sum of per-input ppk / 1000). */
  async inputFee(proofs: ReadonlyArray<{ id: string }>): Promise<number> {
    if (proofs.length === 0) return 0
    const ppk = new Map((await this.keysets()).map((k) => [k.id, k.input_fee_ppk ?? 0]))
    let sum = 0
    for (const p of proofs) sum += ppk.get(p.id) ?? 0
    return Math.ceil(sum / 1000)
  }

  /** NUT-09: signatures the mint already made on these outputs, by B_. Split to the request cap. */
  async restore(outputs: ReadonlyArray<SerializedBlindedMessage>): Promise<Map<string, SerializedBlindedSignature>> {
    const found = new Map<string, SerializedBlindedSignature>()
    for (let i = 0; i < outputs.length; i += this.maxBatch) {
      const chunk = outputs.slice(i, i + this.maxBatch).map((o) => ({ amount: o.amount, id: o.id, B_: o.B_ }))
      const res = await this.api.restore({ outputs: chunk })
      res.outputs.forEach((o, j) => {
        const sig = res.signatures[j]
        if (sig) found.set(o.B_, sig)
      })
    }
    return found
  }

  /** NUT-07 state of proofs by secret. Split to the request cap. */
  async states(secrets: ReadonlyArray<string>): Promise<Map<string, 'UNSPENT' | 'PENDING' | 'SPENT'>> {
    const out = new Map<string, 'UNSPENT' | 'PENDING' | 'SPENT'>()
    for (let i = 0; i < secrets.length; i += this.maxBatch) {
      const chunk = secrets.slice(i, i + this.maxBatch)
      const ys = chunk.map(secretToYHex)
      const { states } = await this.api.check({ Ys: ys })
      const byY = new Map(states.map((s) => [s.Y, s.state]))
      chunk.forEach((secret, j) => {
        const state = byY.get(ys[j]!)
        if (!state) throw new Error(`mint ${this.url} did not report the state of every proof asked about`)
        out.set(secret, state)
      })
    }
    return out
  }
}
