// From probe measurements to comparable candidates (design §5), pure.
//
// Clocks are not synchronised, so one-way delays are unknown. What is known:
// a relayed probe A→B→C that C answers over the same return leg as a direct
// probe differs from the direct round trip by exactly forward(A→B→C) −
// forward(A→C). So every candidate's forward delay is expressed against one
// reference, half the direct round trip; only differences drive decisions.

import type { CandidateMetrics, Via } from './select.js'

export interface DirectMeasurement {
  alive: boolean
  rttMs?: number
  jitterMs?: number
  lossPct: number
  /** Probes decided so far (answered or timed out). */
  samples: number
}

/** A link with fewer decided probes than this and no reply yet is undecided, not dead (the prober's own dead threshold). */
export const MIN_SAMPLES_FOR_VERDICT = 3

export interface RelayedMeasurement {
  alive: boolean
  rttMs?: number
  jitterMs?: number
  lossPct: number
  /** 'direct': the destination answered over its direct link to us (differences are forward-only). */
  returnLeg: 'direct' | 'relay'
  samples: number
}

/**
 * Loss over few probes is mostly noise (1 of 2 is not "50 % loss"): the
 * figure is shrunk towards zero as if the window held at least this many.
 */
export const LOSS_MIN_WINDOW = 10
/**
 * Lost probes in a window that do not count against a path: one loss is a
 * stall or a queue blip, not a lossy path. Without this, a single probe lost
 * while an idle link is probed every 10 s (20 peers) stays in its 20-probe
 * window for minutes and, at 5 ms per percent, outweighs any LAN's delay
 * differences: idle destinations moved onto relays and stayed there.
 */
export const FORGIVEN_LOSSES = 1
const scoredLoss = (lossPct: number, samples: number): number => {
  const lost = Math.max(0, Math.round((lossPct * samples) / 100) - FORGIVEN_LOSSES)
  return (100 * lost) / Math.max(samples, LOSS_MIN_WINDOW)
}

/** The candidates for one destination: the direct link and each probed relay whose first leg is alive. */
export function candidatesFor(direct: DirectMeasurement | undefined, relayed: ReadonlyMap<string, RelayedMeasurement>, relayLinkAlive: (relay: string) => boolean): CandidateMetrics[] {
  const result: CandidateMetrics[] = []
  const directRtt = direct?.alive === true ? direct.rttMs : undefined
  if (direct !== undefined) {
    result.push({
      via: null,
      alive: directRtt !== undefined,
      forwardMs: directRtt === undefined ? Number.POSITIVE_INFINITY : directRtt / 2,
      jitterMs: direct.jitterMs ?? 0,
      lossPct: scoredLoss(direct.lossPct, direct.samples),
      ...(directRtt === undefined && direct.rttMs === undefined && direct.samples < MIN_SAMPLES_FOR_VERDICT ? { undecided: true } : {}),
    })
  }
  for (const [relay, m] of [...relayed].sort(([a], [b]) => a.localeCompare(b))) {
    const alive = m.alive && m.rttMs !== undefined && relayLinkAlive(relay)
    let forwardMs = Number.POSITIVE_INFINITY
    if (m.rttMs !== undefined) forwardMs = m.returnLeg === 'direct' && directRtt !== undefined ? directRtt / 2 + (m.rttMs - directRtt) : m.rttMs / 2
    result.push({ via: relay, alive, forwardMs, jitterMs: m.jitterMs ?? 0, lossPct: scoredLoss(m.lossPct, m.samples) })
  }
  return result
}

/** How much faster (ms, forward) the chosen path is than the direct one; null when either is unknown. */
export function forwardSavingMs(candidates: readonly CandidateMetrics[], chosen: Via): number | null {
  if (chosen === null) return 0
  const direct = candidates.find((c) => c.via === null)
  const relay = candidates.find((c) => c.via === chosen)
  if (!direct?.alive || relay === undefined || !Number.isFinite(relay.forwardMs)) return null
  return direct.forwardMs - relay.forwardMs
}

export interface RelayChoiceInput {
  destinations: readonly string[]
  /** Smoothed RTT of our own live links, by peer. */
  linkRttMs: ReadonlyMap<string, number>
  /** RTT a relay reported for its own link to a destination, when known (gossip). */
  reportedRttMs?: (relay: string, destination: string) => number | undefined
  /** The relay each destination currently uses: always kept as a candidate. */
  current: ReadonlyMap<string, Via>
  maxPerDestination: number
  /** The candidates chosen last time: each keeps its place until an outsider is clearly better (RELAY_SWAP_MARGIN). */
  previous?: ReadonlyMap<string, readonly string[]>
}

/**
 * How much lower an outsider's two-leg estimate must be before it takes a
 * candidate's place: the larger of these. Without it, relays whose estimates
 * are within noise of each other (a LAN, or one site) trade places at every
 * re-ranking, and each newcomer is probed from scratch.
 */
export const RELAY_SWAP_MARGIN = { ms: 2, fraction: 0.2 } as const

const clearlyBetter = (challenger: number, incumbent: number): boolean => incumbent - challenger > Math.max(RELAY_SWAP_MARGIN.ms, incumbent * RELAY_SWAP_MARGIN.fraction)

/**
 * Which relays to probe for each destination: the ones whose estimated
 * two-leg RTT is lowest, at most maxPerDestination (plus the relay in use), so
 * probing costs O(N·k) per host instead of O(N²). Last time's candidates are
 * sticky: an outsider replaces the worst of them only when clearly better.
 */
export function chooseRelayCandidates(input: RelayChoiceInput): Map<string, string[]> {
  const result = new Map<string, string[]>()
  const relays = [...input.linkRttMs.keys()].sort()
  const slots = Math.max(0, input.maxPerDestination)
  for (const destination of input.destinations) {
    const fallbackSecondLeg = input.linkRttMs.get(destination) ?? 0
    const ranked = relays
      .filter((relay) => relay !== destination)
      .map((relay) => ({ relay, estimate: (input.linkRttMs.get(relay) ?? 0) + (input.reportedRttMs?.(relay, destination) ?? fallbackSecondLeg) }))
      .sort((a, b) => a.estimate - b.estimate || a.relay.localeCompare(b.relay))
    const before = new Set(input.previous?.get(destination) ?? [])
    // Incumbents still eligible (a live link), best first; outsiders fill free slots, then challenge the worst.
    const kept = ranked.filter((r) => before.has(r.relay)).slice(0, slots)
    const outsiders = ranked.filter((r) => !before.has(r.relay))
    for (const outsider of outsiders) {
      if (kept.length < slots) {
        kept.push(outsider)
        continue
      }
      const worst = kept.reduce<(typeof kept)[number] | undefined>((w, r) => (w === undefined || r.estimate > w.estimate ? r : w), undefined)
      if (worst === undefined || !clearlyBetter(outsider.estimate, worst.estimate)) break
      kept.splice(kept.indexOf(worst), 1, outsider)
    }
    const chosen = kept.sort((a, b) => a.estimate - b.estimate || a.relay.localeCompare(b.relay)).map((r) => r.relay)
    const inUse = input.current.get(destination)
    if (inUse !== undefined && inUse !== null && inUse !== destination && !chosen.includes(inUse)) chosen.push(inUse)
    result.set(destination, chosen)
  }
  return result
}
