import { type Chunk, type Job, type Processor, type ProcessorInfo } from './types.js'

/** Buys the sub-job's output for a job (P2P or relay); resolves with the text it produced. */
export type SubJobBuyer = (job: Job) => Promise<string>

/**
 * `--sub-kind`: before its own processor runs, the provider buys a sub-job of
 * another kind from another provider, pays it from its own wallet, and feeds
 * the result to its processor as the job's text input.
 */
export class PipelineProcessor implements Processor {
  constructor(
    private readonly inner: Processor,
    private readonly subKind: number,
    private readonly buy: SubJobBuyer,
  ) {}

  start(): Promise<void> {
    return this.inner.start()
  }

  async describe(): Promise<ProcessorInfo> {
    const info = await this.inner.describe()
    return { ...info, name: `${info.name}+${this.subKind}`, features: [...info.features, `pipeline:${this.subKind}`] }
  }

  async *run(job: Job, signal: AbortSignal): AsyncIterable<Chunk> {
    let sub: string
    try {
      sub = await this.buy(job)
    } catch (err) {
      throw new Error(`could not buy the kind ${this.subKind} sub-job: ${(err as Error).message}`)
    }
    if (signal.aborted) return
    const next: Job = { ...job, input: [{ type: 'text', value: sub }], params: job.params }
    yield* this.inner.run(next, signal)
  }

  stop(): Promise<void> {
    return this.inner.stop?.() ?? Promise.resolve()
  }
}
