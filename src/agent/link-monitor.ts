// Watches each pair link's WireGuard counters (handshake age, rx/tx bytes).
// The agent uses it for three things: which endpoint to give WireGuard (leave
// it alone while the handshake is fresh), which links carry traffic (probed
// fast) and the status table.
//
// With the kernel's interface counters (one read of /proc/self/net/dev for
// every link, src/kernel/link-counters.ts),
// activity is judged from those, and a link's WireGuard device (a UAPI
// round trip to its wireguard-go, or a genetlink request) is read only when
// something needs it: no reading yet, a handshake near going stale, traffic,
// or DEVICE_REFRESH_MS since the last read (idle CPU at 20 peers, issue 5).

import type { Endpoint, ObservedWireguardDevice } from '../kernel/types.js'

export interface MonitoredLink {
  peerId: string
  ifname: string
  peerPublicKey: string
}

export interface LinkObservation {
  lastHandshakeMs?: number
  rxBytes: number
  txBytes: number
  endpoint?: Endpoint
  /** More traffic than keepalives make, not counting meshd's own probes, in the last poll. */
  active: boolean
  observedAt: number
  /** The prober's own bytes on this link (cumulative), subtracted when judging activity. */
  probeBytes: number
}

export interface LinkMonitorChange {
  /** Peers whose handshake became fresh or stale. */
  freshness: string[]
  /** Peers whose activity flipped. */
  activity: string[]
}

/** Bytes per second (both directions, probes excluded) above which a link counts as carrying traffic: keepalives (32 B per 25 s) stay well below, one ping a second is above. */
export const ACTIVE_BYTES_PER_SECOND = 256

/**
 * The same threshold on a WireGuard link's interface counters, which count inner packets only (no keepalives, no
 * WireGuard headers or padding): one 84-byte ping a second each way is 168 B/s there.
 */
export const ACTIVE_INNER_BYTES_PER_SECOND = 128

/**
 * With interface counters, an idle link with a fresh handshake has its device read at least this often. Nothing
 * waits on it: a handshake near going stale is read every poll (STALE_MARGIN_MS), a link without one likewise, and
 * status reads devices itself. Each read is a UAPI round trip (socket, write, read, close: several wakeups) to a
 * wireguard-go; at 30 s they were ~2 wakeups a second of an idle 20-peer agent (issue 5).
 */
export const DEVICE_REFRESH_MS = 60_000

/** A device is read when its handshake goes stale within this much of a poll (the longest poll interval). */
const STALE_MARGIN_MS = 5_000

export function isFresh(observation: LinkObservation | undefined, now: number, freshMs: number): boolean {
  return observation?.lastHandshakeMs !== undefined && now - observation.lastHandshakeMs < freshMs
}

/** The next observation from a fresh device read; pure. */
export function observe(previous: LinkObservation | undefined, device: ObservedWireguardDevice | undefined, peerPublicKey: string, now: number, probeBytes = 0): LinkObservation | undefined {
  const peer = device?.peers.find((p) => p.publicKey === peerPublicKey)
  if (peer === undefined) return undefined
  const rxBytes = peer.rxBytes ?? 0
  const txBytes = peer.txBytes ?? 0
  let active = false
  if (previous !== undefined && now > previous.observedAt) {
    const probing = Math.max(0, probeBytes - previous.probeBytes)
    const bytes = Math.max(0, rxBytes - previous.rxBytes + txBytes - previous.txBytes - probing)
    active = (bytes * 1000) / (now - previous.observedAt) > ACTIVE_BYTES_PER_SECOND
  }
  return {
    ...(peer.lastHandshakeMs === undefined ? {} : { lastHandshakeMs: peer.lastHandshakeMs }),
    rxBytes,
    txBytes,
    ...(peer.endpoint === undefined ? {} : { endpoint: peer.endpoint }),
    active,
    observedAt: now,
    probeBytes,
  }
}

export interface LinkMonitorDeps {
  readDevice(ifname: string, options: { signal: AbortSignal }): Promise<ObservedWireguardDevice>
  now(): number
  freshMs: number
  /** The prober's cumulative bytes (sent + received) per peer link, read once per poll. */
  probeBytes?: () => ReadonlyMap<string, number>
  /** Every link's interface counters (inner packets), by interface name, in one read; without it every device is read on every poll. */
  readCounters?: (options: { signal: AbortSignal }) => Promise<ReadonlyMap<string, { rxBytes: number; txBytes: number }>>
  /** The prober's cumulative inner bytes (its UDP packets as the interface counts them) per peer link. */
  probeInnerBytes?: () => ReadonlyMap<string, number>
}

export interface LinkMonitor {
  setLinks(links: readonly MonitoredLink[]): void
  get(peerId: string): LinkObservation | undefined
  /** Reads every link once (its device when due); reports what flipped. */
  poll(options: { signal: AbortSignal }): Promise<LinkMonitorChange>
}

interface CounterReading {
  bytes: number
  probeBytes: number
  at: number
}

/** Traffic other than probes on one link between two counter readings, against the inner threshold; pure. */
export function activeFromCounters(previous: CounterReading | undefined, current: CounterReading): boolean {
  if (previous === undefined || current.at <= previous.at) return false
  const bytes = Math.max(0, current.bytes - previous.bytes - Math.max(0, current.probeBytes - previous.probeBytes))
  return (bytes * 1000) / (current.at - previous.at) > ACTIVE_INNER_BYTES_PER_SECOND
}

/** Whether a link's device must be read on this poll, given the interface counters say whether it is active; pure. */
export function deviceReadDue(observation: LinkObservation | undefined, active: boolean, now: number, freshMs: number): boolean {
  if (observation === undefined || active || observation.active) return true
  if (now - observation.observedAt >= DEVICE_REFRESH_MS) return true
  return observation.lastHandshakeMs === undefined || now + STALE_MARGIN_MS - observation.lastHandshakeMs >= freshMs
}

export function createLinkMonitor(deps: LinkMonitorDeps): LinkMonitor {
  let links: readonly MonitoredLink[] = []
  const observations = new Map<string, LinkObservation>()
  /** Freshness as last reported, so a handshake going stale between polls is still a flip. */
  const freshness = new Map<string, boolean>()
  const counterReadings = new Map<string, CounterReading>()
  return {
    setLinks(next) {
      links = next
      const keep = new Set(next.map((l) => l.peerId))
      for (const peer of observations.keys()) if (!keep.has(peer)) observations.delete(peer)
      for (const peer of freshness.keys()) if (!keep.has(peer)) freshness.delete(peer)
      for (const peer of counterReadings.keys()) if (!keep.has(peer)) counterReadings.delete(peer)
    },
    get: (peerId) => observations.get(peerId),
    async poll({ signal }) {
      const change: LinkMonitorChange = { freshness: [], activity: [] }
      const current = links
      const counters = deps.readCounters === undefined ? undefined : await deps.readCounters({ signal }).catch(() => undefined)
      const countedAt = deps.now()
      const innerProbeBytes = counters === undefined ? undefined : (deps.probeInnerBytes?.() ?? new Map<string, number>())
      // Activity from the interface counters where they are known; undefined: judge it from the device read.
      const counted = current.map((link) => {
        const interfaceCounters = counters?.get(link.ifname)
        if (interfaceCounters === undefined || innerProbeBytes === undefined) return undefined
        const reading = { bytes: interfaceCounters.rxBytes + interfaceCounters.txBytes, probeBytes: innerProbeBytes.get(link.peerId) ?? 0, at: countedAt }
        const active = activeFromCounters(counterReadings.get(link.peerId), reading)
        counterReadings.set(link.peerId, reading)
        return active
      })
      const devices = await Promise.all(
        current.map((link, i) => {
          const active = counted[i]
          if (active !== undefined && !deviceReadDue(observations.get(link.peerId), active, countedAt, deps.freshMs)) return Promise.resolve(null)
          return deps.readDevice(link.ifname, { signal }).catch(() => undefined)
        }),
      )
      const now = deps.now()
      const probeBytes = deps.probeBytes?.() ?? new Map<string, number>()
      current.forEach((link, i) => {
        const previous = observations.get(link.peerId)
        const device = devices[i]
        const active = counted[i]
        // null: not read this time; the last reading stands.
        let next = device === null ? previous : observe(previous, device, link.peerPublicKey, now, probeBytes.get(link.peerId) ?? 0)
        if (next !== undefined && active !== undefined) next = { ...next, active }
        if (next === undefined) observations.delete(link.peerId)
        else observations.set(link.peerId, next)
        const fresh = isFresh(next, now, deps.freshMs)
        if ((freshness.get(link.peerId) ?? false) !== fresh) change.freshness.push(link.peerId)
        freshness.set(link.peerId, fresh)
        if ((previous?.active ?? false) !== (next?.active ?? false)) change.activity.push(link.peerId)
      })
      return change
    },
  }
}
