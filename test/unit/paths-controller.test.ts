import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../../src/logging/logger.js'
import { createPathController, RELAY_RECHOOSE_MS, type IntervalTimers, type ProbeSource } from '../../src/paths/controller.js'
import type { LinkStats, ProbeChangeEvent, RelayedStats } from '../../src/probe/types.js'

function fakeProbes() {
  const listeners: ((event: ProbeChangeEvent) => void)[] = []
  const state = {
    snapshot: { links: new Map<string, LinkStats>(), relayed: new Map<string, Map<string, RelayedStats>>() },
    relayCandidates: [] as Map<string, string[]>[],
    links: [] as unknown[],
  }
  const source: ProbeSource = {
    setLinks: (links) => state.links.push(links),
    setRelayCandidates: (c) => state.relayCandidates.push(c),
    snapshot: () => state.snapshot,
    onChange: (listener) => {
      listeners.push(listener)
      return () => listeners.splice(listeners.indexOf(listener), 1)
    },
  }
  return { source, state, emit: (event: ProbeChangeEvent) => { listeners.forEach((l) => { l(event); }); } }
}

const link = (peerId: string, rttMs: number, alive = true): LinkStats => ({ peerId, alive, rttMs, jitterMs: 0, lossPct: alive ? 0 : 100, samples: 10 })
const relayed = (destination: string, relay: string, rttMs: number): RelayedStats => ({ destination, relay, alive: true, rttMs, jitterMs: 0, lossPct: 0, samples: 10, returnLeg: 'direct' })

describe('path controller', () => {
  it('moves C behind B after the hold, logs one line, and moves back at once when A–B dies', () => {
    const probes = fakeProbes()
    const lines: string[] = []
    const logger = createLogger({ level: 'info', destination: new Writable({ write(chunk: Buffer, _encoding, done) { lines.push(...chunk.toString('utf8').trim().split('\n')); done() } }), pretty: false })
    let now = 0
    let replans = 0
    const controller = createPathController({}, { probes: probes.source, logger, now: () => now, onPathsChanged: () => replans++ })
    controller.setTopology([], ['b', 'c'])
    probes.state.snapshot.links.set('b', link('b', 20))
    probes.state.snapshot.links.set('c', link('c', 85))
    probes.state.snapshot.relayed.set('c', new Map([['b', relayed('c', 'b', 35)]]))

    expect(controller.evaluate()).toBe(false)
    expect(probes.state.relayCandidates.at(-1)?.get('c')).toEqual(['b'])
    now = 4_000
    expect(controller.evaluate()).toBe(true)
    expect(controller.choices().get('c')).toEqual({ via: 'b' })
    expect(controller.report('c')).toMatchObject({ via: 'b', forwardSavingMs: 50, rttMs: 85 })
    const changed = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'path changed')
    expect(changed).toHaveLength(1)
    expect(changed[0]).toMatchObject({ destination: 'c', from: 'direct', to: 'b', reason: 'better' })

    const abort = new AbortController()
    controller.start(abort.signal)
    probes.state.snapshot.links.set('b', link('b', 20, false))
    probes.emit({ kind: 'link-dead', peerId: 'b' })
    expect(controller.choices().get('c')).toEqual({ via: null })
    expect(replans).toBe(1)
    abort.abort()
  })

  it("ranks relays by both legs, the second from the relay's gossiped link RTTs", () => {
    const probes = fakeProbes()
    const reported = new Map([['d:x', 1], ['b:x', 90]])
    const controller = createPathController(
      { maxRelaysPerDestination: 1 },
      { probes: probes.source, logger: createLogger({ level: 'silent' }), now: () => 0, onPathsChanged: () => undefined, reportedRttMs: (relay, destination) => reported.get(`${relay}:${destination}`) },
    )
    controller.setTopology([], ['x'])
    for (const [peer, rtt] of [['b', 5], ['d', 20], ['x', 50]] as const) probes.state.snapshot.links.set(peer, link(peer, rtt))
    controller.evaluate()
    // b is nearer (5 vs 20 ms) but reports 90 ms to x; d reports 1 ms: d is the one to probe.
    expect(probes.state.relayCandidates.at(-1)?.get('x')).toEqual(['d'])
  })

  it('re-ranks relays when a link lives or dies at once, but for RTT moves alone at most every RELAY_RECHOOSE_MS', () => {
    const probes = fakeProbes()
    let now = 0
    const controller = createPathController({ maxRelaysPerDestination: 1 }, { probes: probes.source, logger: createLogger({ level: 'silent' }), now: () => now, onPathsChanged: () => undefined })
    controller.setTopology([], ['x'])
    for (const [peer, rtt] of [['b', 5], ['d', 20], ['x', 50]] as const) probes.state.snapshot.links.set(peer, link(peer, rtt))
    controller.evaluate()
    expect(probes.state.relayCandidates.at(-1)?.get('x')).toEqual(['b'])
    // d becomes the nearer relay: an RTT move, seen only once the re-rank interval has passed.
    probes.state.snapshot.links.set('b', link('b', 40))
    now = RELAY_RECHOOSE_MS - 1
    controller.evaluate()
    expect(probes.state.relayCandidates.at(-1)?.get('x')).toEqual(['b'])
    now = RELAY_RECHOOSE_MS
    controller.evaluate()
    expect(probes.state.relayCandidates.at(-1)?.get('x')).toEqual(['d'])
    // d dies: re-ranked on the next evaluation.
    probes.state.snapshot.links.set('d', link('d', 20, false))
    now += 1
    controller.evaluate()
    expect(probes.state.relayCandidates.at(-1)?.get('x')).toEqual(['b'])
  })

  it('forgets destinations that left', () => {
    const probes = fakeProbes()
    const controller = createPathController({}, { probes: probes.source, logger: createLogger({ level: 'silent' }), now: () => 0, onPathsChanged: () => undefined })
    controller.setTopology([], ['b'])
    controller.evaluate()
    controller.setTopology([], [])
    expect(controller.choices().size).toBe(0)
  })

  describe('ticks (injected timer, versioned fake prober)', () => {
    /** A prober whose version the test moves, counting snapshots (one per selection run), and a timer the test fires. */
    function rig(options: { maxSkipMs?: number } = {}) {
      const probes = fakeProbes()
      let version = 0
      let snapshots = 0
      const source: ProbeSource = {
        ...probes.source,
        snapshot: () => {
          snapshots++
          return probes.state.snapshot
        },
        version: () => version,
      }
      let tick: (() => void) | undefined
      let cleared = false
      const timers: IntervalTimers = {
        setInterval: (callback) => {
          tick = callback
          return 1
        },
        clearInterval: () => {
          cleared = true
        },
      }
      const clock = { now: 0 }
      let replans = 0
      const controller = createPathController({ tickMs: 250, ...options }, { probes: source, logger: createLogger({ level: 'silent' }), now: () => clock.now, onPathsChanged: () => replans++, timers })
      const abort = new AbortController()
      controller.setTopology([], ['b', 'c'])
      probes.state.snapshot.links.set('b', link('b', 20))
      probes.state.snapshot.links.set('c', link('c', 85))
      controller.start(abort.signal)
      const fire = (times = 1): void => {
        for (let i = 0; i < times; i++) {
          clock.now += 250
          tick?.()
        }
      }
      return {
        probes,
        controller,
        abort,
        clock,
        fire,
        bump: () => version++,
        snapshots: () => snapshots,
        replans: () => replans,
        cleared: () => cleared,
      }
    }

    it('a tick with nothing new does not re-run selection; a changed measurement does, and moves traffic', () => {
      const r = rig()
      r.fire()
      const first = r.snapshots()
      expect(first).toBe(1)
      r.fire(5)
      expect(r.snapshots()).toBe(first)
      // C gets a relay 50 ms faster forward: the version moves, the next tick decides, and the hold starts.
      r.probes.state.snapshot.relayed.set('c', new Map([['b', relayed('c', 'b', 35)]]))
      r.bump()
      r.fire()
      expect(r.snapshots()).toBe(first + 1)
      expect(r.controller.choices().get('c')).toEqual({ via: null })
      // While the switch is held, every tick decides even though nothing is measured anew, so the hold ends on time.
      r.fire(16)
      expect(r.controller.choices().get('c')).toEqual({ via: 'b' })
      expect(r.replans()).toBe(1)
      const afterSwitch = r.snapshots()
      r.fire(3)
      expect(r.snapshots()).toBe(afterSwitch)
      r.abort.abort()
      expect(r.cleared()).toBe(true)
    })

    it('a link death re-decides at once, without waiting for a tick', () => {
      const r = rig()
      r.probes.state.snapshot.relayed.set('c', new Map([['b', relayed('c', 'b', 35)]]))
      r.fire(20)
      expect(r.controller.choices().get('c')).toEqual({ via: 'b' })
      const before = r.snapshots()
      r.probes.state.snapshot.links.set('b', link('b', 20, false))
      r.probes.emit({ kind: 'link-dead', peerId: 'b' })
      expect(r.snapshots()).toBe(before + 1)
      expect(r.controller.choices().get('c')).toEqual({ via: null })
      expect(r.replans()).toBe(2)
      r.abort.abort()
    })

    it('a topology change re-decides at the next tick', () => {
      const r = rig()
      r.fire()
      const before = r.snapshots()
      r.probes.state.snapshot.links.set('d', link('d', 10))
      r.controller.setTopology([], ['b', 'c', 'd'])
      r.fire()
      expect(r.snapshots()).toBe(before + 1)
      expect(r.controller.choices().has('d')).toBe(true)
      r.fire(3)
      expect(r.snapshots()).toBe(before + 1)
      r.abort.abort()
    })

    it('the same topology again (a pass after a record refresh) neither re-decides nor touches the prober', () => {
      const r = rig()
      r.fire()
      const before = r.snapshots()
      const setLinksCalls = r.probes.state.links.length
      r.controller.setTopology([], ['c', 'b'])
      r.fire()
      expect(r.snapshots()).toBe(before)
      expect(r.probes.state.links).toHaveLength(setLinksCalls)
      r.abort.abort()
    })

    it('re-decides at least every maxSkipMs as a backstop', () => {
      const r = rig({ maxSkipMs: 1_000 })
      r.fire()
      expect(r.snapshots()).toBe(1)
      r.fire(3)
      expect(r.snapshots()).toBe(1)
      r.fire()
      expect(r.snapshots()).toBe(2)
      r.abort.abort()
    })

    it('a prober without versions is read on every tick', () => {
      const probes = fakeProbes()
      let snapshots = 0
      let tick: (() => void) | undefined
      const controller = createPathController(
        {},
        {
          probes: { ...probes.source, snapshot: () => (snapshots++, probes.state.snapshot) },
          logger: createLogger({ level: 'silent' }),
          now: () => 0,
          onPathsChanged: () => undefined,
          timers: { setInterval: (callback) => ((tick = callback), 1), clearInterval: () => undefined },
        },
      )
      controller.setTopology([], ['b'])
      const abort = new AbortController()
      controller.start(abort.signal)
      for (let i = 0; i < 3; i++) tick?.()
      expect(snapshots).toBe(3)
      abort.abort()
    })
  })
})
