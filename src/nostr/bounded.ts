/**
 * Bounded memory for things peers can make us remember (event ids, request
 * ids, pubkeys): when full, the oldest entry goes. A peer can then at worst
 * make us forget, never make us grow.
 */
export class BoundedSet<T> {
  private readonly items = new Set<T>()
  constructor(readonly capacity: number) {
    if (!(capacity > 0)) throw new RangeError('capacity must be positive')
  }

  has(item: T): boolean {
    return this.items.has(item)
  }

  /** Add; returns false if it was already there. */
  add(item: T): boolean {
    if (this.items.has(item)) return false
    this.items.add(item)
    if (this.items.size > this.capacity) {
      const oldest = this.items.values().next().value as T
      this.items.delete(oldest)
    }
    return true
  }

  delete(item: T): boolean {
    return this.items.delete(item)
  }

  get size(): number {
    return this.items.size
  }
}

/** A map that forgets its least recently used entry when full. */
export class LruMap<K, V> {
  private readonly map = new Map<K, V>()
  /** `onEvict` hears about entries dropped to make room (not explicit deletes). */
  constructor(
    readonly capacity: number,
    private readonly onEvict?: (key: K, value: V) => void,
  ) {
    if (!(capacity > 0)) throw new RangeError('capacity must be positive')
  }

  get(key: K): V | undefined {
    const v = this.map.get(key)
    if (v !== undefined) {
      this.map.delete(key)
      this.map.set(key, v)
    }
    return v
  }

  /** Look without refreshing the entry's age. */
  peek(key: K): V | undefined {
    return this.map.get(key)
  }

  has(key: K): boolean {
    return this.map.has(key)
  }

  set(key: K, value: V): void {
    this.map.delete(key)
    this.map.set(key, value)
    if (this.map.size > this.capacity) this.evictOldest()
  }

  /** Drop the least recently used entry; returns false when empty. */
  evictOldest(): boolean {
    const first = this.map.entries().next()
    if (first.done) return false
    const [key, value] = first.value
    this.map.delete(key)
    this.onEvict?.(key, value)
    return true
  }

  delete(key: K): boolean {
    return this.map.delete(key)
  }

  get size(): number {
    return this.map.size
  }

  values(): IterableIterator<V> {
    return this.map.values()
  }
}
