/**
 * One mint as the wallet and the redeemer see it: HTTP with timeouts (cashu-ts's
 * fetch has none, and a hung mint must not hang a session) and a cap on answer
 * sizes, keysets and verified keys, input fees, and NUT-07/NUT-09 calls split
 * to the mint's per-request cap.
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
import { readMintJson } from './mint-http.js'

type CustomRequest = NonNullable<ConstructorParameters<typeof CashuMint>[1]>
type RequestOptions = Parameters<CustomRequest>[0]

/** nutshell's MINT_MAX_REQUEST_LENGTH default: inputs, outputs, Ys per request. */
export const DEFAULT_MAX_BATCH = 1000

export type MintProofState = 'UNSPENT' | 'PENDING' | 'SPENT'

/**
 * The request never left this machine (connection refused, no such host), so
 * the mint cannot have acted on it: safe to undo its journal at once.
 */
export class MintUnreachableError extends NetworkError {
  constructor(message: string) {
    super(message)
    // cashu-ts's NetworkError pins its own prototype, which would hide this subclass
    Object.setPrototypeOf(this, new.target.prototype)
    this.name = 'MintUnreachableError'
  }
}

/** Connection errors raised before any byte of the request is sent. */
function neverSent(err: unknown): string | undefined {
  const code = (err as { cause?: { code?: unknown } })?.cause?.code
  return code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' ? code : undefined
}

function timedRequest(mintUrl: string, timeoutMs: number, doFetch: typeof fetch, onRequest: () => void): CustomRequest {
  return async function request<T>(options: RequestOptions): Promise<T> {
    const { endpoint, requestBody, headers, ...init } = options
    const body = requestBody ? JSON.stringify(requestBody) : undefined
    let res: Response
    onRequest()
    try {
      res = await doFetch(endpoint, {
        ...init,
        body,
        headers: { Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (err) {
      const code = neverSent(err)
      if (code) throw new MintUnreachableError(`could not reach the mint at ${mintUrl}: it is not reachable (${code}); check that it is running and the URL is right`)
      const e = err as Error
      const why = e.name === 'TimeoutError' ? `no answer within ${Math.round(timeoutMs / 1000)} s` : e.message
      throw new NetworkError(`could not reach the mint at ${mintUrl} (${why}); check that it is running and reachable`)
    }
    if (!res.ok) {
      const detail = ((await readMintJson(res, `mint ${mintUrl}`).catch(() => ({}))) ?? {}) as { code?: unknown; detail?: unknown; error?: unknown }
      if (res.status === 400 && typeof detail.code === 'number' && typeof detail.detail === 'string') {
        throw new MintOperationError(detail.code, detail.detail)
      }
      const text = typeof detail.detail === 'string' ? detail.detail : typeof detail.error === 'string' ? detail.error : res.statusText
      throw new HttpResponseError(`mint ${mintUrl} answered HTTP ${res.status}: ${text}`, res.status)
    }
    // Too large or not JSON: a plain Error, which callers treat as an unusable answer.
    return (await readMintJson(res, `mint ${mintUrl}`)) as T
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

export interface MintConnectionOptions {
  timeoutMs?: number
  /** for melt, which waits for a Lightning payment */
  slowTimeoutMs?: number
  maxBatch?: number
  /** injected for tests and round-trip counting; default: global fetch */
  fetch?: typeof fetch
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
  /** HTTP requests made so far (round trips, for reports) */
  requests = 0

  constructor(url: string, opts: MintConnectionOptions = {}) {
    this.url = url
    this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH
    const doFetch = opts.fetch ?? ((input, init) => globalThis.fetch(input, init))
    const count = () => void this.requests++
    this.api = new CashuMint(url, timedRequest(url, opts.timeoutMs ?? 30_000, doFetch, count))
    this.slowApi = new CashuMint(url, timedRequest(url, opts.slowTimeoutMs ?? 120_000, doFetch, count))
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
  async states(secrets: ReadonlyArray<string>): Promise<Map<string, MintProofState>> {
    const ys = secrets.map(secretToYHex)
    const byY = await this.statesByY(ys)
    return new Map(secrets.map((secret, i) => [secret, byY.get(ys[i]!)!]))
  }

  /** NUT-07 state of proofs by Y = hash_to_curve(secret), hex. Split to the request cap. */
  async statesByY(ys: ReadonlyArray<string>): Promise<Map<string, MintProofState>> {
    const out = new Map<string, MintProofState>()
    for (let i = 0; i < ys.length; i += this.maxBatch) {
      const chunk = ys.slice(i, i + this.maxBatch)
      const { states } = await this.api.check({ Ys: chunk })
      const byY = new Map(states.map((s) => [s.Y, s.state]))
      for (const y of chunk) {
        const state = byY.get(y)
        if (state !== 'UNSPENT' && state !== 'PENDING' && state !== 'SPENT') {
          throw new Error(`mint ${this.url} did not report the state of every proof asked about`)
        }
        out.set(y, state)
      }
    }
    return out
  }
}
