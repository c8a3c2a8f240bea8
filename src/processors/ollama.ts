import { Ollama, type Options } from 'ollama'
import { chatInfo, chatMessages, streamChat } from './chat.js'
import { fetchWithSignal, fetchWithTimeout, isUnreachable, networkReason } from './net.js'
import { defineParams, enumParam, integerParam, numberParam, stringParam, type ParamSpec } from './params.js'
import type { Chunk, Job, Processor, ProcessorInfo } from './types.js'

export interface OllamaOptions {
  /** OLLAMA_HOST: `host`, `host:port`, `:port` or a URL; default http://127.0.0.1:11434 */
  host?: string
  /** the model used when a job does not name one (`--model`) */
  model?: string
  /** how long start() and describe() wait for the server, ms (default 5000) */
  checkTimeoutMs?: number
}

const DEFAULT_PORT = '11434'

/** OLLAMA_HOST as the ollama CLI reads it, as a base URL for messages and the client. */
export function ollamaHost(raw: string | undefined): string {
  let host = (raw ?? '').trim()
  if (host === '') return `http://127.0.0.1:${DEFAULT_PORT}`
  let explicit = host.includes('://')
  if (host.startsWith(':')) {
    host = `http://127.0.0.1${host}`
    explicit = true
  }
  const url = new URL(explicit ? host : `http://${host}`)
  if (!url.port && !explicit) url.port = DEFAULT_PORT
  return url.toString().replace(/\/$/, '')
}

function paramSpecs(models: readonly string[], defaultModel: string | undefined) {
  return {
    model: enumParam(models, 'installed Ollama model to use', defaultModel),
    max_tokens: integerParam(1, 131072, 'most tokens to generate (Ollama num_predict)'),
    temperature: numberParam(0, 2, 'sampling temperature'),
    top_p: numberParam(0, 1, 'nucleus sampling probability mass'),
    top_k: integerParam(1, 1000, 'sample from the k most likely tokens'),
    seed: integerParam(0, 2147483647, 'random seed, for repeatable output'),
    system: stringParam(8000, 'system prompt placed before the input'),
  } satisfies Record<string, ParamSpec>
}

/**
 * Jobs are checked against an open model list: models pulled after start-up
 * are usable, and Ollama itself answers "model not found" for the rest. The
 * skill's schema (describe) lists the installed ones so customers can choose.
 */
const RUN_PARAMS = defineParams(paramSpecs([], undefined))

/** Does `installed` hold `wanted`? "llama3.2" means "llama3.2:latest", as in the ollama CLI. */
function hasModel(installed: readonly string[], wanted: string): boolean {
  const full = wanted.includes(':') ? wanted : `${wanted}:latest`
  return installed.some((m) => m === wanted || m === full)
}

/**
 * Local models through Ollama's /api/chat, streamed token by token with the
 * official `ollama` client. Each job gets its own client whose fetch is tied
 * to the job's signal, so cancelling a job closes exactly that connection.
 */
export class OllamaProcessor implements Processor {
  readonly host: string
  /** what start() found installed: the default model when neither the job nor --model names one */
  private installed: string[] = []

  constructor(private readonly opts: OllamaOptions = {}) {
    this.host = ollamaHost(opts.host)
  }

  async start(): Promise<void> {
    const models = await this.listModels()
    if (models.length === 0) {
      throw new Error(`Ollama at ${this.host} has no models installed; pull one first, e.g. \`ollama pull llama3.2\``)
    }
    const wanted = this.opts.model
    if (wanted && !hasModel(models, wanted)) {
      throw new Error(`Ollama at ${this.host} does not have model "${wanted}" (installed: ${models.join(', ')}); run \`ollama pull ${wanted}\` or choose one of those with --model`)
    }
    this.installed = models
  }

  async describe(): Promise<ProcessorInfo> {
    const installed = await this.listModels()
    return chatInfo('ollama', installed, this.defaultModel(installed), (models, def) => defineParams(paramSpecs(models, def)).schema)
  }

  async *run(job: Job, signal: AbortSignal): AsyncIterable<Chunk> {
    const p = RUN_PARAMS.parse(job.params)
    const model = p.model ?? this.defaultModel(this.installed)
    if (!model) throw new Error('no model chosen: start the provider with --model or send the model param')
    if (signal.aborted) return

    const options: Partial<Options> = {}
    if (p.max_tokens !== undefined) options.num_predict = p.max_tokens
    if (p.temperature !== undefined) options.temperature = p.temperature
    if (p.top_p !== undefined) options.top_p = p.top_p
    if (p.top_k !== undefined) options.top_k = p.top_k
    if (p.seed !== undefined) options.seed = p.seed

    yield* streamChat(signal, {
      // A client per job, its fetch tied to the job: aborting closes exactly this connection.
      open: (local) => new Ollama({ host: this.host, fetch: fetchWithSignal(local) }).chat({ model, messages: chatMessages(p.system, job), options, stream: true }),
      text: (part) => part.message?.content,
      explain: (err, midReply) => this.explain(err, model, midReply),
    })
  }

  private defaultModel(installed: readonly string[]): string | undefined {
    return this.opts.model ?? installed[0]
  }

  private async listModels(): Promise<string[]> {
    const client = new Ollama({ host: this.host, fetch: fetchWithTimeout(this.opts.checkTimeoutMs ?? 5000) })
    try {
      const res = await client.list()
      return res.models.map((m) => m.name)
    } catch (err) {
      if (err instanceof Error && err.name === 'ResponseError') {
        throw new Error(`Ollama at ${this.host} answered ${(err as { status_code?: number }).status_code ?? '?'} to GET /api/tags (${err.message}); is OLLAMA_HOST pointing at an Ollama server?`)
      }
      throw new Error(`cannot reach Ollama at ${this.host} (${networkReason(err)}); start it with \`ollama serve\` or set OLLAMA_HOST`)
    }
  }

  /** A job's failure reaches the customer: it names no internal address, only what went wrong. */
  private explain(err: unknown, model: string, midReply: boolean): string {
    if (err instanceof Error && err.name === 'ResponseError') {
      const status = (err as { status_code?: number }).status_code ?? '?'
      const hint = status === 404 ? '; the skill lists the installed models' : ''
      return `Ollama refused the job for model "${model}" (${status}: ${err.message})${hint}`
    }
    if (err instanceof TypeError) {
      const why = networkReason(err)
      if (!midReply && isUnreachable(why)) return `cannot reach Ollama (${why}); is \`ollama serve\` running?`
      return `the connection to Ollama broke ${midReply ? 'mid-reply' : 'before the reply started'} (${why})`
    }
    const msg = err instanceof Error ? err.message : String(err)
    if (/did not receive done/i.test(msg)) return `Ollama's reply from model "${model}" ended before it was complete`
    // An {"error": …} line inside the stream: the model failed while generating.
    return `Ollama failed while generating with model "${model}": ${msg}`
  }
}
