// The planner (design §2): members + negotiated links + chosen paths + config
// → the desired kernel state. Pure; the agent calls it on every change and
// hands the result to the reconciler.

import { Secret } from '../logging/secret.js'
import { meshSysctls } from '../kernel/sysctl.js'
import { LINK_PREFIX, RULE_PRIORITY_RANGE, TABLE_OVERLAY, type Address, type DesiredState, type Link, type Route, type Rule, type WireguardDevice } from '../kernel/types.js'

/** The table of direct routes only: traffic that arrived over a mesh link is routed here, so it crosses at most one relay. */
export const TABLE_DIRECT = TABLE_OVERLAY + 1
export const RULE_PRIORITY_FROM_MESH = RULE_PRIORITY_RANGE.first
export const RULE_PRIORITY_OVERLAY = RULE_PRIORITY_RANGE.first + 10
/** The link that holds the host's overlay address when the kernel has dummy. */
export const OVERLAY_LINK = `${LINK_PREFIX}self`
export const DEFAULT_KEEPALIVE_SECONDS = 25
/** WireGuard's per-packet overhead over IPv4 and IPv6 underlays (design §4). */
export const WIREGUARD_OVERHEAD = { 4: 60, 6: 80 } as const

export interface SelfInput {
  nodeId: string
  overlay4: string
  overlay6: string
  /** Where the overlay address lives (capabilities): a dummy link, or lo. */
  overlayDevice: 'dummy' | 'lo'
}

export interface PeerLink {
  peerId: string
  /** Interface name, ≤ 15 bytes, starting with LINK_PREFIX. */
  ifname: string
  listenPort: number
  peerPublicKey: string
  presharedKey?: Secret<string>
  /** The endpoint candidate in use; absent until one is known (the peer may reach us first). */
  endpoint?: { address: string; port: number }
  /** Link-local pair: ours and the peer's, IPv4 and IPv6. */
  local4: string
  peer4: string
  local6: string
  peer6: string
  /** MTU of the underlay route towards the endpoint, and its family. */
  underlayMtu: number
  underlayFamily: 4 | 6
}

export interface MemberInput {
  nodeId: string
  overlay4: string
  overlay6: string
}

/** The forward path chosen per destination: direct, or through one relay peer. */
export type PathChoice = { via: null } | { via: string }

export interface MeshInput {
  self: SelfInput
  privateKey: Secret<string>
  networkCidr4: string
  networkCidr6: string
  members: MemberInput[]
  links: PeerLink[]
  /** Missing destinations are routed direct. */
  paths: ReadonlyMap<string, PathChoice>
  keepaliveSeconds?: number
}

export function meshLinkMtu(link: Pick<PeerLink, 'underlayMtu' | 'underlayFamily'>): number {
  return link.underlayMtu - WIREGUARD_OVERHEAD[link.underlayFamily]
}

/**
 * Routes to a member over one link. `source` (the overlay table only) makes
 * traffic this host originates leave from its overlay address, not the link's
 * link-local one: through a relay the destination could not answer a
 * link-local address that is not on its own link with us.
 */
function hostRoutes(member: MemberInput, table: number, link: PeerLink, source?: { overlay4: string; overlay6: string }): Route[] {
  return [
    { table, dst: `${member.overlay4}/32`, ...(source ? { src: source.overlay4 } : {}), nexthop: { via: link.peer4, dev: link.ifname, onlink: true } },
    // IPv6 link-local gateways need the device; they are on-link by definition.
    { table, dst: `${member.overlay6}/128`, ...(source ? { src: source.overlay6 } : {}), nexthop: { via: link.peer6, dev: link.ifname } },
  ]
}

export function planMesh(input: MeshInput): DesiredState {
  const linkByPeer = new Map(input.links.map((l) => [l.peerId, l]))
  const links: Link[] = []
  const addresses: Address[] = []
  const wireguard: WireguardDevice[] = []
  const routes: Route[] = []

  const overlayLink = input.self.overlayDevice === 'dummy' ? OVERLAY_LINK : 'lo'
  if (input.self.overlayDevice === 'dummy') links.push({ kind: 'dummy', name: OVERLAY_LINK, up: true })
  addresses.push({ link: overlayLink, local: `${input.self.overlay4}/32` }, { link: overlayLink, local: `${input.self.overlay6}/128` })

  const sortedLinks = [...input.links].sort((a, b) => a.ifname.localeCompare(b.ifname))
  for (const link of sortedLinks) {
    links.push({ kind: 'wireguard', name: link.ifname, up: true, mtu: meshLinkMtu(link) })
    addresses.push({ link: link.ifname, local: `${link.local4}/32`, peer: `${link.peer4}/32` }, { link: link.ifname, local: `${link.local6}/128`, peer: `${link.peer6}/128` })
    wireguard.push({
      name: link.ifname,
      privateKey: input.privateKey,
      listenPort: link.listenPort,
      peers: [
        {
          publicKey: link.peerPublicKey,
          ...(link.presharedKey ? { presharedKey: link.presharedKey } : {}),
          ...(link.endpoint ? { endpoint: link.endpoint } : {}),
          allowedIps: ['0.0.0.0/0', '::/0'],
          persistentKeepaliveSeconds: input.keepaliveSeconds ?? DEFAULT_KEEPALIVE_SECONDS,
        },
      ],
    })
  }

  const members = [...input.members].filter((m) => m.nodeId !== input.self.nodeId).sort((a, b) => a.nodeId.localeCompare(b.nodeId))
  for (const member of members) {
    const direct = linkByPeer.get(member.nodeId)
    // Direct routes: what relayed traffic uses on its second (and last) leg.
    if (direct) routes.push(...hostRoutes(member, TABLE_DIRECT, direct))
    // Forward path: the chosen relay's link if it is usable, else direct.
    const choice = input.paths.get(member.nodeId) ?? { via: null }
    const relayLink = choice.via === null ? undefined : linkByPeer.get(choice.via)
    const forward = relayLink ?? direct
    if (forward) routes.push(...hostRoutes(member, TABLE_OVERLAY, forward, input.self))
  }

  const rules: Rule[] = [
    // Arrived over a mesh link: deliver directly, never relay again (so no loops).
    ...sortedLinks.flatMap((link): Rule[] => [
      { family: 4, priority: RULE_PRIORITY_FROM_MESH, iif: link.ifname, to: input.networkCidr4, table: TABLE_DIRECT },
      { family: 6, priority: RULE_PRIORITY_FROM_MESH, iif: link.ifname, to: input.networkCidr6, table: TABLE_DIRECT },
    ]),
    { family: 4, priority: RULE_PRIORITY_OVERLAY, to: input.networkCidr4, table: TABLE_OVERLAY },
    { family: 6, priority: RULE_PRIORITY_OVERLAY, to: input.networkCidr6, table: TABLE_OVERLAY },
  ]

  return { links, addresses, routes, rules, wireguard, sysctls: meshSysctls(sortedLinks.map((l) => l.ifname)) }
}
