// The agent: owns the loop membership → planner → kernel (design §2).
//
// start() loads the state directory, opens the kernel layer, starts the
// libp2p node (asking for admission first when a join is pending), the
// membership service and the link negotiator, then the control socket. Every
// membership or link change, a periodic resync and kernel drift schedule one
// pass: planMesh over the current members and negotiated links, then
// reconciler.apply. Passes never overlap; changes during a pass coalesce into
// one more pass. A pass for a membership or link event whose plan equals the
// last one applied without failures skips the kernel (a member's periodic
// record refresh changes nothing there); the resync, drift repair and the
// control commands always apply.
//
// stop() (SIGTERM) leaves the kernel as it is, so traffic keeps flowing while
// the agent restarts; `down` applies the empty state; `leave` publishes a
// signed leave, downs and wipes the state directory.

import { randomBytes } from 'node:crypto'
import { hostname as osHostname } from 'node:os'
import type { Logger } from '../logging/logger.js'
import { Secret } from '../logging/secret.js'
import type { PeerState, PeerStatus, StatusReport } from '../cli/status-format.js'
import { ControlRefusal, createControlServer, type ControlServer } from '../control/server.js'
import type { WireguardPreference } from '../kernel/capabilities.js'
import { startDriftRepair, type DriftRepair } from '../kernel/drift.js'
import { openKernelLayer, type KernelLayer } from '../kernel/open.js'
import { sameDesiredState } from '../kernel/same-state.js'
import { EMPTY_STATE, type DesiredState, type ObservedLink, type ObservedRoute } from '../kernel/types.js'
import { allocateInterfaceNames } from '../membership/allocation.js'
import { systemInterfaceAddresses, type ListInterfaceAddresses } from '../membership/endpoints.js'
import type { Identity } from '../membership/identity.js'
import { requestAdmission } from '../membership/join-protocol.js'
import { parseNodeId, type NodeId } from '../membership/keys.js'
import { createLinkNegotiator, type LinkNegotiator, type LinkParams } from '../membership/link-negotiation.js'
import type { Network } from '../membership/network.js'
import { createMembershipNode, type MembershipNode } from '../membership/node.js'
import { differsBeyondRefresh, HOSTNAME_FIELD, type Admission } from '../membership/records.js'
import { createMembershipService, type MembershipService } from '../membership/service.js'
import { createToken, MAX_BOOTSTRAP_ADDRESSES, parseToken } from '../membership/token.js'
import { chooseEndpoint, endpointChangeDue, type Endpoint, type EndpointAttempt } from '../planner/endpoint.js'
import { planMesh, type PeerLink } from '../planner/mesh.js'
import { DEFAULT_UNDERLAY_MTU, MAIN_TABLE, underlayMtuTowards } from '../planner/underlay-mtu.js'
import { createPathController, type PathController } from '../paths/controller.js'
import { createProbeService, type ProbeChangeEvent, type ProbeService } from '../probe/service.js'
import { classifyControl, emptyPairLinkDialState, libp2pPortOf, overPairLink, pairLinkDials, type PairLinkDialState } from './control-route.js'
import { createLinkMonitor, isFresh, type LinkMonitor, type LinkMonitorChange } from './link-monitor.js'
import { bootstrapAddressesOf, loadStoredLinks, startLinkStore, type LinkStoreWriter } from './link-store.js'
import {
  loadAdmissions,
  loadIdentity,
  loadNetwork,
  loadOrCreateWireguardKey,
  loadPendingToken,
  removePendingToken,
  saveAdmissions,
  StateError,
  wipeState,
  type WireguardKeys,
} from './state.js'

/**
 * A pass that reads the whole kernel back and applies whatever differs. Changes to links, addresses, routes and
 * rules are repaired on their netlink notifications (drift repair); this catches what nothing notifies (a
 * WireGuard device changed behind meshd's back). Each reads the whole kernel back: a CPU profile of the idle
 * 20-peer agent put 50–100 ms of profiled CPU, garbage included, in each one (issue 5).
 */
export const DEFAULT_RESYNC_INTERVAL_MS = 120_000
/**
 * Own endpoints are gathered again after the kernel reports an address or link change (once it settled: a fresh
 * link reads as not running for up to a second), and otherwise only this often, for what the kernel does not
 * report (addresses peers observed). Each gathering reads every interface (~2 ms at 20 links, issue 5).
 */
const ENDPOINT_SETTLE_MS = 1_000
const ENDPOINT_BACKSTOP_MS = 30_000
/** A peer whose last handshake is older than this is no longer "up" (WireGuard rekeys every 2 min). */
export const HANDSHAKE_FRESH_MS = 3 * 60 * 1000
/**
 * Link monitor interval, idle or not: a link that starts carrying traffic is probed fast from the next poll
 * on, so this bounds how late a path that dies soon after traffic starts is noticed. At 3 s while idle (to
 * save CPU) the failover bench's cut 1 s into a ping stream took 1.5–2.4 s to detect, against 0.74 s on a
 * link already marked active (2026-12-04). A quiet poll is one counters dump (device reads are gated).
 */
export const MONITOR_INTERVAL_MS = 1_000
/** After a restart, links the kernel already has are not removed for this long while negotiation catches up. */
export const ADOPTION_GRACE_MS = 15_000
/** How often an agent with no libp2p connection dials its known addresses again. */
export const RECONNECT_INTERVAL_MS = 5_000
/** With mDNS, how long a join whose token addresses all failed waits for a member on the LAN to show up. */
const MDNS_JOIN_WAIT_MS = 15_000
/** How long the underlay's routes and device MTUs are trusted before they are read again. */
const UNDERLAY_REFRESH_MS = 30_000
/** A libp2p dial through a pair link: the tunnel is up, so an answer comes within a round trip or not at all. */
const PAIR_LINK_DIAL_MS = 5_000
/** How often the agent looks for members reached only through a relay whose pair link is up. */
const PAIR_LINK_CHECK_MS = 5_000

export interface AgentInit {
  stateDir: string
  socketPath: string
  /** libp2p listen multiaddrs; empty: the node's default. */
  listen: readonly string[]
  /** LAN discovery by multicast DNS: members on the same link find each other without the token's addresses. */
  mdns?: boolean
  hostname?: string
  wireguard?: WireguardPreference
  resyncIntervalMs?: number
  /** UDP port of the prober on every link-local address (default 7374). */
  probePort?: number
}

export interface AgentComponents {
  logger: Logger
  interfaceAddresses?: ListInterfaceAddresses
  now?: () => number
}

export interface Agent {
  start(options: { signal: AbortSignal }): Promise<void>
  /** Stops everything the agent runs; kernel objects stay (safe twice). */
  stop(): Promise<void>
  /** Resolves when the agent has stopped, whether by stop(), leave or eviction. */
  readonly stopped: Promise<void>
  /** This host's overlay addresses once its record is published. */
  overlay(): { ipv4: string; ipv6: string } | undefined
  nodeId(): NodeId | undefined
}

/** One peer's state from its WireGuard handshake: up when recent, connecting when a link exists, down otherwise. */
export function peerState(hasLink: boolean, lastHandshakeMs: number | undefined, now: number): PeerState {
  if (!hasLink) return 'down'
  if (lastHandshakeMs !== undefined && now - lastHandshakeMs < HANDSHAKE_FRESH_MS) return 'up'
  return 'connecting'
}

/**
 * The endpoint candidates of a link, in the order to try them: those offered
 * in the negotiation, then any further address in the peer's current record
 * (an offer made while the peer's record was still empty would otherwise
 * leave the link with nowhere to send). Ports are the peer's listen port for
 * this link.
 */
export function endpointCandidates(params: LinkParams, recordAddresses: readonly string[] = []): Endpoint[] {
  const addresses = [...new Set([...params.peerEndpoints.map((candidate) => candidate.address), ...recordAddresses])]
  return addresses.map((address) => ({ address, port: params.peerListenPort }))
}

export interface PeerLinkSources {
  /** The peer's WireGuard key, from its record; a link without one is skipped. */
  publicKeyOf: (peer: NodeId) => string | undefined
  /** The endpoint addresses in the peer's current record. */
  recordAddressesOf?: (peer: NodeId) => readonly string[]
  /** Picks the endpoint (undefined: leave it to WireGuard's roaming); by default the first candidate. */
  endpointFor?: (peer: NodeId, candidates: Endpoint[]) => Endpoint | undefined
  underlayMtuFor?: (address: string) => number
  /** allocateInterfaceNames, or a memoised one (a hash per link, on every pass). */
  interfaceNames?: (self: NodeId, peers: readonly NodeId[]) => Map<NodeId, string>
}

/** The PeerLinks the planner needs, from negotiated link parameters and the members' records. */
export function peerLinksFrom(self: NodeId, links: ReadonlyMap<NodeId, LinkParams>, sources: PeerLinkSources): PeerLink[] {
  const { publicKeyOf } = sources
  const endpointFor = sources.endpointFor ?? ((_peer: NodeId, candidates: Endpoint[]) => candidates[0])
  const underlayMtuFor = sources.underlayMtuFor ?? (() => DEFAULT_UNDERLAY_MTU)
  const peers = [...links.keys()].filter((peer) => publicKeyOf(peer) !== undefined)
  const names = (sources.interfaceNames ?? allocateInterfaceNames)(self, peers)
  const result: PeerLink[] = []
  for (const peer of peers) {
    const params = links.get(peer)
    const ifname = names.get(peer)
    const peerPublicKey = publicKeyOf(peer)
    if (params === undefined || ifname === undefined || peerPublicKey === undefined) continue
    const candidates = endpointCandidates(params, sources.recordAddressesOf?.(peer))
    const endpoint = endpointFor(peer, candidates)
    const family = (endpoint ?? candidates[0])?.address.includes(':') === true ? 6 : 4
    result.push({
      peerId: peer,
      ifname,
      listenPort: params.localListenPort,
      peerPublicKey,
      presharedKey: new Secret(Buffer.from(params.presharedKey.reveal()).toString('base64')),
      ...(endpoint === undefined ? {} : { endpoint }),
      // Negotiation gives "address/prefix"; the planner adds the host prefix itself.
      local4: hostPart(params.addresses.local4),
      peer4: hostPart(params.addresses.peer4),
      local6: hostPart(params.addresses.local6),
      peer6: hostPart(params.addresses.peer6),
      // Towards the endpoint in use, or the first candidate while WireGuard roams.
      underlayMtu: underlayMtuFor((endpoint ?? candidates[0])?.address ?? ''),
      underlayFamily: family,
    })
  }
  return result
}

function hostPart(address: string): string {
  const slash = address.indexOf('/')
  return slash < 0 ? address : address.slice(0, slash)
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/**
 * Whether a pass must go to the kernel: always when forced (the resync, drift repair, a control command) or
 * when the last pass failed somewhere; otherwise only when the plan changed. A member's record refresh
 * (every few minutes each, so several a minute at 20 peers) re-plans the same mesh, and reading the kernel
 * back for it was about a fifth of an idle 20-peer agent's CPU (issue 5).
 */
export function kernelPassNeeded(input: { forced: boolean; desired: DesiredState; appliedCleanly: DesiredState | undefined }): boolean {
  return input.forced || input.appliedCleanly === undefined || !sameDesiredState(input.desired, input.appliedCleanly)
}

export function createAgent(init: AgentInit, components: AgentComponents): Agent {
  const log = components.logger.child({ component: 'agent' })
  const now = components.now ?? Date.now
  const clock = { now }
  const random = (size: number): Uint8Array => new Uint8Array(randomBytes(size))
  const name = sanitizeHostname(init.hostname ?? osHostname())

  let lifecycle: AbortController | undefined
  let phase: 'idle' | 'starting' | 'running' | 'stopping' = 'idle'
  let stopping: Promise<void> | undefined
  let markStopped = (): void => undefined
  const stopped = new Promise<void>((resolve) => (markStopped = resolve))

  let identity: Identity | undefined
  let wgKeys: WireguardKeys | undefined
  let network: Network | undefined
  let kernel: KernelLayer | undefined
  let node: MembershipNode | undefined
  let service: MembershipService | undefined
  let negotiator: LinkNegotiator | undefined
  /** links.json: what a restart adopts (./link-store.ts). */
  let linkStore: LinkStoreWriter | undefined
  let control: ControlServer | undefined
  let drift: DriftRepair | undefined
  let unwatchEndpoints: (() => void) | undefined
  let endpointTimer: NodeJS.Timeout | undefined
  let resyncTimer: NodeJS.Timeout | undefined
  let reconnectTimer: NodeJS.Timeout | undefined
  let reconnecting = false
  let graceTimer: NodeJS.Timeout | undefined
  /** `meshd down`: the kernel holds nothing of meshd until `meshd up`. */
  let idle = false
  let lastDesired: DesiredState | undefined
  /** The last plan the reconciler applied with no failure: an unforced pass with the same plan skips the kernel. */
  let appliedCleanly: DesiredState | undefined
  /** The next pass applies whatever the plan (resync, drift repair, a control command). */
  let applyForced = true
  let adoptUntil = 0
  let adopted = new Set<string>()
  let monitor: LinkMonitor | undefined
  let probes: ProbeService | undefined
  let pathController: PathController | undefined
  let plannedLinks: PeerLink[] = []
  let underlayView: { routes: ObservedRoute[]; links: ObservedLink[]; readAt: number } | undefined
  let monitorTimer: NodeJS.Timeout | undefined
  let pairLinkDialState: PairLinkDialState = emptyPairLinkDialState
  let pairLinksCheckedAt = Number.NEGATIVE_INFINITY
  /** Per link without a fresh handshake: the endpoint being tried, and how many candidates there were to choose from. */
  const endpointAttempts = new Map<NodeId, { attempt: EndpointAttempt; candidates: number }>()

  // ── The loop ───────────────────────────────────────────────────────────────

  let running: Promise<void> | undefined
  let again = false

  const publicKeyOf = (peer: NodeId): string | undefined => service?.member(peer)?.wireguardPublicKey

  /** The link names of the last peer set: the same until a member comes or goes. */
  let namesMemo: { key: string; names: Map<NodeId, string> } | undefined
  const interfaceNames = (self: NodeId, peers: readonly NodeId[]): Map<NodeId, string> => {
    const key = `${self} ${[...peers].sort().join(' ')}`
    if (namesMemo?.key !== key) namesMemo = { key, names: allocateInterfaceNames(self, peers) }
    return namesMemo.names
  }

  /** Endpoint per link: none while the handshake is fresh (WireGuard roams), else the candidates in turn. */
  const endpointFor = (peer: NodeId, candidates: Endpoint[]): Endpoint | undefined => {
    const fresh = isFresh(monitor?.get(peer), now(), HANDSHAKE_FRESH_MS)
    const choice = chooseEndpoint(candidates, fresh, endpointAttempts.get(peer)?.attempt, now())
    if (choice.attempt) endpointAttempts.set(peer, { attempt: choice.attempt, candidates: candidates.length })
    else endpointAttempts.delete(peer)
    return choice.endpoint
  }

  /** Points the monitor at the current links; reads them first when one is new, so a restart never overrides a roamed endpoint. */
  /** The main table and device MTUs, re-read at most every UNDERLAY_REFRESH_MS (mesh link MTUs follow the underlay's). */
  const refreshUnderlay = async (signal: AbortSignal): Promise<void> => {
    if (!kernel || (underlayView !== undefined && now() - underlayView.readAt < UNDERLAY_REFRESH_MS)) return
    const rtnl = kernel.rtnl
    const links = rtnl.linkList({ signal })
    const [routes, linkList] = await Promise.all([rtnl.routeList({ signal, links, tables: (table) => table === MAIN_TABLE }), links])
    underlayView = { routes, links: linkList, readAt: now() }
  }

  const refreshMonitor = async (signal: AbortSignal): Promise<void> => {
    if (!monitor || !negotiator || !identity) return
    const links = peerLinksFrom(identity.nodeId, negotiator.links(), { publicKeyOf, interfaceNames })
    monitor.setLinks(links.map((l) => ({ peerId: l.peerId, ifname: l.ifname, peerPublicKey: l.peerPublicKey })))
    if (links.some((l) => monitor?.get(l.peerId) === undefined)) await monitor.poll({ signal })
  }

  /** Per underlay view, the MTU towards each address: a lookup scans the main table, and every pass asks for every link. */
  const underlayMtus = new WeakMap<NonNullable<typeof underlayView>, Map<string, number>>()
  const underlayMtuOf = (view: NonNullable<typeof underlayView>, address: string): number => {
    let known = underlayMtus.get(view)
    if (known === undefined) underlayMtus.set(view, (known = new Map<string, number>()))
    let mtu = known.get(address)
    if (mtu === undefined) known.set(address, (mtu = underlayMtuTowards(address, view.routes, view.links)))
    return mtu
  }

  const desiredState = (): DesiredState | undefined => {
    if (idle) return EMPTY_STATE
    if (!service || !negotiator || !kernel || !identity || !wgKeys || !network) return undefined
    const own = service.ownRecord()
    if (own === undefined) return undefined
    const self = identity.nodeId
    const underlay = underlayView
    const links = peerLinksFrom(self, negotiator.links(), {
      publicKeyOf,
      interfaceNames,
      recordAddressesOf: (peer) => service?.member(peer)?.endpoints.map((e) => e.address) ?? [],
      endpointFor,
      underlayMtuFor: (address) => (underlay === undefined ? DEFAULT_UNDERLAY_MTU : underlayMtuOf(underlay, address)),
    })
    plannedLinks = links
    return planMesh({
      self: { nodeId: self, overlay4: own.overlayIpv4, overlay6: own.overlayIpv6, overlayDevice: kernel.capabilities.overlayDevice },
      privateKey: wgKeys.privateKey,
      networkCidr4: network.ipv4Cidr,
      networkCidr6: network.ipv6Ula,
      members: service.members().map((record) => ({ nodeId: record.nodeId, overlay4: record.overlayIpv4, overlay6: record.overlayIpv6 })),
      links,
      paths: pathController?.choices() ?? new Map(),
    })
  }

  /** Whether every change went through. */
  const applyDesired = async (desired: DesiredState, signal: AbortSignal): Promise<boolean> => {
    if (!kernel) return false
    const result = await kernel.reconciler.apply(desired, { signal })
    for (const failure of result.failures) log.warn({ op: failure.description, err: failure.error.message }, 'kernel change failed')
    if (result.applied.length > 0) log.info({ changes: result.applied.length, failures: result.failures.length }, 'mesh applied')
    return result.failures.length === 0
  }

  const pass = async (): Promise<void> => {
    const signal = lifecycle?.signal
    if (!signal || signal.aborted) return
    const forced = applyForced
    applyForced = false
    if (!idle) {
      await refreshUnderlay(signal).catch((error: unknown) => {
        log.debug({ err: errorText(error) }, 'reading the underlay routes failed; assuming a 1500-byte underlay')
      })
      await refreshMonitor(signal)
    }
    const desired = desiredState()
    if (desired === undefined) return
    // After a restart, keep the links the kernel already has until negotiation has caught up with them.
    if (!idle && now() < adoptUntil) {
      const wanted = new Set(desired.links.map((l) => l.name))
      if ([...adopted].some((ifname) => !wanted.has(ifname))) {
        log.debug({ kept: adopted.size }, 'waiting for links to be renegotiated before applying')
        return
      }
      adoptUntil = 0
    }
    lastDesired = desired
    if (kernelPassNeeded({ forced, desired, appliedCleanly })) {
      appliedCleanly = undefined
      if (await applyDesired(desired, signal)) appliedCleanly = desired
    }
    updateProbeTopology()
    refreshActivity()
  }

  /** Probes follow the links the kernel now has (their sockets bind to the links' addresses). */
  const updateProbeTopology = (): void => {
    if (!pathController || !identity || !service) return
    if (idle) {
      pathController.setTopology([], [])
      return
    }
    const self = identity.nodeId
    pathController.setTopology(
      plannedLinks.map((l) => ({ peerId: l.peerId, local4: l.local4, peer4: l.peer4 })),
      service.members().map((m) => m.nodeId).filter((id) => id !== self),
    )
  }

  /**
   * Runs a pass now, or once more after the current one; resolves when the state as of this call is applied.
   * `onlyIfChanged`: the kernel is touched only when the plan differs from the last clean one.
   */
  const schedule = (options: { onlyIfChanged?: boolean } = {}): Promise<void> => {
    if (options.onlyIfChanged !== true) applyForced = true
    if (phase !== 'running') return Promise.resolve()
    if (running) {
      again = true
      return running
    }
    running = (async () => {
      try {
        do {
          again = false
          await pass().catch((error: unknown) => {
            log.warn({ err: errorText(error) }, 'applying the mesh failed')
          })
        } while (again && phase === 'running')
      } finally {
        running = undefined
      }
    })()
    return running
  }
  const trigger = (): void => {
    void schedule()
  }
  /** For events that change the plan when they matter (membership, links, paths, the monitor). */
  const triggerOnChange = (): void => {
    void schedule({ onlyIfChanged: true })
  }

  // ── Staying connected ──────────────────────────────────────────────────────

  /**
   * With no libp2p connection at all, dial the token's and stored bootstrap
   * addresses and the members' known addresses until one answers. A joiner
   * whose first connection dropped before its membership service started (a
   * slow host) would otherwise stay alone for good; a connection brings a sync
   * both ways.
   */
  const reconnect = async (startBootstrap: readonly string[], signal: AbortSignal | undefined): Promise<void> => {
    if (!node || !service || !signal || signal.aborted || reconnecting || !node.isStarted || node.hasConnections()) return
    reconnecting = true
    try {
      const addresses = [...new Set([...startBootstrap, ...bootstrapAddressesOf(service.peers())])]
      for (const address of addresses) {
        if (signal.aborted || node.hasConnections()) return
        try {
          await node.dial(address, { signal: AbortSignal.any([signal, AbortSignal.timeout(RECONNECT_INTERVAL_MS)]) })
          log.info({ address }, 'reconnected to the mesh')
          return
        } catch (error) {
          log.debug({ address, err: errorText(error) }, 'reconnect dial failed')
        }
      }
    } finally {
      reconnecting = false
    }
  }

  // ── Control traffic through pair links (./control-route.ts) ───────────────

  /** Members reached only through a relay whose pair link is up: libp2p moves onto the link. */
  const moveControlOntoPairLinks = async (signal: AbortSignal): Promise<void> => {
    if (!node?.isStarted || !identity || !service || !probes) return
    const at = now()
    // Not on every monitor poll: each check reads every member's connections, and nothing here is urgent.
    if (at - pairLinksCheckedAt < PAIR_LINK_CHECK_MS) return
    pairLinksCheckedAt = at
    const linked = plannedLinks.map((link) => ({ link, connections: node?.connectionsTo(link.peerId as NodeId) ?? [] }))
    // The usual case, every member reached directly or over its link: no prober snapshot, no state to keep.
    if (linked.every(({ link, connections }) => ['direct', 'pair-link'].includes(classifyControl(connections, link.peer4) ?? ''))) {
      pairLinkDialState = emptyPairLinkDialState
      return
    }
    const alive = probes.snapshot().links
    const candidates = linked.map(({ link, connections }) => ({
      peer: link.peerId,
      connections,
      linkUp: isFresh(monitor?.get(link.peerId), at, HANDSHAKE_FRESH_MS) && alive.get(link.peerId)?.alive === true,
      peer4: link.peer4,
      libp2pPort: libp2pPortOf(service?.member(link.peerId as NodeId)?.endpoints ?? []),
    }))
    const step = pairLinkDials(identity.nodeId, candidates, pairLinkDialState, at)
    pairLinkDialState = step.state
    for (const dial of step.dials) {
      const peer = dial.peer as NodeId
      try {
        await node.dial(dial.address, { signal: AbortSignal.any([signal, AbortSignal.timeout(PAIR_LINK_DIAL_MS)]) })
        const closed = await node.closeConnections(peer, (remote) => remote.includes('/p2p-circuit'), { signal })
        log.info({ peer, relayedClosed: closed }, 'control connection moved onto the pair link')
      } catch (error) {
        log.debug({ peer, address: dial.address, connections: node.connectionsTo(peer), err: errorText(error) }, 'dial over the pair link failed')
      }
    }
  }

  /** A pair link the prober holds dead cannot carry libp2p either: close that connection, so streams go direct or through a relay. */
  const onProbeChange = (event: ProbeChangeEvent): void => {
    if (event.kind !== 'link-dead' || !node?.isStarted) return
    const peer4 = plannedLinks.find((link) => link.peerId === event.peerId)?.peer4
    const signal = lifecycle?.signal
    if (peer4 === undefined || !signal) return
    void node
      .closeConnections(event.peerId as NodeId, (remote) => overPairLink(remote, peer4), { signal })
      .then((closed) => {
        if (closed > 0) log.info({ peer: event.peerId }, 'pair link dead: its control connection closed')
      })
      .catch((error: unknown) => {
        log.debug({ peer: event.peerId, err: errorText(error) }, 'closing the control connection over a dead pair link failed')
      })
  }

  // ── Link monitor: handshakes and traffic, polled ──────────────────────────

  /**
   * Destinations with traffic flowing are probed fast, so a dead path is
   * noticed within a second: traffic to a destination flows over its direct
   * link or, when relayed, over the relay's link.
   */
  const refreshActivity = (): void => {
    if (!probes || !pathController || !service || !identity) return
    const linkActive = (peer: string): boolean => monitor?.get(peer)?.active === true
    const choices = pathController.choices()
    for (const record of service.peers()) {
      const via = choices.get(record.nodeId)?.via ?? null
      probes.setActive(record.nodeId, linkActive(record.nodeId) || (via !== null && linkActive(via)))
    }
  }
  const onMonitorChange = (change: LinkMonitorChange): void => {
    if (change.activity.length > 0) refreshActivity()
  }

  const endpointAttemptExpired = (): boolean => {
    const at = now()
    for (const { attempt, candidates } of endpointAttempts.values()) if (endpointChangeDue(attempt, candidates, at)) return true
    return false
  }

  const scheduleMonitor = (signal: AbortSignal): void => {
    const linkCount = plannedLinks.length
    // Slower only with hundreds of links (a dump of each, and the device reads due); never less than every 5 s.
    const interval = Math.min(5_000, Math.max(MONITOR_INTERVAL_MS, linkCount * 10))
    monitorTimer = setTimeout(() => {
      void (async () => {
        if (signal.aborted || idle || !monitor) return
        const change = await monitor.poll({ signal })
        onMonitorChange(change)
        if (change.freshness.length > 0 || endpointAttemptExpired()) triggerOnChange()
        await moveControlOntoPairLinks(signal)
      })()
        .catch((error: unknown) => {
          log.debug({ err: errorText(error) }, 'link monitor poll failed')
        })
        .finally(() => {
          if (!signal.aborted) scheduleMonitor(signal)
        })
    }, interval)
  }

  // ── Control handlers ───────────────────────────────────────────────────────

  const status = async (signal: AbortSignal): Promise<StatusReport> => {
    if (!service || !identity || !network || !kernel || !negotiator) throw new ControlRefusal('the agent is still starting', 'starting')
    const own = service.ownRecord()
    const links = negotiator.links()
    const names = interfaceNames(identity.nodeId, [...links.keys()].filter((peer) => service?.member(peer) !== undefined))
    const current = now()
    const peers: PeerStatus[] = []
    for (const record of service.peers()) {
      const ifname = names.get(record.nodeId)
      const params = links.get(record.nodeId)
      let device
      if (ifname !== undefined && !idle) device = await kernel.wireguard.get(ifname, { signal }).catch(() => undefined)
      const wgPeer = device?.peers.find((p) => p.publicKey === record.wireguardPublicKey)
      const path = idle ? undefined : pathController?.report(record.nodeId)
      const endpoint = wgPeer?.endpoint ?? (params?.peerEndpoints[0] ? { address: params.peerEndpoints[0].address, port: params.peerListenPort } : undefined)
      const control = node?.isStarted === true ? classifyControl(node.connectionsTo(record.nodeId), params === undefined ? undefined : hostPart(params.addresses.peer4)) : null
      peers.push({
        id: record.nodeId,
        name: record.hostname,
        addresses: [record.overlayIpv4, record.overlayIpv6],
        state: peerState(device !== undefined, wgPeer?.lastHandshakeMs, current),
        interface: device === undefined ? null : (ifname ?? null),
        endpoint: endpoint === undefined ? null : endpoint.address.includes(':') ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`,
        lastHandshake: wgPeer?.lastHandshakeMs === undefined ? null : new Date(wgPeer.lastHandshakeMs).toISOString(),
        rxBytes: wgPeer?.rxBytes ?? 0,
        txBytes: wgPeer?.txBytes ?? 0,
        rttMs: path?.rttMs ?? null,
        jitterMs: path?.jitterMs ?? null,
        lossPct: path?.lossPct ?? null,
        path: { via: path?.via ?? null, forwardSavingMs: path?.forwardSavingMs ?? null },
        returnPath: probes?.reportedPath(record.nodeId) ?? null,
        control,
      })
    }
    return {
      self: {
        id: identity.nodeId,
        name,
        addresses: own === undefined ? [] : [own.overlayIpv4, own.overlayIpv6],
        network: { id: network.id, name: network.name },
        wireguardBackend: kernel.wireguard.kind,
        fallbacks: kernel.capabilities.fallbacks,
        rpFilter: 'loose',
      },
      peers,
    }
  }

  const bootstrapAddresses = (): string[] => {
    const all = node?.listenAddresses() ?? []
    const isLoopback = (a: string): boolean => a.startsWith('/ip4/127.') || a.startsWith('/ip6/::1/')
    // Relayed addresses last: a joiner should try this host's own addresses first.
    const outside = all.filter((a) => !isLoopback(a)).sort((x, y) => Number(x.includes('/p2p-circuit')) - Number(y.includes('/p2p-circuit')))
    return (outside.length > 0 ? outside : all).slice(0, MAX_BOOTSTRAP_ADDRESSES)
  }

  const handlers = {
    status: (_params: Record<string, unknown>, options: { signal: AbortSignal }) => status(options.signal),
    'token.create': (params: Record<string, unknown>) => {
      if (!network || !identity) throw new ControlRefusal('the agent is still starting', 'starting')
      const ttlMs = typeof params.ttlMs === 'number' ? params.ttlMs : undefined
      const uses = typeof params.uses === 'number' ? params.uses : undefined
      let token
      try {
        token = createToken({ network, issuer: identity, bootstrap: bootstrapAddresses(), now: now(), random, ...(ttlMs === undefined ? {} : { ttlMs }), ...(uses === undefined ? {} : { maxUses: uses }) })
      } catch (error) {
        if (error instanceof RangeError) throw new ControlRefusal(error.message, 'bad-request')
        throw error
      }
      log.info({ ttlMs, uses }, 'join token created')
      return Promise.resolve({ token: token.reveal() })
    },
    down: async () => {
      idle = true
      await schedule()
      log.info('mesh down: meshd kernel objects removed; idle until "meshd up"')
      return {}
    },
    up: async () => {
      idle = false
      adoptUntil = 0
      await schedule()
      return {}
    },
    leave: async (_params: Record<string, unknown>, options: { signal: AbortSignal }) => {
      if (!service) throw new ControlRefusal('the agent is still starting', 'starting')
      await service.leave(options)
      idle = true
      await schedule()
      await linkStore?.close()
      await wipeState(init.stateDir)
      log.info('left the network; state wiped')
      // Answer first, then stop (stopping closes the control socket).
      setTimeout(() => void agent.stop(), 200)
      return {}
    },
    ping: async (params: Record<string, unknown>, options: { signal: AbortSignal }) => {
      if (!service || !probes || !pathController) throw new ControlRefusal('the agent is still starting', 'starting')
      const wanted = typeof params.peer === 'string' ? params.peer : ''
      const matches = service.peers().filter((r) => r.nodeId === wanted || r.hostname === wanted)
      const target = matches[0]
      if (target === undefined) throw new ControlRefusal(`no peer "${wanted}" (see "meshd peers" for names and ids)`, 'bad-request')
      if (matches.length > 1) throw new ControlRefusal(`"${wanted}" names ${matches.length} peers; use the node id`, 'bad-request')
      const count = typeof params.count === 'number' && Number.isInteger(params.count) && params.count >= 1 && params.count <= 100 ? params.count : 5
      const result = await probes.ping(target.nodeId, { count, signal: options.signal })
      const nameOf = new Map(service.peers().map((r) => [r.nodeId as string, r.hostname]))
      return {
        peer: { id: target.nodeId, name: target.hostname },
        chosen: pathController.choices().get(target.nodeId)?.via ?? null,
        paths: result.paths.map((path) => ({
          via: path.via,
          viaName: path.via === null ? null : (nameOf.get(path.via) ?? path.via),
          returnLeg: path.returnLeg,
          sent: path.sent,
          received: path.received,
          minMs: path.minMs ?? null,
          avgMs: path.avgMs ?? null,
          maxMs: path.maxMs ?? null,
        })),
      }
    },
    evict: async (params: Record<string, unknown>, options: { signal: AbortSignal }) => {
      if (!service) throw new ControlRefusal('the agent is still starting', 'starting')
      const target = typeof params.node === 'string' ? parseNodeId(params.node) : undefined
      if (target === undefined) throw new ControlRefusal('not a node id (see "meshd status" for ids)', 'bad-request')
      if (target === identity?.nodeId) throw new ControlRefusal('a host cannot evict itself; use "meshd leave"', 'bad-request')
      const reason = typeof params.reason === 'string' ? params.reason : 'evicted by an operator'
      await service.evict(target, reason, options)
      trigger()
      return {}
    },
  }

  // ── Lifecycle ──────────────────────────────────────────────────────────────

  const admit = async (signal: AbortSignal): Promise<Admission[]> => {
    const stored = await loadAdmissions(init.stateDir)
    if (stored !== undefined) return stored
    if (network && identity && network.founder === identity.nodeId) return []
    const tokenText = await loadPendingToken(init.stateDir)
    if (tokenText === undefined) throw new StateError('missing', `${init.stateDir} holds a network but neither an admission nor a join token; run "meshd leave" and join again`)
    const parsed = parseToken(tokenText.reveal(), { now: now(), ...(network ? { expectedNetworkId: network.id } : {}) })
    if (!parsed.ok) throw new StateError('corrupt', `the saved join token is no longer usable: ${parsed.reason}`)
    if (!node) throw new Error('node not built')
    const admissions = await requestAdmission(
      { token: parsed.token, tokenText, ...(init.mdns === true ? { discoveryWaitMs: MDNS_JOIN_WAIT_MS } : {}) },
      { node, logger: components.logger, clock },
      { signal },
    )
    await saveAdmissions(init.stateDir, admissions)
    await removePendingToken(init.stateDir)
    return admissions
  }

  const agent: Agent = {
    stopped,
    overlay() {
      const own = service?.ownRecord()
      return own === undefined ? undefined : { ipv4: own.overlayIpv4, ipv6: own.overlayIpv6 }
    },
    nodeId: () => identity?.nodeId,

    async start(options) {
      if (phase !== 'idle') return
      phase = 'starting'
      lifecycle = new AbortController()
      const signal = AbortSignal.any([lifecycle.signal, options.signal])
      try {
        identity = await loadIdentity(init.stateDir)
        wgKeys = await loadOrCreateWireguardKey(init.stateDir)
        network = await loadNetwork(init.stateDir)
        if (network === undefined) throw new StateError('missing', `no network in ${init.stateDir}; run "meshd init" or "meshd join <token>" first`)
        kernel = await openKernelLayer({ wireguard: init.wireguard ?? 'auto' }, { logger: components.logger }, signal)
        adopted = new Set(await kernel.wireguard.listInterfaces({ signal }))
        const wireguard = kernel.wireguard
        const linkCounters = kernel.linkCounters
        monitor = createLinkMonitor({
          readDevice: (ifname, o) => wireguard.get(ifname, o),
          now,
          freshMs: HANDSHAKE_FRESH_MS,
          probeBytes: () => new Map([...(probes?.probeBytes() ?? [])].map(([peer, { tx, rx }]) => [peer, tx + rx])),
          readCounters: async (o) => new Map((await linkCounters.read(o)).map((c) => [c.name, c])),
          probeInnerBytes: () => new Map([...(probes?.probeBytes() ?? [])].map(([peer, { inner }]) => [peer, inner])),
        })
        adoptUntil = adopted.size > 0 ? now() + ADOPTION_GRACE_MS : 0

        const pending = await loadPendingToken(init.stateDir)
        const pendingParsed = pending === undefined ? undefined : parseToken(pending.reveal(), { now: now() })
        // After a restart: the links to adopt, and the members to dial (the token is gone once admitted).
        const stored = await loadStoredLinks(init.stateDir, identity.nodeId, log)
        const bootstrap = [...(pendingParsed?.ok === true ? pendingParsed.token.bootstrap : []), ...stored.bootstrap]
        node = createMembershipNode(
          {
            ...(init.listen.length > 0 ? { listen: init.listen } : {}),
            bootstrap,
            mdns: init.mdns === true,
            // A slot on a relaying member, so members that cannot dial this host (NAT) still reach it for control traffic.
            relay: { server: true, reserve: true },
          },
          { identity, network, logger: components.logger, clock },
        )
        await node.start({ signal })
        const admissions = await admit(signal)

        service = createMembershipService(
          {
            hostname: name,
            wireguardPublicKey: wgKeys.publicKey,
            capabilities: { linkKinds: ['wireguard'], wireguardBackend: kernel.wireguard.kind },
            admissions,
            endpointCheckIntervalMs: ENDPOINT_BACKSTOP_MS,
          },
          {
            node,
            identity,
            network,
            logger: components.logger,
            clock,
            interfaceAddresses: components.interfaceAddresses ?? systemInterfaceAddresses,
            // Published with each record refresh, so others can rank this host as a relay.
            linkRtts: () =>
              [...(probes?.snapshot().links.values() ?? [])].flatMap((stats) => {
                const peer = parseNodeId(stats.peerId)
                return stats.alive && stats.rttMs !== undefined && peer !== undefined ? [{ peer, rttMs: stats.rttMs }] : []
              }),
          },
        )
        negotiator = createLinkNegotiator({ adopted: stored.links }, { node, service, identity, logger: components.logger, clock, random })
        linkStore = startLinkStore({ stateDir: init.stateDir }, { negotiator, service, logger: components.logger })
        for (const event of ['member:up', 'member:down', 'self:published'] as const) service.events.on(event, triggerOnChange)
        // A plain refresh (every member's, every 200 s) changes nothing the pass builds from.
        service.events.on('member:updated', (record, previous) => {
          if (differsBeyondRefresh(record, previous)) triggerOnChange()
        })
        service.events.on('self:evicted', () => {
          log.warn('this host was evicted from the network; removing its mesh')
          idle = true
          void schedule().finally(() => void agent.stop())
        })
        negotiator.events.on('link:negotiated', triggerOnChange)
        negotiator.events.on('link:removed', triggerOnChange)
        negotiator.start()
        probes = createProbeService(
          {
            selfId: identity.nodeId,
            logger: components.logger,
            now,
            forwardPathTo: (peer) => pathController?.via(peer) ?? null,
            ...(init.probePort === undefined ? {} : { port: init.probePort }),
          },
          lifecycle.signal,
        )
        probes.onChange(onProbeChange)
        pathController = createPathController(
          {},
          {
            probes,
            logger: components.logger,
            now,
            onPathsChanged: triggerOnChange,
            // From the relay's gossiped record: so relays are ranked by both legs without probing them all.
            reportedRttMs: (relay, destination) => service?.member(relay as NodeId)?.linkRtts.find((l) => l.peer === destination)?.rttMs,
          },
        )
        pathController.start(lifecycle.signal)
        await service.start({ signal })

        control = createControlServer({ socketPath: init.socketPath }, { handlers, logger: components.logger })
        await control.start()

        phase = 'running'
        drift = startDriftRepair(
          {},
          {
            rtnl: kernel.rtnl,
            logger: components.logger,
            // Through the same queue as every other pass, so two applies never race.
            repair: () => (lastDesired === undefined ? Promise.resolve() : schedule()),
          },
          lifecycle.signal,
        )
        unwatchEndpoints = kernel.rtnl.watch((what) => {
          if ((what !== 'address' && what !== 'link') || endpointTimer !== undefined) return
          endpointTimer = setTimeout(() => {
            endpointTimer = undefined
            service?.checkEndpointsSoon()
          }, ENDPOINT_SETTLE_MS)
        })
        resyncTimer = setInterval(trigger, init.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS)
        reconnectTimer = setInterval(() => void reconnect(bootstrap, lifecycle?.signal), RECONNECT_INTERVAL_MS)
        scheduleMonitor(lifecycle.signal)
        if (adoptUntil > 0) graceTimer = setTimeout(trigger, ADOPTION_GRACE_MS + 100)
        log.info({ node: identity.nodeId, network: network.name, overlay: service.ownRecord()?.overlayIpv4, wireguard: kernel.wireguard.kind }, 'agent started')
        await schedule()
      } catch (error) {
        await agent.stop()
        throw error
      }
    },

    stop() {
      if (stopping) return stopping
      if (phase === 'idle' && !lifecycle) {
        markStopped()
        return Promise.resolve()
      }
      phase = 'stopping'
      stopping = (async () => {
        const signal = AbortSignal.timeout(10_000)
        if (resyncTimer) clearInterval(resyncTimer)
        if (reconnectTimer) clearInterval(reconnectTimer)
        if (monitorTimer) clearTimeout(monitorTimer)
        if (graceTimer) clearTimeout(graceTimer)
        drift?.stop()
        unwatchEndpoints?.()
        if (endpointTimer) clearTimeout(endpointTimer)
        lifecycle?.abort(new Error('agent stopped'))
        await running?.catch(() => undefined)
        const steps: (() => Promise<void> | void)[] = [
          () => control?.stop(),
          () => linkStore?.close(),
          () => negotiator?.stop(),
          () => service?.stop({ signal }),
          () => node?.stop({ signal }),
          // Closes netlink sockets only; interfaces and wireguard-go processes stay (the kernel keeps forwarding).
          () => probes?.close(),
          () => kernel?.close(),
        ]
        for (const step of steps) {
          try {
            await step()
          } catch (error) {
            log.debug({ err: errorText(error) }, 'stop step failed')
          }
        }
        phase = 'idle'
        log.info('agent stopped')
        markStopped()
      })()
      return stopping
    },
  }
  return agent
}

/** The hostname advertised in the record, reduced to what records accept. */
export function sanitizeHostname(text: string): string {
  const cleaned = text.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, HOSTNAME_FIELD.maxLength)
  return cleaned === '' ? 'host' : cleaned
}
