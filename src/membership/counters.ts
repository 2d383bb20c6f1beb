// Named event counters (rejections by reason, joins, negotiations) that the
// agent exposes in status. One instance per component; no global state.

export class Counters {
  readonly #values = new Map<string, number>()

  increment(name: string, by = 1): void {
    this.#values.set(name, (this.#values.get(name) ?? 0) + by)
  }

  get(name: string): number {
    return this.#values.get(name) ?? 0
  }

  /** A copy, sorted by name, safe to hand out. */
  snapshot(): ReadonlyMap<string, number> {
    return new Map([...this.#values].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  }
}
