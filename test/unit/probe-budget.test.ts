// The probe budget in docs/paths.md: packet sizes and figures pinned, and the
// service's actual traffic over a fake network checked against the formula.

import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { PROBE_PAYLOAD_BYTES, probeBudget, wireBytes, wireguardTransferBytes } from '../../src/probe/budget.js'
import { DIRECT_IDLE_PROBE_RATE_PER_SECOND } from '../../src/probe/schedule.js'
import { createProbeService } from '../../src/probe/service.js'
import type { ProbeService } from '../../src/probe/types.js'
import { FakeProbeNetwork } from '../support/probe-fake-network.js'

const ids = {
  a: '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
  b: '12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB',
  c: '12D3KooWCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC',
}

describe('probe budget', () => {
  it('pins packet sizes, payload and on the wire (WireGuard over IPv4)', () => {
    expect(PROBE_PAYLOAD_BYTES).toEqual({ echoRequest: 8, echoReply: 13, relayRequest: 62, relayForward: 66, relayReply: 70, relayReturn: 73 })
    expect(Object.values(PROBE_PAYLOAD_BYTES).map(wireBytes)).toEqual([108, 108, 156, 156, 172, 172])
  })

  it.each([
    // Idle: 2 direct probes/s and one relayed one every 2 s per node, whatever the number of peers.
    { peers: 99, active: false, relays: 3, directPerPeer: 4.4, relayPerPeer: 2.4, perNode: 674 },
    { peers: 99, active: true, relays: 3, directPerPeer: 1028.6, relayPerPeer: 97.8, perNode: 111_509 },
    { peers: 20, active: false, relays: 3, directPerPeer: 21.6, relayPerPeer: 12.1, perNode: 674 },
    // Below the direct cap (3 links or fewer): every link at its own interval.
    { peers: 3, active: false, relays: 3, directPerPeer: 144, relayPerPeer: 80.7, perNode: 674 },
    { peers: 2, active: false, relays: 3, directPerPeer: 144, relayPerPeer: 121, perNode: 530 },
  ])('the figures in docs/paths.md: active=$active, $relays relays per destination, $peers peers', ({ peers, active, relays, directPerPeer, relayPerPeer, perNode }) => {
    const budget = probeBudget({ peers, relaysPerDestination: relays, active })
    expect(budget.directPerPeer).toBeCloseTo(directPerPeer, 0)
    expect(budget.relayPerPeer).toBeCloseTo(relayPerPeer, 0)
    expect(Math.round(budget.perNode)).toBe(perNode)
  })

  describe('what the service sends matches the formula', () => {
    beforeEach(() => {
      vi.useFakeTimers({ now: 0 })
    })
    afterEach(() => {
      vi.useRealTimers()
    })

    it.each([false, true])('active=%s', async (active) => {
      const now = (): number => Date.now()
      const network = new FakeProbeNetwork(now)
      network.link('a', 'b', 5, 5)
      network.link('a', 'c', 5, 5)
      network.link('b', 'c', 5, 5)
      const controller = new AbortController()
      const nodes = ['a', 'b', 'c'] as const
      const services: ProbeService[] = []
      for (const node of nodes) {
        const service = createProbeService({ selfId: ids[node], logger: pino({ level: 'silent' }), now, monotonicNow: now, socketFactory: network.socketFactory(node) }, controller.signal)
        services.push(service)
        service.setLinks(network.linksOf(node, ids))
        // One relay per destination: the third node.
        const others = nodes.filter((n) => n !== node)
        service.setRelayCandidates(new Map(others.map((destination) => [ids[destination], [ids[others.find((n) => n !== destination) ?? 'a']]])))
        for (const other of others) service.setActive(ids[other], active)
      }
      const seconds = 600
      await vi.advanceTimersByTimeAsync(seconds * 1000)
      // The per-link counters add up to what the node sent, in WireGuard transfer bytes.
      nodes.forEach((node, i) => {
        const counted = [...(services[i]?.probeBytes().values() ?? [])].reduce((sum, bytes) => sum + bytes.tx, 0)
        expect(counted, node).toBe((network.payloadsBy.get(node) ?? []).reduce((sum, bytes) => sum + wireguardTransferBytes(bytes), 0))
      })
      controller.abort()
      const expected = 2 * probeBudget({ peers: 1, relaysPerDestination: 1, active }).perPeer
      for (const node of nodes) {
        const sentPerSecond = (network.payloadsBy.get(node) ?? []).reduce((sum, bytes) => sum + wireBytes(bytes), 0) / seconds
        expect(sentPerSecond / expected, node).toBeGreaterThan(0.9)
        expect(sentPerSecond / expected, node).toBeLessThan(1.1)
      }
    })
  })
})

/** Node a with a 5 ms link to each of 20 peers p0…p19, on a fake network with fake timers' clock. */
function starOfTwenty(): { now: () => number; network: FakeProbeNetwork; peers: string[]; peerIds: Record<string, string>; controller: AbortController } {
  const now = (): number => Date.now()
  const network = new FakeProbeNetwork(now)
  const peers = Array.from({ length: 20 }, (_, i) => `p${i}`)
  // Base58 letters other than a, b and c's.
  const peerIds = Object.fromEntries(peers.map((p, i) => [p, `12D3KooW${'DEFGHJKLMNPQRSTUVWXYZ'.charAt(i).repeat(44)}`]))
  for (const peer of peers) network.link('a', peer, 5, 5)
  return { now, network, peers, peerIds, controller: new AbortController() }
}

describe('relayed probing is capped per node', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('60 fast pairs (20 destinations whose direct link is dead, 3 relays each) get 20 probes a second between them, not 60 every 1.1 s', async () => {
    const { now, network, peers, peerIds, controller } = starOfTwenty()
    // Only a runs a service: its peers never answer, so every direct link goes dead and every pair is probed fast.
    const service = createProbeService({ selfId: ids.a, logger: pino({ level: 'silent' }), now, monotonicNow: now, socketFactory: network.socketFactory('a') }, controller.signal)
    service.setLinks(network.linksOf('a', peerIds))
    service.setRelayCandidates(new Map(peers.map((destination, i) => [peerIds[destination] ?? '', [1, 2, 3].map((k) => peerIds[peers[(i + k) % peers.length] ?? ''] ?? '')])))
    await vi.advanceTimersByTimeAsync(30_000)
    const before = (network.payloadsBy.get('a') ?? []).filter((size) => size === PROBE_PAYLOAD_BYTES.relayRequest).length
    const seconds = 120
    await vi.advanceTimersByTimeAsync(seconds * 1000)
    const relayRequests = (network.payloadsBy.get('a') ?? []).filter((size) => size === PROBE_PAYLOAD_BYTES.relayRequest).length - before
    expect(service.snapshot().links.get(peerIds.p0 ?? '')?.alive).toBe(false)
    controller.abort()
    // Uncapped, 60 pairs every 1–1.2 s would be ~55 a second.
    expect(relayRequests / seconds).toBeGreaterThan(20 * 0.8)
    expect(relayRequests / seconds).toBeLessThan(20 * 1.1)
  })
})

describe('direct probing of idle links is capped per node', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  const run = async (activePeers: number): Promise<{ idleRequests: number; activeRequests: number; seconds: number; alive: boolean }> => {
    const { now, network, peers, peerIds, controller } = starOfTwenty()
    // Every peer answers echoes (a service of its own with only its link to a), so links stay alive.
    const services = ['a', ...peers].map((node) => {
      const service = createProbeService({ selfId: node === 'a' ? ids.a : (peerIds[node] ?? ''), logger: pino({ level: 'silent' }), now, monotonicNow: now, socketFactory: network.socketFactory(node) }, controller.signal)
      service.setLinks(network.linksOf(node, { ...peerIds, a: ids.a }))
      return service
    })
    const a = services[0]
    for (const peer of peers.slice(0, activePeers)) a?.setActive(peerIds[peer] ?? '', true)
    await vi.advanceTimersByTimeAsync(30_000)
    const sentTo = (peer: string): number => (network.payloadsByPair.get(`a>${peer}`) ?? []).filter((size) => size === PROBE_PAYLOAD_BYTES.echoRequest).length
    const count = (list: string[]): number => list.reduce((sum, peer) => sum + sentTo(peer), 0)
    const idleBefore = count(peers.slice(activePeers))
    const activeBefore = count(peers.slice(0, activePeers))
    const seconds = 120
    await vi.advanceTimersByTimeAsync(seconds * 1000)
    const alive = a?.snapshot().links.get(peerIds.p19 ?? '')?.alive === true
    controller.abort()
    return { idleRequests: count(peers.slice(activePeers)) - idleBefore, activeRequests: count(peers.slice(0, activePeers)) - activeBefore, seconds, alive }
  }

  it(`20 idle links get ${DIRECT_IDLE_PROBE_RATE_PER_SECOND} probes a second between them, not 20 every 1.5 s, and stay alive`, async () => {
    const { idleRequests, seconds, alive } = await run(0)
    expect(alive).toBe(true)
    // Uncapped, 20 links every 1–2 s would be ~13 a second.
    expect(idleRequests / seconds).toBeGreaterThan(DIRECT_IDLE_PROBE_RATE_PER_SECOND * 0.85)
    expect(idleRequests / seconds).toBeLessThan(DIRECT_IDLE_PROBE_RATE_PER_SECOND * 1.1)
  })

  it('a link with traffic is not capped: it keeps the active interval beside 19 idle ones', async () => {
    const { activeRequests, idleRequests, seconds } = await run(1)
    expect(activeRequests / seconds).toBeGreaterThan(4)
    expect(idleRequests / seconds).toBeLessThan(DIRECT_IDLE_PROBE_RATE_PER_SECOND * 1.1)
  })
})
