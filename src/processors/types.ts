/**
 * A processor turns a job into output. Every transport (P2P job, relay job,
 * session `generate`) drives processors through this one interface.
 */
export interface JobInput {
  /** NIP-90 input types: text, url, event, job */
  type: 'text' | 'url' | 'event' | 'job'
  value: string
  relay?: string
  marker?: string
}

export interface Job {
  /** a stable id: the request event id for relay jobs, a random id for P2P jobs */
  id: string
  kind: number
  input: JobInput[]
  /** `param` tags / the P2P job's params; values are strings on the wire */
  params: Record<string, string>
  /** requested output MIME type, if any */
  output?: string
  /** hex pubkey of whoever asked */
  customer: string
}

/** One piece of output, produced as the processor goes. */
export type Chunk = string | Uint8Array

export interface ProcessorInfo {
  name: string
  /** models or resources this processor offers (for the skill descriptor) */
  models: string[]
  /** MIME type of the output */
  output: string
  /** JSON Schema of the params this processor honours */
  paramsSchema: Record<string, unknown>
  features: string[]
}

export interface Processor {
  /** Check the processor can work (service reachable, key present, command found); throw one clear sentence if not. */
  start(): Promise<void>
  describe(): Promise<ProcessorInfo>
  /** Stream the job's output. Must stop promptly when `signal` aborts. */
  run(job: Job, signal: AbortSignal): AsyncIterable<Chunk>
  stop?(): Promise<void>
}

/** The text a job is about: its text inputs joined, or the first input's value. */
export function jobText(job: Job): string {
  const texts = job.input.filter((i) => i.type === 'text').map((i) => i.value)
  return texts.length > 0 ? texts.join('\n') : (job.input[0]?.value ?? '')
}
