// The underlay MTU towards a peer's endpoint (issue 5 item 2), pure: the MTU of
// the device the main table's longest matching route leaves by. A mesh link is
// that minus WireGuard's overhead, so a PPPoE (1492) or tunnelled underlay
// gets a smaller mesh MTU instead of silently dropping full-size packets.
// Policy routing is not followed: the main table is what reaches endpoints on
// every host meshd has met so far.

import { ipv4CidrContains, ipv6CidrContains, parseIpv4, parseIpv4Route, parseIpv6, parseIpv6Cidr } from '../net/ip.js'
import type { ObservedLink, ObservedRoute } from '../kernel/types.js'

export const DEFAULT_UNDERLAY_MTU = 1500
export const MAIN_TABLE = 254
/** IPv6 never goes below 1280; an IPv4 underlay below 576 is broken, not small. */
const MINIMUM_MTU = { 4: 576, 6: 1280 } as const

/** The prefix length of `dst` if it contains `address` (same family), else undefined. */
function matchLength(dst: string, address: { v4?: number; v6?: Uint8Array }): number | undefined {
  if (address.v4 !== undefined) {
    const cidr = parseIpv4Route(dst)
    return cidr !== undefined && ipv4CidrContains(cidr, address.v4) ? cidr.prefix : undefined
  }
  if (address.v6 !== undefined) {
    const cidr = parseIpv6Cidr(dst.includes('/') ? dst : `${dst}/128`)
    return cidr !== undefined && ipv6CidrContains(cidr, address.v6) ? cidr.prefix : undefined
  }
  return undefined
}

/** The MTU towards `address`, or DEFAULT_UNDERLAY_MTU when no route or device says otherwise. */
export function underlayMtuTowards(address: string, routes: readonly ObservedRoute[], links: readonly ObservedLink[]): number {
  const bare = address.split('%')[0] ?? address
  const v4 = parseIpv4(bare)
  const v6 = v4 === undefined ? parseIpv6(bare) : undefined
  if (v4 === undefined && v6 === undefined) return DEFAULT_UNDERLAY_MTU
  let best: { prefixLength: number; dev: string } | undefined
  for (const route of routes) {
    if (route.table !== MAIN_TABLE || (route.type !== undefined && route.type !== 'unicast') || route.otherType !== undefined) continue
    const dev = route.nexthop?.dev ?? route.multipath?.[0]?.dev
    if (dev === undefined) continue
    const length = matchLength(route.dst, v4 === undefined ? (v6 === undefined ? {} : { v6 }) : { v4 })
    if (length === undefined) continue
    if (best === undefined || length > best.prefixLength) best = { prefixLength: length, dev }
  }
  const mtu = best === undefined ? undefined : links.find((l) => l.name === best.dev)?.mtu
  if (mtu === undefined) return DEFAULT_UNDERLAY_MTU
  return Math.max(mtu, MINIMUM_MTU[v4 === undefined ? 6 : 4])
}
