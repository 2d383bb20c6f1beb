// Small, strict IP address helpers for membership: parsing at the edge,
// canonical text out (RFC 5952 for IPv6), and CIDR arithmetic for IPv4.
// Everything returns undefined for bad input instead of throwing.

import { isIPv6 } from 'node:net'

export interface Ipv4Cidr {
  /** Network address as an unsigned 32-bit integer (host bits zero). */
  readonly base: number
  readonly prefix: number
}

export interface Ipv6Cidr {
  readonly base: Uint8Array
  readonly prefix: number
}

const IPV4_OCTET = /^(0|[1-9][0-9]{0,2})$/

/** Strict dotted-quad: four decimal octets, no leading zeros, nothing else. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.')
  if (parts.length !== 4) return undefined
  let value = 0
  for (const part of parts) {
    if (!IPV4_OCTET.test(part)) return undefined
    const octet = Number(part)
    if (octet > 255) return undefined
    value = value * 256 + octet
  }
  return value
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff].join('.')
}

export function ipv4ToBytes(value: number): Uint8Array {
  return Uint8Array.of(value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff)
}

export function ipv4FromBytes(bytes: Uint8Array): number {
  return (((bytes[0] ?? 0) << 24) | ((bytes[1] ?? 0) << 16) | ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0)) >>> 0
}

/** Parses IPv6 text (with `::` and an optional dotted IPv4 tail) into 16 bytes. */
export function parseIpv6(text: string): Uint8Array | undefined {
  if (!isIPv6(text) || text.includes('%')) return undefined
  // A dotted IPv4 tail ("::ffff:192.0.2.1") becomes its two hex groups.
  let head = text
  const lastColon = text.lastIndexOf(':')
  const dotted = text.slice(lastColon + 1)
  if (dotted.includes('.')) {
    const v4 = parseIpv4(dotted)
    if (v4 === undefined) return undefined
    head = `${text.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`
  }
  const [left = '', right, extra] = head.split('::')
  if (extra !== undefined) return undefined
  const groups = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)))
  const leftGroups = groups(left)
  const rightGroups = right === undefined ? [] : groups(right)
  const missing = 8 - leftGroups.length - rightGroups.length
  if (right === undefined ? missing !== 0 : missing < 1) return undefined
  const all = [...leftGroups, ...new Array<number>(missing).fill(0), ...rightGroups]
  const bytes = new Uint8Array(16)
  all.forEach((group, i) => {
    bytes[2 * i] = group >>> 8
    bytes[2 * i + 1] = group & 0xff
  })
  return bytes
}

/** Canonical IPv6 text per RFC 5952: lowercase, no leading zeros, longest zero run (≥ 2 groups) as `::`. */
export function formatIpv6(bytes: Uint8Array): string {
  const groups: number[] = []
  for (let i = 0; i < 8; i++) groups.push(((bytes[2 * i] ?? 0) << 8) | (bytes[2 * i + 1] ?? 0))
  let bestStart = -1
  let bestLength = 0
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  const hex = (list: number[]): string => list.map((g) => g.toString(16)).join(':')
  if (bestLength < 2) return hex(groups)
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`
}

function parsePrefix(text: string | undefined, max: number): number | undefined {
  if (text === undefined || !/^(0|[1-9][0-9]?|1[0-2][0-9])$/.test(text)) return undefined
  const prefix = Number(text)
  return prefix <= max ? prefix : undefined
}

export function ipv4Mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
}

/**
 * "a.b.c.d/p" with host bits zero. A bare address is not a CIDR here:
 * callers that accept one say so (see parseIpv4Route).
 */
export function parseIpv4Cidr(text: string): Ipv4Cidr | undefined {
  const [address, prefixText, extra] = text.split('/')
  if (address === undefined || extra !== undefined) return undefined
  const base = parseIpv4(address)
  const prefix = parsePrefix(prefixText, 32)
  if (base === undefined || prefix === undefined) return undefined
  if ((base & ~ipv4Mask(prefix)) >>> 0 !== 0) return undefined
  return { base, prefix }
}

/** Like parseIpv4Cidr, but a bare address means /32 and host bits are masked off (kernel route output). */
export function parseIpv4Route(text: string): Ipv4Cidr | undefined {
  const [address, prefixText, extra] = text.split('/')
  if (address === undefined || extra !== undefined) return undefined
  const value = parseIpv4(address)
  const prefix = prefixText === undefined ? 32 : parsePrefix(prefixText, 32)
  if (value === undefined || prefix === undefined) return undefined
  return { base: (value & ipv4Mask(prefix)) >>> 0, prefix }
}

export function formatIpv4Cidr(cidr: Ipv4Cidr): string {
  return `${formatIpv4(cidr.base)}/${cidr.prefix}`
}

/** "x::/p" with host bits zero. */
export function parseIpv6Cidr(text: string): Ipv6Cidr | undefined {
  const [address, prefixText, extra] = text.split('/')
  if (address === undefined || extra !== undefined) return undefined
  const base = parseIpv6(address)
  const prefix = parsePrefix(prefixText, 128)
  if (base === undefined || prefix === undefined) return undefined
  for (let bit = prefix; bit < 128; bit++) {
    if (((base[bit >> 3] ?? 0) & (0x80 >> (bit & 7))) !== 0) return undefined
  }
  return { base, prefix }
}

export function ipv4CidrSize(cidr: Ipv4Cidr): number {
  return 2 ** (32 - cidr.prefix)
}

export function ipv4CidrContains(cidr: Ipv4Cidr, address: number): boolean {
  return (address & ipv4Mask(cidr.prefix)) >>> 0 === cidr.base
}

/** Two prefixes overlap exactly when one contains the other's network address. */
export function ipv4CidrsOverlap(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  const shorter = Math.min(a.prefix, b.prefix)
  const mask = ipv4Mask(shorter)
  return (a.base & mask) >>> 0 === (b.base & mask) >>> 0
}

export function ipv6CidrContains(cidr: Ipv6Cidr, address: Uint8Array): boolean {
  for (let bit = 0; bit < cidr.prefix; bit++) {
    const mask = 0x80 >> (bit & 7)
    if (((cidr.base[bit >> 3] ?? 0) & mask) !== ((address[bit >> 3] ?? 0) & mask)) return false
  }
  return true
}
