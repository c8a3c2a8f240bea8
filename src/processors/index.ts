import { EchoProcessor } from './echo.js'
import { ExecProcessor } from './exec.js'
import { GroqProcessor } from './groq.js'
import { HttpProcessor } from './http.js'
import { OllamaProcessor } from './ollama.js'
import type { Processor } from './types.js'

export type { Processor, Job, JobInput, Chunk, ProcessorInfo } from './types.js'
export { EchoProcessor } from './echo.js'
export { ExecProcessor, splitCommand, type ExecOptions } from './exec.js'
export { GroqProcessor, type GroqOptions } from './groq.js'
export { HttpProcessor, type HttpOptions } from './http.js'
export { OllamaProcessor, type OllamaOptions } from './ollama.js'
export { ParamError } from './params.js'

export interface ProcessorSpec {
  /** `echo`, `ollama`, `groq`, `exec:<command args…>`, or an `http(s)://` backend */
  spec: string
  /** `--model`: the default model for ollama and groq; other processors have none and ignore it */
  model?: string
  /**
   * Where settings come from (default process.env): OLLAMA_HOST, GROQ_API_KEY,
   * GROQ_BASE_URL, DVM_EXEC_TIMEOUT (seconds), DVM_EXEC_MAX_OUTPUT (bytes).
   * exec programs inherit this environment.
   */
  env?: NodeJS.ProcessEnv
}

function envInt(env: NodeJS.ProcessEnv, name: string, min: number, max: number): number | undefined {
  const raw = env[name]
  if (raw === undefined || raw === '') return undefined
  const n = Number(raw)
  if (!/^[0-9]+$/.test(raw) || n < min || n > max) throw new Error(`${name} must be a whole number from ${min} to ${max}, not "${raw}"`)
  return n
}

/**
 * Turn `--processor=…` into a processor. Only builds it: the caller runs
 * start(), which checks the service, key or command is really there. Throws
 * one sentence for a spec it does not understand.
 */
export async function createProcessor(opts: ProcessorSpec): Promise<Processor> {
  const spec = opts.spec.trim()
  const env = opts.env ?? process.env
  const model = opts.model || undefined
  if (spec === 'echo') return new EchoProcessor()
  if (spec === 'ollama') return new OllamaProcessor({ host: env.OLLAMA_HOST, model })
  if (spec === 'groq') return new GroqProcessor({ apiKey: env.GROQ_API_KEY, baseURL: env.GROQ_BASE_URL, model })
  if (spec.startsWith('exec:')) {
    const timeout = envInt(env, 'DVM_EXEC_TIMEOUT', 1, 7 * 24 * 3600)
    return ExecProcessor.fromSpec(spec, {
      env,
      ...(timeout === undefined ? {} : { timeoutMs: timeout * 1000 }),
      maxOutputBytes: envInt(env, 'DVM_EXEC_MAX_OUTPUT', 1, Number.MAX_SAFE_INTEGER),
    })
  }
  if (/^https?:\/\//i.test(spec)) return new HttpProcessor({ url: spec })
  throw new Error(`unknown processor "${opts.spec}"; use echo, ollama, groq, exec:<command> or an http(s):// URL`)
}
