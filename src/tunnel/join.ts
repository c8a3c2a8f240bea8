import { pipeline, type Duplex } from 'node:stream'
import { abortStream } from './abort.js'

/**
 * Pipe two byte streams into each other, both ways, with backpressure
 * (`pipeline` only reads from one side as fast as the other accepts).
 * A clean end (FIN) in one direction ends only that direction, so half-closed
 * HTTP clients still get their answer. An error or reset on either side
 * destroys both: a half-broken tunnel must not linger.
 *
 * @param onClose called once, when both directions are done or one failed.
 * @param rescueA on the first failure: return true to take `a` over (answer
 *   it yourself) instead of having it cut.
 */
export function joinStreams(a: Duplex, b: Duplex, onClose?: (err?: Error) => void, rescueA?: (err: Error) => boolean): void {
  // pipeline() removes its listeners once a direction is done; a reset that
  // arrives after that must not become an uncaught 'error' that kills the
  // process. Failures while piping still reach `done` through pipeline.
  a.on('error', ignore)
  b.on('error', ignore)
  let pending = 2
  let failed: Error | undefined
  let rescued = false
  const done = (err?: Error | null): void => {
    if (err && !failed) {
      failed = err
      rescued = rescueA?.(err) ?? false
      if (!rescued) abortStream(a)
      abortStream(b)
    }
    if (--pending === 0) {
      // Both directions finished: nothing more can flow, release both ends
      // even when the streams do not auto-destroy (allowHalfOpen duplexes).
      if (!rescued) a.destroy()
      b.destroy()
      onClose?.(failed)
    }
  }
  pipeline(a, b, done)
  pipeline(b, a, done)
}

function ignore(): void {}
