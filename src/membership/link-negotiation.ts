// Link negotiation (/meshd/link/1.0.0): the two ends of every pair agree the
// parameters of their WireGuard link over the Noise-encrypted libp2p stream.
// Messages: ./link-messages.ts.
//
// The node with the lower id initiates: it proposes its listen port, the
// link-local addresses its other links use, its endpoints and a fresh random
// preshared key. The other end answers the same about itself (without a
// key). Both then evaluate chooseLinkLocal over the two in-use sets, so they
// get the same pair without sending it; the initiator confirms with the
// attempt number, and only then does either side report the link. The higher
// id can ask to be negotiated with (a "request"), e.g. after it restarted.
//
// Each side picks its own listen port (chooseListenPort), distinct from its
// other links. Addresses a side is still negotiating are reserved, so two
// negotiations at once never hand out the same port or link-local address.
//
// Re-negotiation: a restarted node that lost its links initiates or requests
// as soon as it sees each member again (the incarnation in every offer shows
// the restart); when a member's endpoints change the lower id renegotiates.
//
// Adoption: a restarted agent passes the links it stored (`adopted`) and
// keeps them — same ports, link-locals and preshared key as the kernel still
// has — while each peer's record shows the endpoints the link was made with;
// otherwise it negotiates that link again. A renegotiation of an existing
// link keeps its preshared key, so it never re-keys a tunnel in use.

import { EventEmitter } from 'node:events'
import type { Stream } from '@libp2p/interface'
import type { Logger } from '../logging/logger.js'
import { Secret } from '../logging/secret.js'
import { DEFAULT_LISTEN_PORT_RANGE, chooseLinkLocal, chooseListenPort, linkAddressesFor, type LinkAddresses, type PairLinkLocal, type PortRange } from './allocation.js'
import { toHex } from './codec.js'
import { Counters } from './counters.js'
import { addressOfMultiaddr } from './endpoints.js'
import { ProtocolError } from './errors.js'
import { FramedStream, type SignalOptions } from './framed-stream.js'
import type { Identity } from './identity.js'
import type { NodeId } from './keys.js'
import {
  INCARNATION_BYTES,
  LINK_PROTOCOL,
  MAX_LINK_FRAME_BYTES,
  PRESHARED_KEY_BYTES,
  decodeLinkMessage,
  encodeLinkMessage,
  type LinkMessage,
  type LinkOffer,
} from './link-messages.js'
import type { Clock, MembershipNode, StreamContext } from './node.js'
import type { EndpointCandidate, PeerRecord } from './records.js'
import type { MembershipService } from './service.js'

export { LINK_PROTOCOL }

/** Everything one side needs to build its end of a pair link. */
export interface LinkParams {
  readonly peer: NodeId
  /** The lower node id of the pair, which generated the key. */
  readonly initiator: NodeId
  readonly localListenPort: number
  readonly peerListenPort: number
  /** This side's addresses: `ip addr add LOCAL peer PEER dev LINK`. */
  readonly addresses: LinkAddresses
  /** The pair's link-locals from the pair's point of view; equal on both sides. */
  readonly pair: PairLinkLocal
  readonly presharedKey: Secret<Uint8Array>
  /** Where the peer can be reached for this link (ports are the peer's listen port for it). */
  readonly peerEndpoints: readonly EndpointCandidate[]
  readonly localIncarnation: string
  readonly peerIncarnation: string
  readonly negotiatedAt: number
}

export interface LinkNegotiatorEvents {
  'link:negotiated': [params: LinkParams]
  'link:removed': [peer: NodeId]
}

export interface LinkNegotiatorInit {
  /** WireGuard listen ports for this host's links; default 51820–52819. */
  portRange?: PortRange
  /** One negotiation; default 10 s. */
  timeoutMs?: number
  /** First retry delay after a failed negotiation, doubled each time; default 1 s. */
  retryDelayMs?: number
  /** Failed attempts before waiting for the next trigger (a membership change); default 5. */
  maxAttempts?: number
  /** Links negotiated before a restart (the agent's link store), kept while their peers' endpoints are unchanged. */
  adopted?: readonly LinkParams[]
}

export interface LinkNegotiatorComponents {
  node: MembershipNode
  service: MembershipService
  identity: Identity
  logger: Logger
  clock: Clock
  /** Cryptographically secure random bytes (preshared keys, incarnation). */
  random: (size: number) => Uint8Array
}

export interface LinkNegotiator {
  readonly events: EventEmitter<LinkNegotiatorEvents>
  readonly counters: Counters
  start(): void
  stop(): void
  links(): ReadonlyMap<NodeId, LinkParams>
  /** Negotiates (or renegotiates) the link to `peer` now. */
  negotiate(peer: NodeId, options: SignalOptions): Promise<LinkParams>
}

interface Reservation {
  readonly port: number
  readonly pair: PairLinkLocal | undefined
}

export function createLinkNegotiator(init: LinkNegotiatorInit, components: LinkNegotiatorComponents): LinkNegotiator {
  const { node, service, identity, clock } = components
  const self = identity.nodeId
  const log = components.logger.child({ component: 'link-negotiation' })
  const events = new EventEmitter<LinkNegotiatorEvents>()
  const counters = new Counters()
  const portRange = init.portRange ?? DEFAULT_LISTEN_PORT_RANGE
  const timeoutMs = init.timeoutMs ?? 10_000
  const retryDelayMs = init.retryDelayMs ?? 1_000
  const maxAttempts = init.maxAttempts ?? 5
  const incarnation = components.random(INCARNATION_BYTES)
  const links = new Map<NodeId, LinkParams>()
  /** Adopted links not yet confirmed by their peer's current record. */
  const unconfirmed = new Set<NodeId>()
  for (const params of init.adopted ?? []) {
    if (params.peer === self || links.has(params.peer)) continue
    links.set(params.peer, params)
    unconfirmed.add(params.peer)
  }
  const reservations = new Map<NodeId, Reservation>()
  /**
   * Per peer: a negotiation running, and whether a trigger came during it. `againIfUnlinked`: every such trigger
   * only asked for a link to exist (member up, a record without a link), which the running one may just have made.
   */
  const scheduled = new Map<NodeId, { running: boolean; again: boolean; againIfUnlinked: boolean; timer?: NodeJS.Timeout }>()
  let lifecycle: AbortController | undefined
  /** The initiator side runs one negotiation at a time, so its in-use sets hold still while it waits for an answer. */
  let initiatorQueue: Promise<unknown> = Promise.resolve()

  // ── Local allocation state ─────────────────────────────────────────────────

  const portsInUse = (except: NodeId): Set<number> => {
    const ports = new Set<number>()
    for (const [peer, link] of links) if (peer !== except) ports.add(link.localListenPort)
    for (const [peer, reservation] of reservations) if (peer !== except) ports.add(reservation.port)
    return ports
  }

  const linkLocalsInUse = (except: NodeId): Set<string> => {
    const addresses = new Set<string>()
    const add = (pair: PairLinkLocal | undefined): void => {
      if (pair !== undefined) addresses.add(pair.ipv4.low).add(pair.ipv4.high)
    }
    for (const [peer, link] of links) if (peer !== except) add(link.pair)
    for (const [peer, reservation] of reservations) if (peer !== except) add(reservation.pair)
    return addresses
  }

  const listenPortFor = (peer: NodeId): number => {
    const inUse = portsInUse(peer)
    const current = links.get(peer)?.localListenPort
    if (current !== undefined && !inUse.has(current)) return current
    const port = chooseListenPort({ self, peer, range: portRange, inUse })
    if (port === undefined) throw new ProtocolError('ports-exhausted', `no free listen port in ${portRange.first}-${portRange.last}`)
    return port
  }

  const offerFor = (peer: NodeId, port: number, context: StreamContext): LinkOffer => {
    const seen = new Set<string>()
    const endpoints: EndpointCandidate[] = []
    for (const endpoint of service.ownRecord()?.endpoints ?? []) {
      if (seen.has(endpoint.address)) continue
      seen.add(endpoint.address)
      endpoints.push({ address: endpoint.address, port, source: endpoint.source })
    }
    return {
      incarnation,
      listenPort: port,
      linkLocalsInUse: [...linkLocalsInUse(peer)].sort(),
      endpoints,
      observedAddress: context.remoteAddress.includes('/p2p-circuit') ? undefined : addressOfMultiaddr(context.remoteAddress),
    }
  }

  const commit = (params: LinkParams): void => {
    reservations.delete(params.peer)
    unconfirmed.delete(params.peer)
    links.set(params.peer, params)
    counters.increment('link.negotiated')
    log.info(
      { peer: params.peer, localPort: params.localListenPort, peerPort: params.peerListenPort, local4: params.addresses.local4, peer4: params.addresses.peer4, peerEndpoints: params.peerEndpoints.length },
      'link negotiated',
    )
    try {
      events.emit('link:negotiated', params)
    } catch (error) {
      log.warn({ err: error instanceof Error ? error.message : 'unknown' }, 'link event listener threw')
    }
  }

  const paramsFrom = (peer: NodeId, local: LinkOffer, remote: LinkOffer, pair: PairLinkLocal, presharedKey: Secret<Uint8Array>): LinkParams => ({
    peer,
    initiator: self < peer ? self : peer,
    localListenPort: local.listenPort,
    peerListenPort: remote.listenPort,
    addresses: linkAddressesFor(pair, self),
    pair,
    presharedKey,
    peerEndpoints: remote.endpoints,
    localIncarnation: toHex(local.incarnation),
    peerIncarnation: toHex(remote.incarnation),
    negotiatedAt: clock.now(),
  })

  const choosePair = (peer: NodeId, mine: readonly string[], theirs: readonly string[]): PairLinkLocal => {
    const pair = chooseLinkLocal({ a: self, b: peer, inUseByA: new Set(mine), inUseByB: new Set(theirs) })
    if (pair === undefined) throw new ProtocolError('link-locals-exhausted', 'no free link-local pair on both hosts')
    return pair
  }

  const noteObserved = (offer: LinkOffer): void => {
    if (offer.observedAddress !== undefined) service.noteObservedAddress(offer.observedAddress)
  }

  // ── The two roles ──────────────────────────────────────────────────────────

  /** Lower id: propose, compute, check, confirm. Runs inside the initiator queue. */
  const runInitiator = async (framed: FramedStream, peer: NodeId, context: StreamContext, options: SignalOptions): Promise<LinkParams> => {
    const port = listenPortFor(peer)
    const offer = offerFor(peer, port, context)
    reservations.set(peer, { port, pair: undefined })
    try {
      // Renegotiating an existing link keeps its key: a new one would re-key a tunnel in use.
      const presharedKey = links.get(peer)?.presharedKey ?? new Secret(components.random(PRESHARED_KEY_BYTES))
      await framed.write(encodeLinkMessage({ type: 'propose', offer, presharedKey }), options)
      const answer = await readMessage(framed, options)
      if (answer.type === 'refuse') throw new ProtocolError('refused', `peer refused: ${answer.reason}`)
      if (answer.type !== 'accept') throw new ProtocolError('unexpected', `expected accept, got ${answer.type}`)
      noteObserved(answer.offer)
      const pair = choosePair(peer, offer.linkLocalsInUse, answer.offer.linkLocalsInUse)
      // Our responder role may have reserved addresses meanwhile; if so, start over with fresh sets.
      const nowInUse = linkLocalsInUse(peer)
      if (nowInUse.has(pair.ipv4.low) || nowInUse.has(pair.ipv4.high)) {
        await framed.write(encodeLinkMessage({ type: 'refuse', reason: 'retry: local addresses changed' }), options)
        throw new ProtocolError('retry', 'local link-locals changed during negotiation')
      }
      const params = paramsFrom(peer, offer, answer.offer, pair, presharedKey)
      await framed.write(encodeLinkMessage({ type: 'confirm', attempt: pair.attempt }), options)
      // Once the confirm is out the responder commits, so we do too: failing on a
      // close error would leave the pair disagreeing and the retry would re-key it.
      commit(params)
      await framed.close(options).catch((error: unknown) => {
        log.debug({ peer, err: error instanceof Error ? error.message : 'unknown' }, 'link stream close failed after the confirm')
      })
      return params
    } finally {
      reservations.delete(peer)
    }
  }

  /** Higher id: answer a proposal, reserve, wait for the confirmation. */
  const runResponder = async (framed: FramedStream, peer: NodeId, proposal: LinkMessage, context: StreamContext, options: SignalOptions): Promise<LinkParams> => {
    if (proposal.type !== 'propose') throw new ProtocolError('unexpected', `expected propose, got ${proposal.type}`)
    noteObserved(proposal.offer)
    const port = listenPortFor(peer)
    const mine = [...linkLocalsInUse(peer)].sort()
    const pair = choosePair(peer, proposal.offer.linkLocalsInUse, mine)
    reservations.set(peer, { port, pair })
    try {
      const offer = { ...offerFor(peer, port, context), linkLocalsInUse: mine }
      await framed.write(encodeLinkMessage({ type: 'accept', offer }), options)
      const confirmation = await readMessage(framed, options)
      if (confirmation.type === 'refuse') throw new ProtocolError('refused', `initiator refused: ${confirmation.reason}`)
      if (confirmation.type !== 'confirm') throw new ProtocolError('unexpected', `expected confirm, got ${confirmation.type}`)
      if (confirmation.attempt !== pair.attempt) throw new ProtocolError('mismatch', `initiator chose link-local attempt ${confirmation.attempt}, this side ${pair.attempt}`)
      const params = paramsFrom(peer, offer, proposal.offer, pair, proposal.presharedKey)
      commit(params)
      return params
    } finally {
      reservations.delete(peer)
    }
  }

  const inInitiatorQueue = <T>(task: () => Promise<T>): Promise<T> => {
    const run = initiatorQueue.catch(() => undefined).then(task)
    initiatorQueue = run
    return run
  }

  const refuseIfNotMember = async (framed: FramedStream, peer: NodeId, options: SignalOptions): Promise<void> => {
    if (service.member(peer) !== undefined && service.ownRecord() !== undefined) return
    await framed.write(encodeLinkMessage({ type: 'refuse', reason: 'not a member (yet)' }), options).catch(() => undefined)
    throw new ProtocolError('not-member', `${peer} is not a member here yet`)
  }

  // ── Inbound and outbound streams ───────────────────────────────────────────

  const handleInbound = async (stream: Stream, context: StreamContext): Promise<void> => {
    if (lifecycle === undefined) {
      stream.abort(new Error('link negotiation not running'))
      return
    }
    const options = { signal: AbortSignal.any([lifecycle.signal, AbortSignal.timeout(timeoutMs)]) }
    const framed = new FramedStream(stream, MAX_LINK_FRAME_BYTES)
    const peer = context.remote
    try {
      const first = await readMessage(framed, options)
      await refuseIfNotMember(framed, peer, options)
      if (first.type === 'propose' && peer < self) {
        await runResponder(framed, peer, first, context, options)
      } else if (first.type === 'request' && self < peer) {
        await inInitiatorQueue(() => runInitiator(framed, peer, context, options))
      } else {
        await framed.write(encodeLinkMessage({ type: 'refuse', reason: `unexpected ${first.type}` }), options)
        throw new ProtocolError('unexpected', `unexpected ${first.type} from ${peer < self ? 'lower' : 'higher'} id`)
      }
    } catch (error) {
      failed(peer, error)
      framed.abort(error instanceof Error ? error : new Error('negotiation failed'))
      // A responder that lost the confirm has no link while the initiator may have one: ask again.
      if (self > peer && !links.has(peer) && service.member(peer) !== undefined) schedule(peer, 'inbound negotiation failed', 1, true)
    }
  }

  const negotiate = async (peer: NodeId, options: SignalOptions): Promise<LinkParams> => {
    if (peer === self) throw new RangeError('a node has no link to itself')
    const signal = AbortSignal.any([options.signal, AbortSignal.timeout(timeoutMs), ...(lifecycle === undefined ? [] : [lifecycle.signal])])
    const run = async (): Promise<LinkParams> => {
      const { stream, context } = await node.openStream(peer, LINK_PROTOCOL, { signal })
      const framed = new FramedStream(stream, MAX_LINK_FRAME_BYTES)
      try {
        if (self < peer) return await runInitiator(framed, peer, context, { signal })
        await framed.write(encodeLinkMessage({ type: 'request', incarnation }), { signal })
        const proposal = await readMessage(framed, { signal })
        if (proposal.type === 'refuse') throw new ProtocolError('refused', `peer refused: ${proposal.reason}`)
        return await runResponder(framed, peer, proposal, context, { signal })
      } catch (error) {
        framed.abort(error instanceof Error ? error : new Error('negotiation failed'))
        throw error
      }
    }
    return self < peer ? inInitiatorQueue(run) : run()
  }

  const failed = (peer: NodeId, error: unknown): void => {
    const code = error instanceof ProtocolError ? error.code : 'stream'
    counters.increment(`link.failed.${code}`)
    log.debug({ peer, code, err: error instanceof Error ? error.message : 'unknown' }, 'link negotiation failed')
  }

  // ── Triggers ───────────────────────────────────────────────────────────────

  /**
   * At most one outbound negotiation per peer at a time; a trigger during one runs it once more afterwards, unless
   * the trigger only wanted a link (`onlyIfUnlinked`) and there is one by then: at a join, records arrive several
   * times while the first negotiation runs, and each repeat took a turn in the initiator queue.
   */
  const schedule = (peer: NodeId, why: string, attempt = 1, onlyIfUnlinked = false): void => {
    if (lifecycle === undefined || peer === self) return
    const entry = scheduled.get(peer) ?? { running: false, again: false, againIfUnlinked: true }
    scheduled.set(peer, entry)
    if (entry.running) {
      entry.againIfUnlinked = entry.again ? entry.againIfUnlinked && onlyIfUnlinked : onlyIfUnlinked
      entry.again = true
      return
    }
    if (entry.timer !== undefined) {
      clearTimeout(entry.timer)
      entry.timer = undefined
    }
    entry.running = true
    const signal = lifecycle.signal
    log.debug({ peer, why, attempt }, 'negotiating link')
    negotiate(peer, { signal })
      .then(() => {
        entry.running = false
        if (entry.again && !(entry.againIfUnlinked && links.has(peer))) {
          entry.again = false
          schedule(peer, 'triggered again during negotiation')
        } else {
          scheduled.delete(peer)
        }
      })
      .catch((error: unknown) => {
        entry.running = false
        if (signal.aborted) return
        failed(peer, error)
        if (service.member(peer) === undefined) {
          scheduled.delete(peer)
          return
        }
        if (entry.again || attempt < maxAttempts) {
          const retry = entry.again ? 1 : attempt + 1
          entry.again = false
          entry.timer = setTimeout(() => {
            entry.timer = undefined
            schedule(peer, 'retry', retry)
          }, retryDelayMs * 2 ** (retry - 1))
          entry.timer.unref()
        } else {
          scheduled.delete(peer)
          log.info({ peer, attempts: attempt }, 'giving up on link negotiation until the member changes')
        }
      })
  }

  const endpointAddresses = (record: PeerRecord): string =>
    record.endpoints
      .map((endpoint) => endpoint.address)
      .sort()
      .join(',')

  /** An adopted link stands while the peer's record shows the endpoints it was made with. */
  const checkAdopted = (record: PeerRecord): void => {
    if (!unconfirmed.delete(record.nodeId)) return
    const link = links.get(record.nodeId)
    const made = [...new Set(link?.peerEndpoints.map((endpoint) => endpoint.address))].sort().join(',')
    const now = [...new Set(record.endpoints.map((endpoint) => endpoint.address))].sort().join(',')
    if (made === now) {
      log.info({ peer: record.nodeId }, 'adopted link kept')
    } else {
      schedule(record.nodeId, 'adopted link: peer endpoints changed')
    }
  }

  const onMemberUp = (record: PeerRecord): void => {
    if (!links.has(record.nodeId)) schedule(record.nodeId, 'member up', 1, true)
    else checkAdopted(record)
  }
  const onMemberUpdated = (record: PeerRecord, previous: PeerRecord): void => {
    const changed = endpointAddresses(record) !== endpointAddresses(previous)
    // A negotiation running now may have offered the old endpoints: then it runs again.
    if (!links.has(record.nodeId)) schedule(record.nodeId, changed ? 'member without a link, endpoints changed' : 'member without a link', 1, !changed)
    else if (unconfirmed.has(record.nodeId)) checkAdopted(record)
    else if (changed && self < record.nodeId) schedule(record.nodeId, 'peer endpoints changed')
  }
  const onMemberDown = ({ nodeId }: { nodeId: NodeId }): void => {
    const entry = scheduled.get(nodeId)
    if (entry?.timer !== undefined) clearTimeout(entry.timer)
    scheduled.delete(nodeId)
    if (links.delete(nodeId)) {
      log.info({ peer: nodeId }, 'link removed')
      events.emit('link:removed', nodeId)
    }
  }
  let ownEndpoints: string | undefined
  const onSelfPublished = (record: PeerRecord): void => {
    const current = endpointAddresses(record)
    const changed = ownEndpoints !== undefined && ownEndpoints !== current
    ownEndpoints = current
    if (!changed) return
    for (const peer of links.keys()) if (self < peer) schedule(peer, 'own endpoints changed')
  }

  return {
    events,
    counters,

    start() {
      if (lifecycle !== undefined) return
      lifecycle = new AbortController()
      node.handle(LINK_PROTOCOL, handleInbound)
      service.events.on('member:up', onMemberUp)
      service.events.on('member:updated', onMemberUpdated)
      service.events.on('member:down', onMemberDown)
      service.events.on('self:published', onSelfPublished)
      for (const record of service.peers()) onMemberUp(record)
    },

    stop() {
      if (lifecycle === undefined) return
      lifecycle.abort(new Error('link negotiation stopped'))
      lifecycle = undefined
      service.events.off('member:up', onMemberUp)
      service.events.off('member:updated', onMemberUpdated)
      service.events.off('member:down', onMemberDown)
      service.events.off('self:published', onSelfPublished)
      for (const entry of scheduled.values()) if (entry.timer !== undefined) clearTimeout(entry.timer)
      scheduled.clear()
    },

    links: () => new Map(links),
    negotiate,
  }
}

async function readMessage(framed: FramedStream, options: SignalOptions): Promise<LinkMessage> {
  const decoded = decodeLinkMessage(await framed.readRequired('link message', options))
  if (!decoded.ok) throw new ProtocolError('malformed', `malformed link message: ${decoded.detail}`)
  return decoded.value
}
