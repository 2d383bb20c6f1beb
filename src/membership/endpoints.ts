// Endpoint candidates: the addresses at which peers may reach this host,
// gathered from configuration, local interfaces and what others observed.
//
// In a peer record a candidate's port is the node's libp2p TCP port at that
// address (peers use it to dial back after a restart). WireGuard listen ports
// are per link, so link negotiation re-sends the same addresses with the
// link's own port.

import { networkInterfaces } from 'systeminformation/lib/network.js'
import { LINK_PREFIX } from '../kernel/types.js'
import { ipv4CidrContains, ipv6CidrContains, parseIpv4, parseIpv4Cidr, parseIpv6, parseIpv6Cidr, formatIpv6 } from '../net/ip.js'
import type { NetworkAnchor } from './network.js'
import { MAX_ENDPOINTS, type EndpointCandidate } from './records.js'

/** One address on a local interface. */
export interface InterfaceAddress {
  readonly interfaceName: string
  readonly address: string
  /** Loopback and similar host-internal interfaces. */
  readonly internal: boolean
}

/** Lists the host's interface addresses; injected so tests can fake the host. */
export type ListInterfaceAddresses = () => Promise<readonly InterfaceAddress[]>

/** The real host, through systeminformation's network module (Node's interface list, plus /sys on Linux). */
export const systemInterfaceAddresses: ListInterfaceAddresses = async () => {
  // rescan false: systeminformation re-reads /sys only when Node's own interface list changed, so a periodic check is cheap.
  const interfaces = await networkInterfaces(false)
  const list = Array.isArray(interfaces) ? interfaces : [interfaces]
  return list.flatMap((entry) =>
    [entry.ip4, entry.ip6].filter((address) => address !== '').map((address) => ({ interfaceName: entry.iface, address, internal: entry.internal })),
  )
}

export interface GatherEndpointsInit {
  /** Operator-configured public endpoints (address and port as reachable from outside), kept first. */
  configured: readonly EndpointCandidate[]
  interfaces: readonly InterfaceAddress[]
  /** Addresses of this host as peers saw them. */
  observed: readonly string[]
  /** The port that goes with interface and observed addresses (the libp2p TCP port). */
  port: number
  /** The network's overlay: addresses inside it are meshd's own, never an underlay endpoint. */
  network: Pick<NetworkAnchor, 'ipv4Cidr' | 'ipv6Ula'>
  /** Keep loopback addresses (single-host tests); off in production. */
  includeLoopback?: boolean
}

/**
 * Candidates in preference order (configured, observed, interfaces),
 * deduplicated by address, at most MAX_ENDPOINTS. Link-local, overlay,
 * meshd-link and (unless asked) loopback addresses are left out: a peer
 * elsewhere could never use them.
 */
export function gatherEndpoints(init: GatherEndpointsInit): EndpointCandidate[] {
  const isMeshInternal = meshInternalTest(init.network)
  const usable = (address: string, internal: boolean): string | undefined => {
    const v4 = parseIpv4(address)
    if (v4 !== undefined) {
      if (isMeshInternal(v4, undefined) || v4 >>> 24 === 0 || v4 >>> 28 >= 0xe) return undefined
      if (v4 >>> 24 === 127 && init.includeLoopback !== true) return undefined
      return internal && init.includeLoopback !== true ? undefined : address
    }
    const v6 = parseIpv6(address)
    if (v6 === undefined) return undefined
    const text = formatIpv6(v6)
    if (isMeshInternal(undefined, v6) || (v6[0] ?? 0) === 0xff) return undefined
    if (text === '::' || (text === '::1' && init.includeLoopback !== true)) return undefined
    return internal && init.includeLoopback !== true ? undefined : text
  }

  const seen = new Set<string>()
  const candidates: EndpointCandidate[] = []
  const add = (candidate: EndpointCandidate): void => {
    if (candidates.length >= MAX_ENDPOINTS || seen.has(candidate.address)) return
    seen.add(candidate.address)
    candidates.push(candidate)
  }
  for (const endpoint of init.configured) {
    const address = usable(endpoint.address, false)
    if (address !== undefined) add({ address, port: endpoint.port, source: 'configured' })
  }
  for (const observed of init.observed) {
    const address = usable(observed, false)
    if (address !== undefined) add({ address, port: init.port, source: 'observed' })
  }
  for (const entry of init.interfaces) {
    if (entry.interfaceName.startsWith(LINK_PREFIX)) continue
    const address = usable(entry.address.split('%')[0] ?? '', entry.internal)
    if (address !== undefined) add({ address, port: init.port, source: 'interface' })
  }
  return candidates
}

/**
 * An address inside the mesh itself: IPv4 or IPv6 link-local (meshd's pair
 * links) or the network's overlay. libp2p must neither advertise nor be
 * given such an address as a way to reach a host: it is only reachable
 * through the mesh it would be bootstrapping (meshd dials a pair link's
 * address itself, knowing what it is; see src/agent/control-route.ts).
 */
export function isMeshInternalAddress(address: string, network: Pick<NetworkAnchor, 'ipv4Cidr' | 'ipv6Ula'>): boolean {
  const v4 = parseIpv4(address)
  if (v4 !== undefined) return meshInternalTest(network)(v4, undefined)
  const v6 = parseIpv6(address.split('%')[0] ?? '')
  return v6 !== undefined && meshInternalTest(network)(undefined, v6)
}

/** The test behind isMeshInternalAddress on parsed addresses, with the network's prefixes parsed once. */
function meshInternalTest(network: Pick<NetworkAnchor, 'ipv4Cidr' | 'ipv6Ula'>): (v4: number | undefined, v6: ReturnType<typeof parseIpv6>) => boolean {
  const overlay4 = parseIpv4Cidr(network.ipv4Cidr)
  const overlay6 = parseIpv6Cidr(network.ipv6Ula)
  return (v4, v6) => {
    if (v4 !== undefined) return v4 >>> 16 === 0xa9fe || (overlay4 !== undefined && ipv4CidrContains(overlay4, v4))
    if (v6 === undefined) return false
    return (v6[0] === 0xfe && ((v6[1] ?? 0) & 0xc0) === 0x80) || (overlay6 !== undefined && ipv6CidrContains(overlay6, v6))
  }
}

/** The address part of a multiaddr such as /ip4/203.0.113.7/tcp/4001 or /ip6/2001:db8::1/tcp/…; undefined for others. */
export function addressOfMultiaddr(text: string): string | undefined {
  const match = /^\/ip[46]\/([^/]+)/.exec(text)
  return match?.[1]
}

/** The first TCP port among multiaddrs, e.g. 7373 from /ip4/0.0.0.0/tcp/7373/p2p/…. */
export function tcpPortOfMultiaddrs(addresses: readonly string[]): number | undefined {
  for (const address of addresses) {
    const match = /\/tcp\/([0-9]{1,5})(\/|$)/.exec(address)
    const port = match === null ? undefined : Number(match[1])
    if (port !== undefined && port >= 1 && port <= 0xffff && !address.includes('/p2p-circuit')) return port
  }
  return undefined
}
