import { randomBytes } from 'node:crypto'
import type { ControlMessage } from '../wire/protocol.js'
import type { JobInput } from '../processors/types.js'
import type { SessionClient } from './session-client.js'

export interface P2PJobRequest {
  kind: number
  input: JobInput[]
  params?: Record<string, string>
  output?: string
}

export interface P2PJobResult {
  job: string
  status: 'success' | 'error' | 'cancelled' | 'budget' | 'stalled'
  chunks: number
  /** sats acknowledged by the provider in this session when the job ended */
  paid: number
  output: string
  error?: string
}

/**
 * Run one job over an open session. In a job session output is paid per chunk
 * as it arrives: one sat up front, then one more each time the paid-for chunks
 * have all been received, so we never pay for more than one batch not yet seen.
 * A provider that stops sending after being paid is caught by `stallMs`.
 */
export function runP2PJob(
  client: SessionClient,
  req: P2PJobRequest,
  opts: { onChunk?: (text: string, seq: number) => void; stallMs?: number; signal?: AbortSignal } = {},
): Promise<P2PJobResult> {
  const id = randomBytes(8).toString('hex')
  const accept = client.accept
  if (!accept) return Promise.reject(new Error('open the session first'))
  const perTick = accept.chunksPerTick
  const jobMode = client.mode === 'job'
  const stallMs = opts.stallMs ?? 30_000
  let received = 0
  let output = ''
  let paying = false

  return new Promise<P2PJobResult>((resolve) => {
    let stallTimer: NodeJS.Timeout | null = null
    let finished = false
    const finish = (status: P2PJobResult['status'], error?: string) => {
      if (finished) return
      finished = true
      if (stallTimer) clearTimeout(stallTimer)
      client.connection.off('message', onMsg)
      client.off('end', onEnd)
      opts.signal?.removeEventListener('abort', onAbort)
      resolve({ job: id, status, chunks: received, paid: client.spent, output, error })
    }
    const armStall = () => {
      if (stallTimer) clearTimeout(stallTimer)
      stallTimer = setTimeout(() => {
        client.send({ type: 'cancel', job: id })
        finish('stalled', `provider sent nothing for ${Math.round(stallMs / 1000)} s after being paid; stopped paying`)
      }, stallMs)
    }
    // pay for the next batch once everything paid for so far has arrived
    const maybePay = async (): Promise<void> => {
      if (!jobMode || paying || finished) return
      if (received < client.spent * perTick || client.budgetLeft <= 0) return
      paying = true
      let ok = false
      try {
        ok = await client.payOne()
        if (ok) armStall()
      } catch (err) {
        client.send({ type: 'cancel', job: id })
        finish('error', `payment failed: ${(err as Error).message}`)
      } finally {
        paying = false
      }
      // chunks (and `due`) that arrived while we were paying were not acted on: look again,
      // but only after a payment went through (a refused one would just repeat forever)
      if (ok) void maybePay()
    }
    const onMsg = (m: ControlMessage) => {
      if (!('job' in m) || m.job !== id) return
      if (m.type === 'chunk') {
        const text = m.encoding === 'base64' ? Buffer.from(m.data, 'base64').toString('utf8') : m.data
        output += text
        opts.onChunk?.(text, m.seq)
        received += 1
        armStall()
        void maybePay()
      } else if (m.type === 'due') {
        void maybePay()
      } else if (m.type === 'done') {
        finish(m.status, m.error)
      }
    }
    const onEnd = () => finish('error', 'session ended before the job finished')
    const onAbort = () => {
      client.send({ type: 'cancel', job: id })
    }
    client.connection.on('message', onMsg)
    client.once('end', onEnd)
    opts.signal?.addEventListener('abort', onAbort)

    const start = async () => {
      if (jobMode && client.spent === 0) {
        const ok = await client.payOne()
        if (!ok) return finish('error', 'the provider did not accept the first payment')
      }
      client.send({ type: 'job', job: id, session: client.id, kind: req.kind, input: req.input, params: req.params ?? {}, output: req.output })
      armStall()
    }
    start().catch((err: Error) => finish('error', err.message))
  })
}
