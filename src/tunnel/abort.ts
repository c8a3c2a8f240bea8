import type { Duplex } from 'node:stream'

/**
 * Cut a stream so the far end sees an abort, not a clean end. A plain
 * destroy() on a TCP socket usually sends FIN, which the other side cannot
 * tell from a finished response; an RST (resetAndDestroy) it can. Other
 * Duplexes (the wire's streams) signal a reset on destroy by themselves.
 */
export function abortStream(stream: Duplex): void {
  if (stream.destroyed) return
  const s = stream as Duplex & { resetAndDestroy?: () => unknown }
  if (typeof s.resetAndDestroy === 'function') {
    try {
      s.resetAndDestroy()
      return
    } catch {
      // Not a TCP handle (e.g. a pipe): fall back to destroy.
    }
  }
  stream.destroy()
}
