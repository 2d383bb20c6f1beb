// Deterministic keys, randomness and records for the membership tests.

import { signerFromSeed, type NodeId, type Signer } from '../../src/membership/keys.js'
import { createNetwork, type Network } from '../../src/membership/network.js'
import { signPeerRecord, type Admission, type PeerRecord } from '../../src/membership/records.js'
import { allocateOverlayIpv4, overlayIpv6 } from '../../src/membership/allocation.js'

/** The Ed25519 key whose 32-byte seed is `n` repeated. Seeds 1, 2, 3 are pinned in the tests. */
export function seededSigner(n: number): Signer {
  return signerFromSeed(new Uint8Array(32).fill(n))
}

/** A small fast PRNG (mulberry32) so fuzz and property tests are reproducible. */
export function prng(seed: number): { next: () => number; bytes: (size: number) => Uint8Array; int: (below: number) => number } {
  let state = seed >>> 0
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (below: number): number => Math.floor(next() * below)
  const bytes = (size: number): Uint8Array => Uint8Array.from({ length: size }, () => int(256))
  return { next, bytes, int }
}

/** Randomness that counts up from `start`: byte i of call k is (start + offset) & 0xff. */
export function countingRandom(start = 0): (size: number) => Uint8Array {
  let offset = start
  return (size) => Uint8Array.from({ length: size }, () => offset++ & 0xff)
}

export const NOW = Date.UTC(2025, 0, 1)
export const MINUTE = 60_000

/** The pinned test network: founder = seed 1, name "lab", overlay 10.73.0.0/16. */
export function labNetwork(founder: Signer = seededSigner(1)): Network {
  const result = createNetwork({ name: 'lab', founder: founder.nodeId, existingRoutes: [], random: countingRandom(0) })
  if (!result.ok) throw new Error(result.reason)
  return result.value
}

export function wireguardKey(n: number): string {
  return Buffer.from(new Uint8Array(32).fill(n)).toString('base64')
}

/** A valid peer record for `node` in `network`, with overrides. */
export function peerRecord(
  node: Signer,
  network: Network,
  admissions: readonly Admission[],
  overrides: Partial<Parameters<typeof signPeerRecord>[1]> = {},
): PeerRecord {
  const ipv4 = allocateOverlayIpv4(network.ipv4Cidr, [{ nodeId: node.nodeId }]).ipv4.get(node.nodeId) ?? ''
  return signPeerRecord(node, {
    networkId: network.id,
    seq: NOW,
    expiresAt: NOW + 10 * MINUTE,
    hostname: 'host-a',
    overlayIpv4: ipv4,
    overlayIpv6: overlayIpv6(network.ipv6Ula, node.nodeId),
    wireguardPublicKey: wireguardKey(9),
    endpoints: [
      { address: '192.0.2.1', port: 51820, source: 'configured' },
      { address: '2001:db8::1', port: 51821, source: 'observed' },
    ],
    capabilities: { linkKinds: ['wireguard', 'gretap'], wireguardBackend: 'userspace' },
    routes: ['192.168.10.0/24'],
    linkRtts: [{ peer: seededSigner(77).nodeId, rttMs: 12.4 }],
    admissions,
    ...overrides,
  })
}

export function ids(...signers: Signer[]): NodeId[] {
  return signers.map((signer) => signer.nodeId)
}
