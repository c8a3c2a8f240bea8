import { Worker } from 'node:worker_threads'
import type { Event, EventTemplate, NostrCrypto } from './events.js'

/**
 * Signs events for one key, off the main thread when it can.
 *
 * A relay job provider verifies every request and signs every reply. Where
 * only slow signing is available (libsecp256k1 WASM 0.45 ms, pure JS 3 ms an
 * event), signing in a worker thread lets verification and signing use two
 * cores; templates queued in the same tick go to the worker as one message.
 * With the native binding (0.065 ms) the provider signs inline instead
 * (RelayJobService's `signingThread` default).
 */
export interface EventSigner {
  sign(template: EventTemplate): Promise<Event>
  readonly threaded: boolean
  /**
   * Finish what was asked before, then stop: every `sign` already called
   * settles (signed, or rejected with the reason) before this resolves, within
   * a bound. A threaded signer rejects a `sign` after it. Safe to call twice.
   */
  close(): Promise<void>
}

/** Signs on the calling thread. */
export function inlineSigner(crypto: NostrCrypto, secretKey: Uint8Array): EventSigner {
  return {
    threaded: false,
    sign: async (template) => crypto.sign(template, secretKey),
    close: async () => {},
  }
}

export interface ThreadedSignerOptions {
  /** how long the thread may take to load libsecp256k1 before signing falls back to the main thread (default 15 s) */
  startTimeoutMs?: number
  /** how long `close` waits for requests already sent to the thread before it stops it anyway (default 5 s) */
  closeTimeoutMs?: number
}

// Plain JavaScript so the worker runs the same from sources (tsx) and from dist.
// 'close' comes after every batch sent before it (one port, in order): the
// thread answers those, then closes its port and ends on its own, so it is
// never cut off inside a WASM call.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
import(workerData.wasmUrl).then(async ({ initNostrWasm }) => {
  const nw = await initNostrWasm()
  const sk = new Uint8Array(workerData.secretKey)
  parentPort.on('message', (batch) => {
    if (batch === 'close') {
      parentPort.close()
      return
    }
    const out = []
    for (const [id, t] of batch) {
      const ev = { kind: t.kind, created_at: t.created_at, tags: t.tags, content: t.content, id: '', pubkey: '', sig: '' }
      try {
        nw.finalizeEvent(ev, sk)
        out.push([id, ev])
      } catch (err) {
        out.push([id, null, String(err && err.message || err)])
      }
    }
    parentPort.postMessage(out)
  })
  parentPort.postMessage('ready')
}, (err) => parentPort.postMessage('failed: ' + (err && err.message || err)))
`

const DEFAULT_START_TIMEOUT_MS = 15_000
const DEFAULT_CLOSE_TIMEOUT_MS = 5_000

interface Pending {
  resolve: (e: Event) => void
  reject: (err: Error) => void
}

type Reply = Array<[number, Event | null, string?]>

/** The worker's exit code, or undefined after `ms`; the timer keeps the process alive meanwhile (an idle worker is unref'd). */
function exitWithin(exited: Promise<number>, ms: number): Promise<number | undefined> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    exited,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

class WorkerSigner implements EventSigner {
  readonly threaded = true
  private serial = 0
  private readonly pending = new Map<number, Pending>()
  private queue: Array<[number, EventTemplate]> = []
  private scheduled = false
  /** why no more requests are taken: closed by us, or the thread died */
  private refuse: Error | undefined
  private closing: Promise<void> | undefined
  private readonly exited: Promise<number>

  constructor(
    private readonly worker: Worker,
    private readonly closeTimeoutMs: number,
  ) {
    worker.on('message', (msg: unknown) => {
      if (!Array.isArray(msg)) return
      for (const [id, ev, err] of msg as Reply) {
        const p = this.pending.get(id)
        if (!p) continue
        this.pending.delete(id)
        if (ev) p.resolve(ev)
        else p.reject(new Error(`signing failed: ${err}`))
      }
      if (this.pending.size === 0) this.worker.unref()
    })
    // Every failure of the thread ends here and in the pending requests; none
    // is left for the process to treat as uncaught.
    worker.on('error', (err: Error) => this.fail(new Error(`the signing thread crashed: ${err.message}`)))
    worker.on('messageerror', (err: Error) => this.fail(new Error(`the signing thread sent a reply that could not be read: ${err.message}`)))
    this.exited = new Promise((resolve) => {
      worker.once('exit', (code: number) => {
        // Replies the thread sent before it ended have been delivered by now.
        this.fail(new Error(this.closing ? 'the signer closed before this request was signed' : `the signing thread stopped unexpectedly (exit code ${code})`))
        resolve(code)
      })
    })
  }

  sign(template: EventTemplate): Promise<Event> {
    if (this.refuse) return Promise.reject(this.refuse)
    const id = this.serial++
    const done = new Promise<Event>((resolve, reject) => this.pending.set(id, { resolve, reject }))
    // An idle thread does not keep the process alive; one with work to answer does.
    if (this.pending.size === 1) this.worker.ref()
    this.queue.push([id, { kind: template.kind, created_at: template.created_at, tags: template.tags, content: template.content }])
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => {
        this.scheduled = false
        this.flush()
      })
    }
    return done
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    // Requests taken so far still go out; new ones are refused.
    this.flush()
    this.refuse ??= new Error('the signer is closed; nothing more can be signed')
    try {
      this.worker.postMessage('close')
    } catch {
      // the thread is already gone; its exit settles the rest
    }
    if ((await exitWithin(this.exited, this.closeTimeoutMs)) === undefined) {
      // Stuck (or starved of CPU): stop it. Whatever it had not answered fails with the reason.
      this.fail(new Error(`the signing thread did not finish within ${this.closeTimeoutMs} ms of close; request abandoned`))
      await this.worker.terminate().catch(() => undefined)
      await exitWithin(this.exited, this.closeTimeoutMs)
    }
  }

  private flush(): void {
    // Requests already failed (the thread died meanwhile) are not sent.
    const batch = this.queue.filter(([id]) => this.pending.has(id))
    this.queue = []
    if (batch.length === 0) return
    try {
      this.worker.postMessage(batch)
    } catch (err) {
      for (const [id] of batch) this.settleWithError(id, new Error(`signing failed: ${(err as Error).message}`))
    }
  }

  private settleWithError(id: number, err: Error): void {
    const p = this.pending.get(id)
    if (!p) return
    this.pending.delete(id)
    if (this.pending.size === 0) this.worker.unref()
    p.reject(err)
  }

  /** Reject everything outstanding with `err` and refuse new requests. */
  private fail(err: Error): void {
    this.refuse ??= err
    this.queue = []
    const all = [...this.pending.values()]
    this.pending.clear()
    this.worker.unref()
    for (const p of all) p.reject(err)
  }
}

/**
 * A signer with its own worker thread; falls back to signing inline (with a
 * note to `log`) if the thread cannot start.
 */
export async function threadedSigner(
  crypto: NostrCrypto,
  secretKey: Uint8Array,
  log?: (line: string) => void,
  options: ThreadedSignerOptions = {},
): Promise<EventSigner> {
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS
  let worker: Worker | undefined
  try {
    const wasmUrl = import.meta.resolve('nostr-wasm')
    worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { wasmUrl, secretKey: Array.from(secretKey) }, execArgv: [] })
    const w = worker
    // Listeners stay on until WorkerSigner has its own: an 'error' with none would be uncaught.
    let onMessage: (m: unknown) => void = () => {}
    let onError: (err: Error) => void = () => {}
    let onExit: (code: number) => void = () => {}
    let timer: NodeJS.Timeout | undefined
    const ready = await new Promise<string>((resolve) => {
      onMessage = (m) => resolve(String(m))
      onError = (err) => resolve(`failed: ${err.message}`)
      onExit = (code) => resolve(`failed: it exited (code ${code}) before it was ready`)
      timer = setTimeout(() => resolve(`failed: it was not ready within ${startTimeoutMs} ms`), startTimeoutMs)
      w.once('message', onMessage)
      w.on('error', onError)
      w.once('exit', onExit)
    })
    clearTimeout(timer)
    if (ready !== 'ready') throw new Error(ready.replace(/^failed: /, ''))
    const signer = new WorkerSigner(w, options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS)
    w.off('message', onMessage)
    w.off('error', onError)
    w.off('exit', onExit)
    w.unref()
    return signer
  } catch (err) {
    // The start-up listeners stay on, so a late 'error' from this thread is not uncaught.
    await worker?.terminate().catch(() => undefined)
    log?.(`signing on the main thread: the signing thread did not start (${(err as Error).message})`)
    return inlineSigner(crypto, secretKey)
  }
}
