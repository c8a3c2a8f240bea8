import type Hyperswarm from 'hyperswarm'
import type { NoiseSecretStream } from 'hyperswarm'
import type { Identity } from '../identity/nostr-key.js'
import { deriveSwarmKeyPair } from '../identity/swarm-key.js'
import { AGENT, Peer } from '../wire/peer.js'
import { createSwarm } from '../wire/swarm.js'
import { topicForKind } from '../wire/topic.js'
import type { ControlMessage } from '../wire/protocol.js'
import type { SkillDescriptor } from '../skills/descriptor.js'
import { KindNotServedError, shortKey } from './discovery.js'

export interface ProviderLink {
  peer: Peer
  /** the provider's Nostr pubkey, proven over this connection */
  pubkey: string
  /** the provider's swarm public key (hex), to reconnect to it */
  swarmKey: string
  skill: SkillDescriptor
}

export interface ConnectOptions {
  identity: Identity
  bootstrap?: Array<{ host: string; port: number }>
  kind: number
  /** only this provider (hex pubkey) is acceptable */
  providerPubkey?: string
  /** its swarm key (from its NIP-89 handler) lets us dial it directly */
  providerSwarmKey?: string
  timeoutMs?: number
  /** the customer's swarm; reused across reconnects */
  swarm?: Hyperswarm
  /** providers (hex pubkey → why) tried already and found unsuitable: met again, they are let go */
  passOver?: ReadonlyMap<string, string>
  /** stop looking (rejects with the signal's reason) */
  signal?: AbortSignal
}

/**
 * How often the topic is looked up again while no provider has been found.
 * Hyperswarm repeats a lookup only every ~10 minutes: a provider that
 * announces after the customer started looking would otherwise never be met.
 */
const TOPIC_LOOKUP_MS = 3000

/**
 * A customer's redial schedule. Hyperswarm waits 10 minutes after a fourth
 * failed dial of a peer: a provider restarting for half a minute (each dial to
 * its dead address takes ~8 s to fail) would come back long after the session
 * gave up on it. A customer keeps a line to one provider only, so redialing
 * it every few seconds costs little.
 */
export const CUSTOMER_BACKOFFS: [number, number, number, number] = [1000, 2000, 3000, 5000]

/** One provider found and verified on the swarm, with the swarm kept for reconnects. */
export interface Connection {
  swarm: Hyperswarm
  link: ProviderLink
}

function firstSkill(peer: Peer, timeoutMs: number): Promise<SkillDescriptor> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => done(new Error('provider sent no skill descriptor in time')), timeoutMs)
    const onMsg = (m: ControlMessage) => m.type === 'skill' && done(null, m.skill as unknown as SkillDescriptor)
    const onClose = (err?: Error) => done(err ?? new Error('provider closed the connection'))
    const done = (err: Error | null, skill?: SkillDescriptor) => {
      clearTimeout(t)
      peer.off('message', onMsg)
      peer.off('close', onClose)
      if (err) reject(err)
      else resolve(skill!)
    }
    peer.on('message', onMsg)
    peer.on('close', onClose)
  })
}

/** Why no provider was found, each distinct refusal once (the last three). */
function notFound(opts: ConnectOptions, timeoutMs: number, refusals: Map<string, number>): string {
  const within = `within ${Math.round(timeoutMs / 1000)} s`
  const shown = [...refusals].slice(-3).map(([text, n]) => (n > 1 ? `${text} (${n} times)` : text))
  const why = shown.length ? ` (refused: ${shown.join('; ')})` : ''
  const { kind, providerPubkey: wanted } = opts
  if (!wanted) {
    return refusals.size
      ? `no usable provider of kind ${kind} was found ${within}${why}`
      : `no provider of kind ${kind} was found ${within}; is one running (dvm-agent --kind=${kind}) on this network?`
  }
  if (opts.providerSwarmKey) return `provider ${shortKey(wanted)} did not answer ${within}${why}; is it running, and on this network?`
  return refusals.size
    ? `provider ${shortKey(wanted)} was not found among the providers of kind ${kind} ${within}${why}`
    : `no provider of kind ${kind} was found ${within}, provider ${shortKey(wanted)} included; is it running, and does it serve kind ${kind}?`
}

/** Wait for a provider on the kind's topic (or the named one) that proves its identity and sends its skill. */
export async function connectToProvider(opts: ConnectOptions): Promise<Connection> {
  const timeoutMs = opts.timeoutMs ?? 30_000
  const swarm = opts.swarm ?? createSwarm({ keyPair: deriveSwarmKeyPair(opts.identity.secretKey), bootstrap: opts.bootstrap, backoffs: CUSTOMER_BACKOFFS })
  const topic = topicForKind(opts.kind)
  const refusals = new Map<string, number>()
  const candidates = new Set<Peer>()
  try {
    const link = await new Promise<ProviderLink>((resolve, reject) => {
      let lookups: NodeJS.Timeout | undefined
      const stopLooking = (): void => {
        clearTimeout(timer)
        clearInterval(lookups)
        swarm.off('connection', onConn)
        opts.signal?.removeEventListener('abort', onAbort)
      }
      const timer = setTimeout(() => {
        stopLooking()
        reject(new Error(notFound(opts, timeoutMs, refusals)))
      }, timeoutMs)
      const giveUp = (err: Error): void => {
        stopLooking()
        for (const p of candidates) p.close()
        reject(err)
      }
      const onAbort = (): void => giveUp(opts.signal!.reason instanceof Error ? opts.signal!.reason : new Error('stopped looking for a provider'))
      const onConn = (conn: NoiseSecretStream) => {
        conn.on('error', () => {})
        const peer = new Peer(conn, { identity: opts.identity, role: 'customer', expectedPubkey: opts.providerPubkey })
        candidates.add(peer)
        const skill = firstSkill(peer, 10_000)
        skill.catch(() => {}) // awaited below only once the identity checks out
        peer.ready
          .then(async (pubkey) => {
            const passedOver = opts.passOver?.get(pubkey)
            if (passedOver) throw new Error(`passed over ${shortKey(pubkey)} (${passedOver})`)
            const s = await skill
            if (!Array.isArray(s.kinds) || !s.kinds.includes(opts.kind)) {
              // The one provider we may use says it does not serve the kind: waiting longer cannot help.
              const served = Array.isArray(s.kinds) ? s.kinds.filter((k): k is number => Number.isInteger(k)) : []
              if (opts.providerPubkey && served.length > 0) return giveUp(new KindNotServedError(pubkey, served, opts.kind))
              throw new Error(`provider ${shortKey(pubkey)} does not list kind ${opts.kind}`)
            }
            // our side of the swap: who is asking and for what (informative; the provider may log it)
            peer.send({ type: 'skill', skill: { name: 'dvm-agent customer', version: '1', role: 'customer', kinds: [opts.kind], agent: AGENT } })
            stopLooking()
            // the one chosen stays; other providers met on the topic are let go
            for (const other of candidates) if (other !== peer) other.close()
            resolve({ peer, pubkey, swarmKey: conn.remotePublicKey.toString('hex'), skill: s })
          })
          .catch((err: Error) => {
            // a refused peer is redialed: count its refusals rather than list each one
            const text = err.message.replace(/\b([0-9a-f]{8})[0-9a-f]{56}\b/g, '$1…')
            const n = (refusals.get(text) ?? 0) + 1
            refusals.delete(text) // re-inserted last, so the newest refusals are the ones shown
            refusals.set(text, n)
            peer.close(err)
          })
      }
      swarm.on('connection', onConn)
      if (opts.signal?.aborted) return onAbort()
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      if (opts.providerSwarmKey) swarm.joinPeer(Buffer.from(opts.providerSwarmKey, 'hex'))
      else {
        const discovery = swarm.join(topic, { client: true, server: false })
        lookups = setInterval(() => void discovery.refresh({ client: true, server: false }).catch(() => {}), TOPIC_LOOKUP_MS)
      }
    })
    // found: stop looking for others on the topic, keep a direct line to this one for reconnects
    if (!opts.providerSwarmKey) await swarm.leave(topic).catch(() => {})
    swarm.joinPeer(Buffer.from(link.swarmKey, 'hex'))
    return { swarm, link }
  } catch (err) {
    if (!opts.swarm) await swarm.destroy()
    throw err
  }
}
