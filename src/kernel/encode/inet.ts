// IP addresses and prefixes as the kernel sees them: network-order bytes.
// Formatting follows glibc's inet_ntop so decoded dumps read like `ip` output.

import { isIPv4, isIPv6 } from 'node:net'
import type { Family } from '../types.js'

export const AF_UNSPEC = 0
export const AF_INET = 2
export const AF_INET6 = 10

export interface IpBytes {
  family: Family
  /** 4 or 16 bytes, network order. */
  bytes: Buffer
}

export interface Prefix extends IpBytes {
  length: number
}

export function afOf(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6
}

export function familyOfAf(af: number): Family | undefined {
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : undefined
}

export function addressBytes(family: Family): number {
  return family === 4 ? 4 : 16
}

/** Parses "10.0.0.1" or "fd00::1" (no zone); throws on anything else. */
export function parseIp(text: string): IpBytes {
  if (isIPv4(text)) return { family: 4, bytes: Buffer.from(text.split('.').map(Number)) }
  if (isIPv6(text) && !text.includes('%')) return { family: 6, bytes: parseIpv6(text) }
  throw new TypeError(`not an IP address: ${JSON.stringify(text)}`)
}

function parseIpv6(text: string): Buffer {
  const bytes = Buffer.alloc(16)
  let tail = text
  let v4: Buffer | undefined
  // An embedded dotted quad fills the last 32 bits ("::ffff:10.0.0.1").
  const lastColon = tail.lastIndexOf(':')
  if (tail.slice(lastColon + 1).includes('.')) {
    v4 = parseIp(tail.slice(lastColon + 1)).bytes
    tail = tail.slice(0, lastColon + 1) + '0:0'
  }
  const [head = '', rest] = tail.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':')
  const zeros = 8 - headGroups.length - restGroups.length
  const groups = rest === undefined ? headGroups : [...headGroups, ...Array<string>(zeros).fill('0'), ...restGroups]
  groups.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2))
  if (v4) v4.copy(bytes, 12)
  return bytes
}

/** Formats 4 or 16 network-order bytes. */
export function formatIp(bytes: Buffer): string {
  if (bytes.length === 4) return Array.from(bytes).join('.')
  if (bytes.length !== 16) throw new TypeError(`not an IP address: ${bytes.length} bytes`)
  const words = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2))
  // The longest run of at least two zero words becomes "::" (the first on a tie), as in RFC 5952.
  let best = { base: -1, len: 0 }
  let cur = { base: -1, len: 0 }
  words.forEach((word, i) => {
    if (word === 0) {
      cur = cur.base === -1 ? { base: i, len: 1 } : { base: cur.base, len: cur.len + 1 }
      if (cur.len > best.len) best = cur
    } else {
      cur = { base: -1, len: 0 }
    }
  })
  if (best.len < 2) best = { base: -1, len: 0 }
  // glibc prints IPv4-compatible and IPv4-mapped addresses with a dotted quad.
  if (best.base === 0 && (best.len === 6 || (best.len === 5 && words[5] === 0xffff))) {
    return `::${best.len === 5 ? 'ffff:' : ''}${formatIp(bytes.subarray(12))}`
  }
  let text = ''
  for (let i = 0; i < 8; i++) {
    if (i === best.base) {
      text += '::'
      i += best.len - 1
      continue
    }
    if (text !== '' && !text.endsWith(':')) text += ':'
    text += (words[i] ?? 0).toString(16)
  }
  return text
}

/** Parses "10.1.0.0/24"; a bare address means a host prefix. */
export function parsePrefix(text: string): Prefix {
  const slash = text.indexOf('/')
  const ip = parseIp(slash === -1 ? text : text.slice(0, slash))
  const max = addressBytes(ip.family) * 8
  const lengthText = slash === -1 ? String(max) : text.slice(slash + 1)
  const length = Number(lengthText)
  if (!/^\d+$/.test(lengthText) || length > max) throw new TypeError(`bad prefix length in ${JSON.stringify(text)}`)
  return { ...ip, length }
}

export function formatPrefix(bytes: Buffer, length: number): string {
  return `${formatIp(bytes)}/${length}`
}

/** The all-zero address of a family: what an absent RTA_DST means. */
export function anyAddress(family: Family): Buffer {
  return Buffer.alloc(addressBytes(family))
}
