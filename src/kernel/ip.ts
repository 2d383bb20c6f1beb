// IP address and prefix parsing into canonical text, so that the planner can
// compare what it wants with what the kernel reports ("fd00:0::1" == "fd00::1").

import { isIPv4, isIPv6 } from 'node:net'
import type { Family } from './types.js'

export interface ParsedCidr {
  family: Family
  /** Canonical address text (RFC 5952 for IPv6). */
  address: string
  prefixLength: number
}

/** Parses "a.b.c.d/n" or "x::y/n"; a bare address gets the full-length prefix. Returns undefined when malformed. */
export function parseCidr(text: string): ParsedCidr | undefined {
  const slash = text.indexOf('/')
  const addressText = slash < 0 ? text : text.slice(0, slash)
  const family = ipFamily(addressText)
  if (family === undefined) return undefined
  const max = family === 4 ? 32 : 128
  let prefixLength = max
  if (slash >= 0) {
    const lengthText = text.slice(slash + 1)
    if (!/^\d{1,3}$/.test(lengthText)) return undefined
    prefixLength = Number(lengthText)
    if (prefixLength > max) return undefined
  }
  return { family, address: canonicalIp(addressText), prefixLength }
}

export function ipFamily(address: string): Family | undefined {
  if (isIPv4(address)) return 4
  if (isIPv6(address) && !address.includes('%')) return 6
  return undefined
}

/** "fd00:0:0::01" → "fd00::1"; IPv4 unchanged. Assumes a valid address. */
export function canonicalIp(address: string): string {
  if (isIPv4(address)) return address
  return formatIpv6(ipv6ToBytes(address))
}

/** Canonical "address/prefix". Assumes a valid CIDR (validate first). */
export function canonicalCidr(text: string): string {
  const parsed = parseCidr(text)
  if (!parsed) throw new Error(`not a CIDR: ${text}`)
  return `${parsed.address}/${parsed.prefixLength}`
}

/** The network address of a CIDR with host bits cleared, canonical. */
export function networkOf(text: string): string {
  const parsed = parseCidr(text)
  if (!parsed) throw new Error(`not a CIDR: ${text}`)
  const bytes = ipToBytes(parsed.address)
  for (let bit = parsed.prefixLength; bit < bytes.length * 8; bit++) {
    const index = bit >> 3
    bytes[index] = (bytes[index] ?? 0) & ~(0x80 >> (bit & 7))
  }
  const address = parsed.family === 4 ? [...bytes].join('.') : formatIpv6(bytes)
  return `${address}/${parsed.prefixLength}`
}

export function ipToBytes(address: string): Uint8Array {
  if (isIPv4(address)) return Uint8Array.from(address.split('.').map(Number))
  return ipv6ToBytes(address)
}

function ipv6ToBytes(address: string): Uint8Array {
  let text = address
  // An embedded IPv4 tail ("::ffff:1.2.3.4") becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4?.[1]) {
    const [a = 0, b = 0, c = 0, d = 0] = v4[1].split('.').map(Number)
    text = text.slice(0, -v4[1].length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':')
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length
  const groups = [...headGroups, ...Array<string>(zeros).fill('0'), ...tailGroups]
  const bytes = new Uint8Array(16)
  groups.forEach((group, i) => {
    const value = parseInt(group, 16)
    bytes[i * 2] = value >> 8
    bytes[i * 2 + 1] = value & 0xff
  })
  return bytes
}

/** RFC 5952 text: lowercase, longest run (≥ 2) of zero groups compressed. */
export function formatIpv6(bytes: Uint8Array): string {
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0))
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
  const hex = groups.map((g) => g.toString(16))
  if (bestLength < 2) return hex.join(':')
  const head = hex.slice(0, bestStart).join(':')
  const tail = hex.slice(bestStart + bestLength).join(':')
  return `${head}::${tail}`
}
