import { lookup } from 'node:dns/promises'
import { BlockList, isIP } from 'node:net'
import { LruMap } from '../nostr/bounded.js'
import { normalizeRelayUrl } from '../nostr/relay-client.js'

/**
 * Which of a request's `relays` the provider also publishes replies to.
 *
 * Those URLs are chosen by whoever sent the request, so taken as they are
 * they let anyone make the provider open connections inside its own network
 * (SSRF): a database on loopback, a cloud metadata service on 169.254.x.x, a
 * router on 192.168.x.x. Hosts that are, or resolve to, loopback, private,
 * link-local, unique-local or otherwise non-public addresses are skipped,
 * unless the provider runs on such a network itself (the devnet, where every
 * relay is on loopback: `allowPrivate`) or the URL is one of the provider's
 * own relays. At most `maxExtra` relays beyond the provider's own are used
 * per request; the rest are skipped.
 *
 * Hostnames are resolved before use and refused if any address is not
 * public. The connection resolves the name again, so a name that changes its
 * answer in between (DNS rebinding) is not caught; the window is small.
 */
export const MAX_EXTRA_RELAYS = 4

const NON_PUBLIC = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network": 0.0.0.0 reaches loopback on Linux
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT, often internal in clouds
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 3], // multicast, reserved, broadcast
] as const) NON_PUBLIC.addSubnet(net, prefix, 'ipv4')
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
] as const) NON_PUBLIC.addSubnet(net, prefix, 'ipv6')

/** True for an IP address that is not on the public internet (IPv4-mapped IPv6 included). */
export function isNonPublicAddress(ip: string): boolean {
  const v = isIP(ip)
  if (v === 0) return false
  return NON_PUBLIC.check(ip, v === 4 ? 'ipv4' : 'ipv6')
}

/** Why `hostname` (as URL.hostname gives it) is refused without a lookup; undefined when a lookup decides. */
export function hostRefusal(hostname: string): string | undefined {
  const host = hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase()
  if (host === 'localhost' || host.endsWith('.localhost')) return 'a loopback host'
  if (isIP(host) !== 0) return isNonPublicAddress(host) ? 'not a public address' : undefined
  return undefined
}

/** All addresses a name resolves to. */
export type LookupAll = (hostname: string) => Promise<string[]>

const systemLookup: LookupAll = async (hostname) => (await lookup(hostname, { all: true, verbatim: true })).map((a) => a.address)

export interface RelayTargetsOptions {
  /** the provider's own relays, normalised (always allowed, and never counted as extra) */
  ownRelays: () => readonly string[]
  /** allow loopback and private hosts (a provider on the devnet) */
  allowPrivate: boolean
  maxExtra?: number
  lookup?: LookupAll
  lookupTimeoutMs?: number
}

export interface RelayChoice {
  use: string[]
  skipped: Array<{ relay: string; reason: string }>
}

const VERDICT_TTL_MS = 60_000
/** name lookups in flight at once; beyond that a name is skipped, not queued (they use libuv's small thread pool) */
const MAX_LOOKUPS = 4

export class RelayTargets {
  private readonly verdicts = new LruMap<string, { refusal: string | undefined; until: number }>(1000)
  private readonly inflight = new Map<string, Promise<string | undefined>>()
  private readonly lookup: LookupAll

  constructor(private readonly opts: RelayTargetsOptions) {
    this.lookup = opts.lookup ?? systemLookup
  }

  /** The extra relays to publish a request's replies to, and the ones skipped with why. */
  async choose(requested: readonly string[]): Promise<RelayChoice> {
    const own = new Set(this.opts.ownRelays())
    const maxExtra = this.opts.maxExtra ?? MAX_EXTRA_RELAYS
    const skipped: RelayChoice['skipped'] = []
    const candidates: Array<{ relay: string; host: string }> = []
    for (const raw of requested) {
      let relay: string
      let host: string
      try {
        relay = normalizeRelayUrl(raw)
        host = new URL(relay).hostname
      } catch {
        skipped.push({ relay: raw, reason: 'not a ws:// or wss:// URL' })
        continue
      }
      if (own.has(relay) || candidates.some((c) => c.relay === relay)) continue
      if (candidates.length >= maxExtra) {
        skipped.push({ relay, reason: `more than ${maxExtra} relays besides the provider's own` })
        continue
      }
      candidates.push({ relay, host })
    }
    const refusals = await Promise.all(candidates.map((c) => (this.opts.allowPrivate ? undefined : this.refusal(c.host))))
    const use: string[] = []
    candidates.forEach((c, i) => {
      const why = refusals[i]
      if (why) skipped.push({ relay: c.relay, reason: why })
      else use.push(c.relay)
    })
    return { use, skipped }
  }

  private async refusal(hostname: string): Promise<string | undefined> {
    const quick = hostRefusal(hostname)
    if (quick || isIP(hostname.replace(/^\[|\]$/g, '')) !== 0) return quick
    const host = hostname.replace(/\.$/, '').toLowerCase()
    const cached = this.verdicts.get(host)
    if (cached && cached.until > Date.now()) return cached.refusal
    const running = this.inflight.get(host)
    if (running) return running
    if (this.inflight.size >= MAX_LOOKUPS) return 'too many name lookups in progress'
    const p = this.resolve(host).finally(() => this.inflight.delete(host))
    this.inflight.set(host, p)
    return p
  }

  private async resolve(host: string): Promise<string | undefined> {
    let refusal: string | undefined
    let timer: NodeJS.Timeout | undefined
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), this.opts.lookupTimeoutMs ?? 3000)
      })
      const addresses = await Promise.race([this.lookup(host), timeout])
      if (addresses.length === 0) refusal = 'the name has no address'
      else if (addresses.some(isNonPublicAddress)) refusal = 'the name resolves to a non-public address'
    } catch (err) {
      refusal = `the name does not resolve (${(err as Error).message})`
    } finally {
      clearTimeout(timer)
    }
    this.verdicts.set(host, { refusal, until: Date.now() + VERDICT_TTL_MS })
    return refusal
  }
}
