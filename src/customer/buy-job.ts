import type { Identity } from '../identity/nostr-key.js'
import type { JobInput } from '../processors/types.js'
import { SkillValidator } from '../skills/validate.js'
import { connectToProvider } from './connect.js'
import { runP2PJob, type P2PJobResult } from './p2p-job.js'
import { SessionClient } from './session-client.js'
import type { SessionFunds } from './session-funds.js'

export interface BuyJobOptions {
  identity: Identity
  funds: SessionFunds
  kind: number
  input: JobInput[]
  params?: Record<string, string>
  output?: string
  /** most sats to spend on this job */
  budget: number
  bootstrap?: Array<{ host: string; port: number }>
  providerPubkey?: string
  providerSwarmKey?: string
  /** refuse providers giving fewer chunks per sat */
  minChunksPerSat?: number
  onChunk?: (text: string, seq: number) => void
  onProvider?: (info: { pubkey: string; chunksPerSat: number }) => void
  signal?: AbortSignal
  connectTimeoutMs?: number
  stallMs?: number
  lockSeconds?: number
}

/**
 * Buy one streamed job over P2P: find a provider, check its skill accepts
 * these params before paying anything, run the job paid per chunk, end the
 * session. Used by `dvm-customer --via=p2p` and by providers buying sub-jobs.
 */
export async function buyP2PJob(opts: BuyJobOptions, validator = new SkillValidator()): Promise<P2PJobResult> {
  const { swarm, link } = await connectToProvider({
    identity: opts.identity,
    bootstrap: opts.bootstrap,
    kind: opts.kind,
    providerPubkey: opts.providerPubkey,
    providerSwarmKey: opts.providerSwarmKey,
    timeoutMs: opts.connectTimeoutMs,
  })
  try {
    const problems = validator.checkParams(link.skill, opts.params ?? {})
    if (problems.length) throw new Error(`the provider would refuse these params, nothing was paid: ${problems.join('; ')}`)
    opts.onProvider?.({ pubkey: link.pubkey, chunksPerSat: link.skill.pricing.chunksPerSat })
    const client = new SessionClient({
      peer: link.peer,
      skill: link.skill,
      kind: opts.kind,
      mode: 'job',
      budget: opts.budget,
      funds: opts.funds,
      minChunksPerSat: opts.minChunksPerSat,
      lockSeconds: opts.lockSeconds,
    })
    await client.open()
    const result = await runP2PJob(client, { kind: opts.kind, input: opts.input, params: opts.params, output: opts.output }, {
      onChunk: opts.onChunk,
      signal: opts.signal,
      stallMs: opts.stallMs,
    })
    client.end(`job ${result.status}`)
    // let the provider see the end (so it redeems now) before the swarm goes
    await Promise.all([client.settle(), link.peer.end()])
    return result
  } finally {
    await swarm.destroy().catch(() => {})
  }
}
