// The membership service: what this node believes about the membership, kept
// current over libp2p. It holds the record store (./record-store.ts, pure),
// feeds it every gossip message and every synced object, publishes and
// refreshes this node's own signed record, sweeps expired records, admits
// joiners, and tells the agent about changes through typed events.
//
// Every object from the network goes through acceptRecord; a rejection is
// logged at debug with its reason, counted, and never changes state.

import { EventEmitter } from 'node:events'
import type { Logger } from '../logging/logger.js'
import { allocateOverlayIpv4, overlayIpv6, type OverlayClaim } from './allocation.js'
import { SIGNATURE_BYTES } from './codec.js'
import { Counters } from './counters.js'
import { NotStartedError } from './errors.js'
import { gatherEndpoints, tcpPortOfMultiaddrs, type ListInterfaceAddresses } from './endpoints.js'
import type { SignalOptions } from './framed-stream.js'
import type { Identity } from './identity.js'
import { JOIN_PROTOCOL, serveJoin, type AdmitDecision } from './join-protocol.js'
import type { NodeId } from './keys.js'
import type { Network } from './network.js'
import type { Clock, GossipVerdict, MembershipNode } from './node.js'
import {
  acceptRecord,
  admitJoiner,
  createRecordStore,
  members,
  sweepExpired,
  type Outcome,
  type RecordStoreOptions,
  type RecordStoreState,
  type RejectReason,
} from './record-store.js'
import { MAX_LINK_RTTS, nextSequence, signEviction, signLeave, signPeerRecord, type Admission, type Capabilities, type EndpointCandidate, type LinkRtt, type PeerRecord } from './records.js'
import { SYNC_PROTOCOL, exchangeRecords } from './sync-protocol.js'
import { parseToken } from './token.js'

export const DEFAULT_RECORD_LIFETIME_MS = 10 * 60 * 1000
export const DEFAULT_ENDPOINT_CHECK_MS = 5_000
export const DEFAULT_SWEEP_INTERVAL_MS = 5_000
export const DEFAULT_SYNC_TIMEOUT_MS = 10_000
export const DEFAULT_JOIN_TIMEOUT_MS = 10_000

export interface MembershipServiceInit {
  hostname: string
  /** Base64 Curve25519 key of this host's WireGuard interfaces. */
  wireguardPublicKey: string
  capabilities: Capabilities
  /** Subnets this node routes for (advertised; may be empty). */
  routes?: readonly string[]
  /** Public addresses of this host (e.g. behind port forwarding); the port defaults to the libp2p TCP port. */
  publicEndpoints?: readonly { address: string; port?: number }[]
  /** An overlay IPv4 address the operator asked for. */
  staticOverlayIpv4?: string
  /** This node's admission chain: empty for the founder, from requestAdmission for a joiner. */
  admissions: readonly Admission[]
  /** How long a published record lives; default 10 min. */
  recordLifetimeMs?: number
  /** How often the record is re-published; default a third of its lifetime, so two refreshes can be lost. */
  refreshIntervalMs?: number
  sweepIntervalMs?: number
  /** How often the host's own endpoints are gathered again; a change is published at once. Default 5 s (the agent, which also checks on kernel address notifications, uses 30 s). */
  endpointCheckIntervalMs?: number
  syncTimeoutMs?: number
  /** Keep loopback addresses among endpoint candidates (single-host tests). */
  includeLoopbackEndpoints?: boolean
  recordStore?: Partial<RecordStoreOptions>
}

export interface MembershipServiceComponents {
  node: MembershipNode
  identity: Identity
  network: Network
  logger: Logger
  clock: Clock
  interfaceAddresses: ListInterfaceAddresses
  /** This node's measured link RTTs, published in its record (the fastest MAX_LINK_RTTS) so others can pick relays. */
  linkRtts?: () => readonly LinkRtt[]
}

export type DownReason = 'leave' | 'evicted' | 'expired'

export interface MemberDown {
  readonly nodeId: NodeId
  readonly reason: DownReason
}

/** Events about other members (never about this node itself, except `self:evicted`). */
export interface MembershipEvents {
  'member:up': [record: PeerRecord]
  'member:updated': [record: PeerRecord, previous: PeerRecord]
  'member:down': [down: MemberDown]
  /** This node's own record was published (after start, refresh, or an address change). */
  'self:published': [record: PeerRecord]
  /** Another member evicted this node: it no longer belongs and stops publishing. */
  'self:evicted': []
}

export type RecordSource = 'gossip' | 'sync' | 'local'

export interface MembershipService {
  readonly nodeId: NodeId
  readonly events: EventEmitter<MembershipEvents>
  /** Rejections by reason (`record.rejected.<reason>`) and protocol outcomes; the agent exposes them. */
  readonly counters: Counters
  start(options: SignalOptions): Promise<void>
  stop(options: SignalOptions): Promise<void>
  /** All current members, this node included, in node-id order. */
  members(): PeerRecord[]
  /** Current members other than this node. */
  peers(): PeerRecord[]
  member(nodeId: NodeId): PeerRecord | undefined
  ownRecord(): PeerRecord | undefined
  isEvicted(nodeId: NodeId): boolean
  /** The immutable store state, for inspection. */
  state(): RecordStoreState
  /** This node's admission chain (to persist, and to admit others). */
  readonly admissions: readonly Admission[]
  /** Signs and publishes a fresh record now (e.g. after an endpoint change). */
  refresh(options: SignalOptions): Promise<PeerRecord>
  /** Publishes a signed leave; the node stops refreshing. Stop the node afterwards. */
  leave(options: SignalOptions): Promise<void>
  /** Publishes a signed eviction of `nodeId`. */
  evict(nodeId: NodeId, reason: string, options: SignalOptions): Promise<void>
  /** An address of this host as a peer saw it (link negotiation reports these); used as an endpoint candidate. */
  noteObservedAddress(address: string): void
  /** Gathers own endpoints again now (after the one running, if any) and publishes a record if they changed (e.g. the kernel reported an address change). */
  checkEndpointsSoon(): void
  /** Judges one signed object as if it came from the network (used by tests and by the sync protocol). */
  receive(bytes: Uint8Array, source: RecordSource): Outcome
}

const MAX_OBSERVED_ADDRESSES = 8

const ALREADY_HELD: Outcome = { accepted: false, reason: 'replayed', detail: 'already held' }

/** An Ed25519 signature identifies its signed object (body and signer) for all practical purposes. */
function signatureKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + bytes.length - SIGNATURE_BYTES, SIGNATURE_BYTES).toString('base64')
}

/** Verdict for gossipsub: forward what we accepted, drop quietly what an honest peer could relay, penalise garbage. */
const REJECTION_VERDICT: Record<RejectReason, GossipVerdict> = {
  malformed: 'reject',
  'bad-signature': 'reject',
  'wrong-network': 'reject',
  // Honest relays forward these before they learn of a newer record, an eviction or an expiry.
  'no-admission': 'ignore',
  replayed: 'ignore',
  expired: 'ignore',
  evicted: 'ignore',
}

export function createMembershipService(init: MembershipServiceInit, components: MembershipServiceComponents): MembershipService {
  const { node, identity, network, clock } = components
  const log = components.logger.child({ component: 'membership' })
  const events = new EventEmitter<MembershipEvents>()
  const counters = new Counters()
  const lifetimeMs = init.recordLifetimeMs ?? DEFAULT_RECORD_LIFETIME_MS
  const refreshMs = init.refreshIntervalMs ?? Math.floor(lifetimeMs / 3)
  const sweepMs = init.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS
  const syncTimeoutMs = init.syncTimeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS
  const admissions: readonly Admission[] = [...init.admissions]

  let state = createRecordStore(network, init.recordStore)
  /** Signed leaves still remembered by the store, re-sent to late joiners so they cannot be fooled by a stale record. */
  const leaves = new Map<NodeId, Uint8Array>()
  const observed: string[] = []
  let lastSeq: number | undefined
  let phase: 'idle' | 'running' | 'left' | 'evicted' = 'idle'
  let timers: NodeJS.Timeout[] = []
  let lifecycle: AbortController | undefined
  let publishing: Promise<PeerRecord> | undefined

  const emit = <K extends keyof MembershipEvents>(name: K, ...args: MembershipEvents[K]): void => {
    try {
      ;(events.emit as (name: K, ...args: MembershipEvents[K]) => boolean)(name, ...args)
    } catch (error) {
      log.warn({ event: name, err: error instanceof Error ? error.message : 'unknown' }, 'membership event listener threw')
    }
  }

  /**
   * Signatures of the objects held now. Sync re-sends everything a peer
   * holds, and verifying a record with its admission chain costs several
   * Ed25519 verifications; an object we hold byte for byte needs none.
   */
  let heldIndex: { for: RecordStoreState; signatures: Set<string> } | undefined
  const isHeld = (bytes: Uint8Array): boolean => {
    if (heldIndex?.for !== state) {
      const signatures = new Set<string>()
      for (const record of state.peers.values()) signatures.add(signatureKey(record.bytes))
      for (const eviction of state.evictionLog.values()) signatures.add(signatureKey(eviction.bytes))
      for (const leave of leaves.values()) signatures.add(signatureKey(leave))
      heldIndex = { for: state, signatures }
    }
    return heldIndex.signatures.has(signatureKey(bytes))
  }

  /** The one place where state changes: judge, count, log, emit. */
  const receive = (bytes: Uint8Array, source: RecordSource): Outcome => {
    if (source === 'sync' && bytes.length > SIGNATURE_BYTES && isHeld(bytes)) {
      counters.increment('sync.already-held')
      return ALREADY_HELD
    }
    const before = state
    const step = acceptRecord(state, bytes, clock.now())
    const outcome = step.outcome
    if (!outcome.accepted) {
      // Sync re-sends everything a peer holds; an older copy of what we hold is not a rejection worth counting.
      if (source === 'sync' && outcome.reason === 'replayed') {
        counters.increment('sync.already-held')
        return outcome
      }
      counters.increment(`record.rejected.${outcome.reason}`)
      log.debug({ source, reason: outcome.reason, detail: outcome.detail }, 'record rejected')
      return outcome
    }
    state = step.state
    counters.increment(`record.accepted.${outcome.kind}`)
    if (outcome.kind === 'leave') leaves.set(outcome.nodeId, bytes)
    announceChanges(before, outcome)
    return outcome
  }

  const announceChanges = (before: RecordStoreState, outcome: Outcome & { accepted: true }): void => {
    if (outcome.kind === 'peer') {
      const record = state.peers.get(outcome.nodeId)
      const previous = before.peers.get(outcome.nodeId)
      if (record === undefined || outcome.nodeId === identity.nodeId) return
      if (previous === undefined) {
        log.info({ member: record.nodeId, hostname: record.hostname }, 'member up')
        emit('member:up', record)
      } else {
        emit('member:updated', record, previous)
      }
      rememberAddresses(record)
      const own = ownRecord()
      if (phase === 'running' && own !== undefined && record.overlayIpv4 === own.overlayIpv4 && overlayIpv4() !== own.overlayIpv4) {
        republishSoon('overlay address taken by a member with a stronger claim')
      }
      return
    }
    const reason: DownReason = outcome.kind === 'leave' ? 'leave' : 'evicted'
    for (const nodeId of outcome.removed) {
      if (nodeId === identity.nodeId) continue
      log.info({ member: nodeId, reason }, 'member down')
      emit('member:down', { nodeId, reason })
    }
    if (outcome.kind === 'eviction' && state.evicted.has(identity.nodeId) && phase === 'running') {
      phase = 'evicted'
      clearTimers()
      log.warn('this node was evicted from the network; it stops publishing')
      emit('self:evicted')
    }
  }

  const rememberAddresses = (record: PeerRecord): void => {
    if (!node.isStarted) return
    const addresses = record.endpoints.map((endpoint) => `${endpoint.address.includes(':') ? '/ip6' : '/ip4'}/${endpoint.address}/tcp/${endpoint.port}`)
    node.addPeerAddresses(record.nodeId, addresses, { signal: AbortSignal.timeout(5_000) }).catch((error: unknown) => {
      log.debug({ member: record.nodeId, err: error instanceof Error ? error.message : 'unknown' }, 'could not store member addresses')
    })
  }

  const ownRecord = (): PeerRecord | undefined => state.peers.get(identity.nodeId)

  const heldObjects = (): Uint8Array[] => {
    for (const nodeId of leaves.keys()) if (!state.departed.has(nodeId)) leaves.delete(nodeId)
    return [...[...state.peers.values()].map((record) => record.bytes), ...leaves.values(), ...[...state.evictionLog.values()].map((eviction) => eviction.bytes)]
  }

  // ── Own record ─────────────────────────────────────────────────────────────

  const overlayIpv4 = (): string => {
    const claims: OverlayClaim[] = [...state.peers.values()]
      .filter((record) => record.nodeId !== identity.nodeId)
      .map((record) => ({ nodeId: record.nodeId, current: record.overlayIpv4 }))
    const current = ownRecord()?.overlayIpv4
    claims.push({
      nodeId: identity.nodeId,
      ...(init.staticOverlayIpv4 === undefined ? {} : { static: init.staticOverlayIpv4 }),
      ...(current === undefined ? {} : { current }),
    })
    const allocation = allocateOverlayIpv4(network.ipv4Cidr, claims)
    const address = allocation.ipv4.get(identity.nodeId)
    const refused = allocation.refusedStatic.get(identity.nodeId)
    if (refused !== undefined) log.warn({ reason: refused }, 'static overlay address refused; using a dynamic one')
    if (address === undefined) throw new RangeError(`the overlay ${network.ipv4Cidr} is full`)
    return address
  }

  const ownEndpoints = async (): Promise<EndpointCandidate[]> => {
    const listen = node.listenAddresses()
    const port = tcpPortOfMultiaddrs(listen)
    const interfaces = await components.interfaceAddresses()
    return gatherEndpoints({
      configured: (init.publicEndpoints ?? []).flatMap((endpoint) => {
        const endpointPort = endpoint.port ?? port
        return endpointPort === undefined ? [] : [{ address: endpoint.address, port: endpointPort, source: 'configured' as const }]
      }),
      interfaces: port === undefined ? [] : interfaces,
      observed: port === undefined ? [] : [...observed, ...node.observedAddresses().flatMap((address) => /^\/ip[46]\/([^/]+)/.exec(address)?.[1] ?? [])],
      port: port ?? 1,
      network,
      includeLoopback: init.includeLoopbackEndpoints ?? false,
    })
  }

  /**
   * An interface that comes up (or gets an address) after start, or one that
   * goes away: peers would otherwise wait for the next refresh, minutes away,
   * to learn where this host is. The kernel also reports a fresh link as not
   * running for up to a second, so the record made at start can miss it.
   */
  const checkEndpoints = async (): Promise<void> => {
    const current = ownRecord()?.endpoints
    if (current === undefined) return
    const gathered = await ownEndpoints()
    const key = (list: readonly EndpointCandidate[]): string => list.map((e) => `${e.source} ${e.address} ${e.port}`).join(',')
    if (key(gathered) !== key(current)) republishSoon('own endpoints changed')
  }
  /** One check at a time; a request during one runs it once more afterwards. */
  let checkingEndpoints = false
  let checkEndpointsAgain = false
  const runEndpointCheck = (): void => {
    if (phase !== 'running') return
    if (checkingEndpoints) {
      checkEndpointsAgain = true
      return
    }
    checkingEndpoints = true
    checkEndpointsAgain = false
    checkEndpoints()
      .catch((error: unknown) => {
        log.debug({ err: error instanceof Error ? error.message : 'unknown' }, 'could not gather own endpoints')
      })
      .finally(() => {
        checkingEndpoints = false
        if (checkEndpointsAgain) runEndpointCheck()
      })
  }

  const buildRecord = async (): Promise<PeerRecord> => {
    const endpoints = await ownEndpoints()
    const now = clock.now()
    lastSeq = nextSequence(lastSeq ?? ownRecord()?.seq, now)
    return signPeerRecord(identity, {
      networkId: network.id,
      seq: lastSeq,
      expiresAt: now + lifetimeMs,
      hostname: init.hostname,
      overlayIpv4: overlayIpv4(),
      overlayIpv6: overlayIpv6(network.ipv6Ula, identity.nodeId),
      wireguardPublicKey: init.wireguardPublicKey,
      endpoints,
      capabilities: init.capabilities,
      routes: [...(init.routes ?? [])],
      linkRtts: [...(components.linkRtts?.() ?? [])].filter((l) => l.peer !== identity.nodeId).sort((a, b) => a.rttMs - b.rttMs).slice(0, MAX_LINK_RTTS),
      admissions: [...admissions],
    })
  }

  /** Signs, applies locally, then gossips. Serialised: two refreshes never race for a sequence number. */
  const publishOwnRecord = (signal: AbortSignal): Promise<PeerRecord> => {
    const run = async (): Promise<PeerRecord> => {
      const record = await buildRecord()
      const outcome = receive(record.bytes, 'local')
      if (!outcome.accepted) throw new Error(`own record refused by this node's store: ${outcome.reason} (${outcome.detail})`)
      const recipients = await node.publish(record.bytes, { signal })
      log.debug({ seq: record.seq, recipients }, 'published own record')
      emit('self:published', record)
      return record
    }
    const next = (publishing ?? Promise.resolve(undefined)).catch(() => undefined).then(run)
    publishing = next
    return next
  }

  let republishPending = false
  const republishSoon = (why: string): void => {
    if (republishPending) return
    republishPending = true
    queueMicrotask(() => {
      republishPending = false
      if (phase !== 'running' || lifecycle === undefined) return
      log.info({ why }, 'republishing own record')
      publishOwnRecord(lifecycle.signal).catch((error: unknown) => {
        log.warn({ err: error instanceof Error ? error.message : 'unknown' }, 'could not republish own record')
      })
    })
  }

  // ── Sync and gossip ────────────────────────────────────────────────────────

  /** Objects learned by sync are new to our half of the mesh too: gossip them on, so a healed partition converges without waiting for refreshes. */
  const receiveSynced = (bytes: Uint8Array): void => {
    const outcome = receive(bytes, 'sync')
    if (!outcome.accepted || (outcome.kind === 'peer' && outcome.nodeId === identity.nodeId)) return
    if (lifecycle === undefined) return
    node.publish(bytes, { signal: lifecycle.signal }).catch(() => undefined)
  }

  /** Exchanges held objects with one peer; `held` narrows what we send (a leave or eviction pushed directly). */
  const syncWith = async (peer: NodeId, held?: readonly Uint8Array[]): Promise<void> => {
    if (lifecycle === undefined || phase === 'idle') return
    const signal = AbortSignal.any([lifecycle.signal, AbortSignal.timeout(syncTimeoutMs)])
    try {
      const { stream } = await node.openStream(peer, SYNC_PROTOCOL, { signal })
      const result = await exchangeRecords(stream, { held: held ?? heldObjects(), receive: receiveSynced }, { signal })
      counters.increment('sync.completed')
      log.debug({ peer, ...result }, 'synced records')
    } catch (error) {
      if (lifecycle?.signal.aborted ?? true) return
      counters.increment('sync.failed')
      log.debug({ peer, err: error instanceof Error ? error.message : 'unknown' }, 'sync failed')
    }
  }

  /**
   * Gossip reaches only peers whose subscriptions we already know, which a
   * freshly connected node may not; a leave or an eviction must not be lost
   * that way, so it also goes straight to every connected peer (which then
   * gossips it on, like any object learned by sync).
   */
  const announce = async (bytes: Uint8Array, options: SignalOptions): Promise<number> => {
    const recipients = await node.publish(bytes, options)
    await Promise.all(node.connectedPeers().map((peer) => syncWith(peer, [bytes])))
    return recipients
  }

  // ── Joiners ────────────────────────────────────────────────────────────────

  const admit = (tokenText: string, joiner: NodeId): AdmitDecision => {
    const now = clock.now()
    const parsed = parseToken(tokenText, { now, expectedNetworkId: network.id })
    if (!parsed.ok) return { ok: false, reason: parsed.reason }
    const result = admitJoiner(state, { token: parsed.token, joiner, admitter: identity, admitterChain: admissions, now })
    if (!result.ok) return result
    state = result.state
    return { ok: true, admissions: result.admissions }
  }

  // ── Lifecycle ──────────────────────────────────────────────────────────────

  const clearTimers = (): void => {
    for (const timer of timers) clearInterval(timer)
    timers = []
  }

  const sweep = (): void => {
    const result = sweepExpired(state, clock.now())
    state = result.state
    for (const nodeId of result.removed) {
      if (nodeId === identity.nodeId) continue
      counters.increment('member.expired')
      log.info({ member: nodeId, reason: 'expired' }, 'member down')
      emit('member:down', { nodeId, reason: 'expired' })
    }
  }

  const every = (intervalMs: number, task: () => void): void => {
    const timer = setInterval(task, intervalMs)
    timer.unref()
    timers.push(timer)
  }

  const requireRunning = (): AbortSignal => {
    if (phase !== 'running' || lifecycle === undefined) throw new NotStartedError(`the membership service is ${phase}, not running`)
    return lifecycle.signal
  }

  node.setGossipValidator((data, from) => {
    if (phase === 'idle') return 'ignore'
    const outcome = receive(data, 'gossip')
    if (outcome.accepted) return 'accept'
    log.debug({ from }, 'gossip message dropped')
    return REJECTION_VERDICT[outcome.reason]
  })
  node.handle(SYNC_PROTOCOL, async (stream, context) => {
    if (phase === 'idle' || lifecycle === undefined) {
      stream.abort(new Error('membership service not running'))
      return
    }
    const signal = AbortSignal.any([lifecycle.signal, AbortSignal.timeout(syncTimeoutMs)])
    try {
      const result = await exchangeRecords(stream, { held: heldObjects(), receive: receiveSynced }, { signal })
      log.debug({ peer: context.remote, ...result }, 'served record sync')
    } catch (error) {
      counters.increment('sync.failed')
      log.debug({ peer: context.remote, err: error instanceof Error ? error.message : 'unknown' }, 'serving sync failed')
      stream.abort(error instanceof Error ? error : new Error('sync failed'))
    }
  })
  node.handle(JOIN_PROTOCOL, async (stream, context) => {
    if (phase !== 'running' || lifecycle === undefined) {
      stream.abort(new Error('membership service not running'))
      return
    }
    const signal = AbortSignal.any([lifecycle.signal, AbortSignal.timeout(DEFAULT_JOIN_TIMEOUT_MS)])
    const decision = await serveJoin(stream, context.remote, admit, { signal })
    if (decision.ok) {
      counters.increment('join.admitted')
      log.info({ joiner: context.remote }, 'admitted a joiner')
    } else {
      counters.increment('join.refused')
      log.debug({ joiner: context.remote, reason: decision.reason }, 'refused a joiner')
    }
  })
  node.onPeerConnected(SYNC_PROTOCOL, (peer) => {
    void syncWith(peer)
  })

  return {
    nodeId: identity.nodeId,
    events,
    counters,
    get admissions() {
      return admissions
    },

    async start(options) {
      if (phase === 'running') return
      if (!node.isStarted) throw new NotStartedError('start the membership node before the service')
      lifecycle = new AbortController()
      phase = 'running'
      await publishOwnRecord(options.signal)
      every(refreshMs, () => {
        if (phase !== 'running' || lifecycle === undefined) return
        publishOwnRecord(lifecycle.signal).catch((error: unknown) => {
          log.warn({ err: error instanceof Error ? error.message : 'unknown' }, 'could not refresh own record')
        })
      })
      every(sweepMs, sweep)
      every(init.endpointCheckIntervalMs ?? DEFAULT_ENDPOINT_CHECK_MS, runEndpointCheck)
      // Peers connected before we started missed our sync handler; pull from them now.
      await Promise.all(node.connectedPeers().map((peer) => syncWith(peer)))
      log.info({ members: state.peers.size, overlay: ownRecord()?.overlayIpv4 }, 'membership service started')
    },

    async stop(options) {
      if (phase === 'idle') return
      clearTimers()
      lifecycle?.abort(new Error('membership service stopped'))
      lifecycle = undefined
      phase = 'idle'
      await (publishing ?? Promise.resolve()).catch(() => undefined)
      options.signal.throwIfAborted()
    },

    members: () => members(state),
    peers: () => members(state).filter((record) => record.nodeId !== identity.nodeId),
    member: (nodeId) => state.peers.get(nodeId),
    ownRecord,
    isEvicted: (nodeId) => state.evicted.has(nodeId),
    state: () => state,

    async refresh(options) {
      requireRunning()
      return publishOwnRecord(options.signal)
    },

    async leave(options) {
      requireRunning()
      clearTimers()
      const leave = signLeave(identity, { networkId: network.id, seq: nextSequence(lastSeq ?? ownRecord()?.seq, clock.now()), admissions: [...admissions] })
      lastSeq = leave.seq
      phase = 'left'
      receive(leave.bytes, 'local')
      const recipients = await announce(leave.bytes, options)
      log.info({ recipients }, 'left the network')
    },

    async evict(nodeId, reason, options) {
      requireRunning()
      const eviction = signEviction(identity, { networkId: network.id, evicted: nodeId, at: clock.now(), reason, admissions: [...admissions] })
      const outcome = receive(eviction.bytes, 'local')
      if (!outcome.accepted) throw new Error(`eviction refused by this node's store: ${outcome.reason} (${outcome.detail})`)
      const recipients = await announce(eviction.bytes, options)
      log.info({ evicted: nodeId, recipients }, 'evicted a member')
    },

    noteObservedAddress(address) {
      if (observed.includes(address)) return
      observed.unshift(address)
      observed.length = Math.min(observed.length, MAX_OBSERVED_ADDRESSES)
      runEndpointCheck()
    },

    checkEndpointsSoon: runEndpointCheck,

    receive,
  }
}
