// IP address and prefix parsing into canonical text, so that the planner can
// compare what it wants with what the kernel reports ("fd00:0::1" == "fd00::1").

import { isIPv4, isIPv6 } from 'node:net'
import { formatIpv6, parseIpv6 } from '../net/ip.js'
import type { Family } from './types.js'

export interface ParsedCidr {
  family: Family
  /** Canonical address text (RFC 5952 for IPv6). */
  address: string
  prefixLength: number
}

// A pass compares every route, address and allowed IP of the desired state with
// the kernel's, so the same few hundred strings are parsed on every pass: the
// pure functions below remember their answers (bounded, so a long-running agent
// whose addresses churn does not grow without limit).
const MEMO_LIMIT = 8192

function memo<T>(fn: (text: string) => T): (text: string) => T {
  const cache = new Map<string, T>()
  return (text) => {
    const hit = cache.get(text)
    if (hit !== undefined || cache.has(text)) return hit as T
    const value = fn(text)
    if (cache.size >= MEMO_LIMIT) cache.clear()
    cache.set(text, value)
    return value
  }
}

/** Parses "a.b.c.d/n" or "x::y/n"; a bare address gets the full-length prefix. Returns undefined when malformed. The result is shared: do not change it. */
export const parseCidr: (text: string) => Readonly<ParsedCidr> | undefined = memo(parseCidrOnce)

function parseCidrOnce(text: string): Readonly<ParsedCidr> | undefined {
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
  return Object.freeze({ family, address: canonicalIp(addressText), prefixLength })
}

export function ipFamily(address: string): Family | undefined {
  if (isIPv4(address)) return 4
  if (isIPv6(address) && !address.includes('%')) return 6
  return undefined
}

/** "fd00:0:0::01" → "fd00::1"; IPv4 unchanged. Assumes a valid address. */
export const canonicalIp: (address: string) => string = memo(canonicalIpOnce)

function canonicalIpOnce(address: string): string {
  if (isIPv4(address)) return address
  return formatIpv6(ipToBytes(address))
}

/** Canonical "address/prefix". Assumes a valid CIDR (validate first). */
export function canonicalCidr(text: string): string {
  const parsed = parseCidr(text)
  if (!parsed) throw new Error(`not a CIDR: ${text}`)
  return `${parsed.address}/${parsed.prefixLength}`
}

/** The network address of a CIDR with host bits cleared, canonical. */
export const networkOf: (text: string) => string = memo(networkOfOnce)

function networkOfOnce(text: string): string {
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
  const bytes = parseIpv6(address)
  if (!bytes) throw new Error(`not an IP address: ${address}`)
  return bytes
}
