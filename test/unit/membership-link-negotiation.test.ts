// Link negotiation between two negotiators over an in-memory stream pair:
// what each side commits when the stream misbehaves after the confirm.

import { EventEmitter } from 'node:events'
import { Writable } from 'node:stream'
import type { Stream } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../../src/logging/logger.js'
import { identityFromSeed, type Identity } from '../../src/membership/identity.js'
import type { NodeId } from '../../src/membership/keys.js'
import { createLinkNegotiator, type LinkNegotiator, type LinkParams } from '../../src/membership/link-negotiation.js'
import type { MembershipNode, ProtocolHandler } from '../../src/membership/node.js'
import type { PeerRecord } from '../../src/membership/records.js'
import type { MembershipService } from '../../src/membership/service.js'
import { pollUntil } from '../support/poll.js'
import { countingRandom, labNetwork, peerRecord, seededSigner } from './membership-fixtures.js'

interface StreamFaults {
  /** close() rejects after the queued bytes went out (a reset racing the FIN). */
  closeFails?: boolean
  /** Frames after this many are lost and the stream is reset (a confirm that never arrives). */
  framesDelivered?: number
}

/** One end of an in-memory duplex: what FramedStream uses of a libp2p Stream. */
class FakeStreamEnd {
  readonly #incoming: Uint8Array[] = []
  #ended = false
  #wake: (() => void) | undefined
  remote: FakeStreamEnd | undefined
  readonly faults: StreamFaults
  constructor(faults: StreamFaults | undefined) {
    this.faults = faults ?? {}
  }

  deliver(chunk: Uint8Array | undefined): void {
    if (chunk === undefined) this.#ended = true
    else this.#incoming.push(chunk)
    this.#wake?.()
  }

  #sent = 0
  send(chunk: Uint8Array): boolean {
    this.#sent += 1
    if (this.#sent > (this.faults.framesDelivered ?? Infinity)) this.remote?.deliver(undefined)
    else this.remote?.deliver(chunk.slice())
    return true
  }

  onDrain(): Promise<void> {
    return Promise.resolve()
  }

  close(): Promise<void> {
    this.remote?.deliver(undefined)
    return this.faults.closeFails === true ? Promise.reject(new Error('stream reset while closing')) : Promise.resolve()
  }

  abort(): void {
    this.deliver(undefined)
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: async () => {
        for (;;) {
          const chunk = this.#incoming.shift()
          if (chunk !== undefined) return { done: false, value: chunk }
          if (this.#ended) return { done: true, value: undefined }
          await new Promise<void>((resolve) => (this.#wake = resolve))
        }
      },
    }
  }
}

interface Host {
  readonly identity: Identity
  readonly record: PeerRecord
  handler?: ProtocolHandler
  negotiator?: LinkNegotiator
  service?: MembershipService
  readonly committed: LinkParams[]
  /** Streams this host's node opened. */
  opened: number
}

const silentLogger = () => createLogger({ pretty: false, destination: new Writable({ write: (_c, _e, done) => { done() } }) })

/** Two hosts whose nodes open streams straight into each other's handler; `faults` applies to the first opener's end. */
async function pair(faults: StreamFaults): Promise<{ low: Host; high: Host }> {
  let pendingFaults: StreamFaults | undefined = faults
  const network = labNetwork()
  const hosts: Host[] = []
  for (const seed of [11, 12]) {
    const identity = await identityFromSeed(new Uint8Array(32).fill(seed))
    const record = peerRecord(seededSigner(seed), network, [], { endpoints: [{ address: `192.0.2.${seed}`, port: 51820, source: 'configured' }] })
    hosts.push({ identity, record: { ...record, nodeId: identity.nodeId }, committed: [], opened: 0 })
  }
  const [a, b] = hosts as [Host, Host]
  const [low, high] = a.identity.nodeId < b.identity.nodeId ? [a, b] : [b, a]
  const other = (host: Host): Host => (host === low ? high : low)
  for (const host of [low, high]) {
    const node = {
      handle: (_protocol: string, handler: ProtocolHandler) => (host.handler = handler),
      openStream: (nodeId: NodeId) => {
        host.opened += 1
        const peer = other(host)
        if (peer.identity.nodeId !== nodeId || peer.handler === undefined) return Promise.reject(new Error('no route'))
        const mine = new FakeStreamEnd(pendingFaults)
        pendingFaults = undefined
        const theirs = new FakeStreamEnd(undefined)
        mine.remote = theirs
        theirs.remote = mine
        void peer.handler(theirs as unknown as Stream, { remote: host.identity.nodeId, remoteAddress: '/ip4/192.0.2.1/tcp/4001' })
        return Promise.resolve({ stream: mine as unknown as Stream, context: { remote: nodeId, remoteAddress: '/ip4/192.0.2.2/tcp/4001' } })
      },
    } as unknown as MembershipNode
    const service = {
      events: new EventEmitter(),
      member: (nodeId: NodeId) => (nodeId === other(host).identity.nodeId ? other(host).record : undefined),
      ownRecord: () => host.record,
      peers: () => [],
      noteObservedAddress: () => undefined,
    } as unknown as MembershipService
    const negotiator = createLinkNegotiator(
      { retryDelayMs: 1 },
      { node, service, identity: host.identity, logger: silentLogger(), clock: { now: () => 0 }, random: countingRandom(host === low ? 0 : 128) },
    )
    negotiator.events.on('link:negotiated', (params) => host.committed.push(params))
    negotiator.start()
    host.negotiator = negotiator
    host.service = service
  }
  return { low, high }
}

const key = (params: LinkParams | undefined): string => Buffer.from(params?.presharedKey.reveal() ?? []).toString('hex')

describe('link negotiation over a stream pair', () => {
  it('both ends commit the same pair and key', async () => {
    const { low, high } = await pair({})
    const params = await low.negotiator?.negotiate(high.identity.nodeId, { signal: AbortSignal.timeout(5_000) })
    await pollUntil(() => (high.committed.length === 1 ? true : undefined), { deadlineMs: 5_000, what: 'the responder committed' })
    expect(params?.pair).toEqual(high.committed[0]?.pair)
    expect(key(params)).toBe(key(high.committed[0]))
  })

  it('an initiator whose close fails after the confirm went out keeps the link the responder committed, and re-keys nothing', async () => {
    const { low, high } = await pair({ closeFails: true })
    const params = await low.negotiator?.negotiate(high.identity.nodeId, { signal: AbortSignal.timeout(5_000) })
    await pollUntil(() => (high.committed.length === 1 ? true : undefined), { deadlineMs: 5_000, what: 'the responder committed' })
    expect(low.negotiator?.links().has(high.identity.nodeId)).toBe(true)
    expect(key(params)).toBe(key(high.committed[0]))
    expect(low.committed).toHaveLength(1)
  })

  it('a responder that never got the confirm asks again, and both ends settle on the initiator\'s key', async () => {
    const { low, high } = await pair({ framesDelivered: 1 })
    const params = await low.negotiator?.negotiate(high.identity.nodeId, { signal: AbortSignal.timeout(5_000) })
    await pollUntil(() => (high.committed.length === 1 ? true : undefined), { deadlineMs: 5_000, what: 'the responder asked again and committed' })
    expect(key(high.committed[0])).toBe(key(params))
    expect(high.committed[0]?.pair).toEqual(params?.pair)
    expect(key(low.negotiator?.links().get(high.identity.nodeId))).toBe(key(params))
  })

  it('records that arrive while the first negotiation runs do not make it run again once the link exists', async () => {
    const { low, high } = await pair({})
    // As at a join: the member comes up, then its record arrives again (sync, then gossip) while the link is negotiated.
    low.service?.events.emit('member:up', high.record)
    low.service?.events.emit('member:updated', high.record, high.record)
    low.service?.events.emit('member:updated', high.record, high.record)
    await pollUntil(() => (low.committed.length === 1 && high.committed.length === 1 ? true : undefined), { deadlineMs: 5_000, what: 'the link on both ends' })
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve))
    expect(low.opened).toBe(1)
    expect(low.committed).toHaveLength(1)
  })

  it('an endpoint change during a negotiation still runs it again afterwards', async () => {
    const { low, high } = await pair({})
    low.service?.events.emit('member:up', high.record)
    const moved = { ...high.record, endpoints: [{ address: '198.51.100.7', port: 51820, source: 'observed' as const }] }
    low.service?.events.emit('member:updated', moved, high.record)
    await pollUntil(() => (low.committed.length === 2 ? true : undefined), { deadlineMs: 5_000, what: 'a second negotiation for the new endpoints' })
    expect(low.opened).toBe(2)
  })
})
