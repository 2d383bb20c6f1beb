// Pure scheduling decisions of the prober: when to probe next, how long to
// wait for a reply, which return leg to ask for, and the token bucket that
// keeps a host from being used as an amplifier.

import type { TimeoutBounds } from './estimator.js'
import type { ReturnLeg } from './types.js'

/**
 * Direct probes on a link carrying traffic: every 200–220 ms, so 3 misses
 * (the third timing out after the 200 ms floor) are noticed within 0.86 s of
 * the last reply, and a failover's gap — detection plus the new path's round
 * trip — stays under 1 s.
 */
export const ACTIVE_INTERVAL_MS = { min: 200, max: 220 } as const
/** Direct probes on an idle link: every 1–2 s. */
export const IDLE_INTERVAL_MS = { min: 1000, max: 2000 } as const
/**
 * Relayed probes, per (destination, relay) candidate: fast while the
 * destination matters now (marked active, or no live direct link to it), slow
 * otherwise. Deliberately not "the relay's link is active": relayed probes
 * cross that link, so its activity would be partly our own probing.
 */
export const RELAY_ACTIVE_INTERVAL_MS = { min: 1000, max: 1200 } as const
/**
 * The relay that carries a destination's traffic right now is probed as fast
 * as a direct link with traffic: its far leg (relay → destination) is only
 * seen by relayed probes, and its death must be noticed within about a second.
 */
export const RELAY_IN_USE_INTERVAL_MS = ACTIVE_INTERVAL_MS
export const RELAY_IDLE_INTERVAL_MS = { min: 4500, max: 5500 } as const

export const DIRECT_TIMEOUT: TimeoutBounds = { minMs: 200, maxMs: 1500, initialMs: 1000 }
export const RELAY_TIMEOUT: TimeoutBounds = { minMs: 400, maxMs: 2500, initialMs: 1500 }

/** A lost probe's entry is kept this long so a late reply is recognised and not counted twice. */
export const LATE_REPLY_GRACE_MS = 5000
/** Retry binding a link's socket (its address may not be assigned yet). */
export const BIND_RETRY_MS = 1000

/**
 * Relay work (forwarding, answering relayed probes, forwarding replies) per
 * requester (per relay link at the destination). Relaying is one packet out per
 * packet in, a few bytes larger, so this bounds the load one peer can cause
 * rather than an amplification; it allows ~100 destinations × 3 relays probed
 * fast through one relay with room to spare.
 */
export const RELAY_RATE = { perSecond: 200, burst: 200 } as const
/** Direct echo replies per link. */
export const ECHO_RATE = { perSecond: 50, burst: 100 } as const

/** Delay before the next probe; `random` in [0, 1) spreads probes so links do not synchronise. */
export function jitteredDelayMs(range: { min: number; max: number }, random: number): number {
  return range.min + (range.max - range.min) * random
}

/**
 * All of one node's direct probes on idle links together, per second: past
 * that, each idle link's interval stretches to idle links ÷ rate. Every probe
 * is a send into the link and an echo back from the peer, which probes us the
 * same way: at 20 idle links and 1–2 s that was ~27 packets a second each way,
 * the largest part of an idle agent's CPU. An idle link needs no quick verdict:
 * a link that starts carrying traffic is probed at the active interval.
 */
export const DIRECT_IDLE_PROBE_RATE_PER_SECOND = 2

/** `idleLinks`: how many links this node probes at the idle interval now; omitted: no cap. */
export function directProbeDelayMs(active: boolean, random: number, idleLinks?: number): number {
  if (active) return jitteredDelayMs(ACTIVE_INTERVAL_MS, random)
  const cappedMs = idleLinks === undefined ? 0 : (idleLinks * 1000) / DIRECT_IDLE_PROBE_RATE_PER_SECOND
  // Compared with the range's mean, so the cap only ever slows probing; ±10 % so links do not fall into step.
  return jitteredDelayMs(cappedMs > meanOf(IDLE_INTERVAL_MS) ? { min: cappedMs * 0.9, max: cappedMs * 1.1 } : IDLE_INTERVAL_MS, random)
}

const meanOf = (range: { min: number; max: number }): number => (range.min + range.max) / 2

/**
 * All of one node's relayed probes together, per second: at most `idle` to
 * (destination, relay) pairs probed slowly and `fast` to pairs probed fast;
 * past that, every pair's interval stretches (pairs ÷ rate). Without a cap a
 * node's relayed probing grows with destinations × relays, and in a mesh every
 * node is requester, relay and destination alike: at 20 peers and 3 relays,
 * 60 pairs at 5 s were ~36 packets a second per node, the largest part of an
 * idle agent's CPU. The relay carrying an active destination's traffic is not
 * capped: its death must be noticed within a second. Idle pairs only keep the
 * candidate ranking roughly current (when a destination's direct link dies its
 * relays are probed at once and then fast), so one every 2 s: at 1 a second,
 * relaying and answering the peers' relayed probes was still over half of an
 * idle 20-peer agent's packets (issue 5).
 */
export const RELAY_PROBE_RATE = { idlePerSecond: 0.5, fastPerSecond: 20 } as const

export interface RelayProbeSituation {
  destinationActive: boolean
  directAlive: boolean
  inUse?: boolean
  /** How many (destination, relay) pairs this node probes slowly and fast now; omitted: no cap. */
  pairs?: { idle: number; fast: number }
}

export function relayProbeDelayMs(situation: RelayProbeSituation, random: number): number {
  if (situation.inUse === true && situation.destinationActive) return jitteredDelayMs(RELAY_IN_USE_INTERVAL_MS, random)
  const fast = situation.destinationActive || !situation.directAlive
  const range = fast ? RELAY_ACTIVE_INTERVAL_MS : RELAY_IDLE_INTERVAL_MS
  const pairs = fast ? situation.pairs?.fast : situation.pairs?.idle
  const cappedMs = pairs === undefined ? 0 : (pairs * 1000) / (fast ? RELAY_PROBE_RATE.fastPerSecond : RELAY_PROBE_RATE.idlePerSecond)
  // ±10 % around the capped interval, like the ranges, so pairs do not fall into step.
  return jitteredDelayMs(cappedMs > range.min ? { min: cappedMs * 0.9, max: cappedMs * 1.1 } : range, random)
}

/**
 * Relayed probes ask the destination to answer over the same leg as our
 * direct probe (so the RTT difference is the forward difference), unless our
 * direct link to it is dead or missing; then the answer must come back through
 * the relay and the RTT is a full relayed round trip.
 */
export function returnLegFor(directAlive: boolean | undefined): ReturnLeg {
  return directAlive === true ? 'direct' : 'relay'
}

export { takeToken, type TokenBucket } from '../net/rate-limit.js'
