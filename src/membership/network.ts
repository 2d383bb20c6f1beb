// A meshd network: its name, secret, founder, address ranges and the id that
// binds them together. Creating one is pure (randomness is injected).
//
// The network id is a hash of (secret, founder, name, IPv4 CIDR). That anchors
// the founder: the founder is the one member admitted by definition, and a
// token holder who knows the secret cannot claim to be the founder of *this*
// network, because a different founder gives a different network id and every
// member refuses records for another network id.

import { Secret } from '../logging/secret.js'
import { domainHash, fromHex, hkdfSha256, toHex } from './codec.js'
import {
  formatIpv4Cidr,
  formatIpv6,
  ipv4CidrSize,
  ipv4CidrsOverlap,
  parseIpv4Cidr,
  parseIpv4Route,
  parseIpv6,
  type Ipv4Cidr,
} from '../net/ip.js'
import { publicKeyOfNodeId, type NodeId } from './keys.js'

declare const networkIdBrand: unique symbol
/** 16 bytes as 32 lowercase hex characters. */
export type NetworkId = string & { readonly [networkIdBrand]: true }
export const NETWORK_ID_BYTES = 16
export const NETWORK_SECRET_BYTES = 32

/** Everything a member knows about its network. `secret` prints as "[redacted]". */
export interface Network {
  readonly id: NetworkId
  readonly name: string
  readonly founder: NodeId
  readonly secret: Secret<Uint8Array>
  /** IPv4 overlay, e.g. "10.73.0.0/16". */
  readonly ipv4Cidr: string
  /** IPv6 ULA /48 (RFC 4193) derived from the id, e.g. "fd12:3456:789a::/48". */
  readonly ipv6Ula: string
}

/** The public part of a Network: what a record store needs to judge records. */
export type NetworkAnchor = Pick<Network, 'id' | 'founder' | 'ipv4Cidr' | 'ipv6Ula'>

/**
 * Default overlay: 10.73.0.0/16 (65 534 hosts). Not 100.64.0.0/10: that is
 * carrier-grade NAT space, which ISPs hand to hosts' underlay interfaces and
 * Tailscale also claims, and an overlay must never shadow the underlay. Among
 * RFC 1918 ranges the popular ones (10.0/16, 10.1/16, 192.168.x/24 home LANs,
 * 172.17+/16 Docker, 10.96/12 and 10.244/16 Kubernetes, 172.31/16 AWS default
 * VPCs) are avoided; 73 echoes meshd's route protocol number and tables (7300).
 * When the default overlaps a host route, the next free /16 is taken instead.
 */
export const DEFAULT_OVERLAY_CIDR = '10.73.0.0/16'
/** /8 at most (one hash space), /28 at least (14 hosts). */
export const OVERLAY_PREFIX_RANGE = { shortest: 8, longest: 28 } as const

export const NETWORK_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/
export const NETWORK_NAME_FIELD = { name: 'network name', minLength: 1, maxLength: 63, pattern: NETWORK_NAME_PATTERN } as const

/** Ranges an overlay may never use: they mean something else to every host. */
const RESERVED_IPV4: readonly { cidr: Ipv4Cidr; why: string }[] = [
  { cidr: { base: 0x00000000, prefix: 8 }, why: '"this network" (RFC 1122)' },
  { cidr: { base: 0x7f000000, prefix: 8 }, why: 'loopback' },
  { cidr: { base: 0xa9fe0000, prefix: 16 }, why: 'link-local, used by meshd for its pair links' },
  { cidr: { base: 0xe0000000, prefix: 4 }, why: 'multicast' },
  { cidr: { base: 0xf0000000, prefix: 4 }, why: 'reserved (240.0.0.0/4)' },
]

/** Where free overlays are looked for, in order, as [start, end) address ranges: 10/8 from 10.73.0.0 up, then all of 10/8, 172.16/12, 192.168/16. */
const SUGGESTION_RANGES: readonly { start: number; end: number }[] = [
  { start: 0x0a490000, end: 0x0b000000 },
  { start: 0x0a000000, end: 0x0b000000 },
  { start: 0xac100000, end: 0xac200000 },
  { start: 0xc0a80000, end: 0xc0a90000 },
]

export type Result<T> = { ok: true; value: T } | { ok: false; reason: string }

export interface CreateNetworkInit {
  name: string
  /** The creating host: the founder, admitted by definition. */
  founder: NodeId
  /** IPv4 overlay; omitted: DEFAULT_OVERLAY_CIDR, or the next free /16 after it. */
  cidr?: string
  /** Destinations of the routes already on the host (any table), e.g. from `ip route show table all`. IPv6 entries are ignored. */
  existingRoutes: readonly string[]
  /** Cryptographically secure random bytes (crypto.randomBytes in production). */
  random: (size: number) => Uint8Array
}

export function createNetwork(init: CreateNetworkInit): Result<Network> {
  if (!NETWORK_NAME_PATTERN.test(init.name)) {
    return { ok: false, reason: `invalid network name ${JSON.stringify(init.name.slice(0, 80))}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit` }
  }
  const routes = parseHostRoutes(init.existingRoutes)
  if (!routes.ok) return routes
  const cidr = init.cidr === undefined ? defaultOverlay(routes.value) : checkOverlay(init.cidr, routes.value)
  if (!cidr.ok) return cidr

  const secret = init.random(NETWORK_SECRET_BYTES)
  if (secret.length !== NETWORK_SECRET_BYTES) throw new RangeError(`random() returned ${secret.length} bytes, not ${NETWORK_SECRET_BYTES}`)
  const ipv4Cidr = formatIpv4Cidr(cidr.value)
  const id = networkIdFor({ secret: new Secret(secret), founder: init.founder, name: init.name, ipv4Cidr })
  return { ok: true, value: { id, name: init.name, founder: init.founder, secret: new Secret(secret), ipv4Cidr, ipv6Ula: ulaForNetwork(id) } }
}

/** The id that commits to the secret, the founder, the name and the overlay. */
export function networkIdFor(parts: { secret: Secret<Uint8Array>; founder: NodeId; name: string; ipv4Cidr: string }): NetworkId {
  const hash = domainHash('meshd/network-id/v1', parts.secret.reveal(), publicKeyOfNodeId(parts.founder), parts.name, parts.ipv4Cidr)
  return toHex(hash.subarray(0, NETWORK_ID_BYTES)) as NetworkId
}

export function parseNetworkId(text: string): NetworkId | undefined {
  return fromHex(text, NETWORK_ID_BYTES) === undefined ? undefined : (text as NetworkId)
}

/** RFC 4193: fd00::/8 ‖ 40-bit global id, here a hash of the network id instead of the RFC's time+EUI-64 (same purpose: unlikely to collide). */
export function ulaForNetwork(id: NetworkId): string {
  const globalId = domainHash('meshd/ula/v1', id).subarray(0, 5)
  const prefix = new Uint8Array(16)
  prefix[0] = 0xfd
  prefix.set(globalId, 1)
  return `${formatIpv6(prefix)}/48`
}

/**
 * The 32-byte libp2p private-network pre-shared key: HKDF-SHA256 of the
 * network secret with a fixed label, so the secret itself never becomes a
 * transport key and the two can be rotated independently of other uses.
 */
export function derivePnetKey(secret: Secret<Uint8Array>): Secret<Uint8Array> {
  return new Secret(hkdfSha256(secret.reveal(), 'meshd/libp2p-pnet/v1', 32))
}

/** The key in the swarm.key format that @libp2p/pnet's preSharedKey option reads. */
export function formatPnetKey(psk: Secret<Uint8Array>): Secret<Uint8Array> {
  return new Secret(new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${toHex(psk.reveal())}`))
}

// ── Overlay checks ───────────────────────────────────────────────────────────

function parseHostRoutes(routes: readonly string[]): Result<Ipv4Cidr[]> {
  const parsed: Ipv4Cidr[] = []
  for (const route of routes) {
    // "default" is how iproute2 prints 0.0.0.0/0 (and ::/0).
    if (route === 'default' || parseIpv6(route.split('/')[0] ?? '') !== undefined) continue
    const cidr = parseIpv4Route(route)
    if (cidr === undefined) return { ok: false, reason: `cannot read host route ${JSON.stringify(route.slice(0, 80))}` }
    // A default route covers everything; it does not claim the space.
    if (cidr.prefix > 0) parsed.push(cidr)
  }
  return { ok: true, value: parsed }
}

function checkOverlay(text: string, routes: readonly Ipv4Cidr[]): Result<Ipv4Cidr> {
  const cidr = parseIpv4Cidr(text)
  if (cidr === undefined) {
    const loose = parseIpv4Route(text)
    const hint = loose === undefined || !text.includes('/') ? '' : `; did you mean ${formatIpv4Cidr(loose)}?`
    return { ok: false, reason: `overlay ${JSON.stringify(text.slice(0, 80))} is not an IPv4 CIDR with host bits zero${hint}` }
  }
  const { shortest, longest } = OVERLAY_PREFIX_RANGE
  if (cidr.prefix < shortest || cidr.prefix > longest) {
    return { ok: false, reason: `overlay ${text} must have a prefix length between /${shortest} and /${longest}` }
  }
  const suggestion = (): string => {
    const free = suggestFreeOverlay(cidr.prefix, routes)
    return free === undefined ? '' : `; try ${formatIpv4Cidr(free)}`
  }
  const reserved = RESERVED_IPV4.find((range) => ipv4CidrsOverlap(range.cidr, cidr))
  if (reserved !== undefined) return { ok: false, reason: `overlay ${text} overlaps ${formatIpv4Cidr(reserved.cidr)} (${reserved.why})${suggestion()}` }
  const clash = routes.find((route) => ipv4CidrsOverlap(route, cidr))
  if (clash !== undefined) return { ok: false, reason: `overlay ${text} overlaps the host route ${formatIpv4Cidr(clash)}${suggestion()}` }
  return { ok: true, value: cidr }
}

function defaultOverlay(routes: readonly Ipv4Cidr[]): Result<Ipv4Cidr> {
  const free = suggestFreeOverlay(16, routes)
  if (free === undefined) return { ok: false, reason: 'every private /16 overlaps a host route; pass an overlay CIDR explicitly' }
  return { ok: true, value: free }
}

/** The first private block of `prefix` length that overlaps no host route, scanning from 10.73.0.0. */
export function suggestFreeOverlay(prefix: number, routes: readonly Ipv4Cidr[]): Ipv4Cidr | undefined {
  const blockSize = 2 ** (32 - prefix)
  for (const range of SUGGESTION_RANGES) {
    let candidate = Math.ceil(range.start / blockSize) * blockSize
    while (candidate + blockSize <= range.end) {
      const block = { base: candidate, prefix }
      const clash = routes.find((route) => ipv4CidrsOverlap(route, block))
      if (clash === undefined) return block
      // Skip past the whole clashing route: it may be much larger than a block.
      const clashEnd = clash.base + ipv4CidrSize(clash)
      candidate = Math.ceil(Math.max(candidate + blockSize, clashEnd) / blockSize) * blockSize
    }
  }
  return undefined
}
