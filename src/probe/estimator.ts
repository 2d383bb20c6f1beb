// Pure estimators for one probed path (a direct link, or one relay to one
// destination): smoothed RTT, jitter, loss over a window, and liveness.
// Values in, new value out; the service owns the clock and the sockets.

/** Decided probes (answered or timed out) the loss figure covers. */
export const LOSS_WINDOW = 20
/** Consecutive timed-out probes after which a path is dead. */
export const DEAD_AFTER_MISSES = 3
/**
 * RTT and jitter are medians over the last RTT_WINDOW samples, not EWMAs: a
 * userspace prober's samples carry event-loop stalls (seconds-long at agent
 * start, on a loaded host), and a median forgets them after a few probes where
 * an EWMA would drag them along for dozens.
 */
export const RTT_WINDOW = 9
/**
 * …and none older than this, beyond the newest RTT_MIN_SAMPLES: an idle link
 * is probed only every few seconds (every 10 s at 20 idle links), and samples
 * from a busy moment (a link's handshake, many links coming up at once) would
 * otherwise steer its path for minutes.
 */
export const RTT_MAX_AGE_MS = 30_000
export const RTT_MIN_SAMPLES = 3

export interface Estimator {
  readonly alive: boolean
  readonly srttMs?: number
  readonly jitterMs?: number
  /** The previous RTT sample, for the jitter difference. */
  readonly lastRttMs?: number
  /** The last RTT_WINDOW samples and consecutive differences, oldest first. */
  readonly recentRttsMs?: readonly number[]
  /** When each of recentRttsMs was taken (the `at` of its reply). */
  readonly recentRttsAt?: readonly number[]
  readonly recentDiffsMs?: readonly number[]
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

export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2
}

const pushWindow = (window: readonly number[] | undefined, value: number): number[] => [...(window ?? []), value].slice(-RTT_WINDOW)

function withSample(estimator: Estimator, rttMs: number, at: number): Estimator {
  const sample = Math.max(0, rttMs)
  if (estimator.provisional === true) return { ...estimator, srttMs: sample, lastRttMs: sample, recentRttsMs: [sample], recentRttsAt: [at], recentDiffsMs: [], provisional: false }
  const recentRttsMs = pushWindow(estimator.recentRttsMs, sample)
  const recentRttsAt = pushWindow(estimator.recentRttsAt, at)
  // Jitter: the median difference between consecutive samples (RFC 3550's |D|, robustly averaged); known after two replies.
  const recentDiffsMs = estimator.lastRttMs === undefined ? [...(estimator.recentDiffsMs ?? [])] : pushWindow(estimator.recentDiffsMs, Math.abs(sample - estimator.lastRttMs))
  // Age out old samples (and as many of the oldest differences), keeping the newest RTT_MIN_SAMPLES.
  while (recentRttsMs.length > RTT_MIN_SAMPLES && recentRttsAt.length === recentRttsMs.length && at - (recentRttsAt[0] ?? at) > RTT_MAX_AGE_MS) {
    recentRttsMs.shift()
    recentRttsAt.shift()
    if (recentDiffsMs.length >= recentRttsMs.length) recentDiffsMs.shift()
  }
  const jitterMs = median(recentDiffsMs)
  return { ...estimator, srttMs: median(recentRttsMs) ?? sample, ...(jitterMs === undefined ? {} : { jitterMs }), lastRttMs: sample, recentRttsMs, recentRttsAt, recentDiffsMs }
}

function pushOutcome(outcomes: readonly boolean[], answered: boolean): boolean[] {
  const next = [...outcomes, answered]
  return next.length > LOSS_WINDOW ? next.slice(next.length - LOSS_WINDOW) : next
}

/**
 * A reply arrived before its probe timed out. One reply makes a path alive.
 * The first reply ever, and the first after the path was dead, also clear the
 * misses before them: those were the link coming up or an outage, not loss on
 * a working path (an outage would otherwise read as loss, at the idle probe
 * rate, for up to 20 probes after the path is back).
 */
export function recordReply(estimator: Estimator, rttMs: number, at: number): Step {
  const outcomes = estimator.lastReplyAt === undefined || !estimator.alive ? [true] : pushOutcome(estimator.outcomes, true)
  const next: Estimator = { ...withSample(estimator, rttMs, at), alive: true, outcomes, consecutiveMisses: 0, lastReplyAt: at }
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
export function recordLateReply(estimator: Estimator, rttMs: number, at: number): Estimator {
  return withSample(estimator, rttMs, at)
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
