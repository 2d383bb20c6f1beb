// Real membership nodes in one process over loopback TCP (127.0.0.1, port 0):
// join with tokens, link negotiation, leave, eviction, expiry, partition and
// heal, and a host without the network secret. Every wait polls with a
// deadline; nothing asserts a timing.

import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { JoinRefusedError } from '../../src/membership/errors.js'
import type { NodeId } from '../../src/membership/keys.js'
import type { LinkParams } from '../../src/membership/link-negotiation.js'
import { FramedStream } from '../../src/membership/framed-stream.js'
import { createMembershipNode } from '../../src/membership/node.js'
import { signPeerRecord } from '../../src/membership/records.js'
import type { MemberDown } from '../../src/membership/service.js'
import { pollUntil } from '../support/poll.js'
import {
  LOOPBACK_LISTEN,
  clock,
  createTestNetwork,
  joinWithToken,
  nextIdentity,
  sameView,
  startFounder,
  startMember,
  stopMember,
  testLogger,
  tokenFrom,
  view,
  type Member,
} from './membership-cluster.js'

const DEADLINE = { deadlineMs: 20_000 }

function idsOf(members: readonly Member[]): NodeId[] {
  return members.map((member) => member.identity.nodeId)
}

async function converge(members: readonly Member[], expected: readonly Member[], what: string): Promise<void> {
  const ids = idsOf(expected)
  await pollUntil(() => (sameView(members, ids) ? true : undefined), { ...DEADLINE, what })
}

function downEvents(member: Member): MemberDown[] {
  const seen: MemberDown[] = []
  member.service.events.on('member:down', (down) => seen.push(down))
  return seen
}

function linkBetween(from: Member, to: Member): LinkParams | undefined {
  return from.links?.links().get(to.identity.nodeId)
}

describe('four members over loopback', () => {
  const members: Member[] = []
  let founder: Member

  beforeAll(async () => {
    founder = await startFounder()
    members.push(founder)
    for (const name of ['a', 'b', 'c']) members.push(await joinWithToken(name, tokenFrom(founder)))
  })
  afterAll(async () => {
    for (const member of members) await stopMember(member).catch(() => undefined)
  })

  it('joins with tokens: all four see each other, with admission chains rooted at the founder', async () => {
    await converge(members, members, 'all four members in every view')
    for (const member of members.slice(1)) {
      expect(member.admissions).toHaveLength(1)
      expect(member.admissions[0]?.admitter).toBe(founder.identity.nodeId)
      expect(member.admissions[0]?.joiner).toBe(member.identity.nodeId)
    }
    expect(founder.service.counters.get('join.admitted')).toBe(3)
    const overlays = founder.service.members().map((record) => record.overlayIpv4)
    expect(new Set(overlays).size).toBe(4)
  })

  it('refuses a second join with a single-use token', async () => {
    const token = tokenFrom(founder, 1)
    const first = await joinWithToken('once', token, { links: false })
    await first.service.leave({ signal: AbortSignal.timeout(5_000) })
    await stopMember(first)
    await converge(members, members, 'the one-time joiner gone again')
    await expect(joinWithToken('twice', token, { links: false })).rejects.toThrow(JoinRefusedError)
    await expect(joinWithToken('twice', token, { links: false })).rejects.toThrow(/already used 1 of 1/)
    expect(founder.service.counters.get('join.refused')).toBeGreaterThanOrEqual(2)
  })

  it('negotiates symmetric links: same link-locals and key on both ends, distinct ports and addresses per host', async () => {
    await pollUntil(() => (members.every((member) => member.links?.links().size === 3) ? true : undefined), { ...DEADLINE, what: 'three links on every member' })
    for (const x of members) {
      for (const y of members) {
        if (x === y) continue
        const xy = linkBetween(x, y)
        const yx = linkBetween(y, x)
        if (xy === undefined || yx === undefined) throw new Error(`missing link ${x.name}-${y.name}`)
        expect(xy.pair).toEqual(yx.pair)
        expect(Buffer.from(xy.presharedKey.reveal())).toEqual(Buffer.from(yx.presharedKey.reveal()))
        expect(xy.presharedKey.reveal()).toHaveLength(32)
        expect(xy.localListenPort).toBe(yx.peerListenPort)
        expect(xy.addresses.local4).toBe(yx.addresses.peer4)
        expect(xy.addresses.local6).toBe(yx.addresses.peer6)
        expect(xy.initiator).toBe(x.identity.nodeId < y.identity.nodeId ? x.identity.nodeId : y.identity.nodeId)
        expect(xy.peerEndpoints.every((endpoint) => endpoint.port === yx.localListenPort)).toBe(true)
        expect(JSON.stringify(xy)).not.toContain(Buffer.from(xy.presharedKey.reveal()).toString('hex'))
      }
      const own = [...(x.links?.links().values() ?? [])]
      expect(new Set(own.map((link) => link.localListenPort)).size).toBe(3)
      expect(new Set(own.map((link) => link.addresses.local4)).size).toBe(3)
    }
    const keys = new Set(members.flatMap((x) => [...(x.links?.links().values() ?? [])].map((link) => Buffer.from(link.presharedKey.reveal()).toString('hex'))))
    expect(keys.size).toBe(6)
  })

  it('drops malformed gossip with a counted reason and keeps running', async () => {
    const sender = members[1]
    if (sender === undefined) throw new Error('no member')
    const rejectedBefore = founder.service.counters.get('record.rejected.malformed')
    await sender.node.publish(new Uint8Array(randomBytes(300)), { signal: AbortSignal.timeout(5_000) })
    await sender.node.publish(Uint8Array.of(0x03, 0x01, 0xff), { signal: AbortSignal.timeout(5_000) })
    await pollUntil(() => (founder.service.counters.get('record.rejected.malformed') >= rejectedBefore + 2 ? true : undefined), {
      ...DEADLINE,
      what: 'malformed gossip counted',
    })
    await converge(members, members, 'membership unchanged after garbage')
  })

  it('re-negotiates every link of a member that restarts', async () => {
    const index = members.findIndex((member) => member.name === 'c')
    const old = members[index]
    if (old === undefined) throw new Error('no member c')
    const oldIncarnation = linkBetween(founder, old)?.peerIncarnation
    await stopMember(old)
    // Same identity and admission; a new process knows its peers from configuration (here: the founder as bootstrap).
    const restarted = await startMember('c', old.identity, old.network, old.admissions, { node: { bootstrap: founder.node.listenAddresses() } })
    members[index] = restarted
    const others = members.filter((member) => member !== restarted)
    await pollUntil(
      () =>
        others.every((other) => {
          const theirs = linkBetween(other, restarted)
          const ours = linkBetween(restarted, other)
          return (
            theirs !== undefined &&
            ours !== undefined &&
            theirs.peerIncarnation !== oldIncarnation &&
            theirs.peerIncarnation === ours.localIncarnation &&
            Buffer.from(theirs.presharedKey.reveal()).equals(Buffer.from(ours.presharedKey.reveal()))
          )
        })
          ? true
          : undefined,
      { ...DEADLINE, what: 'links to the restarted member renegotiated' },
    )
    await converge(members, members, 'restarted member seen by all')
  })

  it('refuses a connection from a host that holds no network secret', async () => {
    const stranger = await nextIdentity()
    const otherNetwork = createTestNetwork(stranger, 'elsewhere')
    const node = createMembershipNode({ listen: LOOPBACK_LISTEN, relay: { server: false } }, { identity: stranger, network: otherNetwork, logger: testLogger(), clock })
    await node.start({ signal: AbortSignal.timeout(10_000) })
    try {
      const target = founder.node.listenAddresses()[0] ?? ''
      // pnet keys differ, so the Noise handshake inside it sees only noise and never completes.
      await expect(node.dial(target, { signal: AbortSignal.timeout(15_000) })).rejects.toMatchObject({ name: 'EncryptionFailedError' })
      expect(founder.node.connectedPeers()).not.toContain(stranger.nodeId)
      expect(node.connectedPeers()).toEqual([])
    } finally {
      await node.stop({ signal: AbortSignal.timeout(10_000) })
    }
  })

  it('removes a member that leaves, everywhere', async () => {
    const leaving = members.find((member) => member.name === 'a')
    if (leaving === undefined) throw new Error('no member a')
    const remaining = members.filter((member) => member !== leaving)
    const seen = remaining.map(downEvents)
    await leaving.service.leave({ signal: AbortSignal.timeout(5_000) })
    await converge(remaining, remaining, 'leaver gone from every view')
    await stopMember(leaving)
    members.splice(members.indexOf(leaving), 1)
    for (const events of seen) expect(events).toContainEqual({ nodeId: leaving.identity.nodeId, reason: 'leave' })
    for (const member of remaining) expect(member.links?.links().has(leaving.identity.nodeId)).toBe(false)
  })

  it('removes an evicted member everywhere and refuses its later records', async () => {
    const evicted = members.find((member) => member.name === 'b')
    if (evicted === undefined) throw new Error('no member b')
    const remaining = members.filter((member) => member !== evicted)
    const seen = remaining.map(downEvents)
    let selfEvicted = false
    evicted.service.events.on('self:evicted', () => {
      selfEvicted = true
    })
    await founder.service.evict(evicted.identity.nodeId, 'test eviction', { signal: AbortSignal.timeout(5_000) })
    await converge(remaining, remaining, 'evicted member gone from every view')
    for (const events of seen) expect(events).toContainEqual({ nodeId: evicted.identity.nodeId, reason: 'evicted' })
    await pollUntil(() => (selfEvicted ? true : undefined), { ...DEADLINE, what: 'the evicted node learns it was evicted' })

    // The evicted node signs a fresh record anyway and gossips it: every member refuses it.
    const stale = evicted.service.ownRecord() ?? founder.service.member(evicted.identity.nodeId)
    const template = stale ?? remaining[1]?.service.ownRecord()
    if (template === undefined) throw new Error('no record to copy')
    const later = signPeerRecord(evicted.identity, { ...template, seq: clock.now() + 1, expiresAt: clock.now() + 60_000, admissions: [...evicted.admissions] })
    const refusedBefore = remaining.map((member) => member.service.counters.get('record.rejected.evicted'))
    await evicted.node.publish(later.bytes, { signal: AbortSignal.timeout(5_000) })
    await pollUntil(() => (remaining.some((member, i) => member.service.counters.get('record.rejected.evicted') > (refusedBefore[i] ?? 0)) ? true : undefined), {
      ...DEADLINE,
      what: 'the evicted node’s later record refused',
    })
    for (const member of remaining) {
      expect(member.service.isEvicted(evicted.identity.nodeId)).toBe(true)
      expect(view(member)).not.toContain(evicted.identity.nodeId)
    }
  })
})

describe('expiry', () => {
  const members: Member[] = []
  afterAll(async () => {
    for (const member of members) await stopMember(member).catch(() => undefined)
  })

  it('removes a silent member once its record expires', async () => {
    const short = { service: { recordLifetimeMs: 3_000, refreshIntervalMs: 1_000, sweepIntervalMs: 200 }, links: false as const }
    const founder = await startFounder('founder', short)
    members.push(founder)
    const silent = await joinWithToken('silent', tokenFrom(founder), short)
    members.push(silent)
    await converge(members, members, 'both members seen')
    const seen = downEvents(founder)
    // Stopping without a leave: its record simply stops being refreshed.
    await stopMember(silent)
    await converge([founder], [founder], 'silent member expired')
    expect(seen).toEqual([{ nodeId: silent.identity.nodeId, reason: 'expired' }])
    expect(founder.service.counters.get('member.expired')).toBe(1)
  })
})

describe('partition and heal', () => {
  const members: Member[] = []
  afterAll(async () => {
    for (const member of members) await stopMember(member).catch(() => undefined)
  })

  it('two halves that changed apart converge to the same membership after they reconnect', async () => {
    // Links off: link negotiation dials members it knows, which would heal the partition by itself.
    const options = { links: false as const }
    const founder = await startFounder('founder', options)
    const a = await joinWithToken('a', tokenFrom(founder), options)
    const b = await joinWithToken('b', tokenFrom(founder), options)
    const c = await joinWithToken('c', tokenFrom(b), options)
    members.push(founder, a, b, c)
    await converge(members, members, 'four members before the partition')

    // Partition {founder, a} | {b, c}: cut every connection across.
    for (const left of [founder, a]) for (const right of [b, c]) await left.node.hangUp(right.identity.nodeId, { signal: AbortSignal.timeout(5_000) })
    const crossing = (): boolean => [founder, a].some((left) => [b, c].some((right) => left.node.connectedPeers().includes(right.identity.nodeId)))
    expect(crossing()).toBe(false)

    // Each half changes on its own: d joins the left half, c leaves the right half.
    const d = await joinWithToken('d', tokenFrom(a), options)
    members.push(d)
    await c.service.leave({ signal: AbortSignal.timeout(5_000) })
    await converge([founder, a, d], [founder, a, b, c, d], 'left half sees d (and still c)')
    await converge([b], [founder, a, b], 'right half sees c gone (and no d)')
    expect(crossing()).toBe(false)

    // Heal through one connection.
    await a.node.dial(b.node.listenAddresses()[0] ?? '', { signal: AbortSignal.timeout(10_000) })
    await converge([founder, a, b, d], [founder, a, b, d], 'both halves agree after the heal')
  })
})

describe('own endpoints', () => {
  it('publishes a new record when an interface address appears after start, and the links are renegotiated with it', async () => {
    let interfaces = [{ interfaceName: 'lo', address: '127.0.0.1', internal: true }]
    const founder = await startFounder('late-nic', { service: { endpointCheckIntervalMs: 100 }, interfaces: () => Promise.resolve(interfaces) })
    const peer = await joinWithToken('peer', tokenFrom(founder))
    try {
      await pollUntil(() => linkBetween(peer, founder), { ...DEADLINE, what: 'a link to the founder' })
      expect(peer.service.member(founder.identity.nodeId)?.endpoints.map((e) => e.address)).not.toContain('192.0.2.77')
      // The kernel reports a new link as running a moment after its address is set: the record made at start missed it.
      interfaces = [...interfaces, { interfaceName: 'eth0', address: '192.0.2.77', internal: false }]
      await pollUntil(() => (peer.service.member(founder.identity.nodeId)?.endpoints.some((e) => e.address === '192.0.2.77') === true ? true : undefined), {
        ...DEADLINE,
        what: "the peer learns the founder's new endpoint from gossip",
      })
      await pollUntil(() => (linkBetween(peer, founder)?.peerEndpoints.some((e) => e.address === '192.0.2.77') === true ? true : undefined), {
        ...DEADLINE,
        what: 'the link renegotiated with the new endpoint',
      })
    } finally {
      for (const member of [peer, founder]) await stopMember(member).catch(() => undefined)
    }
  })
})

describe('lifecycle and relay', () => {
  it('start and stop are safe to call twice, and a stopped node starts again', async () => {
    const founder = await startFounder('twice', { links: false })
    const signal = AbortSignal.timeout(10_000)
    await Promise.all([founder.node.start({ signal }), founder.node.start({ signal })])
    await founder.service.start({ signal })
    await founder.service.stop({ signal })
    await founder.service.stop({ signal })
    await founder.node.stop({ signal })
    await founder.node.stop({ signal })
    expect(founder.node.isStarted).toBe(false)
    await founder.node.start({ signal })
    await founder.service.start({ signal })
    expect(founder.node.listenAddresses()).not.toEqual([])
    expect(view(founder)).toEqual([founder.identity.nodeId])
    await stopMember(founder)
  })

  it('reaches a member through a relaying member (circuit relay v2)', async () => {
    const relay = await startFounder('relay', { links: false, node: { relay: { server: true } } })
    const hidden = await joinWithToken('hidden', tokenFrom(relay), { links: false, node: { relay: { reserve: true } } })
    const caller = await joinWithToken('caller', tokenFrom(relay), { links: false })
    try {
      const circuit = await pollUntil(() => hidden.node.listenAddresses().find((address) => address.includes('/p2p-circuit')), {
        ...DEADLINE,
        what: 'a relay reservation for the hidden member',
      })
      await caller.node.hangUp(hidden.identity.nodeId, { signal: AbortSignal.timeout(5_000) })
      expect(await caller.node.dial(circuit, { signal: AbortSignal.timeout(10_000) })).toBe(hidden.identity.nodeId)
      await converge([relay, hidden, caller], [relay, hidden, caller], 'all three members seen')
    } finally {
      for (const member of [caller, hidden, relay]) await stopMember(member).catch(() => undefined)
    }
  })
})

describe('control traffic to a member that cannot be dialled', () => {
  it('opens a stream through a connected relaying member when the member has no address of its own', async () => {
    const relay = await startFounder('relay', { links: false, node: { relay: { server: true } } })
    // No TCP listener at all: like a host behind NAT, it only dials out, and holds a reservation on the relay.
    const hidden = await joinWithToken('hidden', tokenFrom(relay), { links: false, node: { listen: [], relay: { reserve: true } } })
    const caller = await joinWithToken('caller', tokenFrom(relay), { links: false })
    const protocol = '/meshd-test/hello/1'
    hidden.node.handle(protocol, async (stream) => {
      const framed = new FramedStream(stream, 64)
      await framed.write(new TextEncoder().encode('hello'), { signal: AbortSignal.timeout(5_000) })
      await framed.close({ signal: AbortSignal.timeout(5_000) })
    })
    try {
      await converge([relay, hidden, caller], [relay, hidden, caller], 'all three members seen')
      await pollUntil(() => hidden.node.listenAddresses().find((address) => address.includes('/p2p-circuit')), { ...DEADLINE, what: 'a reservation on the relay' })
      const { stream, context } = await caller.node.openStream(hidden.identity.nodeId, protocol, { signal: AbortSignal.timeout(20_000) })
      expect(context.remoteAddress).toContain('/p2p-circuit')
      const reply = await new FramedStream(stream, 64).readRequired('hello', { signal: AbortSignal.timeout(5_000) })
      expect(new TextDecoder().decode(reply)).toBe('hello')
    } finally {
      for (const member of [caller, hidden, relay]) await stopMember(member).catch(() => undefined)
    }
  })
})

describe('inbound stream rate limit', () => {
  it('refuses a peer that opens streams faster than the limit, and serves it again once the bucket refills', async () => {
    const founder = await nextIdentity()
    const other = await nextIdentity()
    const network = createTestNetwork(founder)
    const options = { listen: LOOPBACK_LISTEN, inboundConnectionsPerSecond: 1000, relay: { server: false }, inboundStreamRate: { perSecond: 2, burst: 5 } }
    const server = createMembershipNode(options, { identity: founder, network, logger: testLogger(), clock })
    const client = createMembershipNode(options, { identity: other, network, logger: testLogger(), clock })
    const signal = AbortSignal.timeout(30_000)
    const protocol = '/meshd/test-echo/1.0.0'
    let served = 0
    server.handle(protocol, (stream) => {
      served++
      stream.abort(new Error('done'))
      return Promise.resolve()
    })
    await server.start({ signal })
    await client.start({ signal })
    try {
      await client.dial(server.listenAddresses()[0] ?? '', { signal })
      // 20 streams at once against a burst of 5: most are refused before the handler runs.
      // Each stream writes a byte: libp2p may settle the protocol only when the first data goes out, and a
      // stream the server never hears of is neither served nor refused.
      const poke = async (): Promise<void> => {
        const { stream } = await client.openStream(server.nodeId, protocol, { signal })
        await new FramedStream(stream, 64).write(new Uint8Array([1]), { signal })
      }
      // One stream served first: right after the dial, streams are sometimes reset before any handler runs (seen on
      // a loaded host: all 20 reset, none served or refused), which would say nothing about the limiter.
      await pollUntil(
        async () => {
          await poke().catch(() => undefined)
          return served > 0 ? true : undefined
        },
        { deadlineMs: 10_000, intervalMs: 200, what: 'a first stream served' },
      )
      served = 0
      await Promise.all(Array.from({ length: 20 }, () => poke().catch(() => undefined)))
      // On a loaded host a few of the 20 fail on the client before the server sees them (neither served nor
      // refused): wait until the server's count settles with most of them judged, then check that everything
      // past the burst (5, plus what ~1 s of refill adds) was refused.
      let judged = -1
      await pollUntil(
        () => {
          const now = served + server.rateLimitedStreams()
          const settled = now === judged && now >= 12
          judged = now
          return settled ? true : undefined
        },
        { deadlineMs: 15_000, intervalMs: 500, what: 'the server has judged the burst of 20 streams' },
      )
      expect(served).toBeLessThanOrEqual(6)
      expect(server.rateLimitedStreams()).toBeGreaterThanOrEqual(judged - 6)
      // The bucket refills at 2/s: a later stream is served again.
      const servedInBurst = served
      await pollUntil(
        async () => {
          await poke().catch(() => undefined)
          return served > servedInBurst ? true : undefined
        },
        { deadlineMs: 10_000, intervalMs: 600, what: 'a stream served after the refill' },
      )
    } finally {
      await client.stop({ signal }).catch(() => undefined)
      await server.stop({ signal }).catch(() => undefined)
    }
  })
})
