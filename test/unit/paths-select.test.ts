import { describe, expect, it } from 'vitest'
import { candidatesFor, chooseRelayCandidates, forwardSavingMs, type RelayedMeasurement } from '../../src/paths/candidates.js'
import { decidePath, DEFAULT_PATH_POLICY, pathScore, requiredGainMs, type CandidateMetrics, type DestinationPathState, type Via } from '../../src/paths/select.js'

const direct = (forwardMs: number, extra: Partial<CandidateMetrics> = {}): CandidateMetrics => ({ via: null, alive: true, forwardMs, jitterMs: 0, lossPct: 0, ...extra })
const relay = (via: string, forwardMs: number, extra: Partial<CandidateMetrics> = {}): CandidateMetrics => ({ via, alive: true, forwardMs, jitterMs: 0, lossPct: 0, ...extra })

describe('pathScore and requiredGainMs', () => {
  it('adds jitter and a loss penalty to the forward delay', () => {
    expect(pathScore(direct(20, { jitterMs: 4, lossPct: 2 }))).toBe(20 + 2 + 10)
  })
  it('needs max(10 %, 5 ms)', () => {
    expect(requiredGainMs(direct(20))).toBe(5)
    expect(requiredGainMs(direct(100))).toBe(10)
    expect(requiredGainMs(direct(-10))).toBe(5)
  })
})

describe('decidePath', () => {
  it('starts direct and stays there when nothing is clearly better', () => {
    const decision = decidePath(undefined, [direct(20), relay('b', 17)], 0)
    expect(decision).toEqual({ state: { via: null } })
  })

  it('moves to a relay only after the gain has held for holdMs', () => {
    const candidates = [direct(70, { jitterMs: 10 }), relay('b', 20)]
    const first = decidePath(undefined, candidates, 1_000)
    expect(first.change).toBeUndefined()
    expect(first.state).toEqual({ via: null, pending: { via: 'b', since: 1_000 } })
    const state: DestinationPathState = first.state
    const early = decidePath(state, candidates, 1_000 + DEFAULT_PATH_POLICY.holdMs - 1)
    expect(early.change).toBeUndefined()
    const late = decidePath(early.state, candidates, 1_000 + DEFAULT_PATH_POLICY.holdMs)
    expect(late.state).toEqual({ via: 'b' })
    expect(late.change).toMatchObject({ from: null, to: 'b', reason: 'better' })
  })

  it('restarts the hold when the gain disappears in between (no flapping on a blip)', () => {
    const good = [direct(70), relay('b', 20)]
    const blip = [direct(22), relay('b', 20)]
    const a = decidePath(undefined, good, 0)
    const b = decidePath(a.state, blip, 2_000)
    expect(b.state).toEqual({ via: null })
    const c = decidePath(b.state, good, 3_000)
    expect(c.state.pending).toEqual({ via: 'b', since: 3_000 })
    expect(decidePath(c.state, good, 4_500).change).toBeUndefined()
  })

  it('moves at once when the current path is dead', () => {
    const decision = decidePath({ via: 'b' }, [direct(70), relay('b', 20, { alive: false })], 0)
    expect(decision.state).toEqual({ via: null })
    expect(decision.change).toMatchObject({ from: 'b', to: null, reason: 'dead' })
  })

  it('moves at once when the current relay is no longer a candidate', () => {
    const decision = decidePath({ via: 'gone' }, [direct(30), relay('b', 25)], 0)
    expect(decision.state).toEqual({ via: 'b' })
    expect(decision.change?.reason).toBe('dead')
  })

  it('reaches a destination with no working direct link through a relay', () => {
    const decision = decidePath(undefined, [direct(0, { alive: false, forwardMs: Infinity }), relay('b', 40)], 0)
    expect(decision.state).toEqual({ via: 'b' })
  })

  it('stays put when nothing is alive', () => {
    expect(decidePath({ via: 'b' }, [direct(0, { alive: false }), relay('b', 1, { alive: false })], 0)).toEqual({ state: { via: 'b' } })
  })

  it('prefers direct on a tie and then the lower relay id', () => {
    expect(decidePath({ via: 'z' }, [relay('z', 5, { alive: false }), direct(10), relay('b', 10)], 0).state.via).toBeNull()
    expect(decidePath({ via: 'z' }, [relay('z', 5, { alive: false }), relay('c', 10), relay('b', 10)], 0).state.via).toBe('b')
  })

  it('goes back direct when a relay no longer earns its place (below half the required gain, held)', () => {
    // Required gain is 5 ms: a relay saving 4 ms (≥ 2.5) stays; one saving 2 ms goes back direct after the hold.
    expect(decidePath({ via: 'b' }, [direct(20), relay('b', 16)], 0)).toEqual({ state: { via: 'b' } })
    const first = decidePath({ via: 'b' }, [direct(20), relay('b', 18)], 0)
    expect(first.state).toEqual({ via: 'b', pending: { via: null, since: 0 } })
    const later = decidePath(first.state, [direct(20), relay('b', 18)], DEFAULT_PATH_POLICY.holdMs)
    expect(later.change).toMatchObject({ from: 'b', to: null, reason: 'better' })
  })

  it('does not move on a gain within the noise of a jittery path', () => {
    // Gain 8 ms (30 − 22) would clear max(10 %, 5 ms), but not that plus half the 20 ms jitter.
    expect(requiredGainMs(direct(20, { jitterMs: 20 }), DEFAULT_PATH_POLICY, relay('b', 22))).toBe(15)
    expect(decidePath(undefined, [direct(20, { jitterMs: 20 }), relay('b', 22)], 0).state.pending).toBeUndefined()
    expect(decidePath(undefined, [direct(20, { jitterMs: 20 }), relay('b', 12)], 0).state.pending).toEqual({ via: 'b', since: 0 })
  })

  it('counts loss: a lossy relay does not win on delay alone', () => {
    const candidates = [direct(30), relay('b', 15, { lossPct: 5 })]
    const a = decidePath(undefined, candidates, 0)
    expect(a.state.pending).toBeUndefined()
  })
})

describe('candidatesFor', () => {
  const relayed = (rttMs: number, returnLeg: RelayedMeasurement['returnLeg'] = 'direct'): RelayedMeasurement => ({ alive: true, rttMs, lossPct: 0, returnLeg, samples: 10 })

  it('turns round-trip differences into forward differences against half the direct RTT', () => {
    // Forward A→C 70, return C→A 15: direct RTT 85. Via B: 10 + 10 forward, same return: 35.
    const c = candidatesFor({ alive: true, rttMs: 85, jitterMs: 0, lossPct: 0, samples: 10 }, new Map([['b', relayed(35)]]), () => true)
    expect(c).toEqual([
      { via: null, alive: true, forwardMs: 42.5, jitterMs: 0, lossPct: 0 },
      { via: 'b', alive: true, forwardMs: 42.5 - 50, jitterMs: 0, lossPct: 0 },
    ])
    expect(forwardSavingMs(c, 'b')).toBe(50)
    expect(forwardSavingMs(c, null)).toBe(0)
  })

  it('uses half the relayed round trip when the direct link is dead', () => {
    const c = candidatesFor({ alive: false, lossPct: 100, samples: 5 }, new Map([['b', relayed(40, 'relay')]]), () => true)
    expect(c[0]?.alive).toBe(false)
    expect(c[1]).toMatchObject({ via: 'b', alive: true, forwardMs: 20 })
    expect(forwardSavingMs(c, 'b')).toBeNull()
  })

  it('calls a direct link with too few probes undecided, so a new link is not abandoned as dead', () => {
    const c = candidatesFor({ alive: false, lossPct: 0, samples: 1 }, new Map([['b', relayed(40, 'relay')]]), () => true)
    expect(c[0]).toMatchObject({ via: null, alive: false, undecided: true })
    expect(decidePath(undefined, c, 0)).toEqual({ state: { via: null } })
    const later = candidatesFor({ alive: false, lossPct: 100, samples: 3 }, new Map([['b', relayed(40, 'relay')]]), () => true)
    expect(later[0]?.undecided).toBeUndefined()
    expect(decidePath(undefined, later, 0).state).toEqual({ via: 'b' })
  })

  it('shrinks loss measured over few probes towards zero, and forgives one lost probe', () => {
    const c = candidatesFor({ alive: true, rttMs: 20, lossPct: 75, samples: 4 }, new Map([['b', { alive: true, rttMs: 30, lossPct: 15, returnLeg: 'direct' as const, samples: 20 }]]), () => true)
    // 3 of 4 lost: 2 counted, over a window of at least 10; 3 of 20: 2 counted.
    expect(c.map((x) => x.lossPct)).toEqual([20, 10])
  })

  it('keeps an idle LAN destination direct after one lost probe, but not after three', () => {
    // A LAN: the direct link and a relay within a fraction of a millisecond.
    const lan = (lost: number): CandidateMetrics[] =>
      candidatesFor({ alive: true, rttMs: 0.6, jitterMs: 0.1, lossPct: (100 * lost) / 20, samples: 20 }, new Map([['b', { alive: true, rttMs: 0.8, jitterMs: 0.1, lossPct: 0, returnLeg: 'direct' as const, samples: 20 }]]), () => true)
    const after = (candidates: CandidateMetrics[]): Via => {
      let state = decidePath(undefined, candidates, 0).state
      for (let t = 1_000; t <= 10_000; t += 1_000) state = decidePath(state, candidates, t).state
      return state.via
    }
    expect(after(lan(1))).toBeNull()
    expect(after(lan(3))).toBe('b')
  })

  it('marks a relay dead when our link to it is dead', () => {
    const c = candidatesFor({ alive: true, rttMs: 20, lossPct: 0, samples: 10 }, new Map([['b', relayed(30)]]), () => false)
    expect(c[1]?.alive).toBe(false)
  })
})

describe('chooseRelayCandidates', () => {
  it('keeps the k relays with the lowest estimated two-leg RTT, plus the one in use', () => {
    const linkRttMs = new Map([
      ['b', 10],
      ['c', 50],
      ['d', 5],
      ['e', 30],
      ['x', 80],
    ])
    const reported = (relay: string, destination: string): number | undefined => (relay === 'e' && destination === 'x' ? 1 : undefined)
    const result = chooseRelayCandidates({ destinations: ['x', 'c'], linkRttMs, reportedRttMs: reported, current: new Map([['x', 'c']]), maxPerDestination: 2 })
    // For x: d 5+80, b 10+80, e 30+1 → e, d; plus c (in use).
    expect(result.get('x')).toEqual(['e', 'd', 'c'])
    expect(result.get('c')).toEqual(['d', 'b'])
  })

  it('keeps last time\'s candidates while outsiders are within the swap margin (no churn between near-equal relays)', () => {
    // Five relays within a millisecond of each other, as on one LAN: the ranking alone would change with every sample.
    const linkRttMs = new Map([
      ['a', 1.4],
      ['b', 1.3],
      ['c', 0.9],
      ['d', 0.8],
      ['z', 1.0],
    ])
    const previous = new Map([['z', ['a', 'b']]])
    expect(chooseRelayCandidates({ destinations: ['z'], linkRttMs, current: new Map(), maxPerDestination: 2, previous }).get('z')).toEqual(['b', 'a'])
    // Without the previous set, the lowest estimates win.
    expect(chooseRelayCandidates({ destinations: ['z'], linkRttMs, current: new Map(), maxPerDestination: 2 }).get('z')).toEqual(['d', 'c'])
  })

  it('lets a clearly better outsider replace the worst candidate, and fills a slot freed by a dead link', () => {
    const linkRttMs = new Map([
      ['a', 40],
      ['b', 60],
      ['c', 10],
      ['z', 100],
    ])
    // c (10+100) beats b (60+100) by 50 ms, more than 20 % of 160: b goes, a stays.
    expect(chooseRelayCandidates({ destinations: ['z'], linkRttMs, current: new Map(), maxPerDestination: 2, previous: new Map([['z', ['a', 'b']]]) }).get('z')).toEqual(['c', 'a'])
    // a's link is gone (not in linkRttMs): its slot goes to the best outsider.
    const withoutA = new Map([...linkRttMs].filter(([peer]) => peer !== 'a'))
    expect(chooseRelayCandidates({ destinations: ['z'], linkRttMs: withoutA, current: new Map(), maxPerDestination: 2, previous: new Map([['z', ['a', 'b']]]) }).get('z')).toEqual(['c', 'b'])
  })

  it('never proposes the destination as its own relay', () => {
    const result = chooseRelayCandidates({ destinations: ['b'], linkRttMs: new Map([['b', 1]]), current: new Map([['b', 'b']]), maxPerDestination: 3 })
    expect(result.get('b')).toEqual([])
  })
})
