import { EventRepository, EventType, EventUtils } from '@nostr-relay/common'
import type { Event, EventRepositoryUpsertResult, Filter } from '@nostr-relay/common'

/**
 * NIP-01 filter matching, complete: ids, authors, kinds, since, until, `#x`
 * tag filters (any value) and `&x` (every value). The relay library's own
 * matcher ignores tag filters, which would send every job feedback to every
 * `#p` subscriber, so both stored queries and live broadcasts use this one.
 * `limit` only bounds stored results and `search` is unsupported; neither
 * applies here.
 */
export function matchesFilter(event: Event, filter: Filter): boolean {
  if (filter.ids && !filter.ids.includes(event.id)) return false
  if (filter.authors && !filter.authors.includes(event.pubkey)) return false
  if (filter.kinds && !filter.kinds.includes(event.kind)) return false
  if (filter.since !== undefined && event.created_at < filter.since) return false
  if (filter.until !== undefined && event.created_at > filter.until) return false
  for (const [key, wanted] of Object.entries(filter)) {
    if (key.length !== 2 || !Array.isArray(wanted)) continue
    const mode = key[0]
    const name = key[1]
    if (mode !== '#' && mode !== '&') continue
    const values = new Set<string>()
    for (const tag of event.tags) if (tag[0] === name && tag[1] !== undefined) values.add(tag[1])
    const ok = mode === '#'
      ? (wanted as string[]).some((v) => values.has(v))
      : (wanted as string[]).every((v) => values.has(v))
    if (!ok) return false
  }
  return true
}

/** Newest first, ties by lowest id: the order NIP-01 asks for with `limit`. */
function newestFirst(a: Event, b: Event): number {
  return b.created_at - a.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}

function isExpired(event: Event, nowSeconds: number): boolean {
  const expiration = EventUtils.extractExpirationTimestamp(event)
  return expiration !== null && expiration < nowSeconds
}

/** Key under which a (parameterized) replaceable event replaces older ones. */
function replaceKey(event: Event): string | null {
  const d = EventUtils.extractDTagValue(event)
  return d === null ? null : `${event.kind}:${event.pubkey}:${d}`
}

export interface MemoryEventRepositoryOptions {
  /** Oldest events are dropped beyond this many; a devnet relay must not grow without bound. */
  maxEvents?: number
}

/**
 * The relay's storage: everything in memory, indexed by id and by kind (every
 * DVM query names kinds). Handles regular, replaceable and parameterized
 * replaceable events and NIP-09 deletion. One instance per relay, no shared
 * state, so a process can run several relays.
 */
export class MemoryEventRepository extends EventRepository {
  private readonly byId = new Map<string, Event>()
  private readonly byKind = new Map<number, Set<string>>()
  private readonly replaceable = new Map<string, string>()
  /** Ids removed by a deletion request, so a late copy is not stored again. */
  private readonly deleted = new Set<string>()
  private readonly maxEvents: number

  constructor(options: MemoryEventRepositoryOptions = {}) {
    super()
    this.maxEvents = options.maxEvents ?? 100_000
  }

  get size(): number {
    return this.byId.size
  }

  has(id: string): boolean {
    return this.byId.has(id)
  }

  override isSearchSupported(): boolean {
    return false
  }

  override upsert(event: Event): EventRepositoryUpsertResult {
    if (this.byId.has(event.id) || this.deleted.has(event.id)) return { isDuplicate: true }
    const type = EventUtils.getType(event.kind)
    // Ephemeral events are broadcast by the relay and never stored.
    if (type === EventType.EPHEMERAL) return { isDuplicate: false }
    const key = replaceKey(event)
    if (key !== null) {
      const currentId = this.replaceable.get(key)
      const current = currentId === undefined ? undefined : this.byId.get(currentId)
      // An older version arriving late must neither replace nor be broadcast.
      if (current && newestFirst(current, event) <= 0) return { isDuplicate: true }
      if (current) this.remove(current.id)
      this.replaceable.set(key, event.id)
    }
    this.insert(event)
    return { isDuplicate: false }
  }

  override find(filter: Filter): Event[] {
    if (filter.limit === 0) return []
    const now = Math.floor(Date.now() / 1000)
    const results: Event[] = []
    for (const event of this.candidates(filter)) {
      if (matchesFilter(event, filter) && !isExpired(event, now)) results.push(event)
    }
    results.sort(newestFirst)
    return filter.limit !== undefined ? results.slice(0, filter.limit) : results
  }

  override async findOne(filter: Filter): Promise<Event | null> {
    return this.find({ ...filter, limit: 1 })[0] ?? null
  }

  /**
   * NIP-09: remove the author's own events named by `e` tags and the
   * replaceable events named by `a` tags (up to the request's time), then keep
   * the deletion event itself so subscribers (NIP-90 cancellation) can see it.
   */
  override async deleteByDeletionRequest(request: Event): Promise<void> {
    for (const [name, value] of request.tags) {
      if (value === undefined) continue
      if (name === 'e') {
        const target = this.byId.get(value)
        if (target && target.pubkey === request.pubkey && target.kind !== 5) {
          this.remove(value)
          this.rememberDeleted(value)
        }
      } else if (name === 'a') {
        const [kind, pubkey, ...d] = value.split(':')
        if (pubkey !== request.pubkey) continue
        const key = `${kind}:${pubkey}:${d.join(':')}`
        const targetId = this.replaceable.get(key)
        const target = targetId === undefined ? undefined : this.byId.get(targetId)
        if (target && target.created_at <= request.created_at) this.remove(target.id)
      }
    }
    if (!this.byId.has(request.id)) this.insert(request)
  }

  override async destroy(): Promise<void> {
    this.byId.clear()
    this.byKind.clear()
    this.replaceable.clear()
    this.deleted.clear()
  }

  private *candidates(filter: Filter): Iterable<Event> {
    if (filter.ids) {
      for (const id of new Set(filter.ids)) {
        const event = this.byId.get(id)
        if (event) yield event
      }
    } else if (filter.kinds) {
      for (const kind of new Set(filter.kinds)) {
        for (const id of this.byKind.get(kind) ?? []) {
          const event = this.byId.get(id)
          if (event) yield event
        }
      }
    } else {
      yield* this.byId.values()
    }
  }

  private insert(event: Event): void {
    this.byId.set(event.id, event)
    let ids = this.byKind.get(event.kind)
    if (!ids) this.byKind.set(event.kind, (ids = new Set()))
    ids.add(event.id)
    // Map iteration order is insertion order: the first key is the oldest stored.
    while (this.byId.size > this.maxEvents) {
      const oldest = this.byId.keys().next().value
      if (oldest === undefined) break
      this.remove(oldest)
    }
  }

  private remove(id: string): void {
    const event = this.byId.get(id)
    if (!event) return
    this.byId.delete(id)
    const ids = this.byKind.get(event.kind)
    ids?.delete(id)
    if (ids && ids.size === 0) this.byKind.delete(event.kind)
    const key = replaceKey(event)
    if (key !== null && this.replaceable.get(key) === id) this.replaceable.delete(key)
  }

  private rememberDeleted(id: string): void {
    this.deleted.add(id)
    if (this.deleted.size > this.maxEvents) {
      const oldest = this.deleted.values().next().value
      if (oldest !== undefined) this.deleted.delete(oldest)
    }
  }
}
