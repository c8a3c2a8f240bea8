import { EchoProcessor } from './echo.js'
import type { Processor } from './types.js'

export type { Processor, Job, JobInput, Chunk, ProcessorInfo } from './types.js'

export interface ProcessorSpec {
  /** `echo`, `ollama`, `groq`, `exec:<command>`, or an `http(s)://` backend */
  spec: string
  model?: string
  env?: NodeJS.ProcessEnv
}

/** Turn `--processor=…` into a processor. Throws one sentence for an unknown spec. */
export async function createProcessor(opts: ProcessorSpec): Promise<Processor> {
  const { spec } = opts
  if (spec === 'echo') return new EchoProcessor()
  throw new Error(`unknown processor "${spec}"; use echo, ollama, groq, exec:<command> or an http(s):// URL`)
}
