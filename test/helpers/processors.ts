// What the processor tests (test/processors-*.test.ts) share: a job to run,
// reading a run's output, the message of a failure, and the life cycle of a
// fake model server for one describe block.
import { afterAll, afterEach, beforeAll } from 'vitest'
import type { Chunk, Job } from '../../src/processors/types.js'
import { DEFAULT_TOKENS, type TokenScript } from '../fixtures/fake-server.js'

/** A text job: id 'job-1', kind 5050, unless `extra` says otherwise. */
export function job(text: string, params: Record<string, string> = {}, extra: Partial<Job> = {}): Job {
  return { id: 'job-1', kind: 5050, input: [{ type: 'text', value: text }], params, customer: 'ab'.repeat(32), ...extra }
}

/** Every chunk of a run, as it came. */
export async function collectChunks(it: AsyncIterable<Chunk>): Promise<Chunk[]> {
  const out: Chunk[] = []
  for await (const c of it) out.push(c)
  return out
}

/** Every chunk of a run, each as text. */
export async function collect(it: AsyncIterable<Chunk>): Promise<string[]> {
  return (await collectChunks(it)).map((c) => (typeof c === 'string' ? c : Buffer.from(c).toString()))
}

/** The whole output of a run as one string. */
export async function text(it: AsyncIterable<Chunk>): Promise<string> {
  return (await collect(it)).join('')
}

/** The message `p` fails with; throws if it succeeds. */
export async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    return (err as Error).message
  }
  throw new Error('expected a failure')
}

/**
 * Read a run until it has given `n` chunks, then abort its signal and read on
 * until it stops: what it gave, when the abort came, and how long stopping took.
 */
export async function abortAfterChunks(n: number, run: (signal: AbortSignal) => AsyncIterable<Chunk>): Promise<{ got: Chunk[]; abortedAt: number; stopMs: number }> {
  const ac = new AbortController()
  const got: Chunk[] = []
  let abortedAt = 0
  for await (const c of run(ac.signal)) {
    got.push(c)
    if (got.length === n) {
      abortedAt = Date.now()
      ac.abort()
    }
  }
  return { got, abortedAt, stopMs: Date.now() - abortedAt }
}

interface ScriptedFake {
  script: TokenScript
  readonly requests: unknown[]
  close(): Promise<void>
}

/**
 * For the enclosing describe block: start a fake model server before it
 * (`start` also hands it to the test's own variable), put back the default
 * script and forget the requests it saw after each test, close it at the end.
 */
export function useFakeServer(start: () => Promise<ScriptedFake>): void {
  let fake: ScriptedFake | undefined
  beforeAll(async () => {
    fake = await start()
  })
  afterEach(() => {
    if (!fake) return
    fake.script = { tokens: [...DEFAULT_TOKENS] }
    fake.requests.length = 0
  })
  afterAll(async () => {
    await fake?.close()
  })
}
