import { describe, expect, it } from 'vitest'
import { LINK_PREFIX, MAX_IFNAME_BYTES } from '../../src/kernel/types.js'
import {
  DEFAULT_LISTEN_PORT_RANGE,
  allocateInterfaceNames,
  allocateListenPorts,
  allocateMeshLinkLocals,
  allocateOverlayIpv4,
  chooseLinkLocal,
  chooseListenPort,
  interfaceNameCandidate,
  linkAddressesFor,
  linkLocalCandidate,
  overlayIpv6,
  pairKey,
  type OverlayClaim,
} from '../../src/membership/allocation.js'
import { nodeIdFromPublicKey, type NodeId } from '../../src/membership/keys.js'
import { labNetwork, prng, seededSigner } from './membership-fixtures.js'

// Seeds 1, 2, 3 (see membership-fixtures.ts). Sorted: TWO < ONE < THREE.
const ONE = seededSigner(1).nodeId
const TWO = seededSigner(2).nodeId
const THREE = seededSigner(3).nodeId
const CIDR = '10.73.0.0/16'
const ULA = labNetwork().ipv6Ula

function randomIds(count: number, seed: number): NodeId[] {
  const random = prng(seed)
  return Array.from({ length: count }, () => nodeIdFromPublicKey(random.bytes(32)))
}

function dynamic(ids: readonly NodeId[]): OverlayClaim[] {
  return ids.map((nodeId) => ({ nodeId }))
}

// Every pinned value below was recomputed by an independent Python script
// (hashlib + ipaddress) from the rules documented in src/membership/allocation.ts.
// A failure here means running meshes would renumber: bump the hash domain's
// version and say so in the change, do not just update the numbers.
describe('pinned outputs', () => {
  it('pins the node ids of the test keys', () => {
    expect([ONE, TWO, THREE]).toEqual([
      '12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5',
      '12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq',
      '12D3KooWRndVhVZPCiQwHBBBdg769GyrPUW13zxwqQyf9r3ANaba',
    ])
  })

  it('pins overlay IPv4 and IPv6 addresses', () => {
    const { ipv4 } = allocateOverlayIpv4(CIDR, dynamic([ONE, TWO, THREE]))
    expect(Object.fromEntries(ipv4)).toEqual({ [ONE]: '10.73.49.5', [TWO]: '10.73.243.215', [THREE]: '10.73.182.124' })
    expect(ULA).toBe('fda0:4a09:fe7b::/48')
    expect([ONE, TWO, THREE].map((id) => overlayIpv6(ULA, id))).toEqual([
      'fda0:4a09:fe7b:0:5d8a:5adf:e134:88e',
      'fda0:4a09:fe7b:0:67f5:acaa:203:7a68',
      'fda0:4a09:fe7b:0:2311:b28c:14b2:1a9a',
    ])
  })

  it('pins link-local pairs', () => {
    expect(linkLocalCandidate(ONE, TWO, 0)).toEqual({
      low: TWO,
      high: ONE,
      attempt: 0,
      ipv4: { low: '169.254.67.108', high: '169.254.67.109' },
      ipv6: { low: 'fe80::cd67:271b:6880:db06', high: 'fe80::cd67:271b:6880:db07' },
    })
    expect(linkLocalCandidate(ONE, THREE, 0).ipv4).toEqual({ low: '169.254.163.50', high: '169.254.163.51' })
    expect(linkLocalCandidate(TWO, THREE, 0).ipv6).toEqual({ low: 'fe80::39a:9700:b4f6:4772', high: 'fe80::39a:9700:b4f6:4773' })
    expect(linkAddressesFor(linkLocalCandidate(ONE, TWO, 0), ONE)).toEqual({
      local4: '169.254.67.109/32',
      peer4: '169.254.67.108/32',
      local6: 'fe80::cd67:271b:6880:db07/128',
      peer6: 'fe80::cd67:271b:6880:db06/128',
    })
  })

  it('pins listen ports and interface names per link end', () => {
    expect(Object.fromEntries(allocateListenPorts(ONE, [TWO, THREE]))).toEqual({ [TWO]: 52463, [THREE]: 52331 })
    expect(Object.fromEntries(allocateListenPorts(TWO, [ONE, THREE]))).toEqual({ [ONE]: 52703, [THREE]: 52641 })
    expect(Object.fromEntries(allocateListenPorts(THREE, [ONE, TWO]))).toEqual({ [ONE]: 52553, [TWO]: 51954 })
    expect(Object.fromEntries(allocateInterfaceNames(ONE, [TWO, THREE]))).toEqual({ [TWO]: 'md-v5i6zpa6pz4o', [THREE]: 'md-p2sbi3oeuhg2' })
    expect(Object.fromEntries(allocateInterfaceNames(TWO, [ONE, THREE]))).toEqual({ [ONE]: 'md-iz3q5o32z5ly', [THREE]: 'md-bgqxs7lv6viz' })
    expect(Object.fromEntries(allocateInterfaceNames(THREE, [ONE, TWO]))).toEqual({ [ONE]: 'md-mscy7kw6myyu', [TWO]: 'md-a7v5ucnmrtg3' })
  })
})

describe('overlay addresses', () => {
  it('gives distinct host addresses to 200 random nodes', () => {
    const ids = randomIds(200, 1)
    const { ipv4, unallocated } = allocateOverlayIpv4(CIDR, dynamic(ids))
    expect(unallocated).toEqual([])
    const addresses = [...ipv4.values()]
    expect(new Set(addresses).size).toBe(200)
    for (const address of addresses) {
      expect(address).toMatch(/^10\.73\.\d+\.\d+$/)
      expect(['10.73.0.0', '10.73.255.255']).not.toContain(address)
    }
    expect(new Set(ids.map((id) => overlayIpv6(ULA, id))).size).toBe(200)
  })

  it('is a function of the set, not of its order (a restart recomputes the same)', () => {
    const ids = randomIds(50, 2)
    const forward = allocateOverlayIpv4(CIDR, dynamic(ids)).ipv4
    const backward = allocateOverlayIpv4(CIDR, dynamic([...ids].reverse())).ipv4
    expect(Object.fromEntries(backward)).toEqual(Object.fromEntries(forward))
  })

  it('fills a /28 exactly and resolves hash collisions deterministically', () => {
    const ids = randomIds(15, 3)
    const full = allocateOverlayIpv4('10.9.9.0/28', dynamic(ids.slice(0, 14)))
    expect(new Set(full.ipv4.values()).size).toBe(14)
    expect([...full.ipv4.values()].every((a) => a !== '10.9.9.0' && a !== '10.9.9.15')).toBe(true)
    const over = allocateOverlayIpv4('10.9.9.0/28', dynamic(ids))
    expect(over.unallocated).toHaveLength(1)
    expect(over.ipv4.size).toBe(14)
  })

  it('on a collision, the lower id keeps its hash and the higher one probes on', () => {
    const ids = randomIds(40, 12)
    const alone = (id: NodeId): string => allocateOverlayIpv4('10.9.9.0/28', dynamic([id])).ipv4.get(id) ?? ''
    const [low, high] = (() => {
      for (const a of ids) for (const b of ids) if (a < b && alone(a) === alone(b)) return [a, b]
      return [ONE, ONE]
    })()
    expect(low).not.toBe(high)
    const both = allocateOverlayIpv4('10.9.9.0/28', dynamic([high, low])).ipv4
    expect(both.get(low)).toBe(alone(low))
    expect(both.get(high)).not.toBe(alone(high))
  })

  it('keeps current addresses when a node joins whose hash lands on one', () => {
    const ids = randomIds(14, 4)
    const before = allocateOverlayIpv4('10.9.9.0/28', dynamic(ids.slice(0, 13))).ipv4
    const claims = ids.slice(0, 13).map((nodeId) => ({ nodeId, current: before.get(nodeId) ?? '' }))
    const after = allocateOverlayIpv4('10.9.9.0/28', [...claims, { nodeId: ids[13] ?? ONE }]).ipv4
    for (const [nodeId, address] of before) expect(after.get(nodeId)).toBe(address)
    expect(new Set(after.values()).size).toBe(14)
  })

  it('honours a static request; dynamic nodes avoid it', () => {
    const hashed = allocateOverlayIpv4(CIDR, dynamic([ONE])).ipv4.get(ONE)
    const result = allocateOverlayIpv4(CIDR, [{ nodeId: TWO, static: hashed ?? '' }, { nodeId: ONE }])
    expect(result.ipv4.get(TWO)).toBe('10.73.49.5')
    expect(result.ipv4.get(ONE)).not.toBe('10.73.49.5')
    expect(result.refusedStatic.size).toBe(0)
  })

  it('gives a contested static address to the lower id and says why the others lost', () => {
    const result = allocateOverlayIpv4(CIDR, [
      { nodeId: ONE, static: '10.73.0.10' },
      { nodeId: TWO, static: '10.73.0.10' },
      { nodeId: THREE, static: '10.74.0.1' },
    ])
    expect(result.ipv4.get(TWO)).toBe('10.73.0.10')
    expect(Object.fromEntries(result.refusedStatic)).toEqual({
      [ONE]: `10.73.0.10 is also requested by ${TWO}`,
      [THREE]: '10.74.0.1 is not a host address in 10.73.0.0/16',
    })
    expect(result.ipv4.get(ONE)).toBe('10.73.49.5')
  })

  it('refuses the network and broadcast address as static', () => {
    const result = allocateOverlayIpv4(CIDR, [{ nodeId: ONE, static: '10.73.255.255' }])
    expect(result.refusedStatic.has(ONE)).toBe(true)
  })

  it('refuses duplicate ids and unusable CIDRs', () => {
    expect(() => allocateOverlayIpv4(CIDR, dynamic([ONE, ONE]))).toThrow(RangeError)
    expect(() => allocateOverlayIpv4('10.0.0.0/31', dynamic([ONE]))).toThrow(RangeError)
  })
})

describe('link-local pairs', () => {
  it('is the same from both sides', () => {
    const ids = randomIds(20, 5)
    for (const a of ids) {
      for (const b of ids) {
        if (a === b) continue
        expect(linkLocalCandidate(a, b, 0)).toEqual(linkLocalCandidate(b, a, 0))
        const aSide = linkAddressesFor(linkLocalCandidate(a, b, 0), a)
        const bSide = linkAddressesFor(linkLocalCandidate(a, b, 0), b)
        expect([aSide.local4, aSide.local6]).toEqual([bSide.peer4, bSide.peer6])
      }
    }
  })

  it('chooses symmetrically when each side brings its own in-use set', () => {
    const first = linkLocalCandidate(ONE, TWO, 0)
    const busyOnOne = new Set([first.ipv4.low])
    const fromOne = chooseLinkLocal({ a: ONE, b: TWO, inUseByA: busyOnOne, inUseByB: new Set() })
    const fromTwo = chooseLinkLocal({ a: TWO, b: ONE, inUseByA: new Set(), inUseByB: busyOnOne })
    expect(fromOne).toEqual(fromTwo)
    expect(fromOne?.attempt).toBe(1)
  })

  it('keeps every host’s link addresses distinct in a 200-node full mesh, outside the reserved /24s', () => {
    const ids = randomIds(200, 6)
    const pairs = allocateMeshLinkLocals(ids)
    expect(pairs.size).toBe((200 * 199) / 2)
    const perNode = new Map<NodeId, string[]>(ids.map((id) => [id, []]))
    for (const pair of pairs.values()) {
      for (const end of [pair.low, pair.high]) perNode.get(end)?.push(pair.ipv4.low, pair.ipv4.high)
      for (const address of [pair.ipv4.low, pair.ipv4.high]) {
        expect(address).toMatch(/^169\.254\.\d+\.\d+$/)
        expect(address.startsWith('169.254.0.') || address.startsWith('169.254.255.')).toBe(false)
      }
    }
    for (const addresses of perNode.values()) {
      expect(addresses).toHaveLength(2 * 199)
      expect(new Set(addresses).size).toBe(addresses.length)
    }
    // Both ends computed the pair from the same function.
    const [a = ONE, b = TWO] = ids
    expect(pairs.get(pairKey(a, b))).toEqual(pairs.get(pairKey(b, a)))
  })

  it('still finds a block when the hashed candidates are all busy', () => {
    const busy = new Set<string>()
    for (let attempt = 0; attempt < 32; attempt++) {
      const candidate = linkLocalCandidate(ONE, TWO, attempt)
      busy.add(candidate.ipv4.low).add(candidate.ipv4.high)
    }
    const chosen = chooseLinkLocal({ a: ONE, b: TWO, inUseByA: busy, inUseByB: new Set() })
    expect(chosen).toBeDefined()
    expect(busy.has(chosen?.ipv4.low ?? '')).toBe(false)
  })

  it('refuses a pair of one node', () => {
    expect(() => linkLocalCandidate(ONE, ONE, 0)).toThrow(RangeError)
  })
})

describe('listen ports and interface names', () => {
  it('gives each of a node’s 199 links a distinct port in the range and a distinct ≤ 15-byte name', () => {
    const ids = randomIds(200, 7)
    const [self = ONE, ...peers] = ids
    const ports = allocateListenPorts(self, peers)
    expect(ports.size).toBe(199)
    expect(new Set(ports.values()).size).toBe(199)
    for (const port of ports.values()) {
      expect(port).toBeGreaterThanOrEqual(DEFAULT_LISTEN_PORT_RANGE.first)
      expect(port).toBeLessThanOrEqual(DEFAULT_LISTEN_PORT_RANGE.last)
    }
    const names = allocateInterfaceNames(self, peers)
    expect(new Set(names.values()).size).toBe(199)
    for (const name of names.values()) {
      expect(name.startsWith(LINK_PREFIX)).toBe(true)
      expect(Buffer.byteLength(name)).toBe(MAX_IFNAME_BYTES)
      expect(name).toMatch(/^md-[a-z2-7]{12}$/)
    }
  })

  it('names differ between hosts for the same peer (one /var/run/wireguard per machine)', () => {
    const ids = randomIds(30, 8)
    const all = ids.flatMap((self) => ids.filter((peer) => peer !== self).map((peer) => interfaceNameCandidate(self, peer, 0)))
    expect(new Set(all).size).toBe(all.length)
  })

  it('keeps current ports across changes in the peer set', () => {
    const ids = randomIds(60, 9)
    const [self = ONE, ...peers] = ids
    const before = allocateListenPorts(self, peers.slice(0, 40))
    const after = allocateListenPorts(self, peers, DEFAULT_LISTEN_PORT_RANGE, before)
    for (const [peer, port] of before) expect(after.get(peer)).toBe(port)
    expect(new Set(after.values()).size).toBe(59)
  })

  it('uses every port of a small range, then reports exhaustion', () => {
    const range = { first: 40000, last: 40004 }
    const ids = randomIds(7, 10)
    const [self = ONE, ...peers] = ids
    const ports = allocateListenPorts(self, peers, range)
    expect([...ports.values()].sort()).toEqual([40000, 40001, 40002, 40003, 40004])
    expect(chooseListenPort({ self, peer: ONE, range, inUse: new Set(ports.values()) })).toBeUndefined()
    expect(() => allocateListenPorts(self, peers, { first: 10, last: 5 })).toThrow(RangeError)
  })

  it('is stable: same inputs, same names and ports, whatever the order', () => {
    const ids = randomIds(10, 11)
    const [self = ONE, ...peers] = ids
    expect(Object.fromEntries(allocateInterfaceNames(self, [...peers].reverse()))).toEqual(Object.fromEntries(allocateInterfaceNames(self, peers)))
    expect(Object.fromEntries(allocateListenPorts(self, [...peers].reverse()))).toEqual(Object.fromEntries(allocateListenPorts(self, peers)))
  })
})
