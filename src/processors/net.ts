/**
 * Helpers for the processors that talk HTTP: turn Node's fetch errors
 * ("fetch failed" with the real reason hidden in `cause`) into words, and
 * bound requests in time.
 */

/** The most specific reason in a fetch / socket error: ECONNREFUSED, "other side closed", … */
export function networkReason(err: unknown): string {
  let e: unknown = err
  for (let depth = 0; depth < 4 && e instanceof Error; depth++) {
    const code = (e as { code?: unknown }).code
    const cause: unknown = (e as { cause?: unknown }).cause
    if (typeof code === 'string' && code !== 'UND_ERR_SOCKET' && !(cause instanceof Error)) return code
    if (!(cause instanceof Error)) return e.message
    e = cause
  }
  return e instanceof Error ? e.message : String(e)
}

/** Reasons that mean nothing answered at all, as opposed to a connection that broke. */
export function isUnreachable(reason: string): boolean {
  return /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|UND_ERR_CONNECT_TIMEOUT)$/.test(reason)
}

/** True for the errors fetch and the SDKs raise when a request was aborted on purpose. */
export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || err.name === 'APIUserAbortError' || err.name === 'TimeoutError')
}

/**
 * A fetch that also stops when `extra` aborts, so a client library that takes
 * a custom fetch but not a signal still ends its request when the job is
 * cancelled.
 */
export function fetchWithSignal(extra: AbortSignal): typeof fetch {
  return (input, init) => {
    const signal = init?.signal ? AbortSignal.any([init.signal, extra]) : extra
    return fetch(input, { ...init, signal })
  }
}

/** A fetch whose every request gives up after `ms` (for start-up checks). */
export function fetchWithTimeout(ms: number): typeof fetch {
  return (input, init) => {
    const timeout = AbortSignal.timeout(ms)
    const signal = init?.signal ? AbortSignal.any([init.signal, timeout]) : timeout
    return fetch(input, { ...init, signal })
  }
}

/** A URL without user:password, for messages and logs. */
export function safeUrl(url: string | URL): string {
  try {
    const u = new URL(String(url))
    u.username = ''
    u.password = ''
    return u.toString().replace(/\/$/, '')
  } catch {
    return String(url)
  }
}
