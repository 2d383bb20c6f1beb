// The probe budget, computed from the real packet sizes and the schedule, so
// docs/paths.md states figures a test keeps honest (test/unit/probe-budget.test.ts).

import { encodeProbePacket } from './codec.js'
import { ACTIVE_INTERVAL_MS, DIRECT_IDLE_PROBE_RATE_PER_SECOND, IDLE_INTERVAL_MS, RELAY_ACTIVE_INTERVAL_MS, RELAY_IDLE_INTERVAL_MS, RELAY_PROBE_RATE } from './schedule.js'

/** A libp2p PeerId string (Ed25519) is 52 characters. */
const NODE_ID = '12D3KooW' + 'x'.repeat(44)

/** Probe payload sizes in bytes. */
export const PROBE_PAYLOAD_BYTES = {
  echoRequest: encodeProbePacket({ type: 'echo-request', seq: 0 }).length,
  echoReply: encodeProbePacket({ type: 'echo-reply', seq: 0, responderDwellUs: 0, responderPath: null }).length,
  relayRequest: encodeProbePacket({ type: 'relay-request', seq: 0, returnLeg: 'direct', destination: NODE_ID }).length,
  relayForward: encodeProbePacket({ type: 'relay-forward', seq: 0, returnLeg: 'direct', requester: NODE_ID, relayDwellUs: 0 }).length,
  relayReply: encodeProbePacket({ type: 'relay-reply', seq: 0, returnLeg: 'direct', requester: NODE_ID, relayDwellUs: 0, responderDwellUs: 0 }).length,
  relayReturn: encodeProbePacket({ type: 'relay-return', seq: 0, destination: NODE_ID, relayDwellUs: 0, responderDwellUs: 0, returnDwellUs: 0 }).length,
} as const

/**
 * What WireGuard's transfer counters (`wg show … transfer`, rx/tx bytes) add
 * for one probe payload: the inner IPv4+UDP packet (payload + 28) padded to a
 * multiple of 16, plus the data message header and tag (32).
 */
export function wireguardTransferBytes(payloadBytes: number): number {
  return Math.ceil((payloadBytes + 28) / 16) * 16 + 32
}

/** Bytes on the underlay for one probe payload: the WireGuard message plus outer IPv4+UDP (28). Link-layer framing not counted. */
export function wireBytes(payloadBytes: number): number {
  return wireguardTransferBytes(payloadBytes) + 28
}

const mean = (range: { min: number; max: number }): number => (range.min + range.max) / 2

export interface ProbeBudget {
  /** Bytes/s one node sends for direct probing of one peer: its own requests plus its replies to the peer's. Received is the same. */
  directPerPeer: number
  /**
   * Bytes/s one node sends for relayed probing, per destination, when every
   * node probes `relaysPerDestination` relays per destination: by symmetry it
   * is as often requester as relay and destination (return leg direct).
   */
  relayPerPeer: number
  perPeer: number
  /** For `peers` peers. */
  perNode: number
}

export function probeBudget(options: { peers: number; relaysPerDestination: number; active: boolean }): ProbeBudget {
  // Idle links share the node's cap on idle direct probes; active ones are never capped.
  const directRate = options.active
    ? 1000 / mean(ACTIVE_INTERVAL_MS)
    : Math.min(1000 / mean(IDLE_INTERVAL_MS), options.peers > 0 ? DIRECT_IDLE_PROBE_RATE_PER_SECOND / options.peers : Number.POSITIVE_INFINITY)
  // Per (destination, relay) pair, within the node's cap on all its relayed probes together.
  const pairs = options.peers * options.relaysPerDestination
  const cap = options.active ? RELAY_PROBE_RATE.fastPerSecond : RELAY_PROBE_RATE.idlePerSecond
  const relayRate = Math.min(1000 / mean(options.active ? RELAY_ACTIVE_INTERVAL_MS : RELAY_IDLE_INTERVAL_MS), pairs > 0 ? cap / pairs : Number.POSITIVE_INFINITY)
  const p = PROBE_PAYLOAD_BYTES
  const directPerPeer = directRate * (wireBytes(p.echoRequest) + wireBytes(p.echoReply))
  const relayedProbeBytes = wireBytes(p.relayRequest) + wireBytes(p.relayForward) + wireBytes(p.relayReply)
  const relayPerPeer = options.relaysPerDestination * relayRate * relayedProbeBytes
  const perPeer = directPerPeer + relayPerPeer
  return { directPerPeer, relayPerPeer, perPeer, perNode: perPeer * options.peers }
}
