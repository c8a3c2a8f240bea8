import { jobText, type Chunk, type Job, type Processor, type ProcessorInfo } from './types.js'

/**
 * Built in: returns the job's input, word by word, so streaming and per-chunk
 * payment can be seen without any model. `delayMs` paces the words.
 */
export class EchoProcessor implements Processor {
  constructor(private readonly opts: { delayMs?: number } = {}) {}

  async start(): Promise<void> {}

  async describe(): Promise<ProcessorInfo> {
    return {
      name: 'echo',
      models: ['echo'],
      output: 'text/plain',
      paramsSchema: {
        type: 'object',
        properties: { repeat: { type: 'string', pattern: '^[1-9][0-9]?$', description: 'times to repeat the input (1-99)' } },
        additionalProperties: true,
      },
      features: ['streaming'],
    }
  }

  async *run(job: Job, signal: AbortSignal): AsyncIterable<Chunk> {
    const repeat = Number(job.params.repeat ?? '1')
    const text = Array.from({ length: Number.isInteger(repeat) && repeat > 0 ? Math.min(repeat, 99) : 1 }, () => jobText(job)).join(' ')
    const words = text.split(/(?<=\s)/)
    for (const w of words) {
      if (signal.aborted) return
      if (this.opts.delayMs) await new Promise((r) => setTimeout(r, this.opts.delayMs))
      yield w
    }
  }
}
