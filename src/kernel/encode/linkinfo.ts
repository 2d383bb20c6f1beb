// IFLA_LINKINFO: the kind-specific half of RTM_NEWLINK, one encoder per link
// kind, laid out exactly as iproute2 6.1 lays it out (attribute order and the
// defaults it always sends), so test/unit/linkinfo.test.ts can compare bytes
// with captured `ip link add` messages. Attribute numbers: include/uapi/linux/if_link.h.

import type { BondLink, GreLink, Link, VxlanLink } from '../types.js'
import { BOND_MODES } from '../types.js'
import { attr, attrList, attrMap, getStr, getU16be, getU32, getU32be, getU8, nest, u16, u16be, u32, u32be, u8 } from './nlattr.js'
import { formatIp, parseIp } from './inet.js'

export const IFLA_LINKINFO = 18
export const IFLA_INFO_KIND = 1
export const IFLA_INFO_DATA = 2
export const IFLA_INFO_SLAVE_KIND = 4

const IFLA_GRE = {
  LINK: 1, IFLAGS: 2, OFLAGS: 3, IKEY: 4, OKEY: 5, LOCAL: 6, REMOTE: 7, TTL: 8, TOS: 9, PMTUDISC: 10,
  ENCAP_TYPE: 14, ENCAP_FLAGS: 15, ENCAP_SPORT: 16, ENCAP_DPORT: 17, FWMARK: 20,
} as const
/** GRE_KEY in the GRE header flags, network byte order (include/uapi/linux/if_tunnel.h). */
const GRE_KEY = 0x2000

const IFLA_VXLAN = { ID: 1, LINK: 3, LOCAL: 4, LEARNING: 7, PORT: 15, LOCAL6: 17 } as const

const IFLA_BOND = { MODE: 1, MIIMON: 3, ARP_INTERVAL: 7, ARP_IP_TARGET: 8 } as const

/** Resolves a link name to its ifindex; the caller throws ENODEV for unknown names. */
export type IfIndexOf = (name: string) => number
/** Names an ifindex; unknown indexes print as `if<N>` like iproute2. */
export type IfNameOf = (index: number) => string

const noIndex: IfIndexOf = (name) => {
  throw new TypeError(`no ifindex resolver for ${name}`)
}

/** The IFLA_LINKINFO attribute for `ip link add NAME type KIND …`. */
export function encodeLinkInfo(link: Link, ifindex: IfIndexOf = noIndex): Buffer {
  // iproute2 sends the kind without a NUL terminator (strlen, not strlen + 1).
  const kind = attr(IFLA_INFO_KIND, Buffer.from(link.kind))
  switch (link.kind) {
    case 'gre':
    case 'gretap':
      return nest(IFLA_LINKINFO, [kind, nest(IFLA_INFO_DATA, greInfoData(link, ifindex))])
    case 'vxlan':
      return nest(IFLA_LINKINFO, [kind, nest(IFLA_INFO_DATA, vxlanInfoData(link, ifindex))])
    case 'bond':
      return nest(IFLA_LINKINFO, [kind, nest(IFLA_INFO_DATA, bondInfoData(link))])
    case 'wireguard':
    case 'dummy':
    case 'bridge':
      // No kind-specific data: `ip link add NAME type KIND` sends the kind alone.
      return nest(IFLA_LINKINFO, [kind])
  }
}

/** `type gre|gretap local L remote R [ttl T] [key K] [dev D]` */
function greInfoData(link: GreLink, ifindex: IfIndexOf): Buffer[] {
  const local = parseIp(link.local)
  const remote = parseIp(link.remote)
  if (local.family !== 4 || remote.family !== 4) {
    // IPv6 underlays need the ip6gre/ip6gretap kinds, which the model does not have.
    throw new TypeError(`${link.kind} ${link.name}: local and remote must be IPv4`)
  }
  const key = link.key ?? 0
  const keyFlags = link.key === undefined ? 0 : GRE_KEY
  const data = [
    attr(IFLA_GRE.IKEY, u32be(key)),
    attr(IFLA_GRE.OKEY, u32be(key)),
    attr(IFLA_GRE.IFLAGS, u16be(keyFlags)),
    attr(IFLA_GRE.OFLAGS, u16be(keyFlags)),
    attr(IFLA_GRE.LOCAL, local.bytes),
    attr(IFLA_GRE.REMOTE, remote.bytes),
    // iproute2 always sends these defaults: path-MTU discovery on, TOS inherit (0).
    attr(IFLA_GRE.PMTUDISC, u8(1)),
    attr(IFLA_GRE.TOS, u8(0)),
  ]
  if (link.dev !== undefined) data.push(attr(IFLA_GRE.LINK, u32(ifindex(link.dev))))
  data.push(
    attr(IFLA_GRE.TTL, u8(link.ttl ?? 0)),
    attr(IFLA_GRE.FWMARK, u32(0)),
    attr(IFLA_GRE.ENCAP_TYPE, u16(0)),
    attr(IFLA_GRE.ENCAP_FLAGS, u16(0)),
    attr(IFLA_GRE.ENCAP_SPORT, u16be(0)),
    attr(IFLA_GRE.ENCAP_DPORT, u16be(0)),
  )
  return data
}

/** `type vxlan id VNI dstport PORT [local L] [dev D] [no]learning` */
function vxlanInfoData(link: VxlanLink, ifindex: IfIndexOf): Buffer[] {
  const data: Buffer[] = []
  if (link.dev !== undefined) data.push(attr(IFLA_VXLAN.LINK, u32(ifindex(link.dev))))
  data.push(attr(IFLA_VXLAN.ID, u32(link.vni)))
  if (link.local !== undefined) {
    const local = parseIp(link.local)
    data.push(attr(local.family === 4 ? IFLA_VXLAN.LOCAL : IFLA_VXLAN.LOCAL6, local.bytes))
  }
  data.push(attr(IFLA_VXLAN.LEARNING, u8(link.learning ? 1 : 0)))
  // The UDP port travels in network byte order.
  data.push(attr(IFLA_VXLAN.PORT, u16be(link.port)))
  return data
}

/** `type bond mode M [miimon MS] [arp_interval MS] [arp_ip_target A,B]` */
function bondInfoData(link: BondLink): Buffer[] {
  const data = [attr(IFLA_BOND.MODE, u8(BOND_MODES.indexOf(link.mode)))]
  if (link.miimonMs !== undefined) data.push(attr(IFLA_BOND.MIIMON, u32(link.miimonMs)))
  if (link.arpIntervalMs !== undefined) data.push(attr(IFLA_BOND.ARP_INTERVAL, u32(link.arpIntervalMs)))
  if (link.arpTargets !== undefined && link.arpTargets.length > 0) {
    // An array attribute: entries numbered from 0, each a be32 IPv4 address.
    const targets = link.arpTargets.map((target, i) => {
      const ip = parseIp(target)
      if (ip.family !== 4) throw new TypeError(`bond ${link.name}: arp_ip_target ${target} must be IPv4`)
      return attr(i, ip.bytes)
    })
    data.push(nest(IFLA_BOND.ARP_IP_TARGET, targets))
  }
  return data
}

export interface DecodedLinkInfo {
  kind: string | undefined
  /** IFLA_INFO_SLAVE_KIND: 'bridge' or 'bond' for an enslaved link. */
  slaveKind?: string
  /** Kind-specific fields, named like the Link types' fields. */
  info?: Record<string, unknown>
}

/** Decodes the payload of an IFLA_LINKINFO attribute from a link dump. */
export function decodeLinkInfo(payload: Buffer, ifname: IfNameOf): DecodedLinkInfo {
  const attrs = attrMap(payload)
  const kind = getStr(attrs.get(IFLA_INFO_KIND))
  const slaveKind = getStr(attrs.get(IFLA_INFO_SLAVE_KIND))
  const data = attrs.get(IFLA_INFO_DATA)
  const decoded: DecodedLinkInfo = { kind }
  if (slaveKind !== undefined) decoded.slaveKind = slaveKind
  if (data === undefined) return decoded
  switch (kind) {
    case 'gre':
    case 'gretap':
      decoded.info = decodeGreInfo(data, ifname)
      break
    case 'vxlan':
      decoded.info = decodeVxlanInfo(data, ifname)
      break
    case 'bond':
      decoded.info = decodeBondInfo(data)
      break
    default:
      break
  }
  return decoded
}

function decodeGreInfo(data: Buffer, ifname: IfNameOf): Record<string, unknown> {
  const a = attrMap(data)
  const info: Record<string, unknown> = {}
  const local = a.get(IFLA_GRE.LOCAL)
  const remote = a.get(IFLA_GRE.REMOTE)
  if (local) info.local = formatIp(local)
  if (remote) info.remote = formatIp(remote)
  const ttl = getU8(a.get(IFLA_GRE.TTL))
  if (ttl) info.ttl = ttl
  if (((getU16be(a.get(IFLA_GRE.IFLAGS)) ?? 0) & GRE_KEY) !== 0) info.key = getU32be(a.get(IFLA_GRE.IKEY))
  const dev = getU32(a.get(IFLA_GRE.LINK))
  if (dev) info.dev = ifname(dev)
  return info
}

function decodeVxlanInfo(data: Buffer, ifname: IfNameOf): Record<string, unknown> {
  const a = attrMap(data)
  const info: Record<string, unknown> = { vni: getU32(a.get(IFLA_VXLAN.ID)), port: getU16be(a.get(IFLA_VXLAN.PORT)) }
  const local = a.get(IFLA_VXLAN.LOCAL) ?? a.get(IFLA_VXLAN.LOCAL6)
  if (local && local.some((byte) => byte !== 0)) info.local = formatIp(local)
  const dev = getU32(a.get(IFLA_VXLAN.LINK))
  if (dev) info.dev = ifname(dev)
  const learning = getU8(a.get(IFLA_VXLAN.LEARNING))
  if (learning !== undefined) info.learning = learning !== 0
  return info
}

function decodeBondInfo(data: Buffer): Record<string, unknown> {
  const a = attrMap(data)
  const info: Record<string, unknown> = {}
  const mode = getU8(a.get(IFLA_BOND.MODE))
  if (mode !== undefined) info.mode = BOND_MODES[mode] ?? `mode${mode}`
  const miimon = getU32(a.get(IFLA_BOND.MIIMON))
  if (miimon !== undefined) info.miimonMs = miimon
  const arpInterval = getU32(a.get(IFLA_BOND.ARP_INTERVAL))
  if (arpInterval !== undefined) info.arpIntervalMs = arpInterval
  const targets = a.get(IFLA_BOND.ARP_IP_TARGET)
  if (targets) info.arpTargets = attrList(targets).map((t) => formatIp(t.data))
  return info
}
