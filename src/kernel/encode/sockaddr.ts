// struct sockaddr_in / sockaddr_in6 as WireGuard's WGPEER_A_ENDPOINT carries
// them (include/uapi/linux/in.h, in6.h): family in host byte order, port and
// address in network byte order.

import type { Endpoint } from '../types.js'
import { AF_INET, AF_INET6, formatIp, parseIp } from './inet.js'

export const SOCKADDR_IN_SIZE = 16
export const SOCKADDR_IN6_SIZE = 28

/**
 * Encodes an endpoint. IPv6 link-local endpoints may carry a numeric zone,
 * "fe80::1%3", which becomes sin6_scope_id.
 */
export function encodeSockaddr(endpoint: Endpoint): Buffer {
  if (!Number.isInteger(endpoint.port) || endpoint.port < 0 || endpoint.port > 0xffff) {
    throw new RangeError(`bad port ${endpoint.port}`)
  }
  const [address = '', zone] = endpoint.address.split('%')
  const ip = parseIp(address)
  if (ip.family === 4) {
    if (zone !== undefined) throw new TypeError(`IPv4 endpoint with a zone: ${endpoint.address}`)
    const sa = Buffer.alloc(SOCKADDR_IN_SIZE) // sin_zero stays zero
    sa.writeUInt16LE(AF_INET, 0)
    sa.writeUInt16BE(endpoint.port, 2)
    ip.bytes.copy(sa, 4)
    return sa
  }
  const scope = zone === undefined ? 0 : Number(zone)
  if (!Number.isInteger(scope) || scope < 0) throw new TypeError(`only numeric zones are supported: ${endpoint.address}`)
  const sa = Buffer.alloc(SOCKADDR_IN6_SIZE) // sin6_flowinfo stays zero
  sa.writeUInt16LE(AF_INET6, 0)
  sa.writeUInt16BE(endpoint.port, 2)
  ip.bytes.copy(sa, 8)
  sa.writeUInt32LE(scope, 24)
  return sa
}

/** Decodes a sockaddr_in or sockaddr_in6; undefined for AF_UNSPEC (no endpoint) or anything else. */
export function decodeSockaddr(sa: Buffer): Endpoint | undefined {
  if (sa.length < 2) return undefined
  const family = sa.readUInt16LE(0)
  if (family === AF_INET && sa.length >= SOCKADDR_IN_SIZE) {
    return { address: formatIp(sa.subarray(4, 8)), port: sa.readUInt16BE(2) }
  }
  if (family === AF_INET6 && sa.length >= SOCKADDR_IN6_SIZE) {
    const scope = sa.readUInt32LE(24)
    const address = formatIp(sa.subarray(8, 24))
    return { address: scope === 0 ? address : `${address}%${scope}`, port: sa.readUInt16BE(2) }
  }
  return undefined
}
