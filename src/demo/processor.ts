import { EchoProcessor } from '../processors/echo.js'
import { createProcessor } from '../processors/index.js'
import { ollamaHost } from '../processors/ollama.js'
import type { Processor } from '../processors/types.js'

export type DemoProcessorChoice = 'auto' | 'echo' | 'ollama'

export interface PickedProcessor {
  processor: Processor
  /** what the page and the terminal call it, e.g. `ollama · llama3.2:latest` */
  label: string
  /** why this one was chosen, for the terminal */
  note: string
}

/** Delay between echoed words, so the stream is visibly a stream. */
const ECHO_DELAY_MS = 45

function echo(note: string): PickedProcessor {
  return { processor: new EchoProcessor({ delayMs: ECHO_DELAY_MS }), label: 'echo (built in)', note }
}

/** Does an Ollama server answer at `host`? A quick probe: most machines have none, and the demo must not wait on it. */
async function ollamaAnswers(host: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(`${host}/api/tags`, { signal: AbortSignal.timeout(timeoutMs) })
    await res.body?.cancel()
    return res.ok
  } catch {
    return false
  }
}

/**
 * The processor behind the demo's chat: a local Ollama if one answers (or
 * OLLAMA_HOST points at one), otherwise the built-in echo processor. A
 * broken Ollama (no models, wrong host) falls back to echo with the reason,
 * unless `ollama` was asked for explicitly, which then fails with it.
 */
export async function pickDemoProcessor(opts: { choice?: DemoProcessorChoice; env?: NodeJS.ProcessEnv; probeTimeoutMs?: number } = {}): Promise<PickedProcessor> {
  const choice = opts.choice ?? 'auto'
  const env = opts.env ?? process.env
  if (choice === 'echo') return echo('echo processor, as asked')
  let host: string
  try {
    host = ollamaHost(env.OLLAMA_HOST)
  } catch {
    if (choice === 'ollama') throw new Error(`OLLAMA_HOST="${env.OLLAMA_HOST}" is not a host, host:port or URL; fix it or unset it`)
    return echo(`OLLAMA_HOST="${env.OLLAMA_HOST}" is not a valid address; using the built-in echo processor`)
  }
  if (choice === 'auto' && !(await ollamaAnswers(host, opts.probeTimeoutMs ?? 800))) {
    return echo(`no Ollama at ${host}; using the built-in echo processor (start \`ollama serve\` to chat with a local model)`)
  }
  try {
    const processor = await createProcessor({ spec: 'ollama', env })
    await processor.start()
    const model = (await processor.describe()).models[0] ?? '?'
    return { processor, label: `ollama · ${model}`, note: `Ollama at ${host}, model ${model}` }
  } catch (err) {
    if (choice === 'ollama') throw err
    return echo(`Ollama at ${host} is not usable (${(err as Error).message}); using the built-in echo processor`)
  }
}
