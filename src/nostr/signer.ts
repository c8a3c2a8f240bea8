import { Worker } from 'node:worker_threads'
import type { Event, EventTemplate, NostrCrypto } from './events.js'

/**
 * Signs events for one key, off the main thread when it can.
 *
 * A relay job provider verifies every request and signs every reply: with
 * both on one thread, the curve arithmetic alone caps it near 850 jobs/s on
 * this project's machines. Signing in a worker thread (libsecp256k1 WASM, as
 * on the main thread) lets verification and signing use two cores. Templates
 * queued in the same tick go to the worker as one message.
 */
export interface EventSigner {
  sign(template: EventTemplate): Promise<Event>
  readonly threaded: boolean
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

// Plain JavaScript so the worker runs the same from sources (tsx) and from dist.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
import(workerData.wasmUrl).then(async ({ initNostrWasm }) => {
  const nw = await initNostrWasm()
  const sk = new Uint8Array(workerData.secretKey)
  parentPort.on('message', (batch) => {
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

interface Pending {
  resolve: (e: Event) => void
  reject: (err: Error) => void
}

class WorkerSigner implements EventSigner {
  readonly threaded = true
  private serial = 0
  private readonly pending = new Map<number, Pending>()
  private queue: Array<[number, EventTemplate]> = []
  private scheduled = false
  private dead: Error | undefined

  constructor(private readonly worker: Worker) {
    worker.on('message', (msg: Array<[number, Event | null, string?]>) => {
      for (const [id, ev, err] of msg) {
        const p = this.pending.get(id)
        if (!p) continue
        this.pending.delete(id)
        if (ev) p.resolve(ev)
        else p.reject(new Error(`signing failed: ${err}`))
      }
    })
    const fail = (err: Error): void => {
      this.dead = err
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
    }
    worker.on('error', (err) => fail(new Error(`the signing thread crashed: ${err.message}`)))
    worker.on('exit', () => fail(new Error('the signing thread has stopped')))
  }

  sign(template: EventTemplate): Promise<Event> {
    if (this.dead) return Promise.reject(this.dead)
    const id = this.serial++
    const done = new Promise<Event>((resolve, reject) => this.pending.set(id, { resolve, reject }))
    this.queue.push([id, { kind: template.kind, created_at: template.created_at, tags: template.tags, content: template.content }])
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => {
        this.scheduled = false
        const batch = this.queue
        this.queue = []
        if (batch.length > 0 && !this.dead) this.worker.postMessage(batch)
      })
    }
    return done
  }

  async close(): Promise<void> {
    await this.worker.terminate()
  }
}

/**
 * A signer with its own worker thread; falls back to signing inline (with a
 * note to `log`) if the thread cannot start.
 */
export async function threadedSigner(crypto: NostrCrypto, secretKey: Uint8Array, log?: (line: string) => void): Promise<EventSigner> {
  let worker: Worker | undefined
  try {
    const wasmUrl = import.meta.resolve('nostr-wasm')
    worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { wasmUrl, secretKey: Array.from(secretKey) }, execArgv: [] })
    const w = worker
    const ready = await new Promise<string>((resolve) => {
      w.once('message', (m: unknown) => resolve(String(m)))
      w.once('error', (err) => resolve(`failed: ${err.message}`))
    })
    if (ready !== 'ready') throw new Error(ready.replace(/^failed: /, ''))
    w.unref()
    return new WorkerSigner(w)
  } catch (err) {
    await worker?.terminate()
    log?.(`signing on the main thread: the signing thread did not start (${(err as Error).message})`)
    return inlineSigner(crypto, secretKey)
  }
}
