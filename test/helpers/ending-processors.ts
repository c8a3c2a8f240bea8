// Processors that never deliver, for tests of what a paid job that ends
// without a result does (refunds, timeouts). No vitest import: child-process
// fixtures use them too.
import { EchoProcessor } from '../../src/processors/echo.js'
import type { Processor } from '../../src/processors/types.js'

/** Fails every job with `message`. */
export function failingProcessor(message: string): Processor {
  const echo = new EchoProcessor()
  return {
    start: () => echo.start(),
    describe: () => echo.describe(),
    async *run() {
      throw new Error(message)
    },
  }
}

/** Never finishes a job on its own: waits for the abort (a cancel, a timeout, a stop). */
export function hangingProcessor(): Processor {
  const echo = new EchoProcessor()
  return {
    start: () => echo.start(),
    describe: () => echo.describe(),
    async *run(_job, signal) {
      await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }))
    },
  }
}
