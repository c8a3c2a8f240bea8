/**
 * What the chat-model processors (ollama.ts, groq.ts) do alike: the skill they
 * describe, the messages a job becomes, and the streamed request's life cycle
 * (tied to the job's signal, failures explained in one sentence). Each keeps
 * its own client, params and error wording.
 */
import { isAbortError } from './net.js'
import { jobText, type Job, type ProcessorInfo } from './types.js'

/**
 * The skill of a chat processor: the models it can run with the default
 * first (a customer reading the skill sees what it gets without asking), and
 * the params schema for exactly those models.
 */
export function chatInfo(
  name: string,
  listed: readonly string[],
  defaultModel: string | undefined,
  schemaFor: (models: readonly string[], defaultModel: string | undefined) => Record<string, unknown>,
): ProcessorInfo {
  const models = defaultModel ? [defaultModel, ...listed.filter((m) => m !== defaultModel)] : [...listed]
  return { name, models, output: 'text/plain', paramsSchema: schemaFor(models, defaultModel), features: ['streaming', 'chat'] }
}

/** The job as a chat: an optional system prompt, then the job's text as the user's message. */
export function chatMessages(system: string | undefined, job: Job): Array<{ role: 'system' | 'user'; content: string }> {
  const messages: Array<{ role: 'system' | 'user'; content: string }> = []
  if (system) messages.push({ role: 'system', content: system })
  messages.push({ role: 'user', content: jobText(job) })
  return messages
}

export interface ChatStream<P> {
  /** Send the request; `signal` aborts when the job's does and when the consumer stops reading. */
  open(signal: AbortSignal): Promise<AsyncIterable<P>>
  /** The text in one streamed part, if any. */
  text(part: P): string | undefined
  /** After the last part (job not aborted): throw if the reply was not complete. */
  ended?(): void
  /** One sentence for the customer; `midReply` once any part has arrived. */
  explain(err: unknown, midReply: boolean): string
}

/**
 * Stream one chat reply for a job. Stops quietly when the job's signal aborts;
 * any other failure becomes an Error with `explain`'s sentence. The request is
 * aborted on the way out in every case, so a consumer that stops iterating
 * closes the connection too.
 */
export async function* streamChat<P>(signal: AbortSignal, s: ChatStream<P>): AsyncIterable<string> {
  const local = new AbortController()
  const onAbort = () => local.abort()
  signal.addEventListener('abort', onAbort, { once: true })
  let received = false
  try {
    const stream = await s.open(local.signal)
    for await (const part of stream) {
      if (signal.aborted) return
      received = true
      const text = s.text(part)
      if (text) yield text
    }
    if (signal.aborted) return
    s.ended?.()
  } catch (err) {
    if (signal.aborted || isAbortError(err)) return
    throw new Error(s.explain(err, received))
  } finally {
    signal.removeEventListener('abort', onAbort)
    local.abort()
  }
}
