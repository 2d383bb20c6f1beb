// The pure parts of the prober: estimators (RTT, jitter, loss, liveness) and
// scheduling decisions, table-driven with exact values.

import { describe, expect, it } from 'vitest'
import {
  DEAD_AFTER_MISSES,
  LOSS_WINDOW,
  initialEstimator,
  lossPct,
  probeTimeoutMs,
  recordLateReply,
  recordMiss,
  recordReply,
  restartSmoothing,
  RTT_MAX_AGE_MS,
  RTT_MIN_SAMPLES,
  type Estimator,
  type Transition,
} from '../../src/probe/estimator.js'
import { DIRECT_TIMEOUT, directProbeDelayMs, relayProbeDelayMs, returnLegFor, takeToken } from '../../src/probe/schedule.js'

type Event = number | 'miss' | { late: number }

/** Applies replies (RTT in ms), misses and late replies in order; returns the final state and every transition. */
function run(events: Event[]): { estimator: Estimator; transitions: Transition[] } {
  let estimator = initialEstimator
  const transitions: Transition[] = []
  events.forEach((event, at) => {
    if (event === 'miss') {
      const step = recordMiss(estimator)
      estimator = step.estimator
      transitions.push(step.transition)
    } else if (typeof event === 'number') {
      const step = recordReply(estimator, event, at)
      estimator = step.estimator
      transitions.push(step.transition)
    } else {
      estimator = recordLateReply(estimator, event.late, at)
      transitions.push(undefined)
    }
  })
  return { estimator, transitions }
}

describe('probe estimator', () => {
  it.each([
    { name: 'one reply', events: [10], srtt: 10, jitter: undefined },
    { name: 'two replies', events: [10, 18], srtt: 14, jitter: 8 },
    { name: 'three replies', events: [10, 18, 10], srtt: 10, jitter: 8 },
    { name: 'median jitter of consecutive differences', events: [10, 26, 26], srtt: 26, jitter: 8 },
    { name: 'a miss leaves RTT alone', events: [10, 'miss', 18], srtt: 14, jitter: 8 },
    { name: 'a late reply feeds RTT', events: [10, 'miss', { late: 90 }], srtt: 50, jitter: 80 },
    { name: 'a stall is forgotten: one 900 ms sample among 10 ms ones', events: [10, 11, 900, 10, 12, 11], srtt: 11, jitter: 2 },
    { name: 'only the last RTT_WINDOW samples count', events: [500, 500, 500, 500, 500, 10, 10, 10, 10, 10, 10, 10, 10, 10], srtt: 10, jitter: 0 },
  ] as { name: string; events: Event[]; srtt: number; jitter: number | undefined }[])('RTT and jitter: $name', ({ events, srtt, jitter }) => {
    const { estimator } = run(events)
    expect(estimator.srttMs).toBeCloseTo(srtt, 9)
    expect(estimator.jitterMs).toBe(jitter)
  })

  it.each([
    { name: 'unknown until the first reply', events: [], alive: false, transitions: [] },
    { name: 'first reply makes it alive', events: [5], alive: true, transitions: ['alive'] },
    { name: 'misses before any reply do not kill what never lived', events: ['miss', 'miss', 'miss', 'miss'], alive: false, transitions: [undefined, undefined, undefined, undefined] },
    { name: 'two misses keep it alive', events: [5, 'miss', 'miss'], alive: true, transitions: ['alive', undefined, undefined] },
    { name: 'three consecutive misses kill it', events: [5, 'miss', 'miss', 'miss'], alive: false, transitions: ['alive', undefined, undefined, 'dead'] },
    { name: 'a reply in between resets the count', events: [5, 'miss', 'miss', 5, 'miss', 'miss'], alive: true, transitions: ['alive', undefined, undefined, undefined, undefined, undefined] },
    { name: 'dead fires once', events: [5, 'miss', 'miss', 'miss', 'miss'], alive: false, transitions: ['alive', undefined, undefined, 'dead', undefined] },
    { name: 'a late reply does not revive', events: [5, 'miss', 'miss', 'miss', { late: 300 }], alive: false, transitions: ['alive', undefined, undefined, 'dead', undefined] },
    { name: 'an in-time reply revives', events: [5, 'miss', 'miss', 'miss', 6], alive: true, transitions: ['alive', undefined, undefined, 'dead', 'alive'] },
  ] as { name: string; events: Event[]; alive: boolean; transitions: Transition[] }[])('liveness: $name', ({ events, alive, transitions }) => {
    const result = run(events)
    expect(result.estimator.alive).toBe(alive)
    expect(result.transitions).toEqual(transitions)
  })

  it('dies after exactly DEAD_AFTER_MISSES', () => {
    expect(DEAD_AFTER_MISSES).toBe(3)
  })

  it.each([
    { name: 'no samples', events: [], loss: 0, samples: 0 },
    { name: 'one of four lost', events: [1, 'miss', 1, 1], loss: 25, samples: 4 },
    { name: 'a late reply is not counted twice', events: [1, 'miss', { late: 1 }, 1], loss: 100 / 3, samples: 3 },
    { name: 'misses before the first reply ever are the link coming up, not loss', events: ['miss', 'miss', 'miss', 1, 1], loss: 0, samples: 2 },
    { name: 'an outage (dead, then alive again) is not loss afterwards', events: [1, 1, 'miss', 'miss', 'miss', 'miss', 1, 1], loss: 0, samples: 2 },
    { name: 'misses that do not kill the path stay loss', events: [1, 'miss', 'miss', 1], loss: 50, samples: 4 },
    { name: 'the window slides', events: [1, ...Array.from({ length: LOSS_WINDOW / 2 }, (): Event[] => ['miss', 1]).flat(), ...Array<Event>(LOSS_WINDOW / 2).fill(1)], loss: 25, samples: LOSS_WINDOW },
  ] as { name: string; events: Event[]; loss: number; samples: number }[])('loss: $name', ({ events, loss, samples }) => {
    const { estimator } = run(events)
    expect(lossPct(estimator)).toBeCloseTo(loss, 9)
    expect(estimator.outcomes.length).toBe(samples)
  })

  it('restartSmoothing forgets samples, keeps liveness, and carries RTT provisionally', () => {
    const { estimator } = run([10, 20, 'miss', 'miss'])
    const restarted = restartSmoothing(estimator)
    expect(restarted).toEqual({ alive: true, outcomes: [], consecutiveMisses: 0, lastReplyAt: 1, srttMs: 15, jitterMs: 10, provisional: true })
    // Two more misses do not kill it: the count restarted too.
    expect(recordMiss(recordMiss(restarted).estimator).estimator.alive).toBe(true)
    // The first sample under the new meaning replaces the carried RTT outright; jitter continues from there.
    const first = recordReply(restarted, 40, 5).estimator
    expect([first.srttMs, first.jitterMs, first.provisional]).toEqual([40, 10, false])
    expect(recordReply(first, 48, 6).estimator.srttMs).toBe(44)
    expect(restartSmoothing(initialEstimator)).toEqual({ alive: false, outcomes: [], consecutiveMisses: 0, lastReplyAt: undefined })
  })

  it.each([
    { name: 'initial', events: [], timeout: 1000 },
    { name: 'floor', events: [10, 10], timeout: 200 },
    { name: '2·srtt + 4·jitter', events: [100, 140], timeout: 2 * 120 + 4 * 40 },
    { name: 'ceiling', events: [900], timeout: 1500 },
  ] as { name: string; events: Event[]; timeout: number }[])('probe timeout: $name', ({ events, timeout }) => {
    expect(probeTimeoutMs(run(events).estimator, DIRECT_TIMEOUT)).toBe(timeout)
  })
})

describe('RTT samples age out', () => {
  it(`beyond the newest ${RTT_MIN_SAMPLES}, a sample older than ${RTT_MAX_AGE_MS / 1000} s leaves the window: two fresh replies outvote five stale ones`, () => {
    let estimator = initialEstimator
    // A busy minute (a handshake, many links coming up): 100 ms, then the link is probed rarely (idle).
    for (let i = 0; i < 5; i++) estimator = recordReply(estimator, 100, i * 1000).estimator
    estimator = recordReply(estimator, 2, 40_000).estimator
    expect(estimator.srttMs).toBe(100)
    estimator = recordReply(estimator, 2, 41_000).estimator
    expect(estimator.srttMs).toBe(2)
    expect(estimator.recentRttsMs).toEqual([100, 2, 2])
    // Without ageing, the median of [100 × 5, 2, 2] would still be 100.
  })

  it('keeps the newest samples however old they are, and the jitter window no longer than the RTT one', () => {
    let estimator = initialEstimator
    for (let i = 0; i < 9; i++) estimator = recordReply(estimator, 10 + (i % 2), i * 60_000).estimator
    expect(estimator.recentRttsMs).toHaveLength(RTT_MIN_SAMPLES)
    expect(estimator.recentDiffsMs?.length).toBeLessThanOrEqual(RTT_MIN_SAMPLES)
    expect(estimator.srttMs).toBeGreaterThanOrEqual(10)
  })
})

describe('probe schedule', () => {
  it.each([
    [true, 0, 200],
    [true, 0.999999, 220],
    [false, 0, 1000],
    [false, 0.5, 1500],
  ] as const)('active=%s random=%s → about %i ms', (active, random, ms) => {
    expect(directProbeDelayMs(active, random)).toBeCloseTo(ms, 3)
  })

  it.each([
    // Up to 3 idle links at 2 probes a second between them: the usual 1–2 s.
    [false, 3, 0, 1000],
    // Past that, idle links ÷ 2 s, ±10 %.
    [false, 20, 0, 9000],
    [false, 20, 0.5, 10_000],
    [false, 99, 0.5, 49_500],
    // A link with traffic is never capped.
    [true, 99, 0, 200],
  ] as const)('active=%s with %i idle links, random=%s → %i ms', (active, idleLinks, random, ms) => {
    expect(directProbeDelayMs(active, random, idleLinks)).toBeCloseTo(ms, 3)
  })

  it.each([
    [{ destinationActive: true, directAlive: true, inUse: true }, 200],
    [{ destinationActive: true, directAlive: true, inUse: false }, 1000],
    [{ destinationActive: false, directAlive: true, inUse: true }, 4500],
    [{ destinationActive: false, directAlive: false }, 1000],
    // Under the cap (one idle probe every 2 s / 20 fast a second for all pairs): the usual ranges.
    [{ destinationActive: false, directAlive: true, pairs: { idle: 2, fast: 50 } }, 4500],
    [{ destinationActive: false, directAlive: false, pairs: { idle: 500, fast: 20 } }, 1000],
    // Over it: pairs ÷ rate, from 0.9 of that.
    [{ destinationActive: false, directAlive: true, pairs: { idle: 60, fast: 0 } }, 108_000],
    [{ destinationActive: true, directAlive: true, inUse: false, pairs: { idle: 0, fast: 100 } }, 4500],
    // The relay in use for an active destination is never capped.
    [{ destinationActive: true, directAlive: true, inUse: true, pairs: { idle: 0, fast: 1000 } }, 200],
  ] as const)('relayed probes %o → from %i ms', (situation, ms) => {
    expect(relayProbeDelayMs(situation, 0)).toBe(ms)
  })

  it('death is noticed within 0.9 s of the last reply while active: 3 intervals plus the floor timeout', () => {
    expect(3 * directProbeDelayMs(true, 1) + DIRECT_TIMEOUT.minMs).toBeLessThanOrEqual(860)
  })

  it.each([
    [true, 'direct'],
    [false, 'relay'],
    [undefined, 'relay'],
  ] as const)('direct link alive=%s → return leg %s', (alive, leg) => {
    expect(returnLegFor(alive)).toBe(leg)
  })

  it('token bucket: burst, then the refill rate', () => {
    const rate = { perSecond: 10, burst: 3 }
    let bucket = undefined as ReturnType<typeof takeToken>['bucket'] | undefined
    const allowedAt = (now: number): boolean => {
      const step = takeToken(bucket, now, rate)
      bucket = step.bucket
      return step.allowed
    }
    expect([0, 0, 0, 0].map(allowedAt)).toEqual([true, true, true, false])
    expect(allowedAt(50)).toBe(false) // half a token
    expect(allowedAt(100)).toBe(true)
    expect(allowedAt(10_000)).toBe(true) // refill caps at the burst
    expect([10_000, 10_000, 10_000].map(allowedAt)).toEqual([true, true, false])
  })
})
