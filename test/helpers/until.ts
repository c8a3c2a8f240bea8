/** Poll `cond` every 10 ms until it holds; reject after `ms` (tests stay bounded). */
export function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) return resolve()
      if (Date.now() > deadline) return reject(new Error(`timed out after ${ms} ms waiting`))
      setTimeout(tick, 10)
    }
    tick()
  })
}
