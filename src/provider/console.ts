import type { Provider } from './provider.js'

/**
 * What `dvm-agent` prints: human lines on stderr, or with --json one JSON
 * object per line on stdout, each with a `type`.
 */
export class ProviderConsole {
  constructor(private readonly json: boolean) {}

  private emit(type: string, data: Record<string, unknown>, human: string): void {
    if (this.json) process.stdout.write(JSON.stringify({ type, ...data }) + '\n')
    else process.stderr.write(human + '\n')
  }

  log(message: string): void {
    this.emit('log', { message }, `  ${message}`)
  }

  ready(p: Provider): void {
    const id = p.opts.identity
    const s = p.skill
    this.emit(
      'ready',
      { npub: id.npub, pubkey: id.pubkey, swarm: p.swarmPublicKey, kinds: p.opts.kinds, pricing: s.pricing, mints: p.opts.mints, paymentPubkey: p.paymentKey.pubkey, tunnel: s.tunnel },
      [
        `provider ready for kind${p.opts.kinds.length > 1 ? 's' : ''} ${p.opts.kinds.join(', ')} (${s.name})`,
        `  npub    ${id.npub}`,
        `  pubkey  ${id.pubkey}`,
        `  swarm   ${p.swarmPublicKey}`,
        `  price   ${s.pricing.perMinute} sats/minute, ${s.pricing.chunksPerSat} chunks/sat${s.pricing.perJob ? `, ${s.pricing.perJob} sats/relay job` : ''}`,
        `  mints   ${p.opts.mints.join(', ')}`,
        s.tunnel ? `  tunnel  to ${p.gateway?.origin}` : '',
      ].filter(Boolean).join('\n'),
    )
  }

  /** At start: the provider keeps running (a backend may start later), but says sessions are refused meanwhile. */
  backendDown(backend: string, error: string): void {
    const message = `nothing accepts connections at the backend ${backend} (${error}); sessions will be refused until it answers. Start it, or fix --backend`
    this.emit('backend-down', { backend, error, message }, `warning: ${message}`)
  }

  attach(p: Provider): void {
    p.p2p.on('open-refused', (e: { session: string; customer: string; code: string; reason: string }) =>
      this.emit('open-refused', e, `refused a session from ${e.customer.slice(0, 12)}… (${e.code}): ${e.reason}`))
    p.p2p.on('session-open', (e: { id: string; customer: string; mode: string; budget: number }) =>
      this.emit('session-open', e, `session ${e.id.slice(0, 8)} opened by ${e.customer.slice(0, 12)}… (${e.mode}, budget ${e.budget} sats)`))
    p.p2p.on('tick', (e: { session: string; paid: number }) => {
      if (this.json) this.emit('tick', e, '')
    })
    p.p2p.on('tick-refused', (e: { session: string; code: string; reason: string }) =>
      this.emit('tick-refused', e, `session ${e.session.slice(0, 8)}: refused a tick (${e.code}): ${e.reason}`))
    p.p2p.on('session-end', (e: { id: string; reason: string; paid: number }) =>
      this.emit('session-end', e, `session ${e.id.slice(0, 8)} ended after ${e.paid} sats: ${e.reason}`))
    p.on('redeemed', (reports: Array<{ mintUrl: string; redeemedAmount: number; roundTrips: number; error?: string }>) => {
      for (const r of reports) {
        if (r.redeemedAmount > 0 || r.error) {
          this.emit('redeemed', r, r.error ? `redeem at ${r.mintUrl} failed (will retry): ${r.error}` : `redeemed ${r.redeemedAmount} sats at ${r.mintUrl} in ${r.roundTrips} mint round trips`)
        }
      }
    })
  }

  async stopped(p: Provider): Promise<void> {
    const { balance } = await p.wallet.balance()
    this.emit('stopped', { balance }, `provider stopped; wallet balance ${balance} sats`)
  }
}
