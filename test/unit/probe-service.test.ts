// The prober over a fake socket layer and a fake clock: direct stats, relayed
// probes with dwell subtraction, the return-leg switch on direct-link death,
// and the relay's refusals (no link, foreign source, rate limit).

import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { encodeProbePacket } from '../../src/probe/codec.js'
import { RELAY_RATE } from '../../src/probe/schedule.js'
import { createProbeService } from '../../src/probe/service.js'
import type { LinkStats, ProbeChangeEvent, ProbeService } from '../../src/probe/types.js'
import { FakeProbeNetwork } from '../support/probe-fake-network.js'

const ids = {
  a: '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
  b: '12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB',
  c: '12D3KooWCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC',
}
type Node = keyof typeof ids
const logger = pino({ level: 'silent' })

interface Mesh {
  network: FakeProbeNetwork
  services: Record<Node, ProbeService>
  events: ProbeChangeEvent[]
  controller: AbortController
}

/** The design's scenario: forward A→C 70 ms, C→A 15 ms, A–B and B–C 10 ms each way. */
function scenario(options: { timersOfA?: { setTimeout(callback: () => void, ms: number): unknown; clearTimeout(handle: unknown): void } } = {}): Mesh {
  const now = (): number => Date.now()
  const network = new FakeProbeNetwork(now)
  network.link('a', 'c', 70, 15)
  network.link('a', 'b', 10, 10)
  network.link('b', 'c', 10, 10)
  // Every host sits on packets for a while before handling them: dwell that must be subtracted.
  network.setReceiveLag('a', 3)
  network.setReceiveLag('b', 30)
  network.setReceiveLag('c', 12)
  const controller = new AbortController()
  let seed = 1
  const random = (): number => {
    seed = (seed * 16807) % 2147483647
    return seed / 2147483647
  }
  const make = (node: Node): ProbeService =>
    createProbeService(
      { selfId: ids[node], logger, now, monotonicNow: now, random, socketFactory: network.socketFactory(node), ...(node === 'a' && options.timersOfA ? { timers: options.timersOfA } : {}) },
      controller.signal,
    )
  const services = { a: make('a'), b: make('b'), c: make('c') }
  for (const node of ['a', 'b', 'c'] as const) services[node].setLinks(network.linksOf(node, ids))
  const events: ProbeChangeEvent[] = []
  services.a.onChange((event) => events.push(event))
  return { network, services, events, controller }
}

/** Advances fake time in steps until the condition holds; fails after `limitMs` of fake time. */
async function pollUntilFake(condition: () => boolean, limitMs: number): Promise<void> {
  for (let waited = 0; waited <= limitMs; waited += 100) {
    if (condition()) return
    await vi.advanceTimersByTimeAsync(100)
  }
  throw new Error(`condition not met within ${limitMs} ms of fake time`)
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 })
})
afterEach(() => {
  vi.useRealTimers()
})

describe('probe service (fake network, fake clock)', () => {
  it('measures direct links: RTT without the responder’s dwell, jitter, no loss', async () => {
    const { services, events, controller } = scenario()
    await vi.advanceTimersByTimeAsync(10_000)
    const links = services.a.snapshot().links
    expect(links.get(ids.c)).toMatchObject({ alive: true, lossPct: 0 })
    // 70 + 15 one way and back, plus A's own lag (3 ms) is on A's side of the clock but
    // read from the arrival time, so it is not counted either.
    expect(links.get(ids.c)?.rttMs).toBeCloseTo(85, 0)
    expect(links.get(ids.b)?.rttMs).toBeCloseTo(20, 0)
    expect(links.get(ids.c)?.jitterMs).toBeCloseTo(0, 3)
    expect(links.get(ids.c)?.samples).toBeGreaterThan(3)
    expect(events).toEqual(expect.arrayContaining([{ kind: 'link-alive', peerId: ids.c }, { kind: 'link-alive', peerId: ids.b }]))
    controller.abort()
  })

  it('hands out the same stats objects until a measurement moves (the path controller skips unchanged destinations by identity)', async () => {
    const { services, controller } = scenario()
    services.a.setRelayCandidates(new Map([[ids.c, [ids.b]]]))
    await vi.advanceTimersByTimeAsync(10_000)
    const before = services.a.snapshot()
    const version = services.a.version()
    expect(services.a.snapshot()).toBe(before)
    // Probe bytes move with every packet but live outside snapshots.
    expect(services.a.probeBytes().get(ids.b)?.inner).toBeGreaterThan(0)
    await pollUntilFake(() => services.a.version() !== version, 5_000)
    const after = services.a.snapshot()
    expect(after).not.toBe(before)
    // Whatever moved got a new object; whatever did not is the very same one.
    for (const peer of [ids.b, ids.c]) {
      const [then, now] = [before.links.get(peer), after.links.get(peer)]
      if (then?.rttMs === now?.rttMs && then?.samples === now?.samples && then?.alive === now?.alive) expect(now).toBe(then)
      else expect(now).not.toBe(then)
    }
    controller.abort()
  })

  it("learns each peer's own forward path towards us from its echo replies", async () => {
    const now = (): number => Date.now()
    const network = new FakeProbeNetwork(now)
    network.link('a', 'c', 5, 5)
    const controller = new AbortController()
    const a = createProbeService({ selfId: ids.a, logger, now, monotonicNow: now, socketFactory: network.socketFactory('a') }, controller.signal)
    let cPathToA: string | null = ids.b
    const c = createProbeService({ selfId: ids.c, logger, now, monotonicNow: now, socketFactory: network.socketFactory('c'), forwardPathTo: (peer) => (peer === ids.a ? cPathToA : null) }, controller.signal)
    a.setLinks(network.linksOf('a', ids))
    c.setLinks(network.linksOf('c', ids))
    expect(a.reportedPath(ids.c)).toBeUndefined()
    await pollUntilFake(() => a.reportedPath(ids.c) !== undefined, 5_000)
    expect(a.reportedPath(ids.c)).toEqual({ via: ids.b })
    cPathToA = null
    await pollUntilFake(() => a.reportedPath(ids.c)?.via === null, 5_000)
    controller.abort()
  })

  it('compares forward legs through a relay without clock sync: relayed − direct ≈ 20 − 70', async () => {
    const { services, controller } = scenario()
    services.a.setRelayCandidates(new Map([[ids.c, [ids.b]]]))
    await vi.advanceTimersByTimeAsync(10_000)
    const snapshot = services.a.snapshot()
    const relayed = snapshot.relayed.get(ids.c)?.get(ids.b)
    expect(relayed).toMatchObject({ destination: ids.c, relay: ids.b, alive: true, returnLeg: 'direct', lossPct: 0 })
    // A→B→C (20 ms) + C→A (15 ms); B's 30 ms and C's 12 ms dwell are subtracted.
    expect(relayed?.rttMs).toBeGreaterThan(30)
    expect(relayed?.rttMs).toBeLessThan(40)
    const forwardDelta = (relayed?.rttMs ?? 0) - (snapshot.links.get(ids.c)?.rttMs ?? 0)
    expect(forwardDelta).toBeLessThan(-40)
    expect(forwardDelta).toBeGreaterThan(-60)
    controller.abort()
  })

  it('notices a dead direct link within about a second while active, and relayed probes switch to the relay return leg', async () => {
    const { network, services, events, controller } = scenario()
    services.a.setRelayCandidates(new Map([[ids.c, [ids.b]]]))
    services.a.setActive(ids.c, true)
    await vi.advanceTimersByTimeAsync(5_000)
    expect(services.a.snapshot().relayed.get(ids.c)?.get(ids.b)?.returnLeg).toBe('direct')

    const cutAt = Date.now()
    network.cut('a', 'c')
    let deadAt: number | undefined
    let relayedAtDeath: unknown
    services.a.onChange((event) => {
      if (event.kind === 'link-dead' && event.peerId === ids.c) {
        deadAt = Date.now()
        relayedAtDeath = services.a.snapshot().relayed.get(ids.c)?.get(ids.b)
      }
    })
    await vi.advanceTimersByTimeAsync(3_000)
    expect(events).toContainEqual({ kind: 'link-dead', peerId: ids.c })
    // Fake time, so this is logic, not a timing measurement.
    expect((deadAt ?? Infinity) - cutAt).toBeLessThanOrEqual(1_200)
    // When listeners hear of the death, the relay path already asks for the relay return leg and is still alive.
    // Its RTT is carried over provisionally, so a selector can compare it at once.
    expect(relayedAtDeath).toMatchObject({ returnLeg: 'relay', alive: true, rttMs: expect.any(Number) as number })

    const relayed = services.a.snapshot().relayed.get(ids.c)?.get(ids.b)
    expect(relayed).toMatchObject({ alive: true, returnLeg: 'relay' })
    // A→B→C→B→A: 4 × 10 ms, with B's dwell subtracted twice and C's once.
    expect(relayed?.rttMs).toBeGreaterThan(35)
    expect(relayed?.rttMs).toBeLessThan(45)
    expect(services.a.snapshot().links.get(ids.c)).toMatchObject({ alive: false })
    controller.abort()
  })

  it('sends one version notice per turn in which the version moved, and none while it stays put', async () => {
    const { services, controller } = scenario()
    const a = services.a
    const noticed: number[] = []
    const stop = a.onVersionChange(() => noticed.push(a.version()))
    let moves = 0
    let last = a.version()
    for (let waited = 0; waited < 5_000; waited += 10) {
      await vi.advanceTimersByTimeAsync(10)
      if (a.version() !== last) moves++
      last = a.version()
    }
    expect(moves).toBeGreaterThan(5)
    // Coalesced: never more notices than moves, each saw a new version, and the last one saw the current one.
    expect(noticed.length).toBeGreaterThan(0)
    expect(noticed.length).toBeLessThanOrEqual(moves)
    expect(new Set(noticed).size).toBe(noticed.length)
    expect(noticed.at(-1)).toBe(a.version())
    // A setter that moves the version several times in one turn notifies once.
    const before = noticed.length
    a.setRelayCandidates(new Map([[ids.c, [ids.b]]]))
    a.setActive(ids.c, true)
    await Promise.resolve()
    expect(noticed.length).toBe(before + 1)
    stop()
    await vi.advanceTimersByTimeAsync(3_000)
    expect(noticed.length).toBe(before + 1)
    controller.abort()
  })

  it('version moves whenever what a snapshot says about a path changes, and stays put between probe outcomes', async () => {
    const { network, services, controller } = scenario()
    const a = services.a
    // What path selection reads from a snapshot: everything except the byte counters and lastReplyAt.
    const paths = (): string => {
      const snapshot = a.snapshot()
      const links = [...snapshot.links.values()].map(({ peerId, alive, rttMs, jitterMs, lossPct, samples }) => [peerId, alive, rttMs, jitterMs, lossPct, samples])
      const relayed = [...snapshot.relayed.values()].flatMap((toward) => [...toward.values()])
      return JSON.stringify([links, relayed])
    }
    let seen = { version: a.version(), paths: paths() }
    let unchangedSteps = 0
    let changes = 0
    const step = async (ms: number): Promise<void> => {
      for (let waited = 0; waited < ms; waited += 10) {
        await vi.advanceTimersByTimeAsync(10)
        const now = { version: a.version(), paths: paths() }
        if (now.paths !== seen.paths) {
          changes++
          expect(now.version, 'paths changed but the version did not').not.toBe(seen.version)
        }
        if (now.version === seen.version) unchangedSteps++
        seen = now
      }
    }
    await step(3_000)
    a.setRelayCandidates(new Map([[ids.c, [ids.b]]]))
    expect(a.version(), 'a new relay candidate').not.toBe(seen.version)
    await step(3_000)
    a.setActive(ids.c, true)
    network.cut('a', 'c')
    await step(3_000)
    expect(a.snapshot().links.get(ids.c)?.alive).toBe(false)
    const before = a.version()
    a.setLinks(network.linksOf('a', ids).filter((link) => link.peerId !== ids.b))
    expect(a.version(), 'a link removed').not.toBe(before)
    await step(1_000)
    expect(changes).toBeGreaterThan(10)
    // Most 10 ms steps see no probe outcome: the version is not bumped by time or by sending.
    expect(unchangedSteps).toBeGreaterThan(500)
    controller.abort()
  })

  it('probes every relay toward a peer at once when its direct link dies', async () => {
    const { network, services, events, controller } = scenario()
    services.a.setRelayCandidates(new Map([[ids.c, [ids.b]]]))
    services.a.setActive(ids.c, true)
    await vi.advanceTimersByTimeAsync(5_000)
    network.cut('a', 'c')
    await pollUntilFake(() => events.some((e) => e.kind === 'link-dead'), 3_000)
    // One relayed round trip with the relay return leg takes ~115 ms here (4 × 10 ms plus dwell);
    // the regular schedule would be up to 1.2 s away.
    await vi.advanceTimersByTimeAsync(200)
    expect(services.a.snapshot().relayed.get(ids.c)?.get(ids.b)).toMatchObject({ returnLeg: 'relay', samples: 1, lossPct: 0 })
    controller.abort()
  })

  it('idle links die too, at the idle rate', async () => {
    const { network, services, events, controller } = scenario()
    await vi.advanceTimersByTimeAsync(5_000)
    network.cut('a', 'c')
    await vi.advanceTimersByTimeAsync(10_000)
    expect(events).toContainEqual({ kind: 'link-dead', peerId: ids.c })
    expect(services.a.snapshot().links.get(ids.b)?.alive).toBe(true)
    controller.abort()
  })

  it('an idle probe answered in time leaves no timer to wake the process: its deadline is checked by the next probe on the path', async () => {
    // Timers cleared before they fire: a cleared Node timer still wakes the process when it was due.
    let cleared = 0
    const live = new Set<unknown>()
    const timersOfA = {
      setTimeout: (callback: () => void, ms: number): unknown => {
        const handle = setTimeout(() => {
          live.delete(handle)
          callback()
        }, ms)
        live.add(handle)
        return handle
      },
      clearTimeout: (handle: unknown): void => {
        if (live.delete(handle)) cleared++
        clearTimeout(handle as ReturnType<typeof setTimeout>)
      },
    }
    const { network, services, events, controller } = scenario({ timersOfA })
    services.a.setRelayCandidates(new Map([[ids.c, [ids.b]]]))
    await vi.advanceTimersByTimeAsync(5_000)
    const samplesBefore = services.a.snapshot().links.get(ids.b)?.samples ?? 0
    cleared = 0
    await vi.advanceTimersByTimeAsync(20_000)
    // A dozen or more idle probes answered on each link, relayed ones too, and no timeout cleared for them.
    expect(services.a.snapshot().links.get(ids.b)?.samples ?? 0).toBeGreaterThan(Math.min(samplesBefore, 8))
    expect(cleared).toBe(0)
    // Losses are still counted, at the next probe: the idle link dies.
    network.cut('a', 'c')
    await vi.advanceTimersByTimeAsync(10_000)
    expect(events).toContainEqual({ kind: 'link-dead', peerId: ids.c })
    expect(services.a.snapshot().links.get(ids.c)?.lossPct).toBeGreaterThan(0)
    controller.abort()
  })

  it('a reply that comes after an unchecked deadline counts as a miss and a late reply, as if a timer had fired', async () => {
    const { network, services, controller } = scenario()
    await vi.advanceTimersByTimeAsync(5_000)
    const before = services.a.snapshot().links.get(ids.b)
    expect(before?.lossPct).toBe(0)
    // 10 ms each way becomes 1.5 s: past any idle timeout, before the next idle probe (1–2 s) has checked it.
    network.link('a', 'b', 1_500, 10)
    await vi.advanceTimersByTimeAsync(8_000)
    const after = services.a.snapshot().links.get(ids.b)
    expect(after?.lossPct).toBeGreaterThan(0)
    controller.abort()
  })

  it('a link whose RTT jumps past the timeout dies, counts each late reply once, and recovers as the timeout grows', async () => {
    const { network, services, events, controller } = scenario()
    services.a.setActive(ids.b, true)
    let dying: LinkStats | undefined
    services.a.onChange((event) => {
      if (event.kind === 'link-dead' && event.peerId === ids.b) dying = services.a.snapshot().links.get(ids.b)
    })
    await vi.advanceTimersByTimeAsync(5_000)
    network.setDelay('b', 'a', 900)
    await vi.advanceTimersByTimeAsync(3_000)
    expect(events).toContainEqual({ kind: 'link-dead', peerId: ids.b })
    expect(dying?.lossPct).toBeGreaterThan(0)
    expect(dying?.samples).toBeLessThanOrEqual(20)
    // Late replies raise the smoothed RTT, hence the timeout, until replies come back in time.
    await pollUntilFake(() => services.a.snapshot().links.get(ids.b)?.alive === true, 30_000)
    expect(events.filter((e) => e.peerId === ids.b).map((e) => e.kind)).toEqual(['link-alive', 'link-dead', 'link-alive'])
    expect(services.a.snapshot().links.get(ids.b)?.rttMs).toBeGreaterThan(500)
    controller.abort()
  })

  it('setActive before setLinks is remembered, and removing a live link reports it dead', async () => {
    const { network, services, events, controller } = scenario()
    services.a.setLinks([])
    services.a.setActive(ids.c, true)
    services.a.setLinks(network.linksOf('a', ids))
    await vi.advanceTimersByTimeAsync(3_000)
    // Active probing: about 4 probes a second, not one every 1–2 s.
    expect(services.a.snapshot().links.get(ids.c)?.samples).toBeGreaterThanOrEqual(8)
    events.length = 0
    services.a.setLinks(network.linksOf('a', ids).filter((l) => l.peerId !== ids.c))
    expect(events).toEqual([{ kind: 'link-dead', peerId: ids.c }])
    expect(services.a.snapshot().links.has(ids.c)).toBe(false)
    controller.abort()
  })

  it('a path through a relay whose link to us is dead is not alive', async () => {
    const { network, services, controller } = scenario()
    services.a.setRelayCandidates(new Map([[ids.c, [ids.b]]]))
    services.a.setActive(ids.b, true)
    await vi.advanceTimersByTimeAsync(5_000)
    network.cut('a', 'b')
    await vi.advanceTimersByTimeAsync(1_500)
    expect(services.a.snapshot().relayed.get(ids.c)?.get(ids.b)?.alive).toBe(false)
    controller.abort()
  })

  it('reports a relayed path whose far leg stops answering as an event (the path controller moves traffic off it at once)', async () => {
    const { network, services, events, controller } = scenario()
    services.a.setRelayCandidates(new Map([[ids.c, [ids.b]]]))
    services.a.setActive(ids.c, true)
    await vi.advanceTimersByTimeAsync(5_000)
    expect(services.a.snapshot().relayed.get(ids.c)?.get(ids.b)?.alive).toBe(true)
    events.length = 0
    network.cut('b', 'c')
    await pollUntilFake(() => services.a.snapshot().relayed.get(ids.c)?.get(ids.b)?.alive === false, 10_000)
    expect(events).toEqual([{ kind: 'relayed-dead', peerId: ids.c, relay: ids.b }])
    controller.abort()
  })

  it('ping reports every path with its RTT', async () => {
    const { services, controller } = scenario()
    services.a.setRelayCandidates(new Map([[ids.c, [ids.b]]]))
    await vi.advanceTimersByTimeAsync(3_000)
    const pinging = services.a.ping(ids.c, { count: 3, signal: controller.signal })
    await vi.advanceTimersByTimeAsync(3_000)
    const result = await pinging
    expect(result.peerId).toBe(ids.c)
    expect(result.paths.map((p) => [p.via, p.returnLeg, p.sent, p.received])).toEqual([
      [null, 'direct', 3, 3],
      [ids.b, 'direct', 3, 3],
    ])
    expect(result.paths[0]?.avgMs).toBeCloseTo(85, 0)
    expect(result.paths[1]?.avgMs).toBeCloseTo(35, 0)
    controller.abort()
  })

  it('drops packets whose source is not the link’s peer address', async () => {
    const { network, controller } = scenario()
    await vi.advanceTimersByTimeAsync(3_000)
    const [linkToC] = network.linksOf('a', ids).filter((l) => l.peerId === ids.c)
    if (!linkToC) throw new Error('no link')
    const before = network.sent.get('a>c') ?? 0
    // An echo request from a foreign address on A's link to C gets no answer (A sends nothing extra to C).
    for (let i = 0; i < 50; i++) network.inject(linkToC.local4, '10.0.0.66', encodeProbePacket({ type: 'echo-request', seq: i }))
    await vi.advanceTimersByTimeAsync(0)
    expect((network.sent.get('a>c') ?? 0) - before).toBe(0)
    controller.abort()
  })

  it('ignores links whose peer id the wire format cannot carry', async () => {
    const { network, services, controller } = scenario()
    const [link] = network.linksOf('a', ids)
    if (!link) throw new Error('no link')
    services.a.setLinks([{ ...link, peerId: 'not base58: 0OIl' }])
    await vi.advanceTimersByTimeAsync(1_000)
    expect([...services.a.snapshot().links.keys()]).toEqual([])
    controller.abort()
  })

  it('keeps trying to bind a link whose address is not assigned yet', async () => {
    const now = (): number => Date.now()
    const network = new FakeProbeNetwork(now)
    network.link('a', 'b', 5, 5)
    const controller = new AbortController()
    const bindA = network.socketFactory('a')
    let refusals = 3
    const flaky: typeof bindA = (options, signal) => (refusals-- > 0 ? Promise.reject(new Error('EADDRNOTAVAIL')) : bindA(options, signal))
    const a = createProbeService({ selfId: ids.a, logger, now, monotonicNow: now, socketFactory: flaky }, controller.signal)
    const b = createProbeService({ selfId: ids.b, logger, now, monotonicNow: now, socketFactory: network.socketFactory('b') }, controller.signal)
    a.setLinks(network.linksOf('a', ids))
    b.setLinks(network.linksOf('b', ids))
    await pollUntilFake(() => a.snapshot().links.get(ids.b)?.alive === true, 10_000)
    expect(refusals).toBe(-1)
    controller.abort()
  })

  it('relays only toward peers it has a link to, and rate-limits per requester', async () => {
    const now = (): number => Date.now()
    const network = new FakeProbeNetwork(now)
    network.link('a', 'b', 1, 1)
    network.link('b', 'c', 1, 1)
    const controller = new AbortController()
    const b = createProbeService({ selfId: ids.b, logger, now, monotonicNow: now, socketFactory: network.socketFactory('b') }, controller.signal)
    b.setLinks(network.linksOf('b', ids))
    // A's side is played by hand: bind A's end of the a–b link to see what comes back.
    const [aEnd] = network.linksOf('a', ids)
    if (!aEnd) throw new Error('no link')
    await vi.advanceTimersByTimeAsync(0)
    const toB = (packet: Parameters<typeof encodeProbePacket>[0]): void => {
      network.inject(aEnd.peer4, aEnd.local4, encodeProbePacket(packet))
    }
    const forwarded = (): number => network.sent.get('b>c') ?? 0
    const baseline = forwarded()
    toB({ type: 'relay-request', seq: 1, returnLeg: 'direct', destination: '12D3KooWUnknownUnknownUnknownUnknownUnknownUnknownUnk' })
    toB({ type: 'relay-request', seq: 2, returnLeg: 'direct', destination: ids.b })
    toB({ type: 'relay-request', seq: 3, returnLeg: 'direct', destination: ids.a })
    expect(forwarded() - baseline).toBe(0)
    for (let i = 0; i < 1000; i++) toB({ type: 'relay-request', seq: 10 + i, returnLeg: 'direct', destination: ids.c })
    // The burst and not one more: a flood is cut down to the bucket.
    expect(forwarded() - baseline).toBe(RELAY_RATE.burst)
    // …which refills at the configured rate.
    await vi.advanceTimersByTimeAsync(100)
    for (let i = 0; i < 1000; i++) toB({ type: 'relay-request', seq: 2000 + i, returnLeg: 'direct', destination: ids.c })
    expect(forwarded() - baseline).toBe(RELAY_RATE.burst + RELAY_RATE.perSecond / 10)
    controller.abort()
  })
})
