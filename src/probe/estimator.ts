// Pure estimators for one probed path (a direct link, or one relay to one
// destination): smoothed RTT, jitter, loss over a window, and liveness.
// Values in, new value out; the service owns the clock and the sockets.

/** Decided probes (answered or timed out) the loss figure covers. */
export const LOSS_WINDOW = 20
/** Consecutive timed-out probes after which a path is dead. */
export const DEAD_AFTER_MISSES = 3
/** EWMA gain of the smoothed RTT (as TCP's SRTT, RFC 6298). */
export const RTT_GAIN = 1 / 8
/** Gain of the jitter estimate (RFC 3550 §6.4.1: J += (|D| − J) / 16). */
export const JITTER_GAIN = 1 / 16

export interface Estimator {
  readonly alive: boolean
  readonly srttMs?: number
  readonly jitterMs?: number
  /** The previous RTT sample, for the jitter difference. */
  readonly lastRttMs?: number
  /** Outcome of each decided probe, oldest first, at most LOSS_WINDOW: true = answered in time. */
  readonly outcomes: readonly boolean[]
  readonly consecutiveMisses: number
  readonly lastReplyAt?: number
  /**
   * srtt and jitter are carried over from before the RTT changed meaning (restartSmoothing):
   * shown so a path stays comparable at the moment of a switch, replaced outright by the next sample.
   */
  readonly provisional?: boolean
}

export type Transition = 'alive' | 'dead' | undefined

export interface Step {
  estimator: Estimator
  transition: Transition
}

export const initialEstimator: Estimator = { alive: false, outcomes: [], consecutiveMisses: 0 }

function withSample(estimator: Estimator, rttMs: number): Estimator {
  const sample = Math.max(0, rttMs)
  if (estimator.provisional === true) return { ...estimator, srttMs: sample, lastRttMs: sample, provisional: false }
  const srttMs = estimator.srttMs === undefined ? sample : estimator.srttMs + RTT_GAIN * (sample - estimator.srttMs)
  let jitterMs = estimator.jitterMs
  if (estimator.lastRttMs !== undefined) {
    const difference = Math.abs(sample - estimator.lastRttMs)
    // The first difference seeds the estimate, so jitter is meaningful after two replies, not after dozens.
    jitterMs = jitterMs === undefined ? difference : jitterMs + JITTER_GAIN * (difference - jitterMs)
  }
  return { ...estimator, srttMs, jitterMs, lastRttMs: sample }
}

function pushOutcome(outcomes: readonly boolean[], answered: boolean): boolean[] {
  const next = [...outcomes, answered]
  return next.length > LOSS_WINDOW ? next.slice(next.length - LOSS_WINDOW) : next
}

/** A reply arrived before its probe timed out. One reply makes a path alive. */
export function recordReply(estimator: Estimator, rttMs: number, at: number): Step {
  const next: Estimator = { ...withSample(estimator, rttMs), alive: true, outcomes: pushOutcome(estimator.outcomes, true), consecutiveMisses: 0, lastReplyAt: at }
  return { estimator: next, transition: estimator.alive ? undefined : 'alive' }
}

/** A probe timed out. */
export function recordMiss(estimator: Estimator): Step {
  const consecutiveMisses = estimator.consecutiveMisses + 1
  const dies = estimator.alive && consecutiveMisses >= DEAD_AFTER_MISSES
  const next: Estimator = { ...estimator, alive: dies ? false : estimator.alive, outcomes: pushOutcome(estimator.outcomes, false), consecutiveMisses }
  return { estimator: next, transition: dies ? 'dead' : undefined }
}

/**
 * A reply to a probe already counted lost. It is not counted again (the loss
 * stands and liveness does not change) but its RTT feeds the smoothing, so a
 * path whose RTT jumped past the timeout raises its own timeout and recovers.
 */
export function recordLateReply(estimator: Estimator, rttMs: number): Estimator {
  return withSample(estimator, rttMs)
}

/**
 * The meaning of the RTT changed (a relay's return leg switched): forget the
 * loss window and the miss count, keep liveness, and keep srtt/jitter only as
 * provisional values until the first sample under the new meaning replaces them.
 */
export function restartSmoothing(estimator: Estimator): Estimator {
  const carried: Estimator = { alive: estimator.alive, outcomes: [], consecutiveMisses: 0, lastReplyAt: estimator.lastReplyAt }
  if (estimator.srttMs === undefined) return carried
  return { ...carried, srttMs: estimator.srttMs, jitterMs: estimator.jitterMs, provisional: true }
}

export function lossPct(estimator: Estimator): number {
  if (estimator.outcomes.length === 0) return 0
  const lost = estimator.outcomes.filter((answered) => !answered).length
  return (100 * lost) / estimator.outcomes.length
}

export interface TimeoutBounds {
  minMs: number
  maxMs: number
  /** Before any RTT sample. */
  initialMs: number
}

/** How long to wait for a reply before counting a probe lost: 2·SRTT + 4·jitter, clamped. */
export function probeTimeoutMs(estimator: Estimator, bounds: TimeoutBounds): number {
  if (estimator.srttMs === undefined) return bounds.initialMs
  const wanted = 2 * estimator.srttMs + 4 * (estimator.jitterMs ?? 0)
  return Math.min(bounds.maxMs, Math.max(bounds.minMs, wanted))
}
