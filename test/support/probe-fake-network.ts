// A fake UDP layer for the prober's unit tests: point-to-point links between
// named nodes with a one-way delay per direction, links that can be cut, and a
// per-node receive lag (time a packet waits before the service handles it —
// what dwell time measures). Delivery runs on the (fake) timers, so tests
// drive it with vi.advanceTimersByTimeAsync.

import type { ProbeLink, ProbeSocketFactory } from '../../src/probe/types.js'

interface Bound {
  node: string
  onMessage: (bytes: Uint8Array, from: { address: string; port: number }, receivedAt?: number) => void
}

interface FakeLinkEnd {
  node: string
  peer: string
  local4: string
  peer4: string
}

export class FakeProbeNetwork {
  readonly #ends: FakeLinkEnd[] = []
  readonly #delayMs = new Map<string, number>()
  readonly #down = new Set<string>()
  readonly #lagMs = new Map<string, number>()
  readonly #bound = new Map<string, Bound>()
  #nextSubnet = 1
  /** Packets handed to the network, per "from>to" node pair. */
  readonly sent = new Map<string, number>()
  /** Payload sizes of every packet each node sent. */
  readonly payloadsBy = new Map<string, number[]>()
  /** Payload sizes of every packet, per "from>to" node pair. */
  readonly payloadsByPair = new Map<string, number[]>()

  constructor(private readonly now: () => number) {}

  /** A point-to-point link with one-way delays a→b and b→a. */
  link(a: string, b: string, delayAtoBMs: number, delayBtoAMs: number): void {
    const subnet = this.#nextSubnet++
    this.#ends.push({ node: a, peer: b, local4: `169.254.${subnet}.1`, peer4: `169.254.${subnet}.2` })
    this.#ends.push({ node: b, peer: a, local4: `169.254.${subnet}.2`, peer4: `169.254.${subnet}.1` })
    this.#delayMs.set(`${a}>${b}`, delayAtoBMs)
    this.#delayMs.set(`${b}>${a}`, delayBtoAMs)
  }

  /** Changes the one-way delay a→b (packets already in flight keep theirs). */
  setDelay(a: string, b: string, ms: number): void {
    this.#delayMs.set(`${a}>${b}`, ms)
  }

  /** Drops everything on the a–b link, both ways. */
  cut(a: string, b: string): void {
    this.#down.add(`${a}>${b}`)
    this.#down.add(`${b}>${a}`)
  }

  /** The service of `node` handles each packet this long after it arrived. */
  setReceiveLag(node: string, ms: number): void {
    this.#lagMs.set(node, ms)
  }

  /** What `setLinks` takes on `node`; ids map node names to node ids. */
  linksOf(node: string, ids: Record<string, string>): ProbeLink[] {
    return this.#ends.filter((end) => end.node === node).map((end) => ({ peerId: ids[end.peer] ?? end.peer, local4: end.local4, peer4: end.peer4 }))
  }

  /** Injects a packet as if it arrived at `to` from `fromAddress`. */
  inject(toAddress: string, fromAddress: string, bytes: Uint8Array): void {
    this.#bound.get(toAddress)?.onMessage(bytes, { address: fromAddress, port: 7374 }, this.now())
  }

  socketFactory(node: string): ProbeSocketFactory {
    return (options) => {
      const end = this.#ends.find((e) => e.node === node && e.local4 === options.address)
      if (!end) return Promise.reject(new Error(`EADDRNOTAVAIL ${options.address}`))
      const key = end.local4
      if (this.#bound.has(key)) return Promise.reject(new Error(`EADDRINUSE ${options.address}`))
      const binding: Bound = { node, onMessage: options.onMessage }
      this.#bound.set(key, binding)
      return Promise.resolve({
        send: (bytes, address, port) => {
          // Point-to-point: the only reachable address on this link is the peer's.
          if (address !== end.peer4) return
          const pair = `${end.node}>${end.peer}`
          this.sent.set(pair, (this.sent.get(pair) ?? 0) + 1)
          const payloads = this.payloadsBy.get(end.node) ?? []
          payloads.push(bytes.length)
          this.payloadsBy.set(end.node, payloads)
          const pairPayloads = this.payloadsByPair.get(pair) ?? []
          pairPayloads.push(bytes.length)
          this.payloadsByPair.set(pair, pairPayloads)
          if (this.#down.has(pair)) return
          const arrivesAfter = this.#delayMs.get(pair) ?? 0
          const lag = this.#lagMs.get(end.peer) ?? 0
          const copy = bytes.slice()
          setTimeout(() => {
            const arrivedAt = this.now() - lag
            this.#bound.get(end.peer4)?.onMessage(copy, { address: end.local4, port }, arrivedAt)
          }, arrivesAfter + lag)
        },
        close: () => {
          if (this.#bound.get(key) === binding) this.#bound.delete(key)
        },
      })
    }
  }
}
