// RTM_*ADDR messages: struct ifaddrmsg followed by IFA_* attributes
// (include/uapi/linux/if_addr.h), in iproute2 6.1's order, plus IFA_PROTO,
// which iproute2 6.1 cannot send (`ip addr add … proto` arrived in 6.2).
//
// IFA_LOCAL vs IFA_ADDRESS: IFA_LOCAL is the address of this host; IFA_ADDRESS
// is the *prefix* address, which on a point-to-point address is the far end.
// The kernel keeps one prefix length, the peer's; the local half of a
// point-to-point address always decodes as a host prefix (/32, /128).

import type { Address, ObservedAddress } from '../types.js'
import { AF_UNSPEC, afOf, familyOfAf, formatPrefix, parsePrefix, type Prefix } from './inet.js'
import type { IfIndexOf, IfNameOf } from './linkinfo.js'
import { attr, attrMap, getU8, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, u8, type NlRequest } from './nlattr.js'

export const RTM_NEWADDR = 20
export const RTM_DELADDR = 21
export const RTM_GETADDR = 22

const IFA_ADDRESS = 1
const IFA_LOCAL = 2
const IFA_PROTO = 11

const RT_SCOPE_UNIVERSE = 0
const RT_SCOPE_HOST = 254

export const IFADDRMSG_SIZE = 8

function ifaddrmsg(fields: { family: number; prefixlen: number; scope: number; index: number }): Buffer {
  const b = Buffer.alloc(IFADDRMSG_SIZE)
  b.writeUInt8(fields.family, 0)
  b.writeUInt8(fields.prefixlen, 1)
  // ifa_flags (byte 2) stays 0
  b.writeUInt8(fields.scope, 3)
  b.writeUInt32LE(fields.index, 4)
  return b
}

interface ParsedAddress {
  local: Prefix
  peer: Prefix | undefined
}

function parseAddress(address: Address): ParsedAddress {
  const local = parsePrefix(address.local)
  const peer = address.peer === undefined ? undefined : parsePrefix(address.peer)
  if (peer && peer.family !== local.family) throw new TypeError(`address ${address.local} peer ${address.peer}: families differ`)
  return { local, peer }
}

/** iproute2's default_scope(): 127.0.0.0/8 is host scope; the kernel picks link scope for fe80::/10 itself. */
function defaultScope(local: Prefix): number {
  return local.family === 4 && local.bytes[0] === 127 ? RT_SCOPE_HOST : RT_SCOPE_UNIVERSE
}

function addrBody(address: Address, ifindex: IfIndexOf, scoped: boolean): Buffer[] {
  const { local, peer } = parseAddress(address)
  return [
    ifaddrmsg({
      family: afOf(local.family),
      prefixlen: (peer ?? local).length,
      scope: scoped ? defaultScope(local) : RT_SCOPE_UNIVERSE,
      index: ifindex(address.link),
    }),
    attr(IFA_LOCAL, local.bytes),
    attr(IFA_ADDRESS, (peer ?? local).bytes),
  ]
}

/** `ip addr add LOCAL [peer PEER] dev LINK proto PROTOCOL` */
export function encodeAddrAdd(address: Address, protocol: number, ifindex: IfIndexOf): NlRequest {
  return {
    type: RTM_NEWADDR,
    flags: NLM_F_CREATE | NLM_F_EXCL,
    payload: Buffer.concat([...addrBody(address, ifindex, true), attr(IFA_PROTO, u8(protocol))]),
  }
}

/** `ip addr del LOCAL [peer PEER] dev LINK` */
export function encodeAddrDel(address: Address, ifindex: IfIndexOf): NlRequest {
  return { type: RTM_DELADDR, flags: 0, payload: Buffer.concat(addrBody(address, ifindex, false)) }
}

/** `ip addr show` (both families) */
export function encodeAddrDump(): NlRequest {
  return { type: RTM_GETADDR, flags: NLM_F_DUMP, payload: ifaddrmsg({ family: AF_UNSPEC, prefixlen: 0, scope: 0, index: 0 }) }
}

/** Decodes one RTM_NEWADDR message; undefined for families other than IPv4/IPv6. */
export function decodeAddr(payload: Buffer, ifname: IfNameOf): ObservedAddress | undefined {
  const family = familyOfAf(payload.readUInt8(0))
  if (family === undefined) return undefined
  const prefixlen = payload.readUInt8(1)
  const index = payload.readUInt32LE(4)
  const attrs = attrMap(payload.subarray(IFADDRMSG_SIZE))
  const local = attrs.get(IFA_LOCAL)
  const prefixAddress = attrs.get(IFA_ADDRESS)
  const observed: ObservedAddress = { family, link: ifname(index), local: '' }
  if (local && prefixAddress && !local.equals(prefixAddress)) {
    observed.local = formatPrefix(local, family === 4 ? 32 : 128)
    observed.peer = formatPrefix(prefixAddress, prefixlen)
  } else {
    const only = local ?? prefixAddress
    if (!only) return undefined
    observed.local = formatPrefix(only, prefixlen)
  }
  const protocol = getU8(attrs.get(IFA_PROTO))
  if (protocol !== undefined) observed.protocol = protocol
  return observed
}
