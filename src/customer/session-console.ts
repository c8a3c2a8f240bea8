import { createInterface } from 'node:readline'
import type { RentedSession } from './session-runner.js'
import type { SessionSummary } from './session-client.js'
import { localTime } from '../util/local-time.js'

function fmtTime(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

/**
 * What `dvm-session` shows: a live status line (or JSON lines with --json),
 * and a prompt with `status`, `skill`, `generate <prompt>`, `quit`.
 */
export class SessionConsole {
  private readonly live: boolean

  constructor(
    private readonly json: boolean,
    private readonly balance: () => Promise<number>,
  ) {
    this.live = !json && Boolean(process.stderr.isTTY)
  }

  emit(type: string, data: Record<string, unknown>, human?: string): void {
    if (this.json) process.stdout.write(JSON.stringify({ type, ...data }) + '\n')
    else if (human) {
      if (this.live) process.stderr.write('\r\x1b[2K')
      process.stderr.write(human + '\n')
    }
  }

  attach(s: RentedSession): void {
    s.on('chosen', (c: { pubkey: string }) => this.emit('chosen', c, `chose provider ${c.pubkey.slice(0, 16)}… from its NIP-89 handler on the relays`))
    s.on('passed-over', (e: { provider: string; reason: string }) => this.emit('passed-over', e, `passed over provider ${e.provider.slice(0, 16)}… (${e.reason}); looking for another`))
    s.on('connected', (l: { pubkey: string }) => this.emit('connected', { provider: l.pubkey }, `connected to provider ${l.pubkey.slice(0, 16)}… (identity verified on this connection)`))
    s.on('open', (a: { tickMs: number; session: string }) => {
      const p = s.skill.pricing
      this.emit('open', { session: a.session, perMinute: p.perMinute, tickMs: a.tickMs }, `session open: ${p.perMinute} sats/minute (1 sat every ${(a.tickMs / 1000).toFixed(2)} s), budget ${s.client.budgetLeft} sats`)
    })
    s.on('locked', (e: { count: number; locktime: number }) => this.emit('locked', e, `locked ${e.count} sats to the provider in one swap (refundable after ${localTime(e.locktime)})`))
    s.on('tick', (e: { sent: number }) => this.emit('tick', e))
    s.on('ack', (e: { paid: number; paidUntil: number }) => {
      this.emit('ack', e)
      this.drawStatus(s)
    })
    s.on('refuse', (e: { code: string; reason: string }) => this.emit('refuse', e, `provider refused a payment (${e.code}): ${e.reason}`))
    s.on('proxy', (p: { url: string; port: number }) => this.emit('proxy', { url: p.url, port: p.port }, `open ${p.url} in a browser (tunnelled to the provider, paid per tick)`))
    s.on('reconnecting', (e: { reason: string; withinMs: number }) => this.emit('reconnecting', e, `connection lost (${e.reason}); reconnecting to the same provider for up to ${Math.round(e.withinMs / 1000)} s, paying nothing meanwhile…`))
    s.on('reconnected', () => this.emit('reconnected', {}, 'reconnected; session resumed'))
    s.on('lock-error', (e: { error: string }) => this.emit('lock-error', e, `could not lock the next batch of proofs: ${e.error}`))
  }

  private drawStatus(s: RentedSession): void {
    if (!this.live) return
    const c = s.client
    const perTick = c.accept?.tickMs ?? 1000
    const timeLeft = c.budgetLeft * perTick + Math.max(0, c.paidUntil - Date.now())
    process.stderr.write(`\r\x1b[2K  ticks ${c.spent}  spent ${c.spent} sats  budget left ${c.budgetLeft} sats  time left ${fmtTime(timeLeft)}`)
  }

  async status(s: RentedSession): Promise<void> {
    const c = s.client
    const balance = await this.balance().catch(() => NaN)
    const data = { session: c.id, spent: c.spent, sent: c.sent, budgetLeft: c.budgetLeft, paidUntil: c.paidUntil, balance, proxy: s.proxy?.url ?? null }
    this.emit('status', data, `session ${c.id.slice(0, 8)}: spent ${c.spent} sats, budget left ${c.budgetLeft}, wallet ${balance} sats${s.proxy ? `, proxy ${s.proxy.url}` : ''}`)
  }

  end(summary: SessionSummary, balance: number): void {
    const refund = summary.lockedUnsent > 0
      ? `${summary.lockedUnsent} sats locked to the provider but unsent come back after ${localTime(summary.refundAt ?? 0)} (run \`dvm-wallet balance\` after that time to reclaim them)`
      : 'nothing left locked'
    this.emit('end', { ...summary, balance }, `session ended (${summary.reason}): spent ${summary.spent} sats; ${refund}; wallet balance ${balance} sats`)
  }

  /** The interactive prompt; `onQuit` ends the session. EOF on stdin is not a quit (scripts run without stdin). */
  prompt(s: RentedSession, handlers: { onQuit: () => void; onGenerate?: (prompt: string) => Promise<void> }): () => void {
    const rl = createInterface({ input: process.stdin, terminal: false })
    rl.on('line', (line) => {
      const [cmd, ...rest] = line.trim().split(/\s+/)
      switch (cmd) {
        case '':
          return
        case 'status':
          void this.status(s)
          return
        case 'skill':
          this.emit('skill', { skill: s.skill }, JSON.stringify(s.skill, null, 2))
          return
        case 'generate':
          if (!handlers.onGenerate) return this.emit('error', { error: 'generate is not available' }, 'generate is not available in this session')
          handlers.onGenerate(rest.join(' ')).catch((err: Error) => this.emit('error', { error: err.message }, `generate failed: ${err.message}`))
          return
        case 'quit':
        case 'exit':
          handlers.onQuit()
          return
        default:
          this.emit('error', { error: `unknown command ${cmd}` }, `unknown command "${cmd}"; try status, skill, generate <prompt>, quit`)
      }
    })
    return () => rl.close()
  }

}
