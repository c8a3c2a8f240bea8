import type { Duplex } from 'node:stream'

/**
 * The socket methods Node's http.Server and http-proxy call on a connection.
 * A tunnel stream is a plain Duplex and has none of them; http-proxy's
 * WebSocket path calls setNoDelay/setKeepAlive unconditionally and would
 * throw.
 */
interface SocketLike {
  setTimeout(ms: number, cb?: () => void): unknown
  setNoDelay(noDelay?: boolean): unknown
  setKeepAlive(enable?: boolean, delay?: number): unknown
}

/**
 * Give a plain Duplex the socket methods it lacks (real sockets are left
 * alone). `setTimeout` is a plain timer, not an inactivity timer: Node's HTTP
 * server only uses it for the keep-alive idle timeout, which it arms after a
 * response and clears (setTimeout(0)) when the next request starts, and a
 * plain timer is exactly that.
 */
export function asSocketLike(stream: Duplex): Duplex {
  const s = stream as Duplex & Partial<SocketLike>
  if (typeof s.setTimeout !== 'function') {
    let timer: NodeJS.Timeout | undefined
    const clear = (): void => {
      if (timer) clearTimeout(timer)
      timer = undefined
    }
    s.setTimeout = (ms: number, cb?: () => void) => {
      clear()
      if (cb) s.once('timeout', cb)
      if (ms > 0 && !s.destroyed) {
        timer = setTimeout(() => s.emit('timeout'), ms)
        timer.unref()
      }
      return s
    }
    s.once('close', clear)
  }
  if (typeof s.setNoDelay !== 'function') s.setNoDelay = () => s
  if (typeof s.setKeepAlive !== 'function') s.setKeepAlive = () => s
  return s
}
