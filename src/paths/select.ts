// Forward-path selection (design §5), pure: per destination, the direct link or
// one relay, from probe metrics. The agent owns the per-destination state and
// feeds it back on every decision; nothing here reads a clock or a socket.

/** null: the direct link; a node id: through that relay. */
export type Via = string | null

export interface PathPolicy {
  /** A better path must beat the current one by at least this fraction of the current score… */
  minGainFraction: number
  /** …and by at least this many milliseconds. */
  minGainMs: number
  /** …continuously for this long before traffic moves (anti-flap). */
  holdMs: number
  /** Weight of jitter (ms) in the score. */
  jitterWeight: number
  /** Milliseconds of score per percent of loss. */
  lossPenaltyMsPerPct: number
  /** A gain must also clear this fraction of the larger jitter of the two paths: measurement noise, not a real gain. */
  jitterMargin: number
}

export const DEFAULT_PATH_POLICY: PathPolicy = {
  minGainFraction: 0.1,
  minGainMs: 5,
  holdMs: 4_000,
  jitterWeight: 0.5,
  lossPenaltyMsPerPct: 5,
  jitterMargin: 0.5,
}

export interface CandidateMetrics {
  via: Via
  alive: boolean
  /** Estimated one-way forward delay in ms (relative: see forwardEstimates). */
  forwardMs: number
  jitterMs: number
  lossPct: number
  /** Not alive, but not judged dead either: too few probes so far. Never chosen, never abandoned for being dead. */
  undecided?: boolean
}

export interface DestinationPathState {
  via: Via
  /** A better candidate seen continuously since `since`. */
  pending?: { via: Via; since: number }
}

export type ChangeReason = 'dead' | 'better'

export interface PathChange {
  from: Via
  to: Via
  reason: ChangeReason
  /** The metrics behind the decision, for the one-line log. */
  fromMetrics?: CandidateMetrics
  toMetrics: CandidateMetrics
}

export interface PathDecision {
  state: DestinationPathState
  change?: PathChange
}

/** Lower is better: forward delay plus weighted jitter plus a loss penalty. */
export function pathScore(metrics: CandidateMetrics, policy: PathPolicy = DEFAULT_PATH_POLICY): number {
  return metrics.forwardMs + policy.jitterWeight * metrics.jitterMs + policy.lossPenaltyMsPerPct * metrics.lossPct
}

/** Direct first on a tie, then relays by id, so decisions are deterministic. */
function better(a: CandidateMetrics, b: CandidateMetrics, policy: PathPolicy): boolean {
  const diff = pathScore(a, policy) - pathScore(b, policy)
  if (diff !== 0) return diff < 0
  if (a.via === null) return b.via !== null
  if (b.via === null) return false
  return a.via < b.via
}

function bestOf(candidates: readonly CandidateMetrics[], policy: PathPolicy): CandidateMetrics | undefined {
  let best: CandidateMetrics | undefined
  for (const c of candidates) if (c.alive && (best === undefined || better(c, best, policy))) best = c
  return best
}

/**
 * The gain a switch must offer: max(fraction of the current score, minimum
 * ms), plus a margin for noise when comparing against `other` — RTT medians
 * over a jittery leg wander by about the jitter, and a move on noise is a flap.
 */
export function requiredGainMs(current: CandidateMetrics, policy: PathPolicy = DEFAULT_PATH_POLICY, other?: CandidateMetrics): number {
  const noise = other === undefined ? 0 : policy.jitterMargin * Math.max(current.jitterMs, other.jitterMs)
  return Math.max(policy.minGainFraction * Math.max(pathScore(current, policy), 0), policy.minGainMs) + noise
}

/**
 * One decision for one destination. Moves at once when the current path is
 * dead (or gone); otherwise only for a gain of at least requiredGainMs held for
 * policy.holdMs. A relay must keep earning its place: when its advantage over
 * a live direct link falls below half the required gain for holdMs, traffic
 * goes back direct (the band between the two thresholds is what stops
 * flapping). With no previous state the destination starts direct.
 */
export function decidePath(previous: DestinationPathState | undefined, candidates: readonly CandidateMetrics[], now: number, policy: PathPolicy = DEFAULT_PATH_POLICY): PathDecision {
  const currentVia: Via = previous?.via ?? null
  const current = candidates.find((c) => c.via === currentVia)
  const best = bestOf(candidates, policy)

  // Too early to call the current path dead (a link just came up): stay.
  if (current?.undecided === true && !current.alive) return { state: { via: currentVia } }
  if (current === undefined || !current.alive) {
    // Nothing alive: stay put; the routes keep pointing where they were and probing goes on.
    if (best === undefined || best.via === currentVia) return { state: { via: currentVia } }
    return { state: { via: best.via }, change: { from: currentVia, to: best.via, reason: 'dead', ...(current ? { fromMetrics: current } : {}), toMetrics: best } }
  }
  const target = targetOf(current, best, candidates, policy)
  if (target === undefined) return { state: { via: currentVia } }

  const pending = previous?.pending?.via === target.via ? previous.pending : { via: target.via, since: now }
  if (now - pending.since >= policy.holdMs) {
    return { state: { via: target.via }, change: { from: currentVia, to: target.via, reason: 'better', fromMetrics: current, toMetrics: target } }
  }
  return { state: { via: currentVia, pending } }
}

/** Where a live current path should move (subject to the hold), if anywhere. */
function targetOf(current: CandidateMetrics, best: CandidateMetrics | undefined, candidates: readonly CandidateMetrics[], policy: PathPolicy): CandidateMetrics | undefined {
  if (best !== undefined && best.via !== current.via && pathScore(current, policy) - pathScore(best, policy) >= requiredGainMs(current, policy, best)) return best
  if (current.via === null) return undefined
  const direct = candidates.find((c) => c.via === null)
  if (direct?.alive !== true) return undefined
  const advantage = pathScore(direct, policy) - pathScore(current, policy)
  return advantage < requiredGainMs(direct, policy, current) / 2 ? direct : undefined
}
