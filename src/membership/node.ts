// The libp2p node that carries membership: TCP, a private network (pnet) keyed
// from the network secret, Noise, yamux, identify, ping, gossipsub for signed
// records, circuit relay v2 and DCUtR for members behind NAT, and optional
// bootstrap and mDNS discovery.
//
// This file is the only one in meshd that builds a libp2p node. It exposes a
// narrow, typed surface (node ids instead of PeerIds, bytes instead of
// messages) so the membership service above it never touches libp2p
// internals, and a test can see at a glance what membership needs from it.

import { noise } from '@chainsafe/libp2p-noise'
import { bootstrap } from '@libp2p/bootstrap'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { gossipsub, TopicValidatorResult, type GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2pOptions } from 'libp2p'
import type { Logger } from '../logging/logger.js'
import { packageVersion } from '../version.js'
import { NotStartedError } from './errors.js'
import type { SignalOptions } from './framed-stream.js'
import type { Identity } from './identity.js'
import { parseNodeId, type NodeId } from './keys.js'
import { derivePnetKey, formatPnetKey, type Network, type NetworkId } from './network.js'
import { addressOfMultiaddr, isMeshInternalAddress } from './endpoints.js'
import { MAX_RECORD_BYTES } from './records.js'
import { takeToken, type Rate, type TokenBucket } from '../net/rate-limit.js'

/** All interfaces, TCP 7373: one fixed port, so firewalls can allow it (docs/security.md). */
export const DEFAULT_LISTEN_ADDRESSES: readonly string[] = ['/ip4/0.0.0.0/tcp/7373']

/** The gossipsub topic that carries a network's signed records. */
export function recordsTopic(networkId: NetworkId): string {
  return `/meshd/${networkId}/records/1`
}

export interface Clock {
  /** Wall-clock milliseconds (records carry absolute times). */
  now(): number
}

export interface MembershipNodeInit {
  /** Multiaddrs to listen on; default DEFAULT_LISTEN_ADDRESSES. */
  listen?: readonly string[]
  /** Multiaddrs to announce instead of the listen addresses (e.g. a public address behind port forwarding). */
  announce?: readonly string[]
  /** Members to connect to on start (multiaddrs with /p2p/<node id>), e.g. from the token. */
  bootstrap?: readonly string[]
  /** LAN discovery by multicast DNS. Off by default: it announces the node to the whole LAN. */
  mdns?: boolean
  relay?: {
    /** Relay control traffic for members that cannot reach each other directly (default true). */
    server?: boolean
    /** Reserve a slot on a relaying member and advertise the relayed address (for hosts behind NAT; default false). */
    reserve?: boolean
  }
  /** Gossipsub heartbeat; default DEFAULT_GOSSIP_HEARTBEAT_MS (gossipsub's own: 1000 ms). */
  gossipHeartbeatMs?: number
  /** How often libp2p pings each connection to find dead ones (closed on a failed ping); default 5 min (libp2p's own: 10 s). */
  connectionPingIntervalMs?: number
  /** New inbound connections accepted per second from one host; libp2p's default is 5. */
  inboundConnectionsPerSecond?: number
  /** Most connections held at once; libp2p's default is 300. */
  maxConnections?: number
  /** Inbound protocol streams accepted per (protocol, remote peer); default DEFAULT_INBOUND_STREAM_RATE. */
  inboundStreamRate?: Rate
}

/** Joins, syncs and link negotiations take a handful of streams; 10/s with a burst of 20 leaves room for restarts and heals. */
export const DEFAULT_INBOUND_STREAM_RATE: Rate = { perSecond: 10, burst: 20 }

export interface MembershipNodeComponents {
  identity: Identity
  network: Network
  logger: Logger
  clock: Clock
}

/** What to do with a gossip message: deliver and forward, drop quietly, or drop and penalise the sender. */
export type GossipVerdict = 'accept' | 'ignore' | 'reject'
export type GossipValidator = (data: Uint8Array, from: NodeId) => GossipVerdict

export interface StreamContext {
  /** From the Noise-authenticated connection: who is really on the other end. */
  readonly remote: NodeId
  /** The remote address of the connection as this node sees it. */
  readonly remoteAddress: string
}

export type ProtocolHandler = (stream: Stream, context: StreamContext) => Promise<void>

export interface GossipTraffic {
  readonly sentBytes: number
  readonly receivedBytes: number
}

export interface MembershipNode {
  readonly nodeId: NodeId
  readonly topic: string
  readonly isStarted: boolean
  start(options: SignalOptions): Promise<void>
  stop(options: SignalOptions): Promise<void>
  /** Addresses others can dial, each ending in /p2p/<node id>. */
  listenAddresses(): string[]
  /** Public addresses of this node that libp2p learned from peers (identify). */
  observedAddresses(): string[]
  connectedPeers(): NodeId[]
  /** Whether any connection is open (cheap: no peer ids are decoded). */
  hasConnections(): boolean
  /** Remote addresses of the open connections to a member; relayed ones contain /p2p-circuit. */
  connectionsTo(nodeId: NodeId): string[]
  /** Connects to a multiaddr and returns who answered (checked by Noise). */
  dial(address: string, options: SignalOptions): Promise<NodeId>
  hangUp(nodeId: NodeId, options: SignalOptions): Promise<void>
  /** Closes the open connections to a member whose remote address `which` picks; returns how many. */
  closeConnections(nodeId: NodeId, which: (remoteAddress: string) => boolean, options: SignalOptions): Promise<number>
  /** Teaches libp2p where a member can be reached (from its record), so openStream can dial it. */
  addPeerAddresses(nodeId: NodeId, addresses: readonly string[], options: SignalOptions): Promise<void>
  /** Publishes bytes on the records topic; returns how many peers it was sent to. */
  publish(data: Uint8Array, options: SignalOptions): Promise<number>
  /** The one gossip validator; messages are dropped (ignored) until one is set. */
  setGossipValidator(validator: GossipValidator | undefined): void
  /** Registers a protocol handler; kept across start/stop. */
  handle(protocol: string, handler: ProtocolHandler): void
  /** Opens a stream to a member, dialling it if needed. */
  openStream(nodeId: NodeId, protocol: string, options: SignalOptions): Promise<{ stream: Stream; context: StreamContext }>
  /** Called whenever a connection to a peer that speaks `protocol` is up (after identify). */
  onPeerConnected(protocol: string, listener: (nodeId: NodeId) => void): void
  /** Gossipsub RPC bytes since start (the membership gossip load of this node). */
  gossipTraffic(): GossipTraffic
  /** Inbound protocol streams refused by the per-peer rate limit since start. */
  rateLimitedStreams(): number
}

type Services = {
  identify: ReturnType<ReturnType<typeof identify>>
  ping: ReturnType<ReturnType<typeof ping>>
  pubsub: GossipSub
  dcutr: ReturnType<ReturnType<typeof dcutr>>
  addresses: ObservedAddressView
  relay?: ReturnType<ReturnType<typeof circuitRelayServer>>
}

interface ObservedAddressView {
  observed(): Multiaddr[]
  /** Marks this node's own listening addresses as verified, so they are advertised (identify, DCUtR) even when public. */
  confirmListening(ttlMs: number): void
}

interface AddressViewComponents {
  addressManager: { getObservedAddrs(): Multiaddr[]; confirmObservedAddr(address: Multiaddr, options?: { type?: 'transport'; ttl?: number }): void }
  transportManager: { getAddrs(): Multiaddr[] }
}

/**
 * A libp2p "service" that reaches the address manager, which libp2p does not
 * expose on the node. libp2p advertises a public listening address only once
 * AutoNAT confirmed it; members are admitted hosts, so meshd advertises its
 * own addresses at once: an unreachable one costs a peer one failed dial,
 * while an unadvertised one leaves DCUtR nothing to upgrade to.
 */
function observedAddressView(components: AddressViewComponents): ObservedAddressView {
  return {
    observed: () => components.addressManager.getObservedAddrs(),
    confirmListening: (ttlMs) => {
      for (const address of components.transportManager.getAddrs()) {
        if (!address.toString().includes('/p2p-circuit')) components.addressManager.confirmObservedAddr(address, { type: 'transport', ttl: ttlMs })
      }
    },
  }
}

/** Re-confirmed with every listener change; long enough that it never lapses in between. */
const OWN_ADDRESS_TTL_MS = 30 * 24 * 3600 * 1000
/**
 * libp2p's ping of every connection is a backstop for a connection stuck with unacknowledged data; an idle
 * connection to a host that vanished is found by the kernel (TCP keepalive: TCP_KEEPALIVE_IDLE_MS, then libuv's
 * 10 probes a second apart), at no CPU cost to the agent. Each ping is a new stream on both ends (a few ms of
 * interpreted JavaScript with the peer-store update): at 20 peers the 60 s pings were ~0.1 % of a core (issue 5).
 */
const CONNECTION_PING_INTERVAL_MS = 5 * 60_000
/**
 * Gossipsub's heartbeat (mesh upkeep, lazy gossip of recent message ids) every 2 s instead of every second: each
 * one walks every topic peer and scores it, a few percent of an idle 20-peer agent's CPU (issue 5), and with flood
 * publish a member's record reaches every connected member without it; mesh repair and lazy gossip wait 1 s longer.
 */
export const DEFAULT_GOSSIP_HEARTBEAT_MS = 2_000

const TCP_KEEPALIVE_IDLE_MS = 30_000

export function createMembershipNode(init: MembershipNodeInit, components: MembershipNodeComponents): MembershipNode {
  const { identity, network } = components
  const pingIntervalMs = init.connectionPingIntervalMs ?? CONNECTION_PING_INTERVAL_MS
  /** Longer than the ping interval, so a live but quiet connection is never closed for idleness (libp2p's default: 2 min). */
  const inactivityTimeoutMs = 3 * pingIntervalMs
  const log = components.logger.child({ component: 'membership-node' })
  const topic = recordsTopic(network.id)
  const handlers = new Map<string, ProtocolHandler>()
  const topologies: { protocol: string; listener: (nodeId: NodeId) => void }[] = []
  /** Topologies already given to libp2p (it keeps them across stop/start; handlers are re-registered with force). */
  const registeredTopologies = new Set<{ protocol: string; listener: (nodeId: NodeId) => void }>()
  const traffic = { sentBytes: 0, receivedBytes: 0 }
  let rateLimited = 0
  let validator: GossipValidator | undefined
  let libp2p: Libp2p<Services> | undefined
  let starting: Promise<void> | undefined
  let started = false

  /**
   * A connection's peer id and remote address as strings, made once per connection: both are fixed for its
   * life, and encoding them (base58, multiaddr) on every check was a visible part of an idle agent's CPU.
   */
  const connectionFacts = new WeakMap<Connection, { peer: string; remote: string }>()
  const factsOf = (connection: Connection): { peer: string; remote: string } => {
    let facts = connectionFacts.get(connection)
    if (facts === undefined) {
      facts = { peer: connection.remotePeer.toString(), remote: connection.remoteAddr.toString() }
      connectionFacts.set(connection, facts)
    }
    return facts
  }
  const openConnectionsTo = (nodeId: NodeId): Connection[] => requireNode().getConnections().filter((connection) => connection.status === 'open' && factsOf(connection).peer === nodeId)

  const requireNode = (): Libp2p<Services> => {
    if (libp2p === undefined || !started) throw new NotStartedError('the membership node is not started')
    return libp2p
  }

  /** Inbound streams per (protocol, remote peer): a member cannot keep us busy with joins, syncs or negotiations. */
  const streamBuckets = new Map<string, TokenBucket>()
  const streamRate: Rate = init.inboundStreamRate ?? DEFAULT_INBOUND_STREAM_RATE
  const allowStream = (protocol: string, remote: NodeId): boolean => {
    const key = `${protocol} ${remote}`
    const step = takeToken(streamBuckets.get(key), components.clock.now(), streamRate)
    streamBuckets.set(key, step.bucket)
    // Forget idle buckets now and then so the map does not grow with every peer ever seen.
    if (streamBuckets.size > 4096) for (const [k, b] of streamBuckets) if (components.clock.now() - b.updatedAt > 60_000) streamBuckets.delete(k)
    return step.allowed
  }

  const registerHandler = async (node: Libp2p<Services>, protocol: string, handler: ProtocolHandler): Promise<void> => {
    await node.handle(
      protocol,
      async (stream, connection) => {
        const remote = parseNodeId(connection.remotePeer.toString())
        if (remote === undefined) {
          stream.abort(new Error('not an Ed25519 node id'))
          return
        }
        if (!allowStream(protocol, remote)) {
          rateLimited++
          log.debug({ protocol, remote }, 'inbound stream refused: rate limit')
          stream.abort(new Error('rate limited'))
          return
        }
        try {
          await handler(stream, { remote, remoteAddress: connection.remoteAddr.toString() })
        } catch (error) {
          // Handlers report their own refusals; this only catches what they did not expect.
          log.debug({ protocol, remote, err: errorText(error) }, 'protocol handler failed')
          stream.abort(error instanceof Error ? error : new Error('handler failed'))
        }
      },
      { runOnLimitedConnection: true, force: true },
    )
  }

  const registerTopology = async (node: Libp2p<Services>, protocol: string, listener: (nodeId: NodeId) => void): Promise<void> => {
    await node.register(protocol, {
      notifyOnLimitedConnection: true,
      onConnect: (peerId) => {
        const nodeId = parseNodeId(peerId.toString())
        if (nodeId !== undefined) listener(nodeId)
      },
    })
  }

  /**
   * A connection to a member: the one already open (direct or relayed), else a
   * direct dial, else through each connected relaying member in turn. The last
   * is how two members that are both behind NAT reach each other; DCUtR then
   * tries to replace the relayed connection with a direct one.
   */
  const connectTo = async (node: Libp2p<Services>, nodeId: NodeId, signal: AbortSignal): Promise<Connection> => {
    const peerId = peerIdFromString(nodeId)
    const relays = node.getConnections(peerId).length > 0 ? [] : await relayingPeers(node, nodeId)
    try {
      // With relays to fall back on, a direct address that silently drops SYNs should not cost libp2p's full dial timeout.
      return await node.dial(peerId, { signal: relays.length === 0 ? signal : AbortSignal.any([signal, AbortSignal.timeout(DIRECT_DIAL_BEFORE_RELAY_MS)]) })
    } catch (directError) {
      signal.throwIfAborted()
      for (const relay of relays) {
        try {
          const connection = await node.dial(multiaddr(`/p2p/${relay.toString()}/p2p-circuit/p2p/${nodeId}`), { signal: AbortSignal.any([signal, AbortSignal.timeout(RELAYED_DIAL_MS)]) })
          log.debug({ member: nodeId, relay: relay.toString() }, 'reached member through a relay')
          return connection
        } catch (error) {
          signal.throwIfAborted()
          log.debug({ member: nodeId, relay: relay.toString(), err: errorText(error) }, 'relayed dial failed')
        }
      }
      throw directError
    }
  }

  const build = async (): Promise<Libp2p<Services>> => {
    const relayServer = init.relay?.server ?? true
    const listen = [...(init.listen ?? DEFAULT_LISTEN_ADDRESSES)]
    if (init.relay?.reserve === true) listen.push('/p2p-circuit')
    const discovery: NonNullable<Libp2pOptions['peerDiscovery']> = []
    const bootstrapList = (init.bootstrap ?? []).filter((address) => address.includes('/p2p/'))
    if (bootstrapList.length > 0) discovery.push(bootstrap({ list: bootstrapList }))
    if (init.mdns === true) {
      // Loaded only when asked for: most hosts never use it, and every module costs resident memory.
      const { mdns } = await import('@libp2p/mdns')
      discovery.push(mdns({ serviceTag: `meshd-${network.id.slice(0, 16)}` }))
    }
    const services = {
      identify: identify(),
      ping: ping(),
      dcutr: dcutr(),
      addresses: observedAddressView,
      pubsub: gossipsub({
        // Records carry their own Ed25519 signatures; signing the envelope again would only add bytes.
        globalSignaturePolicy: 'StrictNoSign',
        allowPublishToZeroTopicPeers: true,
        ignoreDuplicatePublishError: true,
        runOnLimitedConnection: true,
        allowedTopics: [topic],
        maxInboundDataLength: MAX_RECORD_BYTES,
        heartbeatInterval: init.gossipHeartbeatMs ?? DEFAULT_GOSSIP_HEARTBEAT_MS,
        // A smaller mesh than gossipsub's default (D 6, up to 12): a member's record already goes straight to every
        // connected member (flood publish), so each mesh peer that forwards it again mostly sends a duplicate: up to
        // a dozen copies of every record with the default mesh (a CPU profile of the idle 20-peer agent put ~1 s in
        // one refresh wave of 17 records, issue 5). The record sync on every new connection covers what gossip misses.
        D: 4,
        Dlo: 3,
        Dhi: 6,
        Dscore: 2,
        Dout: 1,
        Dlazy: 4,
        // Admitted members behind one NAT share an address; gossipsub's co-location penalty would cut them off.
        // Scores decay every 5 s rather than every second: a timer fewer per second on an idle agent, and meshd's one topic
        // has no topic score parameters, so only the behaviour penalty decays (still by 0.2 a step).
        scoreParams: { IPColocationFactorWeight: 0, decayInterval: 5_000 },
        metricsRegister: gossipTrafficRegister(traffic),
        metricsTopicStrToLabel: new Map([[topic, 'records']]),
      }),
      ...(relayServer ? { relay: circuitRelayServer({ reservations: { applyDefaultLimit: true } }) } : {}),
    }
    const node = await createLibp2p({
      start: false,
      privateKey: identity.privateKey.reveal(),
      nodeInfo: { userAgent: `meshd/${packageVersion()}` },
      addresses: {
        listen,
        ...(init.announce === undefined ? {} : { announce: [...init.announce] }),
        // Listening on 0.0.0.0 also covers meshd's own link-local and overlay addresses: never advertise those.
        announceFilter: (addresses) => addresses.filter((address) => !isMeshInternalAddress(addressOfMultiaddr(address.toString()) ?? '', network)),
      },
      transports: [
        tcp({
          dialOpts: { keepAlive: true, keepAliveInitialDelay: TCP_KEEPALIVE_IDLE_MS },
          listenOpts: { keepAlive: true, keepAliveInitialDelay: TCP_KEEPALIVE_IDLE_MS },
          inboundSocketInactivityTimeout: inactivityTimeoutMs,
          outboundSocketInactivityTimeout: inactivityTimeoutMs,
        }),
        circuitRelayTransport(),
      ],
      connectionEncrypters: [noise()],
      // No yamux keepalive pings (every 30 s per side and connection): TCP keepalive and the connection monitor
      // below find dead connections, including the half-open ones, which yamux's keepalive never closes.
      streamMuxers: [yamux({ enableKeepAlive: false })],
      connectionProtector: preSharedKey({ psk: formatPnetKey(derivePnetKey(network.secret)).reveal() }),
      connectionManager: {
        ...(init.inboundConnectionsPerSecond === undefined ? {} : { inboundConnectionThreshold: init.inboundConnectionsPerSecond }),
        ...(init.maxConnections === undefined ? {} : { maxConnections: init.maxConnections }),
      },
      // libp2p pings every connection every 10 s by default: in a mesh that is a stream per peer and direction each
      // time, with yamux's keepalive the larger part of an idle agent's libp2p traffic (issue 5). TCP keepalive finds
      // an idle connection to a vanished host in ~40 s; members' liveness is the prober's job, not this.
      connectionMonitor: { pingInterval: pingIntervalMs },
      peerDiscovery: discovery,
      services,
    })
    node.addEventListener('transport:listening', () => {
      node.services.addresses.confirmListening(OWN_ADDRESS_TTL_MS)
    })
    // libp2p does not dial what discovery finds. With mDNS on, dial every newly discovered peer: those mDNS reports,
    // and members the peer store learns of from records (members anyway); the pnet key keeps out everyone else.
    if (init.mdns === true) {
      node.addEventListener('peer:discovery', (event) => {
        const found = event.detail.id
        if (!started || node.getConnections(found).length > 0) return
        node.dial(found, { signal: AbortSignal.timeout(10_000) }).then(
          () => {
            log.debug({ peer: found.toString() }, 'connected to a host found by mDNS')
          },
          (error: unknown) => {
            log.debug({ peer: found.toString(), err: errorText(error) }, 'could not dial a host found by mDNS')
          },
        )
      })
    }
    return node
  }

  const doStart = async (signal: AbortSignal): Promise<void> => {
    libp2p ??= await build()
    signal.throwIfAborted()
    const node = libp2p
    const pubsub = node.services.pubsub
    pubsub.topicValidators.set(topic, (peer: PeerId, message) => {
      const from = parseNodeId(peer.toString())
      if (from === undefined || validator === undefined) return TopicValidatorResult.Ignore
      return VERDICTS[validator(message.data, from)]
    })
    await node.start()
    node.services.addresses.confirmListening(OWN_ADDRESS_TTL_MS)
    for (const [protocol, handler] of handlers) await registerHandler(node, protocol, handler)
    for (const topology of topologies) {
      if (registeredTopologies.has(topology)) continue
      registeredTopologies.add(topology)
      await registerTopology(node, topology.protocol, topology.listener)
    }
    pubsub.subscribe(topic)
    started = true
    log.info({ nodeId: identity.nodeId, addresses: node.getMultiaddrs().map(String) }, 'membership node started')
  }

  return {
    nodeId: identity.nodeId,
    topic,
    get isStarted() {
      return started
    },

    async start(options) {
      if (started) return
      starting ??= doStart(options.signal).finally(() => {
        starting = undefined
      })
      await starting
    },

    async stop(options) {
      if (starting !== undefined) await starting.catch(() => undefined)
      if (!started || libp2p === undefined) return
      started = false
      options.signal.throwIfAborted()
      libp2p.services.pubsub.unsubscribe(topic)
      await libp2p.stop()
      log.info({ nodeId: identity.nodeId }, 'membership node stopped')
    },

    listenAddresses() {
      return requireNode().getMultiaddrs().map(String)
    },

    observedAddresses() {
      return requireNode().services.addresses.observed().map(String)
    },

    connectedPeers() {
      return requireNode()
        .getPeers()
        .flatMap((peerId) => parseNodeId(peerId.toString()) ?? [])
    },

    hasConnections() {
      return requireNode().getConnections().length > 0
    },

    connectionsTo(nodeId) {
      return openConnectionsTo(nodeId).map((connection) => factsOf(connection).remote)
    },

    async dial(address, options) {
      const connection = await requireNode().dial(multiaddr(address), { signal: options.signal })
      const remote = parseNodeId(connection.remotePeer.toString())
      if (remote === undefined) {
        await connection.close()
        throw new TypeError('the dialled host is not a meshd node (its id is not an Ed25519 key)')
      }
      return remote
    },

    async hangUp(nodeId, options) {
      await requireNode().hangUp(peerIdFromString(nodeId), { signal: options.signal })
    },

    async closeConnections(nodeId, which, options) {
      const chosen = openConnectionsTo(nodeId).filter((connection) => which(factsOf(connection).remote))
      await Promise.all(chosen.map((connection) => connection.close({ signal: options.signal }).catch((error: unknown) => { connection.abort(error instanceof Error ? error : new Error('close failed')); })))
      return chosen.length
    },

    async addPeerAddresses(nodeId, addresses, options) {
      const multiaddrs = addresses.flatMap((address) => {
        try {
          return [multiaddr(address)]
        } catch {
          return []
        }
      })
      if (multiaddrs.length === 0) return
      await requireNode().peerStore.merge(peerIdFromString(nodeId), { multiaddrs }, { signal: options.signal })
    },

    async publish(data, options) {
      options.signal.throwIfAborted()
      const result = await requireNode().services.pubsub.publish(topic, data)
      return result.recipients.length
    },

    setGossipValidator(next) {
      validator = next
    },

    handle(protocol, handler) {
      handlers.set(protocol, handler)
      if (started && libp2p !== undefined) {
        registerHandler(libp2p, protocol, handler).catch((error: unknown) => {
          log.warn({ protocol, err: errorText(error) }, 'could not register protocol handler')
        })
      }
    },

    async openStream(nodeId, protocol, options) {
      const node = requireNode()
      const connection = await connectTo(node, nodeId, options.signal)
      const stream = await connection.newStream(protocol, { signal: options.signal, runOnLimitedConnection: true })
      return { stream, context: { remote: nodeId, remoteAddress: connection.remoteAddr.toString() } }
    },

    onPeerConnected(protocol, listener) {
      const topology = { protocol, listener }
      topologies.push(topology)
      if (started && libp2p !== undefined) {
        registeredTopologies.add(topology)
        registerTopology(libp2p, protocol, listener).catch((error: unknown) => {
          log.warn({ protocol, err: errorText(error) }, 'could not register topology')
        })
      }
    },

    gossipTraffic() {
      return { ...traffic }
    },
    rateLimitedStreams: () => rateLimited,
  }
}

/** A direct dial gets this long before relays are tried (a LAN or WAN handshake needs well under it). */
export const DIRECT_DIAL_BEFORE_RELAY_MS = 4_000
/** Per relay: one round trip to the relay and one to the member behind it. */
const RELAYED_DIAL_MS = 5_000
/** Relays tried per connection; a member behind NAT holds a reservation on one of the members it dialled. */
const MAX_RELAYS_TRIED = 8
const RELAY_HOP_PROTOCOL = '/libp2p/circuit/relay/0.2.0/hop'

/** Connected members, over direct connections, that said (identify) they relay: where a member behind NAT may hold a reservation. */
async function relayingPeers(node: Libp2p<Services>, target: NodeId): Promise<PeerId[]> {
  const relays: PeerId[] = []
  for (const connection of node.getConnections()) {
    if (relays.length >= MAX_RELAYS_TRIED) break
    const peer = connection.remotePeer
    if (peer.toString() === target || connection.limits !== undefined || relays.some((relay) => relay.equals(peer))) continue
    const known = await node.peerStore.get(peer).catch(() => undefined)
    if (known?.protocols.includes(RELAY_HOP_PROTOCOL) === true) relays.push(peer)
  }
  return relays
}

const VERDICTS: Record<GossipVerdict, TopicValidatorResult> = {
  accept: TopicValidatorResult.Accept,
  ignore: TopicValidatorResult.Ignore,
  reject: TopicValidatorResult.Reject,
}

/**
 * A gossipsub metrics register that keeps only the RPC byte totals and
 * discards every other metric: enough to report gossip load without a
 * metrics stack.
 */
function gossipTrafficRegister(traffic: { sentBytes: number; receivedBytes: number }): NonNullable<Parameters<typeof gossipsub>[0]>['metricsRegister'] {
  const ignore = (): void => undefined
  const counterFor = (name: string): ((labelsOrValue?: unknown, value?: number) => void) => {
    const add = (labelsOrValue?: unknown, value?: number): void => {
      const amount = typeof labelsOrValue === 'number' ? labelsOrValue : (value ?? 1)
      if (name === 'gossipsub_rpc_sent_bytes_total') traffic.sentBytes += amount
      else if (name === 'gossipsub_rpc_recv_bytes_total') traffic.receivedBytes += amount
    }
    return add
  }
  return {
    gauge: (config) => ({ inc: counterFor(config.name), set: ignore, addCollect: ignore }),
    histogram: () => ({ startTimer: () => ignore, observe: ignore, reset: ignore }),
    avgMinMax: () => ({ set: ignore }),
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : 'unknown error'
}
