// RTM_*LINK messages: struct ifinfomsg followed by IFLA_* attributes
// (include/uapi/linux/rtnetlink.h, if_link.h), in the order iproute2 6.1 sends them.

import type { LinkChange } from '../port.js'
import type { Link, LinkCounters, ObservedLink } from '../types.js'
import { decodeLinkInfo, encodeLinkInfo, IFLA_LINKINFO, type IfIndexOf, type IfNameOf } from './linkinfo.js'
import { attr, attrMap, findAttr, getStr, getU8, getU32, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, str, u32, type NlRequest } from './nlattr.js'

export const RTM_NEWLINK = 16
export const RTM_DELLINK = 17
export const RTM_GETLINK = 18

const IFLA_IFNAME = 3
const IFLA_MTU = 4
const IFLA_MASTER = 10
const IFLA_EXT_MASK = 29
const IFLA_CARRIER = 33
const IFLA_STATS64 = 23
/** RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS: what iproute2 asks for; keeps replies small. */
const EXT_MASK = 0x1 | 0x8

export const IFF_UP = 0x1

export const IFINFOMSG_SIZE = 16

function ifinfomsg(fields: { index?: number; flags?: number; change?: number } = {}): Buffer {
  const b = Buffer.alloc(IFINFOMSG_SIZE) // family AF_UNSPEC, type 0
  b.writeInt32LE(fields.index ?? 0, 4)
  b.writeUInt32LE(fields.flags ?? 0, 8)
  b.writeUInt32LE(fields.change ?? 0, 12)
  return b
}

function upFlags(up: boolean | undefined): { flags: number; change: number } {
  return up === undefined ? { flags: 0, change: 0 } : { flags: up ? IFF_UP : 0, change: IFF_UP }
}

/** `ip link show NAME` — how iproute2 resolves a name to an index. */
export function encodeLinkGet(name: string): NlRequest {
  return { type: RTM_GETLINK, flags: 0, payload: Buffer.concat([ifinfomsg(), attr(IFLA_EXT_MASK, u32(EXT_MASK)), attr(IFLA_IFNAME, str(name))]) }
}

/** `ip -d link show` */
export function encodeLinkDump(): NlRequest {
  return { type: RTM_GETLINK, flags: NLM_F_DUMP, payload: Buffer.concat([ifinfomsg(), attr(IFLA_EXT_MASK, u32(EXT_MASK))]) }
}

/** `ip -s link show`: like the dump above, but with each link's counters (no RTEXT_FILTER_SKIP_STATS). */
export function encodeLinkCountersDump(): NlRequest {
  return { type: RTM_GETLINK, flags: NLM_F_DUMP, payload: Buffer.concat([ifinfomsg(), attr(IFLA_EXT_MASK, u32(0x1))]) }
}

/** Name and byte counters (IFLA_STATS64: rx_packets, tx_packets, rx_bytes, tx_bytes, … as u64) of one link of that dump. */
export function decodeLinkCounters(payload: Buffer): LinkCounters | undefined {
  // Two lookups rather than a map of every attribute: this dump runs every few seconds, over every link.
  const attrs = payload.subarray(IFINFOMSG_SIZE)
  const name = getStr(findAttr(attrs, IFLA_IFNAME))
  const stats = findAttr(attrs, IFLA_STATS64)
  if (name === undefined || stats === undefined || stats.length < 32) return undefined
  return { name, rxBytes: Number(stats.readBigUInt64LE(16)), txBytes: Number(stats.readBigUInt64LE(24)) }
}

/** `ip link add NAME [mtu M] [up] [master B] type KIND …` */
export function encodeLinkAdd(link: Link, ifindex: IfIndexOf): NlRequest {
  // iproute2 order: options as parsed (mtu, master), then the name, then the kind.
  const attrs: Buffer[] = []
  if (link.mtu !== undefined) attrs.push(attr(IFLA_MTU, u32(link.mtu)))
  if (link.master !== undefined) attrs.push(attr(IFLA_MASTER, u32(ifindex(link.master))))
  attrs.push(attr(IFLA_IFNAME, str(link.name)), encodeLinkInfo(link, ifindex))
  // Without `up`, iproute2 leaves ifi_change clear: a new link starts down.
  const { flags, change } = upFlags(link.up ? true : undefined)
  return { type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, payload: Buffer.concat([ifinfomsg({ flags, change }), ...attrs]) }
}

/** `ip link set dev NAME [mtu M] [up|down] [master B|nomaster]` (RTM_NEWLINK without CREATE, as iproute2 sends it) */
export function encodeLinkSet(index: number, change: LinkChange, ifindex: IfIndexOf): NlRequest {
  const attrs: Buffer[] = []
  if (change.mtu !== undefined) attrs.push(attr(IFLA_MTU, u32(change.mtu)))
  // IFLA_MASTER 0 releases the link from its master (`nomaster`).
  if (change.master !== undefined) attrs.push(attr(IFLA_MASTER, u32(change.master === null ? 0 : ifindex(change.master))))
  return { type: RTM_NEWLINK, flags: 0, payload: Buffer.concat([ifinfomsg({ index, ...upFlags(change.up) }), ...attrs]) }
}

/** `ip link del NAME` */
export function encodeLinkDel(index: number): NlRequest {
  return { type: RTM_DELLINK, flags: 0, payload: ifinfomsg({ index }) }
}

/** Index and name of an RTM_NEWLINK message, for building the index→name map before full decoding. */
export function peekLink(payload: Buffer): { index: number; name: string | undefined } {
  return { index: payload.readInt32LE(4), name: getStr(findAttr(payload.subarray(IFINFOMSG_SIZE), IFLA_IFNAME)) }
}

/** Decodes one RTM_NEWLINK message of a dump. */
export function decodeLink(payload: Buffer, ifname: IfNameOf): ObservedLink {
  const index = payload.readInt32LE(4)
  const flags = payload.readUInt32LE(8)
  const attrs = attrMap(payload.subarray(IFINFOMSG_SIZE))
  const linkinfo = attrs.get(IFLA_LINKINFO)
  const decoded = linkinfo ? decodeLinkInfo(linkinfo, ifname) : { kind: undefined }
  const link: ObservedLink = {
    name: getStr(attrs.get(IFLA_IFNAME)) ?? ifname(index),
    index,
    kind: decoded.kind,
    mtu: getU32(attrs.get(IFLA_MTU)) ?? 0,
    up: (flags & IFF_UP) !== 0,
  }
  const carrier = getU8(attrs.get(IFLA_CARRIER))
  if (carrier !== undefined) link.carrier = carrier !== 0
  const master = getU32(attrs.get(IFLA_MASTER))
  if (master) link.master = ifname(master)
  if (decoded.info) link.info = decoded.info
  return link
}
