// Control traffic over the pair link (issue 4, item 1): two members behind
// NAT talk libp2p through a relaying member, and DCUtR cannot upgrade that
// over TCP (js-libp2p's TCP transport does not dial from its listen port, so
// there is no simultaneous open). Their WireGuard link, though, often does
// come up directly (UDP hole punching through endpoint-independent NATs). Once
// it has, the member with the smaller id dials the other's libp2p port at its
// link-local address, through the tunnel, and the relayed connections are
// closed; the other side tries too if that has not happened after a while.
// Pure decisions here; the agent does the dials.

import type { EndpointCandidate } from '../membership/records.js'

/** How libp2p reaches a member now: over the underlay, through its pair link, only through a relay, or not at all. */
export type ControlRoute = 'direct' | 'pair-link' | 'relayed' | null

/** The larger node id waits this long for the smaller one's dial before it dials itself. */
export const PAIR_LINK_DIAL_WAIT_MS = 10_000
/** After a failed dial over a pair link, the next try. */
export const PAIR_LINK_RETRY_MS = 10_000

const ipv4Of = (remoteAddress: string): string | undefined => /^\/ip4\/([^/]+)\//.exec(remoteAddress)?.[1]

/** Whether a connection's remote address is the peer's end of the pair link (an inbound one comes from there too). */
export function overPairLink(remoteAddress: string, peer4: string | undefined): boolean {
  return peer4 !== undefined && !remoteAddress.includes('/p2p-circuit') && ipv4Of(remoteAddress) === peer4
}

export function classifyControl(remoteAddresses: readonly string[], peer4: string | undefined): ControlRoute {
  if (remoteAddresses.length === 0) return null
  if (remoteAddresses.some((address) => overPairLink(address, peer4))) return 'pair-link'
  if (remoteAddresses.some((address) => !address.includes('/p2p-circuit'))) return 'direct'
  return 'relayed'
}

/** The member's libp2p TCP port, from its record: an interface or observed candidate carries the listen port itself (a configured one may be a forward). */
export function libp2pPortOf(endpoints: readonly EndpointCandidate[]): number | undefined {
  return (endpoints.find((e) => e.source !== 'configured') ?? endpoints[0])?.port
}

export interface PairLinkCandidate {
  peer: string
  /** Current libp2p connections' remote addresses. */
  connections: readonly string[]
  /** The pair link had a recent handshake and the prober does not hold it dead. */
  linkUp: boolean
  peer4?: string
  libp2pPort?: number
}

export interface PairLinkDialState {
  /** When each peer first needed a dial (for the larger id's wait). */
  readonly neededSince: ReadonlyMap<string, number>
  /** Last dial attempt per peer. */
  readonly lastAttempt: ReadonlyMap<string, number>
}

export const emptyPairLinkDialState: PairLinkDialState = { neededSince: new Map(), lastAttempt: new Map() }

export interface PairLinkDial {
  peer: string
  address: string
}

/** Which members to dial over their pair link now, and the next state (the attempts count as made). */
export function pairLinkDials(self: string, candidates: readonly PairLinkCandidate[], state: PairLinkDialState, now: number): { dials: PairLinkDial[]; state: PairLinkDialState } {
  const neededSince = new Map<string, number>()
  const lastAttempt = new Map<string, number>()
  const dials: PairLinkDial[] = []
  for (const candidate of candidates) {
    const { peer, peer4, libp2pPort } = candidate
    const previousAttempt = state.lastAttempt.get(peer)
    if (previousAttempt !== undefined && now - previousAttempt < PAIR_LINK_RETRY_MS) lastAttempt.set(peer, previousAttempt)
    // Only a member reached through relays alone, or not at all: a direct connection over the underlay needs no help.
    const route = classifyControl(candidate.connections, peer4)
    if (!candidate.linkUp || peer4 === undefined || libp2pPort === undefined || (route !== 'relayed' && route !== null)) continue
    const since = state.neededSince.get(peer) ?? now
    neededSince.set(peer, since)
    if (lastAttempt.has(peer)) continue
    if (self > peer && now - since < PAIR_LINK_DIAL_WAIT_MS) continue
    dials.push({ peer, address: `/ip4/${peer4}/tcp/${libp2pPort}/p2p/${peer}` })
    lastAttempt.set(peer, now)
  }
  return { dials, state: { neededSince, lastAttempt } }
}
