import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../../src/logging/logger.js'
import { createPathController, RELAY_RECHOOSE_MS, type ProbeSource, type TimeoutTimers } from '../../src/paths/controller.js'
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

  describe('decisions on prober news (injected timer and clock, fake prober)', () => {
    /**
     * A prober whose notices the test drives, counting snapshots (one per decision), and a fake
     * single-slot timer: the controller keeps at most one timer armed.
     */
    function rig(options: { maxSkipMs?: number; notices?: boolean } = {}) {
      const probes = fakeProbes()
      let snapshots = 0
      const noticeListeners = new Set<() => void>()
      const source: ProbeSource = {
        ...probes.source,
        snapshot: () => {
          snapshots++
          return probes.state.snapshot
        },
        ...(options.notices === false
          ? {}
          : {
              onVersionChange: (listener: () => void) => {
                noticeListeners.add(listener)
                return () => noticeListeners.delete(listener)
              },
            }),
      }
      const clock = { now: 0 }
      let armed: { callback: () => void; at: number } | undefined
      let timersSet = 0
      const timers: TimeoutTimers = {
        setTimeout: (callback, ms) => {
          timersSet++
          armed = { callback, at: clock.now + ms }
          return armed
        },
        clearTimeout: (handle) => {
          if (handle === armed) armed = undefined
        },
      }
      /** Moves the clock in 10 ms steps, firing the armed timer when it is due. */
      const advance = (ms: number): void => {
        const until = clock.now + ms
        while (clock.now < until) {
          clock.now = Math.min(until, clock.now + 10)
          const due = armed
          if (due !== undefined && due.at <= clock.now) {
            armed = undefined
            due.callback()
          }
        }
      }
      let replans = 0
      const controller = createPathController(
        { tickMs: 250, newsMs: 1_000, ...options },
        { probes: source, logger: createLogger({ level: 'silent' }), now: () => clock.now, elapsed: () => clock.now, onPathsChanged: () => replans++, timers },
      )
      const abort = new AbortController()
      controller.setTopology([], ['b', 'c'])
      probes.state.snapshot.links.set('b', link('b', 20))
      probes.state.snapshot.links.set('c', link('c', 85))
      controller.start(abort.signal)
      /** A measurement moved: the notice (the prober sends it in a microtask after its version moved). */
      const news = (): void => {
        for (const listener of noticeListeners) listener()
      }
      return {
        probes,
        controller,
        abort,
        advance,
        news,
        snapshots: () => snapshots,
        replans: () => replans,
        armed: () => armed,
        timersSet: () => timersSet,
        noticeListeners,
      }
    }

    /** C reached through B (a relay 50 ms faster forward), after the hold, with no decision pending. */
    function rigWithCViaB() {
      const r = rig()
      r.probes.state.snapshot.relayed.set('c', new Map([['b', relayed('c', 'b', 35)]]))
      r.advance(0)
      r.news()
      r.advance(4_500)
      expect(r.controller.choices().get('c')).toEqual({ via: 'b' })
      r.news()
      return r
    }

    it('decides once at start, then not again without news, not even on a timer', () => {
      const r = rig()
      r.advance(0)
      r.advance(10)
      expect(r.snapshots()).toBe(1)
      const timers = r.timersSet()
      r.advance(4_000)
      expect(r.snapshots()).toBe(1)
      // Idle: no timer was set again (the backstop, armed after the first decision, is the only one).
      expect(r.timersSet()).toBe(timers)
      r.abort.abort()
    })

    it('news decides in the same turn when the last decision is newsMs old, and a better relay takes over after the hold', () => {
      const r = rig()
      r.advance(1_100)
      const first = r.snapshots()
      // C gets a relay 50 ms faster forward.
      r.probes.state.snapshot.relayed.set('c', new Map([['b', relayed('c', 'b', 35)]]))
      r.news()
      expect(r.snapshots()).toBe(first + 1)
      expect(r.controller.choices().get('c')).toEqual({ via: null })
      // While the switch is held, it re-decides every tick with no news, so the hold ends on time.
      r.advance(4_100)
      expect(r.controller.choices().get('c')).toEqual({ via: 'b' })
      expect(r.replans()).toBe(1)
      const afterSwitch = r.snapshots()
      r.advance(1_000)
      expect(r.snapshots()).toBe(afterSwitch)
      r.abort.abort()
    })

    it('news within newsMs of the last decision arms no timer: later news decides, or else the backstop', () => {
      const r = rig()
      r.advance(1_100)
      r.news()
      const afterFirst = r.snapshots()
      const timers = r.timersSet()
      r.advance(300)
      r.news()
      r.news()
      expect(r.snapshots()).toBe(afterFirst)
      expect(r.timersSet()).toBe(timers)
      // The next news once newsMs has passed decides, in its own turn.
      r.advance(800)
      r.news()
      expect(r.snapshots()).toBe(afterFirst + 1)
      // News that no later news follows is decided by the backstop (maxSkipMs, 5 s by default).
      r.advance(300)
      r.news()
      r.advance(4_600)
      expect(r.snapshots()).toBe(afterFirst + 1)
      r.advance(200)
      expect(r.snapshots()).toBe(afterFirst + 2)
      r.abort.abort()
    })

    it('a link death re-decides at once, however recent the last decision', () => {
      const r = rigWithCViaB()
      const before = r.snapshots()
      r.probes.state.snapshot.links.set('b', link('b', 20, false))
      r.probes.emit({ kind: 'link-dead', peerId: 'b' })
      expect(r.snapshots()).toBe(before + 1)
      expect(r.controller.choices().get('c')).toEqual({ via: null })
      expect(r.replans()).toBe(2)
      r.abort.abort()
    })

    it('a relayed path dying re-decides at once: traffic through that relay goes back direct', () => {
      const r = rigWithCViaB()
      const before = r.snapshots()
      r.probes.state.snapshot.relayed.set('c', new Map([['b', { ...relayed('c', 'b', 35), alive: false, lossPct: 100 }]]))
      r.probes.emit({ kind: 'relayed-dead', peerId: 'c', relay: 'b' })
      expect(r.snapshots()).toBe(before + 1)
      expect(r.controller.choices().get('c')).toEqual({ via: null })
      r.abort.abort()
    })

    it('a topology change decides without prober news', () => {
      const r = rig()
      r.advance(1_100)
      const before = r.snapshots()
      r.probes.state.snapshot.links.set('d', link('d', 10))
      r.controller.setTopology([], ['b', 'c', 'd'])
      expect(r.snapshots()).toBe(before + 1)
      expect(r.controller.choices().has('d')).toBe(true)
      r.advance(1_000)
      expect(r.snapshots()).toBe(before + 1)
      r.abort.abort()
    })

    it('the same topology again (a pass after a record refresh) neither decides nor touches the prober', () => {
      const r = rig()
      r.advance(1_100)
      const before = r.snapshots()
      const setLinksCalls = r.probes.state.links.length
      r.controller.setTopology([], ['c', 'b'])
      r.advance(300)
      expect(r.snapshots()).toBe(before)
      expect(r.probes.state.links).toHaveLength(setLinksCalls)
      r.abort.abort()
    })

    it('decides at least every maxSkipMs as a backstop', () => {
      const r = rig({ maxSkipMs: 1_000 })
      r.advance(10)
      expect(r.snapshots()).toBe(1)
      r.advance(900)
      expect(r.snapshots()).toBe(1)
      r.advance(200)
      expect(r.snapshots()).toBe(2)
      r.abort.abort()
    })

    it('a prober without version notices is read every tick', () => {
      const r = rig({ notices: false })
      r.advance(10)
      r.advance(750)
      expect(r.snapshots()).toBe(4)
      r.abort.abort()
    })

    it('stopping clears the timer and stops listening', () => {
      const r = rig()
      r.advance(10)
      expect(r.armed()).toBeDefined()
      r.abort.abort()
      expect(r.armed()).toBeUndefined()
      expect(r.noticeListeners.size).toBe(0)
      r.news()
      r.advance(10_000)
      expect(r.snapshots()).toBe(1)
    })
  })
})
