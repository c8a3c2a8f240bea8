import type { Identity } from '../identity/nostr-key.js'
import { loadOrCreatePaymentKey } from '../payments/payment-key.js'
import { Wallet } from '../payments/wallet.js'
import type { JobInput } from '../processors/types.js'
import { buyP2PJob } from './buy-job.js'
import { chooseFromRelays } from './discovery.js'
import { emptyWalletError, reclaimExpiredLocks, walletFunds } from './wallet-funds.js'

export interface P2PCommandOptions {
  identity: Identity
  dataDir: string
  mintUrl: string
  kind: number
  input: JobInput[]
  params: Record<string, string>
  output?: string
  budget: number
  /** most sats per 100 chunks of output */
  maxPrice?: number
  providerPubkey?: string
  bootstrap?: Array<{ host: string; port: number }>
  relays?: string[]
  timeoutMs: number
  json: boolean
  /** the flags that name this wallet (--data-dir, --devnet or --mint), for hints the user can paste */
  walletFlags: string
  /** how long the proofs locked to the provider stay its (s) */
  lockSeconds?: number
}

/**
 * `dvm-customer --via=p2p`: one streamed job from a provider on the kind's
 * swarm topic, paid per chunk from the wallet, output printed as it arrives.
 * Resolves with the exit code.
 */
export async function runP2PCommand(o: P2PCommandOptions): Promise<number> {
  const line = (obj: Record<string, unknown>) => o.json && process.stdout.write(JSON.stringify(obj) + '\n')
  const note = (s: string) => !o.json && process.stderr.write(s + '\n')
  const wallet = new Wallet({ dataDir: o.dataDir, mintUrl: o.mintUrl })
  await wallet.load()
  const refundKey = await loadOrCreatePaymentKey(o.dataDir)
  // earlier jobs' unsent proofs whose locktime has passed are ours again
  const back = await reclaimExpiredLocks(wallet, refundKey).catch(() => null)
  if (back?.reclaimed) note(`reclaimed ${back.reclaimed} sats from earlier jobs' and sessions' unsent proofs`)
  const { balance } = await wallet.balance()
  if (balance < 1) throw await emptyWalletError(wallet, { amount: o.budget, walletFlags: o.walletFlags })
  const chosen = o.relays?.length ? await chooseFromRelays(o.relays, o.kind, { providerPubkey: o.providerPubkey, mint: o.mintUrl }) : null
  const ac = new AbortController()
  const timer = setTimeout(() => ac.abort(), o.timeoutMs)
  const onSigint = () => ac.abort()
  process.once('SIGINT', onSigint)
  try {
    const r = await buyP2PJob({
      identity: o.identity,
      funds: walletFunds(wallet, o.mintUrl, refundKey),
      kind: o.kind,
      input: o.input,
      params: o.params,
      output: o.output,
      budget: Math.min(o.budget, balance),
      lockSeconds: o.lockSeconds,
      bootstrap: o.bootstrap,
      providerPubkey: chosen?.pubkey ?? o.providerPubkey,
      providerSwarmKey: chosen?.swarmKey,
      minChunksPerSat: o.maxPrice ? Math.ceil(100 / o.maxPrice) : undefined,
      connectTimeoutMs: Math.min(o.timeoutMs, 30_000),
      signal: ac.signal,
      onProvider: (p) => {
        line({ type: 'provider', pubkey: p.pubkey, chunksPerSat: p.chunksPerSat })
        note(`provider ${p.pubkey.slice(0, 16)}… (identity verified), ${p.chunksPerSat} chunks per sat`)
      },
      onChunk: (text, seq) => (o.json ? line({ type: 'chunk', seq, data: text }) : process.stdout.write(text)),
    })
    if (!o.json && r.output && !r.output.endsWith('\n')) process.stdout.write('\n')
    line({ type: 'result', status: r.status, chunks: r.chunks, paid: r.paid, content: r.output, ...(r.error ? { error: r.error } : {}) })
    note(`${r.status}: ${r.chunks} chunks for ${r.paid} sats${r.error ? ` (${r.error})` : ''}`)
    // a budget cut-off is an answer the customer asked for; anything else that is not success is a failure
    return r.status === 'success' || r.status === 'budget' ? 0 : 1
  } finally {
    clearTimeout(timer)
    process.off('SIGINT', onSigint)
  }
}
