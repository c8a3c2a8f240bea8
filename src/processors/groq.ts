import Groq from 'groq-sdk'
import type { ChatCompletionCreateParamsStreaming } from 'groq-sdk/resources/chat/completions'
import { chatInfo, chatMessages, streamChat } from './chat.js'
import { isUnreachable, networkReason, safeUrl } from './net.js'
import { defineParams, enumParam, integerParam, numberParam, stringParam, type ParamSpec } from './params.js'
import type { Chunk, Job, Processor, ProcessorInfo } from './types.js'

export interface GroqOptions {
  /** GROQ_API_KEY */
  apiKey?: string
  /** GROQ_BASE_URL; default https://api.groq.com */
  baseURL?: string
  /** the model used when a job does not name one (`--model`) */
  model?: string
  /** retries of a failed request before any output (the SDK's default is 2) */
  maxRetries?: number
  /** how long start() and describe() wait, ms (default 10000) */
  checkTimeoutMs?: number
}

const DEFAULT_BASE_URL = 'https://api.groq.com'

/**
 * /openai/v1/models lists every model on the account, including speech,
 * text-to-speech and guard models that cannot hold a chat; those are left out
 * of the skill so customers only see models that can run a text job.
 */
const NOT_CHAT = /whisper|tts|orpheus|guard|distil-whisper/i

function paramSpecs(models: readonly string[], defaultModel: string | undefined) {
  return {
    model: enumParam(models, 'Groq model to use', defaultModel),
    max_tokens: integerParam(1, 131072, 'most tokens to generate (max_completion_tokens)'),
    temperature: numberParam(0, 2, 'sampling temperature'),
    top_p: numberParam(0, 1, 'nucleus sampling probability mass'),
    seed: integerParam(0, 2147483647, 'random seed, for repeatable output'),
    system: stringParam(8000, 'system prompt placed before the input'),
  } satisfies Record<string, ParamSpec>
}

/** Open model list at run time: Groq itself answers "model does not exist" for the rest. */
const RUN_PARAMS = defineParams(paramSpecs([], undefined))

interface GroqErrorBody {
  error?: { message?: string; code?: string } | string
  message?: string
}

/** The human part of a Groq error: its JSON body's message, not the whole body. */
function groqMessage(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const body = (err as { error?: unknown }).error as GroqErrorBody | undefined
  const inner = body && typeof body === 'object' ? (typeof body.error === 'object' ? body.error?.message : typeof body.error === 'string' ? body.error : body.message) : undefined
  return inner ?? err.message
}

/**
 * Groq's OpenAI-compatible chat completions, streamed over SSE with the
 * official `groq-sdk`. The SDK retries a failed request before any output;
 * once tokens flow, a failure fails the job.
 */
export class GroqProcessor implements Processor {
  readonly baseURL: string
  private offered: string[] = []

  constructor(private readonly opts: GroqOptions = {}) {
    this.baseURL = (opts.baseURL || DEFAULT_BASE_URL).replace(/\/+$/, '')
  }

  private client(timeout?: number): Groq {
    return new Groq({
      apiKey: this.opts.apiKey ?? '',
      baseURL: this.baseURL,
      maxRetries: this.opts.maxRetries ?? 2,
      ...(timeout === undefined ? {} : { timeout }),
      // Errors reach the operator through the job's failure message, not the SDK's console logger.
      logLevel: 'off',
    })
  }

  async start(): Promise<void> {
    if (!this.opts.apiKey) {
      throw new Error('GROQ_API_KEY is not set; create a key at https://console.groq.com/keys and export GROQ_API_KEY=…')
    }
    const models = await this.listModels()
    const wanted = this.opts.model
    if (wanted && !models.includes(wanted)) {
      throw new Error(`Groq does not offer model "${wanted}" to this key (chat models: ${models.join(', ') || 'none'}); choose one of those with --model`)
    }
    if (models.length === 0) throw new Error('Groq lists no chat models for this key; check the account at https://console.groq.com')
    this.offered = models
  }

  async describe(): Promise<ProcessorInfo> {
    const offered = await this.listModels()
    return chatInfo('groq', offered, this.opts.model ?? offered[0], (models, def) => defineParams(paramSpecs(models, def)).schema)
  }

  async *run(job: Job, signal: AbortSignal): AsyncIterable<Chunk> {
    const p = RUN_PARAMS.parse(job.params)
    const model = p.model ?? this.opts.model ?? this.offered[0]
    if (!model) throw new Error('no model chosen: start the provider with --model or send the model param')
    if (signal.aborted) return

    const body: ChatCompletionCreateParamsStreaming = { model, messages: chatMessages(p.system, job), stream: true }
    if (p.max_tokens !== undefined) body.max_completion_tokens = p.max_tokens
    if (p.temperature !== undefined) body.temperature = p.temperature
    if (p.top_p !== undefined) body.top_p = p.top_p
    if (p.seed !== undefined) body.seed = p.seed

    let finished = false
    yield* streamChat(signal, {
      open: (local) => this.client().chat.completions.create(body, { signal: local }),
      text: (chunk) => {
        const choice = chunk.choices[0]
        if (choice?.finish_reason) finished = true
        return choice?.delta?.content ?? undefined
      },
      // A body that ends without a finish_reason was cut short (a proxy or server died cleanly):
      // do not report a partial answer as a complete one.
      ended: () => {
        if (!finished) throw new Error('the stream ended before the reply was complete')
      },
      explain: (err, midReply) => this.explain(err, model, midReply),
    })
  }

  /** Chat-capable models offered to this key; also proves the key works. */
  private async listModels(): Promise<string[]> {
    if (!this.opts.apiKey) throw new Error('GROQ_API_KEY is not set; create a key at https://console.groq.com/keys and export GROQ_API_KEY=…')
    try {
      const res = await this.client(this.opts.checkTimeoutMs ?? 10_000).models.list()
      return res.data
        .filter((m) => (m as { active?: boolean }).active !== false && !NOT_CHAT.test(m.id))
        .map((m) => m.id)
        .sort()
    } catch (err) {
      const status = (err as { status?: number }).status
      if (status === 401 || status === 403) {
        throw new Error(`Groq rejected the API key in GROQ_API_KEY (${status}: ${groqMessage(err)}); check it at https://console.groq.com/keys`)
      }
      if (status) throw new Error(`Groq at ${safeUrl(this.baseURL)} answered ${status} to GET /openai/v1/models (${groqMessage(err)})`)
      throw new Error(`cannot reach Groq at ${safeUrl(this.baseURL)} (${networkReason((err as { cause?: unknown }).cause ?? err)}); check the network or GROQ_BASE_URL`)
    }
  }

  /** A job's failure reaches the customer: it names no address or key, only what went wrong. */
  private explain(err: unknown, model: string, midReply: boolean): string {
    const status = (err as { status?: number }).status
    if (status === 401 || status === 403) return `Groq rejected the API key (${status}: ${groqMessage(err)})`
    if (status === 404) return `Groq has no model "${model}" (${groqMessage(err)})`
    if (status === 429) return `Groq rate-limited this job (${groqMessage(err)}); try again later`
    if (status) return `Groq answered ${status} for model "${model}": ${groqMessage(err)}`
    if (err instanceof Error && (err.name === 'APIConnectionError' || err.name === 'APIConnectionTimeoutError' || err instanceof TypeError)) {
      const why = networkReason((err as { cause?: unknown }).cause ?? err)
      if (!midReply && isUnreachable(why)) return `cannot reach Groq (${why})`
      return `the connection to Groq broke ${midReply ? 'mid-reply' : 'before the reply started'} (${why})`
    }
    // `data: {"error": …}` inside the stream, or a cut stream.
    return `Groq failed while generating with model "${model}": ${groqMessage(err)}`
  }
}
