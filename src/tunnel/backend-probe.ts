/**
 * Does anything accept a TCP connection at the tunnel's backend origin? The
 * provider asks before it lets a customer open a paid session, and while
 * sessions run, so nobody pays for a backend that is not there.
 *
 * Only a TCP connect, closed at once: no HTTP request (it would show up in
 * the backend's logs and could have effects), and nothing of a customer's
 * reaches the backend this way.
 */
import net from 'node:net'
import { originAddress, parseBackendOrigin } from './gateway.js'

export type BackendState =
  | { up: true; checkedAt: number }
  /** `since`: the first failed probe of this outage (ms since epoch) */
  | { up: false; checkedAt: number; since: number; error: string }

export interface BackendProbeOptions {
  /** the `--backend` origin, e.g. http://127.0.0.1:7860 */
  origin: string | URL
  /** give up on one connect after this long (default 1000 ms) */
  timeoutMs?: number
  /** answer from the last probe if it is younger than this, so a burst of opens costs one connect (default 1000 ms) */
  cacheMs?: number
}

/** One bounded TCP connect to the origin's host and port: null when accepted, else why not (ECONNREFUSED, ETIMEDOUT…). */
export function probeTcp(origin: URL, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect(originAddress(origin))
    const done = (error: string | null): void => {
      clearTimeout(timer)
      socket.removeAllListeners()
      socket.on('error', () => {}) // a late reset must not become an uncaught error
      socket.destroy()
      resolve(error)
    }
    // covers DNS as well as the handshake: a backend behind a dead route must not hold an open
    const timer = setTimeout(() => done('ETIMEDOUT'), timeoutMs)
    socket.once('connect', () => done(null))
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
  })
}

/** The backend's state from a short-lived cache; concurrent callers share one probe. */
export class BackendProbe {
  readonly origin: URL
  private readonly timeoutMs: number
  private readonly cacheMs: number
  private last: BackendState | null = null
  private inflight: Promise<BackendState> | null = null

  constructor(opts: BackendProbeOptions) {
    this.origin = parseBackendOrigin(opts.origin)
    this.timeoutMs = opts.timeoutMs ?? 1000
    this.cacheMs = opts.cacheMs ?? 1000
  }

  /** The last answer, without probing (null before the first). */
  get state(): BackendState | null {
    return this.last
  }

  /** Resolves within about `timeoutMs`; never rejects. */
  check(now = Date.now()): Promise<BackendState> {
    if (this.last && now - this.last.checkedAt < this.cacheMs) return Promise.resolve(this.last)
    this.inflight ??= probeTcp(this.origin, this.timeoutMs)
      .then((error) => {
        const checkedAt = Date.now()
        const prev = this.last
        this.last = error === null ? { up: true, checkedAt } : { up: false, checkedAt, error, since: prev && !prev.up ? prev.since : checkedAt }
        return this.last
      })
      .finally(() => (this.inflight = null))
    return this.inflight
  }
}
