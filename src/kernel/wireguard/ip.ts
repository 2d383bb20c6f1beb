// Small pure helpers for the textual IP forms WireGuard speaks: addresses,
// prefixes and endpoints. Comparisons go through bytes because the kernel and
// wireguard-go print canonical, host-bit-masked forms ("10.0.0.0/24" for a
// configured "10.0.0.1/24", "fd00::1" for "fd00:0::1"), and a string compare
// would make the reconciler see a difference on every pass.

import { isIP } from 'node:net'
import type { Endpoint } from '../types.js'

export interface ParsedIp {
  family: 4 | 6
  bytes: Uint8Array
  /** IPv6 scope ("eth0" in "fe80::1%eth0"), kept verbatim. */
  zone?: string
}

/** Parses an IPv4 or IPv6 address (IPv6 may carry a %zone); undefined when invalid. */
export function parseIp(text: string): ParsedIp | undefined {
  const percent = text.indexOf('%')
  const address = percent >= 0 ? text.slice(0, percent) : text
  const zone = percent >= 0 ? text.slice(percent + 1) : undefined
  const family = isIP(address)
  if (family === 4 && zone === undefined) return { family: 4, bytes: ipv4Bytes(address) }
  if (family === 6 && (zone === undefined || /^[\w.-]+$/.test(zone))) {
    const bytes = ipv6Bytes(address)
    return zone === undefined ? { family: 6, bytes } : { family: 6, bytes, zone }
  }
  return undefined
}

function ipv4Bytes(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number))
}

// Input is already validated by isIP, so the shape is known to be well formed.
function ipv6Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(16)
  let head = text
  if (text.includes('.')) {
    const lastColon = text.lastIndexOf(':')
    bytes.set(ipv4Bytes(text.slice(lastColon + 1)), 12)
    head = text.slice(0, lastColon + 1) + '0:0'
  }
  const [left = '', right] = head.split('::')
  const leftGroups = left === '' ? [] : left.split(':')
  const rightGroups = right === undefined || right === '' ? [] : right.split(':')
  const zeros: string[] = Array.from({ length: 8 - leftGroups.length - rightGroups.length }, () => '0')
  const groups = right === undefined ? leftGroups : [...leftGroups, ...zeros, ...rightGroups]
  groups.forEach((group, i) => {
    if (text.includes('.') && i >= 6) return
    const value = parseInt(group, 16)
    bytes[i * 2] = value >> 8
    bytes[i * 2 + 1] = value & 0xff
  })
  return bytes
}

/** Formats bytes as canonical text: dotted IPv4, RFC 5952 IPv6 (longest zero run compressed). */
export function formatIp(ip: ParsedIp): string {
  if (ip.family === 4) return Array.from(ip.bytes).join('.')
  const groups = Array.from({ length: 8 }, (_, i) => ((ip.bytes[i * 2] ?? 0) << 8) | (ip.bytes[i * 2 + 1] ?? 0))
  let bestStart = -1
  let bestLength = 1
  for (let i = 0; i < 8; ) {
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i]
    i = j === i ? i + 1 : j
  }
  const hex = groups.map((g) => g.toString(16))
  const text =
    bestStart < 0
      ? hex.join(':')
      : `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`
  return ip.zone === undefined ? text : `${text}%${ip.zone}`
}

/** Parses "addr/len"; undefined when the address or the prefix length is invalid. */
export function parseCidr(text: string): { ip: ParsedIp; prefix: number } | undefined {
  const slash = text.indexOf('/')
  if (slash < 0) return undefined
  const ip = parseIp(text.slice(0, slash))
  const prefixText = text.slice(slash + 1)
  if (ip === undefined || ip.zone !== undefined || !/^\d{1,3}$/.test(prefixText)) return undefined
  const prefix = Number(prefixText)
  return prefix <= ip.bytes.length * 8 ? { ip, prefix } : undefined
}

/** The canonical form with host bits cleared ("10.0.0.1/24" → "10.0.0.0/24"); the input when invalid. */
export function canonicalCidr(text: string): string {
  const parsed = parseCidr(text)
  if (parsed === undefined) return text
  const bytes = parsed.ip.bytes.map((byte, i) => {
    const keep = Math.max(0, Math.min(8, parsed.prefix - i * 8))
    return byte & ((0xff << (8 - keep)) & 0xff)
  })
  return `${formatIp({ family: parsed.ip.family, bytes })}/${parsed.prefix}`
}

/** "1.2.3.4:51820" or "[fd00::1]:51820", as `wg` and the UAPI write endpoints. */
export function formatEndpoint(endpoint: Endpoint): string {
  return endpoint.address.includes(':') ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`
}

/** Parses an endpoint in the form formatEndpoint writes; undefined when invalid. */
export function parseEndpoint(text: string): Endpoint | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text)
  if (match === null) return undefined
  const address = match[1] ?? match[2] ?? ''
  const port = Number(match[3])
  const ip = parseIp(address)
  if (ip === undefined || port > 65535 || (match[1] !== undefined) !== (ip.family === 6)) return undefined
  return { address, port }
}

/** Whether two endpoints name the same address (by value) and port. */
export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  const [x, y] = [parseIp(a.address), parseIp(b.address)]
  const same = x !== undefined && y !== undefined ? formatIp(x) === formatIp(y) : a.address === b.address
  return same && a.port === b.port
}
