/**
 * A Map that forgets its oldest entry once it holds `capacity` entries: the
 * memo behind meshd's caches of pure, costly derivations (key imports, public
 * keys, verified signatures), bounded so a stream of distinct inputs cannot
 * grow memory.
 */
export class BoundedMap<K, V> {
  readonly #entries = new Map<K, V>()

  constructor(readonly capacity: number) {}

  get(key: K): V | undefined {
    return this.#entries.get(key)
  }

  has(key: K): boolean {
    return this.#entries.has(key)
  }

  set(key: K, value: V): void {
    if (!this.#entries.has(key) && this.#entries.size >= this.capacity) {
      const oldest = this.#entries.keys().next()
      if (oldest.done !== true) this.#entries.delete(oldest.value)
    }
    this.#entries.set(key, value)
  }

  get size(): number {
    return this.#entries.size
  }
}
