// Public types of the prober (src/probe). Plain data only: the path selector
// (src/paths) consumes snapshots and events; it never sees sockets.

import type { Logger } from '../logging/logger.js'

/** One direct mesh link: the point-to-point link-local pair on the WireGuard link to `peerId`. */
export interface ProbeLink {
  peerId: string
  /** Our address on the link (169.254.x.y); the link's probe socket binds to it. */
  local4: string
  /** The peer's address on the link; routed over that link by the `/32 peer /32` address. */
  peer4: string
}

/** Direct-link measurements. RTT excludes the responder's dwell time. */
export interface LinkStats {
  peerId: string
  /** False until the first reply, and after 3 consecutive misses. */
  alive: boolean
  /** RTT, the median of the last 9 samples, ms. */
  rttMs?: number
  /** Jitter: the median difference between consecutive RTT samples (last 9), ms. */
  jitterMs?: number
  /** Loss over the last LOSS_WINDOW probes that were decided (answered or timed out), 0–100. */
  lossPct: number
  /** How many decided probes the loss window holds. */
  samples: number
  /** Wall clock (`now()`) at the last reply in time. */
  lastReplyAt?: number
}

/**
 * A→relay→destination→(A directly | relay→A), dwell times of relay and
 * destination subtracted. With `returnLeg: 'direct'` the return leg is the same
 * as the direct probe's, so `rttMs − links.get(destination).rttMs` is the
 * forward delay through the relay minus the direct forward delay (negative:
 * the relay is faster forward). With `returnLeg: 'relay'` (our direct link to
 * the destination is dead or missing) it is a full relayed round trip.
 * Right after the return leg switches, `samples` is 0 and `rttMs`/`jitterMs`
 * are carried over from the other leg until the first reply over the new one,
 * so a selector can still compare the path at the moment of a failover.
 * `alive` is false while our link to the relay is dead.
 */
export interface RelayedStats {
  destination: string
  relay: string
  alive: boolean
  rttMs?: number
  jitterMs?: number
  lossPct: number
  samples: number
  returnLeg: ReturnLeg
}

export type ReturnLeg = 'direct' | 'relay'

/** Read-only: the service hands out the same snapshot until its version() moves. */
export interface ProbeSnapshot {
  readonly links: ReadonlyMap<string, LinkStats>
  /** destination → relay → stats */
  readonly relayed: ReadonlyMap<string, ReadonlyMap<string, RelayedStats>>
}

/** A direct link's liveness changed, or a relayed path to `peerId` (through `relay`) stopped answering. */
export type ProbeChangeEvent = { kind: 'link-dead' | 'link-alive'; peerId: string } | { kind: 'relayed-dead'; peerId: string; relay: string }

/** One path measured by `ping`: direct (`via: null`) or through a relay. */
export interface PingPath {
  via: string | null
  returnLeg: ReturnLeg
  sent: number
  received: number
  /** Dwell-corrected RTT of every reply, in arrival order, ms. */
  rttsMs: number[]
  minMs?: number
  avgMs?: number
  maxMs?: number
}

export interface PingResult {
  peerId: string
  paths: PingPath[]
}

export interface PingOptions {
  count: number
  signal: AbortSignal
  /** Between rounds; default 250 ms. */
  intervalMs?: number
  /** How long to wait for the last round's replies; default 1000 ms. */
  timeoutMs?: number
}

/** A bound UDP socket, as the service needs it. */
export interface ProbeSocket {
  send(bytes: Uint8Array, address: string, port: number): void
  close(): void
}

export interface ProbeSocketOptions {
  address: string
  port: number
  /** The one address this socket exchanges probes with (the link's far end): a socket may connect to it. */
  peer?: { address: string; port: number }
  /** `receivedAt` (the monotonic clock) when the socket layer knows it; otherwise the service reads the clock on entry. */
  onMessage: (bytes: Uint8Array, from: { address: string; port: number }, receivedAt?: number) => void
  onError: (error: Error) => void
}

/** Binds a socket; rejects if the address cannot be bound (e.g. not yet assigned). Default: node:dgram. */
export type ProbeSocketFactory = (options: ProbeSocketOptions, signal: AbortSignal) => Promise<ProbeSocket>

export interface ProbeTimers {
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

export interface ProbeServiceDeps {
  selfId: string
  /** UDP port on every link address; the same on every host. Default 7374. */
  port?: number
  logger: Logger
  /** Wall clock in ms, for `lastReplyAt` only. Default Date.now. */
  now?: () => number
  /** Monotonic clock in ms with sub-ms resolution, for RTTs, dwell times, timeouts and rate limits. Default performance.now(). */
  monotonicNow?: () => number
  socketFactory?: ProbeSocketFactory
  timers?: ProbeTimers
  /** [0, 1); jitters the probe schedule. Default Math.random. */
  random?: () => number
  /** Our forward path to a peer (null: direct, else the relay's id): told to the peer in echo replies so it can show both directions, and the relay in use is probed fast. */
  forwardPathTo?: (peerId: string) => string | null
}

export interface ProbeService {
  /** Replaces the set of links; binds new sockets (retrying until the address exists) and closes removed ones. */
  setLinks(links: ProbeLink[]): void
  /** destination → relay peer ids to probe through. Replaces the previous candidates. */
  setRelayCandidates(candidates: Map<string, string[]>): void
  /**
   * Traffic to or from `peerId` is flowing (over its link or through a relay): probe its link fast
   * (250–300 ms instead of 1–2 s) and its relayed paths every ~1 s instead of ~5 s.
   * May be called before the link exists; remembered until changed.
   */
  setActive(peerId: string, active: boolean): void
  snapshot(): ProbeSnapshot
  /**
   * A counter that moves whenever anything a snapshot says about a path could have changed (a
   * measurement, a liveness, a return leg, a link or relay candidate added or removed), and only then;
   * probe byte counters and lastReplyAt do not count. Equal values: the selection inputs are unchanged.
   */
  version(): number
  /**
   * Cumulative probe bytes per peer link, sent and received (every packet type, relayed ones included), counted
   * as WireGuard's transfer counters count them, so a traffic monitor can subtract probing before it calls a
   * link active; `inner` is sent + received as the link's interface counters count them (IPv4 + UDP + payload).
   * Kept out of snapshots: they move with every packet, the snapshot's measurements do not.
   */
  probeBytes(): ReadonlyMap<string, { tx: number; rx: number; inner: number }>
  /** The forward path the peer last reported it uses towards us (from its echo replies); undefined until it has. */
  reportedPath(peerId: string): { via: string | null } | undefined
  /** Fires synchronously on liveness transitions (direct links both ways, relayed paths dying); returns an unsubscribe function. */
  onChange(listener: (event: ProbeChangeEvent) => void): () => void
  /**
   * Fires once after version() moved, in a microtask (so one packet's several changes are one call); returns an
   * unsubscribe function. The path controller decides on it instead of polling the version.
   */
  onVersionChange(listener: () => void): () => void
  /** `meshd ping <peer>`: direct and through each candidate relay, RTT per path. */
  ping(peerId: string, options: PingOptions): Promise<PingResult>
  close(): Promise<void>
}
