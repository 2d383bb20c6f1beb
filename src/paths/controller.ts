// The imperative shell around path selection: keeps each destination's state,
// re-decides when the prober's measurements move (at most once per `newsMs`)
// and at once when it reports a link death, tells the prober which relays to
// measure, and logs every change as one line.
//
// Decisions follow the prober's version-change notices rather than a fixed
// tick: a notice comes in the wakeup of the probe packet or timeout that
// caused it, so an idle agent wakes for no decision of its own (each wakeup
// costs ~0.1 ms of CPU here; the 250 ms tick was 4 of an idle 3-peer agent's
// ~15 wakeups a second, issue 5). News is decided at most every `newsMs`, and
// sooner news waits for later news or the backstop rather than for a timer: a
// better path waits out a 4 s hold anyway, and a dying one is reported as an
// event (a direct link's or a relayed path's death) and decided at once.
// Only a held switch (its end is a matter of time) keeps a `tickMs` timer
// running, and a full pass still runs at least every `maxSkipMs`.

import type { Logger } from '../logging/logger.js'
import type { LinkStats, ProbeChangeEvent, ProbeLink, ProbeSnapshot, RelayedStats } from '../probe/types.js'
import { candidatesFor, chooseRelayCandidates, forwardSavingMs } from './candidates.js'
import { decidePath, DEFAULT_PATH_POLICY, pathScore, type CandidateMetrics, type DestinationPathState, type PathPolicy, type Via } from './select.js'

/** What the controller needs from the prober (src/probe/service.ts). */
export interface ProbeSource {
  setLinks(links: ProbeLink[]): void
  setRelayCandidates(candidates: Map<string, string[]>): void
  snapshot(): ProbeSnapshot
  /** Called (in a microtask) after version() moved; without it the controller re-decides every tick. */
  onVersionChange?(listener: () => void): () => void
  onChange(listener: (event: ProbeChangeEvent) => void): () => void
}

export interface PathReport {
  via: Via
  /** Forward delay saved against the direct link (ms); 0 when direct, null when unknown. */
  forwardSavingMs: number | null
  /** The direct link's measurements. */
  rttMs: number | null
  jitterMs: number | null
  lossPct: number | null
  directAlive: boolean
}

export interface PathControllerOptions {
  policy?: PathPolicy
  /** Relays probed per destination (plus the one in use). */
  maxRelaysPerDestination?: number
  /** Re-decision interval while a switch is held. */
  tickMs?: number
  /** The shortest time between two decisions on prober news (default DEFAULT_NEWS_MS); deaths do not wait. */
  newsMs?: number
  /** A full pass runs at least this often even when nothing seems to have changed (default DEFAULT_MAX_SKIP_MS). */
  maxSkipMs?: number
}

export interface PathControllerDeps {
  probes: ProbeSource
  logger: Logger
  now: () => number
  /** Called after any destination's path changed; the agent re-plans. */
  onPathsChanged: () => void
  /** The RTT a member reports (gossiped in its record) for its own link to a destination. */
  reportedRttMs?: (relay: string, destination: string) => number | undefined
  /** The decision timer; default the global setTimeout. */
  timers?: TimeoutTimers
  /** A monotonic clock in ms for spacing decisions; default performance.now. */
  elapsed?: () => number
}

export interface TimeoutTimers {
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

const realTimeouts: TimeoutTimers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => {
    clearTimeout(handle as ReturnType<typeof setTimeout>)
  },
}

export interface PathController {
  /** The mesh links to probe and every destination (member) to route. */
  setTopology(links: ProbeLink[], destinations: readonly string[]): void
  /** Re-decides every destination now; returns whether anything changed. */
  evaluate(): boolean
  choices(): ReadonlyMap<string, { via: Via }>
  /** The forward path in use towards one destination (direct when unknown). */
  via(destination: string): Via
  report(destination: string): PathReport
  start(signal: AbortSignal): void
}

export const DEFAULT_MAX_RELAYS = 3
export const DEFAULT_TICK_MS = 250
export const DEFAULT_NEWS_MS = 1_000
export const DEFAULT_MAX_SKIP_MS = 5_000
/** Relay candidates are re-ranked at least this often while nothing else asks for it. */
export const RELAY_RECHOOSE_MS = 5_000

const round = (value: number | undefined): number | null => (value === undefined || !Number.isFinite(value) ? null : Math.round(value * 10) / 10)

function describe(metrics: CandidateMetrics | undefined, policy: PathPolicy): Record<string, number | boolean | null> | undefined {
  if (metrics === undefined) return undefined
  return { alive: metrics.alive, forwardMs: round(metrics.forwardMs), jitterMs: round(metrics.jitterMs), lossPct: round(metrics.lossPct), score: round(pathScore(metrics, policy)) }
}

export function createPathController(options: PathControllerOptions, deps: PathControllerDeps): PathController {
  const policy = options.policy ?? DEFAULT_PATH_POLICY
  const maxRelays = options.maxRelaysPerDestination ?? DEFAULT_MAX_RELAYS
  const log = deps.logger.child({ component: 'paths' })
  const states = new Map<string, DestinationPathState>()
  let destinations: readonly string[] = []
  let lastRelayKey = ''
  let lastRelayCandidates: ReadonlyMap<string, readonly string[]> = new Map()
  const maxSkipMs = options.maxSkipMs ?? DEFAULT_MAX_SKIP_MS
  /** Destinations or links changed since the last evaluation. */
  let topologyChanged = true
  /** A switch is being held: the next decision depends on the clock alone. */
  let holding = false
  /** The last evaluation moved a destination (its relays are then re-ranked at once). */
  let pathsChangedLastTime = false
  /**
   * Per destination, the prober's stats objects its last decision was made from. The prober hands out the same
   * object while a path's measurements are unchanged, so a destination none of whose paths moved is skipped
   * (a probe reply changes one or two of them; idle CPU at 20 peers, issue 5).
   */
  const decidedFrom = new Map<string, { direct: LinkStats | undefined; relayed: RelayedStats[]; relayLinksAlive: boolean[] }>()
  const relayLinksAlive = (snapshot: ProbeSnapshot, relayed: ReadonlyMap<string, RelayedStats> | undefined): boolean[] => {
    const alive: boolean[] = []
    for (const stats of relayed?.values() ?? []) alive.push(snapshot.links.get(stats.relay)?.alive === true)
    return alive
  }
  const unchangedSince = (destination: string, snapshot: ProbeSnapshot): boolean => {
    const inputs = decidedFrom.get(destination)
    const relayed = snapshot.relayed.get(destination)
    if (inputs === undefined || inputs.direct !== snapshot.links.get(destination) || inputs.relayed.length !== (relayed?.size ?? 0)) return false
    let i = 0
    for (const stats of relayed?.values() ?? []) {
      if (inputs.relayed[i] !== stats || inputs.relayLinksAlive[i] !== (snapshot.links.get(stats.relay)?.alive === true)) return false
      i++
    }
    return true
  }

  const candidatesOf = (snapshot: ProbeSnapshot, destination: string): CandidateMetrics[] => {
    const relayed = snapshot.relayed.get(destination) ?? new Map()
    return candidatesFor(snapshot.links.get(destination), relayed, (relay) => snapshot.links.get(relay)?.alive === true)
  }

  let relaysChosenAt = Number.NEGATIVE_INFINITY
  let relaysChosenAlive = ''
  /**
   * Relays are re-ranked when the topology, a link's liveness or a path changed, else at most every
   * RELAY_RECHOOSE_MS: ranking is destinations × links, and probe replies move RTTs on almost every tick.
   */
  const updateRelayCandidates = (snapshot: ProbeSnapshot, now: number, force: boolean): void => {
    let alive = ''
    for (const [peer, stats] of snapshot.links) if (stats.alive) alive += `${peer},`
    if (!force && alive === relaysChosenAlive && now - relaysChosenAt < RELAY_RECHOOSE_MS) return
    relaysChosenAt = now
    relaysChosenAlive = alive
    const linkRttMs = new Map<string, number>()
    for (const [peer, stats] of snapshot.links) if (stats.alive && stats.rttMs !== undefined) linkRttMs.set(peer, stats.rttMs)
    const current = new Map([...states].map(([destination, state]) => [destination, state.via]))
    const candidates = chooseRelayCandidates({
      destinations,
      linkRttMs,
      current,
      maxPerDestination: maxRelays,
      previous: lastRelayCandidates,
      ...(deps.reportedRttMs ? { reportedRttMs: deps.reportedRttMs } : {}),
    })
    lastRelayCandidates = candidates
    // Only when the set changes: the prober keeps its per-relay history across calls.
    const key = JSON.stringify([...candidates].map(([d, relays]) => [d, [...relays].sort()]))
    if (key === lastRelayKey) return
    lastRelayKey = key
    deps.probes.setRelayCandidates(candidates)
  }

  let topologyKey = ''
  /** Set by start(): asks for a decision as soon as the spacing allows. */
  let requestDecision = (): void => undefined
  const controller: PathController = {
    setTopology(links, nextDestinations) {
      // The agent calls this after every pass, most of which (a member's record refreshed) change nothing here;
      // a change re-decides every destination and re-ranks every relay.
      const sorted = [...nextDestinations].sort()
      const key = `${links.map((link) => `${link.peerId} ${link.local4} ${link.peer4}`).join(',')};${sorted.join(',')}`
      if (key === topologyKey) return
      topologyKey = key
      deps.probes.setLinks(links)
      topologyChanged = true
      destinations = sorted
      const keep = new Set(destinations)
      for (const destination of states.keys()) if (!keep.has(destination)) states.delete(destination)
      for (const destination of decidedFrom.keys()) if (!keep.has(destination)) decidedFrom.delete(destination)
      requestDecision()
    },

    evaluate() {
      const snapshot = deps.probes.snapshot()
      const now = deps.now()
      updateRelayCandidates(snapshot, now, topologyChanged || pathsChangedLastTime)
      let changed = false
      holding = false
      for (const destination of destinations) {
        const previous = states.get(destination)
        // Time matters to a decision only while a switch is held; otherwise the same inputs give the same answer.
        if (previous !== undefined && previous.pending === undefined && !topologyChanged && unchangedSince(destination, snapshot)) continue
        const relayed = snapshot.relayed.get(destination)
        decidedFrom.set(destination, { direct: snapshot.links.get(destination), relayed: [...(relayed?.values() ?? [])], relayLinksAlive: relayLinksAlive(snapshot, relayed) })
        const decision = decidePath(previous, candidatesOf(snapshot, destination), now, policy)
        states.set(destination, decision.state)
        if (decision.state.pending !== undefined) holding = true
        const change = decision.change
        if (change === undefined) continue
        changed = true
        log.info(
          { destination, from: change.from ?? 'direct', to: change.to ?? 'direct', reason: change.reason, before: describe(change.fromMetrics, policy), after: describe(change.toMetrics, policy) },
          'path changed',
        )
      }
      topologyChanged = false
      pathsChangedLastTime = changed
      return changed
    },

    choices() {
      return new Map([...states].map(([destination, state]) => [destination, { via: state.via }]))
    },

    via: (destination) => states.get(destination)?.via ?? null,

    report(destination) {
      const snapshot = deps.probes.snapshot()
      const via = states.get(destination)?.via ?? null
      const direct = snapshot.links.get(destination)
      return {
        via,
        forwardSavingMs: round(forwardSavingMs(candidatesOf(snapshot, destination), via) ?? undefined),
        rttMs: round(direct?.rttMs),
        jitterMs: round(direct?.jitterMs),
        lossPct: direct === undefined ? null : round(direct.lossPct),
        directAlive: direct?.alive === true,
      }
    },

    start(signal) {
      const timers = deps.timers ?? realTimeouts
      const elapsed = deps.elapsed ?? (() => performance.now())
      const tickMs = options.tickMs ?? DEFAULT_TICK_MS
      const newsMs = options.newsMs ?? DEFAULT_NEWS_MS
      // Without version notices the measurements are polled: every tick decides.
      const polled = deps.probes.onVersionChange === undefined
      let timer: unknown
      let lastRunAt = Number.NEGATIVE_INFINITY
      const arm = (ms: number): void => {
        if (timer !== undefined) timers.clearTimeout(timer)
        timer = timers.setTimeout(() => {
          timer = undefined
          run()
        }, Math.max(0, ms))
      }
      const run = (): void => {
        if (signal.aborted) return
        lastRunAt = elapsed()
        if (controller.evaluate()) deps.onPathsChanged()
        // A held switch ends on the clock alone; otherwise the next decision waits for news, or the backstop.
        arm(holding || polled ? tickMs : maxSkipMs)
      }
      // News too soon after a decision waits for later news (it comes several times a second on a probed mesh) or the
      // backstop, not for a timer of its own: each timer is one more wakeup, however rarely it has work.
      const onNews = (): void => {
        if (signal.aborted) return
        if (polled || elapsed() - lastRunAt >= newsMs) run()
      }
      requestDecision = onNews
      const unsubscribeVersion = deps.probes.onVersionChange?.(onNews)
      // A death moves traffic at once, however recent the last decision.
      const unsubscribe = deps.probes.onChange((event) => {
        if (event.kind === 'link-dead' || event.kind === 'relayed-dead') run()
      })
      arm(0)
      signal.addEventListener(
        'abort',
        () => {
          if (timer !== undefined) timers.clearTimeout(timer)
          timer = undefined
          requestDecision = () => undefined
          unsubscribe()
          unsubscribeVersion?.()
        },
        { once: true },
      )
    },
  }
  return controller
}
