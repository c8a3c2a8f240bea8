/** Small helpers for starting and stopping the demo's parts in order. */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Poll `check` until it holds or `timeoutMs` passes; resolves whether it held. */
export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() >= deadline) return false
    await sleep(everyMs)
  }
}

/**
 * Things started so far, stopped newest first: the demo's only way down,
 * whether startup failed halfway or the demo ran and ended.
 */
export class Teardown {
  private readonly steps: Array<{ what: string; stop: () => Promise<unknown> }> = []

  add(what: string, stop: () => Promise<unknown>): void {
    this.steps.push({ what, stop })
  }

  /** Stop everything; a part that fails to stop is reported and the rest still stop. */
  async run(onError: (message: string) => void): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step.stop()
      } catch (err) {
        onError(`stopping the ${step.what} failed: ${(err as Error).message}`)
      }
    }
  }
}
