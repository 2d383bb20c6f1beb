// Watches each pair link's WireGuard counters (handshake age, rx/tx bytes).
// The agent uses it for three things: which endpoint to give WireGuard (leave
// it alone while the handshake is fresh), which links carry traffic (probed
// fast) and the status table.

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
}

export interface LinkMonitor {
  setLinks(links: readonly MonitoredLink[]): void
  get(peerId: string): LinkObservation | undefined
  /** Reads every link once; reports what flipped. */
  poll(options: { signal: AbortSignal }): Promise<LinkMonitorChange>
}

export function createLinkMonitor(deps: LinkMonitorDeps): LinkMonitor {
  let links: readonly MonitoredLink[] = []
  const observations = new Map<string, LinkObservation>()
  /** Freshness as last reported, so a handshake going stale between polls is still a flip. */
  const freshness = new Map<string, boolean>()
  return {
    setLinks(next) {
      links = next
      const keep = new Set(next.map((l) => l.peerId))
      for (const peer of observations.keys()) if (!keep.has(peer)) observations.delete(peer)
      for (const peer of freshness.keys()) if (!keep.has(peer)) freshness.delete(peer)
    },
    get: (peerId) => observations.get(peerId),
    async poll({ signal }) {
      const change: LinkMonitorChange = { freshness: [], activity: [] }
      const current = links
      const devices = await Promise.all(current.map((link) => deps.readDevice(link.ifname, { signal }).catch(() => undefined)))
      const now = deps.now()
      const probeBytes = deps.probeBytes?.() ?? new Map<string, number>()
      current.forEach((link, i) => {
        const previous = observations.get(link.peerId)
        const next = observe(previous, devices[i], link.peerPublicKey, now, probeBytes.get(link.peerId) ?? 0)
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
