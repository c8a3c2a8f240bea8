import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import type Hyperswarm from 'hyperswarm'
import type { Identity } from '../identity/nostr-key.js'
import type { SkillDescriptor } from '../skills/descriptor.js'
import { startLocalProxy, type LocalProxy } from '../tunnel/local-proxy.js'
import { TunnelRefusedError } from '../tunnel/refusal.js'
import { connectToProvider, type Connection, type ProviderLink } from './connect.js'
import { chooseFromRelays, KindNotServedError } from './discovery.js'
import { localTime } from '../util/local-time.js'
import { ProviderUnsuitable, SessionClient, type SessionSummary } from './session-client.js'
import type { SessionFunds } from './session-funds.js'

export interface RentOptions {
  identity: Identity
  funds: SessionFunds
  kind: number
  budget: number
  bootstrap?: Array<{ host: string; port: number }>
  providerPubkey?: string
  providerSwarmKey?: string
  maxPerMinute?: number
  /** local proxy port (0 = free port); null = no proxy */
  port: number | null
  host?: string
  lockSeconds?: number
  /** planned length of the session (ms), if known: limits how much is locked at once */
  expectedMs?: number
  connectTimeoutMs?: number
  /** try to get back to the same provider for this long after the connection drops (default 60 s; 0 = end the session) */
  reconnectMs?: number
  /** Nostr relays to choose a provider from (NIP-89 handlers and heartbeats); without them, the swarm topic */
  relays?: string[]
}

export const DEFAULT_RECONNECT_MS = 60_000
/** providers of the kind dvm-session tries before it gives up */
const MAX_PASS_OVER = 3
const AFTER_PASS_OVER_MS = 10_000
/** between attempts to resume with a provider that answered but refused */
const RETRY_PAUSE_MS = 2000

/**
 * `dvm-session`'s work: find and verify a provider, open a paid session, keep
 * it paid, serve the local proxy, and reconnect to the same provider if the
 * connection drops. Emits the SessionClient's events plus 'reconnected'.
 */
export class RentedSession extends EventEmitter {
  client!: SessionClient
  link!: ProviderLink
  proxy: LocalProxy | null = null
  private swarm!: Hyperswarm
  private closing = false
  private endSummary: SessionSummary | null = null
  /**
   * Settles when the provider has acknowledged a payment since the session
   * (re)opened. New tunnel streams wait for it: a browser that asks right
   * after start, or while the session reconnects, gets its page a moment
   * later instead of the provider's 402.
   */
  private paid = pending()
  private readonly stopping = new AbortController()
  private reconnecting = false

  constructor(private readonly opts: RentOptions) {
    super()
  }

  /**
   * A provider restart (upgrade, crash, reboot of its machine) takes tens of
   * seconds; nothing is paid while the session waits, so waiting a minute
   * costs the customer nothing.
   */
  private get reconnectMs(): number {
    return this.opts.reconnectMs ?? DEFAULT_RECONNECT_MS
  }

  private get afterPassOverMs(): number {
    return Math.min(this.opts.connectTimeoutMs ?? 30_000, AFTER_PASS_OVER_MS)
  }

  get skill(): SkillDescriptor {
    return this.link.skill
  }

  async start(): Promise<void> {
    try {
      await this.openWithSomeProvider()
    } catch (err) {
      // whatever was dialed for this start goes with it
      await this.swarm?.destroy().catch(() => {})
      throw err
    }
    // stop() while the session was opening: it has ended already, end this side too
    if (this.closing) {
      this.client.end('customer quit')
      throw new Error('stopped before the session started')
    }
    this.client.on('end', (s: SessionSummary) => this.onClientEnd(s))
    this.emit('open', this.client.accept)
    this.client.startTicking()
    if (this.opts.port !== null) {
      this.proxy = await startLocalProxy({
        port: this.opts.port,
        host: this.opts.host,
        // The local proxy gives up on a wait longer than its open timeout (504).
        openStream: async () => {
          await this.paid.promise
          if (this.client.ended) {
            throw this.endSummary ? sessionEnded() : new TunnelRefusedError('the connection to the provider dropped and dvm-session is reconnecting; try again in a moment', 503, 'reconnecting')
          }
          return this.client.openStream()
        },
      })
      if (this.closing) {
        await this.proxy.close()
        throw new Error('stopped before the session started')
      }
      this.emit('proxy', this.proxy)
    }
  }

  /**
   * Without a named provider any one of the kind will do: one that refuses
   * (busy, backend down) or whose terms are outside our limits is passed over
   * for the next, up to MAX_PASS_OVER of them. Nothing is locked before accept.
   */
  private async openWithSomeProvider(): Promise<void> {
    const passOver = new Map<string, string>()
    for (;;) {
      let found: Connection
      try {
        found = await this.findProvider(passOver)
      } catch (err) {
        // the providers passed over say more than "no other provider answered"
        if (passOver.size > 0 && !this.closing) {
          const waited = Math.round(this.afterPassOverMs / 1000)
          throw new Error(`no provider of kind ${this.opts.kind} would do: passed over ${passOver.size} (${[...passOver.values()].join('; ')}), and no other answered within ${waited} s`)
        }
        throw err
      }
      const { swarm, link } = found
      this.swarm = swarm
      this.link = link
      this.emit('connected', link)
      this.client = this.newClient(link)
      try {
        await this.client.open()
        return
      } catch (err) {
        link.peer.close()
        if (this.opts.providerPubkey || !(err instanceof ProviderUnsuitable) || passOver.size >= MAX_PASS_OVER - 1) throw err
        passOver.set(link.pubkey, err.message)
        this.emit('passed-over', { provider: link.pubkey, code: err.code, reason: err.message })
        // banned, the swarm does not dial it again for the rest of this search
        swarm.leavePeer(Buffer.from(link.swarmKey, 'hex'))
        swarm.peers.get(link.swarmKey)?.ban(true)
      }
    }
  }

  /** A verified provider of the kind: the named one, else the best from the relays, else the first on the topic. */
  private async findProvider(passOver: ReadonlyMap<string, string>): Promise<Connection> {
    const base = { identity: this.opts.identity, bootstrap: this.opts.bootstrap, kind: this.opts.kind, passOver, swarm: this.swarm, signal: this.stopping.signal }
    if (this.opts.relays?.length && !this.opts.providerSwarmKey) {
      const chosen = await chooseFromRelays(this.opts.relays, this.opts.kind, {
        providerPubkey: this.opts.providerPubkey,
        maxPerMinute: this.opts.maxPerMinute,
        mint: this.opts.funds.mintUrl,
        exclude: passOver,
      })
      if (chosen) {
        this.emit('chosen', chosen)
        // A handler can outlive its provider (killed, no offline beat): dial briefly, then fall back to the topic;
        // but a provider that answers and says it does not serve the kind will not be on the topic either.
        // The one provider the user named is dialed directly for the whole wait: its swarm key does not change.
        const named = this.opts.providerPubkey !== undefined
        const found = await connectToProvider({ ...base, providerPubkey: chosen.pubkey, providerSwarmKey: chosen.swarmKey, timeoutMs: named ? this.opts.connectTimeoutMs : 5000 }).catch((err: unknown) => {
          if (err instanceof KindNotServedError && named) throw err
          if (named && !this.closing) {
            const offline = chosen.offlineSince ? `; its last heartbeat, at ${localTime(chosen.offlineSince)}, said it went offline` : ''
            throw new Error(`${(err as Error).message}${offline}`)
          }
          // a reused swarm would go on redialing it
          this.swarm?.leavePeer(Buffer.from(chosen.swarmKey, 'hex'))
          return null
        })
        if (found) return found
      }
    }
    return connectToProvider({
      ...base,
      providerPubkey: this.opts.providerPubkey,
      providerSwarmKey: this.opts.providerSwarmKey,
      // after a pass-over, another provider either answers soon or there is none
      timeoutMs: passOver.size > 0 ? this.afterPassOverMs : this.opts.connectTimeoutMs,
    })
  }

  private newClient(link: ProviderLink): SessionClient {
    const client = new SessionClient({
      peer: link.peer,
      skill: link.skill,
      kind: this.opts.kind,
      mode: 'session',
      budget: this.opts.budget,
      funds: this.opts.funds,
      maxPerMinute: this.opts.maxPerMinute,
      lockSeconds: this.opts.lockSeconds,
      expectedMs: this.opts.expectedMs,
    })
    for (const ev of ['tick', 'ack', 'refuse', 'locked', 'lock-error']) client.on(ev, (e) => this.emit(ev, e))
    client.on('ack', () => this.paid.resolve())
    return client
  }

  private onClientEnd(summary: SessionSummary): void {
    // a drop while reconnecting (during a resume) is the reconnect loop's to handle
    if (this.reconnecting) return
    if (summary.providerGone && !this.closing && this.client.budgetLeft > 0 && this.reconnectMs > 0) {
      void this.reconnect(summary)
      return
    }
    void this.finish(summary)
  }

  /** Get back to the same provider and resume the session, trying until the reconnect window closes. */
  private async reconnect(last: SessionSummary): Promise<void> {
    this.reconnecting = true
    this.emit('reconnecting', { reason: last.reason, withinMs: this.reconnectMs })
    // browser connections that arrive meanwhile wait for the next acknowledged tick
    if (this.paid.settled) this.paid = pending()
    const deadline = Date.now() + this.reconnectMs
    let why = last.reason
    try {
      for (;;) {
        const left = deadline - Date.now()
        if (left <= 0 || this.closing) throw new Error(why)
        // A provider that stopped answering may still hold the connection open as far
        // as the swarm can tell (a killed process sends no close): while it does, the
        // swarm does not dial the provider again. Drop it so the next dial starts now.
        this.link.peer.close()
        try {
          const { link } = await connectToProvider({
            identity: this.opts.identity,
            kind: this.opts.kind,
            providerPubkey: this.link.pubkey,
            providerSwarmKey: this.link.swarmKey,
            swarm: this.swarm,
            timeoutMs: left,
            signal: this.stopping.signal,
          })
          if (this.closing) return void link.peer.close()
          this.link = link
          // refused or dropped again: try again while the window lasts
          await this.client.resume(link.peer)
          break
        } catch (err) {
          why = (err as Error).message
          // a provider that answers but refuses to resume is not asked again at once
          await sleep(Math.min(RETRY_PAUSE_MS, Math.max(0, deadline - Date.now())), undefined, { signal: this.stopping.signal }).catch(() => {})
        }
      }
      this.reconnecting = false
      this.client.startTicking()
      this.emit('reconnected', { provider: this.link.pubkey })
    } catch (err) {
      this.reconnecting = false
      void this.finish({ ...last, reason: `provider gone: ${(err as Error).message}` })
    }
  }

  private async finish(summary: SessionSummary): Promise<void> {
    if (this.endSummary) return
    this.endSummary = summary
    // a search still running (a reconnect that gave up on another path) stops with it
    this.stopping.abort(new Error('the session ended'))
    this.paid.reject(sessionEnded())
    // the wallet records every acknowledged proof, and finishes any lock swap, before anyone reads the final account
    await this.client?.settle()
    // a lock swap that finished after the end adds to what comes back after the locktime
    if (this.client && summary.session === this.client.id) this.endSummary = summary = this.client.summary(summary.reason, summary.providerGone)
    await this.proxy?.close()
    // let the provider read our `end` (so it logs why and redeems now) before the swarm goes
    await this.link?.peer.end()
    await this.swarm?.destroy().catch(() => {})
    this.emit('end', summary)
  }

  /** Quit: end the session, close the proxy and the swarm; resolves with the final account. */
  async stop(reason = 'customer quit'): Promise<SessionSummary> {
    this.closing = true
    if (this.endSummary) return this.endSummary
    const done = new Promise<SessionSummary>((resolve) => this.once('end', resolve))
    // whatever is still looking for a provider (start, a reconnect) stops now
    this.stopping.abort(new Error(`stopped: ${reason}`))
    // an open session tells the provider, and its end finishes ours; one still
    // opening or reconnecting has no provider to tell
    if (this.client?.accept && !this.client.ended) this.client.end(reason)
    else void this.finish(this.client?.accept ? this.client.summary(reason) : { session: '', spent: 0, lockedUnsent: 0, refundAt: null, reason, providerGone: false })
    return done
  }
}

function sessionEnded(): TunnelRefusedError {
  return new TunnelRefusedError('the paid session has ended; start a new one with dvm-session', 402, 'session_ended')
}

interface Pending {
  promise: Promise<void>
  resolve: () => void
  reject: (err: Error) => void
  settled: boolean
}

function pending(): Pending {
  const p = { settled: false } as Pending
  p.promise = new Promise<void>((resolve, reject) => {
    p.resolve = () => {
      p.settled = true
      resolve()
    }
    p.reject = (err: Error) => {
      p.settled = true
      reject(err)
    }
  })
  // a rejection nobody waits for (no browser asked) is not an error
  p.promise.catch(() => {})
  return p
}
