// RTM_*ROUTE messages: struct rtmsg followed by RTA_* attributes
// (include/uapi/linux/rtnetlink.h), laid out as iproute2 6.1 sends
// `ip route replace DST [via V] [src S] [metric M] table T proto P [scope S] [dev D] [onlink]`
// and `… nexthop via V dev D weight W [onlink] …`.

import { effectiveRouteScope } from '../route-defaults.js'
import type { NextHop, ObservedRoute, Route, RouteScope, RouteType } from '../types.js'
import { addressBytes, afOf, anyAddress, familyOfAf, formatIp, formatPrefix, parseIp, parsePrefix } from './inet.js'
import type { IfIndexOf, IfNameOf } from './linkinfo.js'
import { attr, attrMap, getU32, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, u16, u32, type NlRequest } from './nlattr.js'

export const RTM_NEWROUTE = 24
export const RTM_DELROUTE = 25
export const RTM_GETROUTE = 26

const RTA_DST = 1
const RTA_OIF = 4
const RTA_GATEWAY = 5
const RTA_PRIORITY = 6
const RTA_PREFSRC = 7
const RTA_MULTIPATH = 9
const RTA_TABLE = 15
const RTA_VIA = 18

/** Tables above 255 do not fit rtm_table: iproute2 sends RT_TABLE_UNSPEC there plus RTA_TABLE; dumps show RT_TABLE_COMPAT (252). */
export const RT_TABLE_UNSPEC = 0
export const RT_TABLE_COMPAT = 252

export const RTNH_F_ONLINK = 4
const RTM_F_CLONED = 0x200

export const RTMSG_SIZE = 12
const RTNEXTHOP_SIZE = 8

const ROUTE_TYPES: Record<RouteType, number> = { unicast: 1, blackhole: 6, unreachable: 7, throw: 9 }
const KERNEL_ROUTE_TYPES: Record<number, string> = {
  0: 'unspec', 1: 'unicast', 2: 'local', 3: 'broadcast', 4: 'anycast', 5: 'multicast',
  6: 'blackhole', 7: 'unreachable', 8: 'prohibit', 9: 'throw', 10: 'nat', 11: 'xresolve',
}
const SCOPES: Record<RouteScope, number> = { global: 0, link: 253, host: 254 }
const RT_SCOPE_NOWHERE = 255

function rtmsg(fields: { family: number; dstLen: number; table: number; protocol: number; scope: number; type: number; flags: number }): Buffer {
  const b = Buffer.alloc(RTMSG_SIZE)
  b.writeUInt8(fields.family, 0)
  b.writeUInt8(fields.dstLen, 1)
  // rtm_src_len, rtm_tos stay 0
  b.writeUInt8(fields.table > 255 ? RT_TABLE_UNSPEC : fields.table, 4)
  b.writeUInt8(fields.protocol, 5)
  b.writeUInt8(fields.scope, 6)
  b.writeUInt8(fields.type, 7)
  b.writeUInt32LE(fields.flags, 8)
  return b
}

/** RTA_GATEWAY for a same-family gateway, RTA_VIA (family + address) for an IPv6 gateway of an IPv4 route. */
function gatewayAttr(routeFamily: 4 | 6, via: string): Buffer {
  const gw = parseIp(via)
  if (gw.family === routeFamily) return attr(RTA_GATEWAY, gw.bytes)
  return attr(RTA_VIA, Buffer.concat([u16(afOf(gw.family)), gw.bytes]))
}

/** One struct rtnexthop with its attributes. */
function rtnexthop(routeFamily: 4 | 6, hop: NextHop, ifindex: IfIndexOf): Buffer {
  const attrs = hop.via === undefined ? Buffer.alloc(0) : gatewayAttr(routeFamily, hop.via)
  const head = Buffer.alloc(RTNEXTHOP_SIZE)
  head.writeUInt16LE(RTNEXTHOP_SIZE + attrs.length, 0)
  head.writeUInt8(hop.onlink ? RTNH_F_ONLINK : 0, 2)
  // rtnh_hops is weight − 1.
  head.writeUInt8((hop.weight ?? 1) - 1, 3)
  head.writeInt32LE(ifindex(hop.dev), 4)
  return Buffer.concat([head, attrs])
}

/** `ip route replace DST … table T proto PROTOCOL` (NLM_F_CREATE|NLM_F_REPLACE) */
export function encodeRouteReplace(route: Route, protocol: number, ifindex: IfIndexOf): NlRequest {
  const dst = parsePrefix(route.dst)
  if (route.nexthop && route.multipath) throw new TypeError(`route ${route.dst}: both nexthop and multipath`)
  const attrs: Buffer[] = []
  // A /0 destination is `default`: iproute2 sends no RTA_DST for it.
  if (dst.length > 0) attrs.push(attr(RTA_DST, dst.bytes))
  if (route.nexthop?.via !== undefined) attrs.push(gatewayAttr(dst.family, route.nexthop.via))
  if (route.src !== undefined) attrs.push(attr(RTA_PREFSRC, parseIp(route.src).bytes))
  if (route.metric !== undefined) attrs.push(attr(RTA_PRIORITY, u32(route.metric)))
  if (route.table > 255) attrs.push(attr(RTA_TABLE, u32(route.table)))
  if (route.nexthop) attrs.push(attr(RTA_OIF, u32(ifindex(route.nexthop.dev))))
  if (route.multipath) attrs.push(attr(RTA_MULTIPATH, Buffer.concat(route.multipath.map((hop) => rtnexthop(dst.family, hop, ifindex)))))
  const header = rtmsg({
    family: afOf(dst.family),
    dstLen: dst.length,
    table: route.table,
    protocol,
    scope: SCOPES[effectiveRouteScope(route)],
    type: ROUTE_TYPES[route.type ?? 'unicast'],
    flags: route.nexthop?.onlink ? RTNH_F_ONLINK : 0,
  })
  return { type: RTM_NEWROUTE, flags: NLM_F_CREATE | NLM_F_REPLACE, payload: Buffer.concat([header, ...attrs]) }
}

/**
 * `ip route del DST [metric M] table T proto PROTOCOL`: matches by the route's
 * identity (family, table, dst, metric) and protocol, whatever its next hops.
 */
export function encodeRouteDel(route: Route, protocol: number): NlRequest {
  const dst = parsePrefix(route.dst)
  const attrs: Buffer[] = []
  if (dst.length > 0) attrs.push(attr(RTA_DST, dst.bytes))
  if (route.metric !== undefined) attrs.push(attr(RTA_PRIORITY, u32(route.metric)))
  if (route.table > 255) attrs.push(attr(RTA_TABLE, u32(route.table)))
  const header = rtmsg({
    family: afOf(dst.family),
    dstLen: dst.length,
    table: route.table,
    protocol,
    // "Any scope" for IPv4; iproute2 sends universe for IPv6, whose routes have no scope.
    scope: dst.family === 4 ? RT_SCOPE_NOWHERE : SCOPES.global,
    type: route.type === undefined ? 0 : ROUTE_TYPES[route.type],
    flags: 0,
  })
  return { type: RTM_DELROUTE, flags: 0, payload: Buffer.concat([header, ...attrs]) }
}

/** `ip [-6] route show table all` */
export function encodeRouteDump(family: 4 | 6 | 'all'): NlRequest {
  // AF_UNSPEC (0): every family's routes in one dump, as `ip route show table all` would need two for.
  return { type: RTM_GETROUTE, flags: NLM_F_DUMP, payload: rtmsg({ family: family === 'all' ? 0 : afOf(family), dstLen: 0, table: 0, protocol: 0, scope: 0, type: 0, flags: 0 }) }
}

function decodeGateway(attrs: Map<number, Buffer>): string | undefined {
  const gateway = attrs.get(RTA_GATEWAY)
  if (gateway) return formatIp(gateway)
  const via = attrs.get(RTA_VIA)
  return via && via.length > 2 ? formatIp(via.subarray(2)) : undefined
}

function decodeMultipath(data: Buffer, ifname: IfNameOf): NextHop[] {
  const hops: NextHop[] = []
  let offset = 0
  while (offset + RTNEXTHOP_SIZE <= data.length) {
    const length = data.readUInt16LE(offset)
    if (length < RTNEXTHOP_SIZE || offset + length > data.length) throw new Error(`malformed rtnexthop at offset ${offset}`)
    const flags = data.readUInt8(offset + 2)
    const hop: NextHop = { dev: ifname(data.readInt32LE(offset + 4)), weight: data.readUInt8(offset + 3) + 1 }
    const via = decodeGateway(attrMap(data.subarray(offset + RTNEXTHOP_SIZE, offset + length)))
    if (via !== undefined) hop.via = via
    if (flags & RTNH_F_ONLINK) hop.onlink = true
    hops.push(hop)
    offset += (length + 3) & ~3
  }
  return hops
}

/** Decodes one RTM_NEWROUTE message of a dump; undefined for other families and cached clones. */
export function decodeRoute(payload: Buffer, ifname: IfNameOf): ObservedRoute | undefined {
  const family = familyOfAf(payload.readUInt8(0))
  const flags = payload.readUInt32LE(8)
  if (family === undefined || flags & RTM_F_CLONED) return undefined
  const dstLen = payload.readUInt8(1)
  const scopeNumber = payload.readUInt8(6)
  const typeNumber = payload.readUInt8(7)
  const attrs = attrMap(payload.subarray(RTMSG_SIZE))
  const route: ObservedRoute = {
    family,
    table: getU32(attrs.get(RTA_TABLE)) ?? payload.readUInt8(4),
    dst: formatPrefix(attrs.get(RTA_DST) ?? anyAddress(family), dstLen),
    protocol: payload.readUInt8(5),
  }
  const type = (Object.keys(ROUTE_TYPES) as RouteType[]).find((t) => ROUTE_TYPES[t] === typeNumber)
  if (type) route.type = type
  else route.otherType = KERNEL_ROUTE_TYPES[typeNumber] ?? String(typeNumber)
  const scope = (Object.keys(SCOPES) as RouteScope[]).find((s) => SCOPES[s] === scopeNumber)
  if (scope) route.scope = scope
  const metric = getU32(attrs.get(RTA_PRIORITY))
  if (metric !== undefined) route.metric = metric
  const src = attrs.get(RTA_PREFSRC)
  if (src && src.length === addressBytes(family)) route.src = formatIp(src)
  const multipath = attrs.get(RTA_MULTIPATH)
  const oif = getU32(attrs.get(RTA_OIF))
  const via = decodeGateway(attrs)
  if (multipath) {
    route.multipath = decodeMultipath(multipath, ifname)
  } else if (oif !== undefined || via !== undefined) {
    const hop: NextHop = { dev: oif === undefined ? '' : ifname(oif) }
    if (via !== undefined) hop.via = via
    if (flags & RTNH_F_ONLINK) hop.onlink = true
    route.nexthop = hop
  }
  return route
}
