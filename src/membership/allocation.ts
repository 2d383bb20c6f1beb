// Conflict-free allocation without a coordinator: every value is a pure
// function of node ids (and of what is already in use), so every member
// computes the same answer. Hash inputs are domain-separated and versioned;
// changing any rule here changes addresses on running meshes, which is why
// test/unit/membership-allocation.test.ts pins exact outputs.

import { LINK_PREFIX, MAX_IFNAME_BYTES } from '../kernel/types.js'
import { domainHash, hashToInteger, toBase32 } from './codec.js'
import { formatIpv4, formatIpv6, ipv4CidrContains, ipv4CidrSize, parseIpv4, parseIpv4Cidr, parseIpv6Cidr } from '../net/ip.js'
import type { NodeId } from './keys.js'

/** Hashed candidates tried before falling back to a linear scan (which always terminates). */
const MAX_HASH_PROBES = 32

// ── Overlay addresses ────────────────────────────────────────────────────────

export interface OverlayClaim {
  readonly nodeId: NodeId
  /** An address the operator asked for. Honoured when it is a host address in the CIDR and no lower node id asked for it too. */
  readonly static?: string
  /** The address the node advertises now (from its record): kept while nobody with a stronger claim wants it, so joins never renumber others. */
  readonly current?: string
}

export interface OverlayAllocation {
  readonly ipv4: ReadonlyMap<NodeId, string>
  /** Static requests that could not be honoured, with the reason; those nodes got a dynamic address. */
  readonly refusedStatic: ReadonlyMap<NodeId, string>
  /** Nodes left without an address because the CIDR is full. */
  readonly unallocated: readonly NodeId[]
}

/**
 * IPv4 overlay addresses for a set of nodes. Claims are settled in three
 * rounds, each in node-id order: static requests, then current addresses,
 * then everyone else takes the first free of hash(id, 0), hash(id, 1), …
 * (then a linear scan). The network and broadcast addresses are never given.
 */
export function allocateOverlayIpv4(cidrText: string, claims: readonly OverlayClaim[]): OverlayAllocation {
  const cidr = parseIpv4Cidr(cidrText)
  if (cidr === undefined || cidr.prefix > 30) throw new RangeError(`overlay ${cidrText} is not an IPv4 CIDR with room for hosts`)
  const sorted = [...claims].sort((a, b) => compareIds(a.nodeId, b.nodeId))
  assertUniqueIds(sorted.map((claim) => claim.nodeId))
  const hostCount = ipv4CidrSize(cidr) - 2
  const hostIndex = (text: string | undefined): number | undefined => {
    const address = text === undefined ? undefined : parseIpv4(text)
    if (address === undefined || !ipv4CidrContains(cidr, address)) return undefined
    const index = address - cidr.base
    return index >= 1 && index <= hostCount ? index : undefined
  }

  const owner = new Map<number, NodeId>()
  const assigned = new Map<NodeId, number>()
  const refusedStatic = new Map<NodeId, string>()
  const take = (nodeId: NodeId, index: number): void => {
    owner.set(index, nodeId)
    assigned.set(nodeId, index)
  }

  for (const claim of sorted) {
    if (claim.static === undefined) continue
    const index = hostIndex(claim.static)
    const holder = index === undefined ? undefined : owner.get(index)
    if (index === undefined) refusedStatic.set(claim.nodeId, `${claim.static} is not a host address in ${cidrText}`)
    else if (holder !== undefined) refusedStatic.set(claim.nodeId, `${claim.static} is also requested by ${holder}`)
    else take(claim.nodeId, index)
  }
  for (const claim of sorted) {
    const index = hostIndex(claim.current)
    if (!assigned.has(claim.nodeId) && index !== undefined && !owner.has(index)) take(claim.nodeId, index)
  }
  const unallocated: NodeId[] = []
  for (const claim of sorted) {
    if (assigned.has(claim.nodeId)) continue
    const index = firstFree(hostCount, (attempt) => 1 + (hashToInteger(domainHash('meshd/overlay-ipv4/v1', claim.nodeId, attempt)) % hostCount), (i) => !owner.has(i))
    if (index === undefined) unallocated.push(claim.nodeId)
    else take(claim.nodeId, index)
  }

  const ipv4 = new Map<NodeId, string>()
  for (const claim of sorted) {
    const index = assigned.get(claim.nodeId)
    if (index !== undefined) ipv4.set(claim.nodeId, formatIpv4(cidr.base + index))
  }
  return { ipv4, refusedStatic, unallocated }
}

/**
 * The node's IPv6 overlay address: the ULA /48, subnet 0, and a 64-bit
 * interface id hashed from the node id. Collisions (≈ n²/2⁶⁵) are left to
 * chance; at 10 000 nodes the odds are below 10⁻¹¹.
 */
export function overlayIpv6(ulaText: string, nodeId: NodeId): string {
  const ula = parseIpv6Cidr(ulaText)
  if (ula === undefined || ula.prefix !== 48) throw new RangeError(`${ulaText} is not an IPv6 /48`)
  const address = ula.base.slice()
  address.set(domainHash('meshd/overlay-ipv6/v1', nodeId).subarray(0, 8), 8)
  return formatIpv6(address)
}

// ── Link-local addresses per pair ────────────────────────────────────────────

/**
 * 169.254.1.0 – 169.254.254.255 in /31-aligned pairs of addresses:
 * 169.254.0.0/24 and 169.254.255.0/24 are reserved by RFC 3927.
 */
export const LINK_LOCAL_BLOCKS = 254 * 128

/** The addresses of one pair link, written from the pair's point of view (low = lower node id). */
export interface PairLinkLocal {
  readonly low: NodeId
  readonly high: NodeId
  /** Which candidate was taken (0 unless a lower one clashed on either host). */
  readonly attempt: number
  readonly ipv4: { readonly low: string; readonly high: string }
  readonly ipv6: { readonly low: string; readonly high: string }
}

/** One side's view: what `ip addr add LOCAL peer PEER dev LINK` needs. */
export interface LinkAddresses {
  readonly local4: string
  readonly peer4: string
  readonly local6: string
  readonly peer6: string
}

export function pairKey(a: NodeId, b: NodeId): string {
  return compareIds(a, b) <= 0 ? `${a} ${b}` : `${b} ${a}`
}

/** Candidate `attempt` for the pair {a, b}: the same whichever side asks. */
export function linkLocalCandidate(a: NodeId, b: NodeId, attempt: number): PairLinkLocal {
  if (a === b) throw new RangeError('a link needs two different nodes')
  const [low, high] = compareIds(a, b) < 0 ? [a, b] : [b, a]
  const hash = domainHash('meshd/link-local/v1', low, high, attempt)
  return pairAddresses(low, high, attempt, hashToInteger(hash) % LINK_LOCAL_BLOCKS, hash.subarray(8, 16))
}

export interface ChooseLinkLocalInit {
  a: NodeId
  b: NodeId
  /** IPv4 link-local addresses (local and peer) already on a's links. */
  inUseByA: ReadonlySet<string>
  inUseByB: ReadonlySet<string>
}

/**
 * The first candidate whose two addresses are free on both hosts, so a
 * host's link addresses stay distinct (the kernel installs a /32 route per
 * peer address). Both sides exchange their in-use sets during link
 * negotiation and evaluate this same function, so they agree.
 */
export function chooseLinkLocal(init: ChooseLinkLocalInit): PairLinkLocal | undefined {
  const free = (pair: PairLinkLocal): boolean =>
    [pair.ipv4.low, pair.ipv4.high].every((address) => !init.inUseByA.has(address) && !init.inUseByB.has(address))
  for (let attempt = 0; attempt < MAX_HASH_PROBES; attempt++) {
    const candidate = linkLocalCandidate(init.a, init.b, attempt)
    if (free(candidate)) return candidate
  }
  // Crowded: walk the blocks from the first candidate's, keeping its IPv6 addresses.
  const first = linkLocalCandidate(init.a, init.b, 0)
  const start = blockOf(first.ipv4.low)
  for (let step = 1; step < LINK_LOCAL_BLOCKS; step++) {
    const block = (start + step) % LINK_LOCAL_BLOCKS
    const candidate = { ...first, attempt: MAX_HASH_PROBES + step - 1, ipv4: blockAddresses(block) }
    if (free(candidate)) return candidate
  }
  return undefined
}

/** The local and peer addresses for `self`'s end of the pair. */
export function linkAddressesFor(pair: PairLinkLocal, self: NodeId): LinkAddresses {
  if (self !== pair.low && self !== pair.high) throw new RangeError(`${self} is not an end of this pair`)
  const isLow = self === pair.low
  return {
    local4: `${isLow ? pair.ipv4.low : pair.ipv4.high}/32`,
    peer4: `${isLow ? pair.ipv4.high : pair.ipv4.low}/32`,
    local6: `${isLow ? pair.ipv6.low : pair.ipv6.high}/128`,
    peer6: `${isLow ? pair.ipv6.high : pair.ipv6.low}/128`,
  }
}

/**
 * What a whole mesh converges to when its links form in pair order
 * (a deterministic batch form of chooseLinkLocal, for planning and simulation).
 */
export function allocateMeshLinkLocals(nodeIds: readonly NodeId[]): Map<string, PairLinkLocal> {
  const sorted = [...nodeIds].sort(compareIds)
  assertUniqueIds(sorted)
  const inUse = new Map<NodeId, Set<string>>(sorted.map((id) => [id, new Set<string>()]))
  const pairs = new Map<string, PairLinkLocal>()
  for (const [i, a] of sorted.entries()) {
    for (const b of sorted.slice(i + 1)) {
      const usedA = inUse.get(a) ?? new Set<string>()
      const usedB = inUse.get(b) ?? new Set<string>()
      const pair = chooseLinkLocal({ a, b, inUseByA: usedA, inUseByB: usedB })
      if (pair === undefined) throw new RangeError('link-local space exhausted')
      for (const used of [usedA, usedB]) used.add(pair.ipv4.low).add(pair.ipv4.high)
      pairs.set(pairKey(a, b), pair)
    }
  }
  return pairs
}

function pairAddresses(low: NodeId, high: NodeId, attempt: number, block: number, interfaceId: Uint8Array): PairLinkLocal {
  // fe80::/64 with a hashed interface id; the last bit tells the two ends apart.
  const ipv6 = (end: 0 | 1): string => {
    const address = new Uint8Array(16)
    address[0] = 0xfe
    address[1] = 0x80
    address.set(interfaceId, 8)
    address[15] = ((address[15] ?? 0) & 0xfe) | end
    return formatIpv6(address)
  }
  return { low, high, attempt, ipv4: blockAddresses(block), ipv6: { low: ipv6(0), high: ipv6(1) } }
}

function blockAddresses(block: number): { low: string; high: string } {
  const base = 0xa9fe0000 + 256 * (1 + Math.floor(block / 128)) + 2 * (block % 128)
  return { low: formatIpv4(base), high: formatIpv4(base + 1) }
}

function blockOf(address: string): number {
  const value = (parseIpv4(address) ?? 0) - 0xa9fe0000
  return (Math.floor(value / 256) - 1) * 128 + Math.floor((value % 256) / 2)
}

// ── WireGuard listen ports ───────────────────────────────────────────────────

export interface PortRange {
  readonly first: number
  readonly last: number
}

/**
 * UDP 51820–52819: starts at WireGuard's customary port and gives 1 000
 * links per host, more than a full mesh of any size meshd targets. Firewalls
 * must allow this range inbound (docs/security.md).
 */
export const DEFAULT_LISTEN_PORT_RANGE: PortRange = { first: 51820, last: 52819 }

export function listenPortCandidate(self: NodeId, peer: NodeId, range: PortRange, attempt: number): number {
  const size = portRangeSize(range)
  return range.first + (hashToInteger(domainHash('meshd/listen-port/v1', self, peer, attempt)) % size)
}

/** A port for self's end of the link to `peer`, distinct from self's other links. The two ends choose independently. */
export function chooseListenPort(init: { self: NodeId; peer: NodeId; range: PortRange; inUse: ReadonlySet<number> }): number | undefined {
  const size = portRangeSize(init.range)
  const offset = firstFree(
    size,
    (attempt) => listenPortCandidate(init.self, init.peer, init.range, attempt) - init.range.first,
    (candidate) => !init.inUse.has(init.range.first + candidate),
    0,
  )
  return offset === undefined ? undefined : init.range.first + offset
}

/**
 * Ports for all of self's links: current ports are kept (in peer order; a
 * duplicate goes to the lower peer id), the rest choose in peer order.
 * Peers the range cannot fit are left out.
 */
export function allocateListenPorts(self: NodeId, peers: readonly NodeId[], range: PortRange = DEFAULT_LISTEN_PORT_RANGE, current: ReadonlyMap<NodeId, number> = new Map()): Map<NodeId, number> {
  const sorted = [...peers].sort(compareIds)
  assertUniqueIds(sorted)
  const inUse = new Set<number>()
  const ports = new Map<NodeId, number>()
  for (const peer of sorted) {
    const port = current.get(peer)
    if (port !== undefined && port >= range.first && port <= range.last && !inUse.has(port)) {
      ports.set(peer, port)
      inUse.add(port)
    }
  }
  for (const peer of sorted) {
    if (ports.has(peer)) continue
    const port = chooseListenPort({ self, peer, range, inUse })
    if (port === undefined) continue
    ports.set(peer, port)
    inUse.add(port)
  }
  return new Map(sorted.flatMap((peer) => {
    const port = ports.get(peer)
    return port === undefined ? [] : [[peer, port] as const]
  }))
}

function portRangeSize(range: PortRange): number {
  if (!Number.isInteger(range.first) || !Number.isInteger(range.last) || range.first < 1 || range.last > 0xffff || range.first > range.last) {
    throw new RangeError(`invalid port range ${range.first}-${range.last}`)
  }
  return range.last - range.first + 1
}

// ── Interface names ──────────────────────────────────────────────────────────

const NAME_HASH_CHARS = MAX_IFNAME_BYTES - LINK_PREFIX.length

/**
 * "md-" + 12 base32 characters (60 bits) of a hash of (self, peer): exactly
 * 15 bytes. The name hashes the ordered pair rather than the peer alone so
 * that hosts sharing one /var/run/wireguard (network namespaces on one
 * machine, wireguard-go's UAPI sockets) never pick the same name.
 */
export function interfaceNameCandidate(self: NodeId, peer: NodeId, attempt: number): string {
  return LINK_PREFIX + toBase32(domainHash('meshd/ifname/v1', self, peer, attempt)).slice(0, NAME_HASH_CHARS)
}

/** Names for all of self's links, distinct on this host: in peer order, a clash takes the next attempt. */
export function allocateInterfaceNames(self: NodeId, peers: readonly NodeId[]): Map<NodeId, string> {
  const sorted = [...peers].sort(compareIds)
  assertUniqueIds(sorted)
  const used = new Set<string>()
  const names = new Map<NodeId, string>()
  for (const peer of sorted) {
    let attempt = 0
    let name = interfaceNameCandidate(self, peer, attempt)
    while (used.has(name)) name = interfaceNameCandidate(self, peer, ++attempt)
    used.add(name)
    names.set(peer, name)
  }
  return names
}

// ── Helpers ──────────────────────────────────────────────────────────────────

/**
 * Tries hashed candidates, then scans linearly from the first one. Values
 * are in [base, base + size); returns undefined when every value is taken.
 */
function firstFree(size: number, candidate: (attempt: number) => number, isFree: (value: number) => boolean, base = 1): number | undefined {
  for (let attempt = 0; attempt < MAX_HASH_PROBES; attempt++) {
    const value = candidate(attempt)
    if (isFree(value)) return value
  }
  const start = candidate(0) - base
  for (let step = 1; step < size; step++) {
    const value = base + ((start + step) % size)
    if (isFree(value)) return value
  }
  return undefined
}

function assertUniqueIds(sortedIds: readonly NodeId[]): void {
  for (let i = 1; i < sortedIds.length; i++) {
    if (sortedIds[i] === sortedIds[i - 1]) throw new RangeError(`node ${sortedIds[i] ?? ''} listed twice`)
  }
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
