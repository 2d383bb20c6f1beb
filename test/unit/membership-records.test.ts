import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { toHex } from '../../src/membership/codec.js'
import type { Signer } from '../../src/membership/keys.js'
import type { NetworkId } from '../../src/membership/network.js'
import {
  acceptRecord,
  admitJoiner,
  createRecordStore,
  effectiveEvictions,
  isEvicted,
  members,
  sweepExpired,
  type Outcome,
  type RecordStoreState,
} from '../../src/membership/record-store.js'
import {
  decodeAdmission,
  decodeRecord,
  differsBeyondRefresh,
  nextSequence,
  signAdmission,
  signEviction,
  signLeave,
  type Admission,
  type Eviction,
} from '../../src/membership/records.js'
import { createToken, parseToken, type InviteId, type JoinToken } from '../../src/membership/token.js'
import { MINUTE, NOW, countingRandom, labNetwork, peerRecord, seededSigner } from './membership-fixtures.js'

const founder = seededSigner(1)
const alice = seededSigner(2)
const bob = seededSigner(3)
const carol = seededSigner(4)
const mallory = seededSigner(9)
const network = labNetwork(founder)
const INVITE = '000102030405060708090a0b0c0d0e0f' as InviteId

function admission(admitter: Signer, joiner: Signer, overrides: Partial<Parameters<typeof signAdmission>[1]> = {}): Admission {
  return signAdmission(admitter, { networkId: network.id, joiner: joiner.nodeId, inviteId: INVITE, issuedAt: NOW, expiresAt: null, ...overrides })
}

const aliceChain = [admission(founder, alice)]
const bobChain = [...aliceChain, admission(alice, bob)]

function feed(state: RecordStoreState, bytes: Uint8Array, now = NOW): { state: RecordStoreState; outcome: Outcome } {
  return acceptRecord(state, bytes, now)
}

function rejection(state: RecordStoreState, bytes: Uint8Array, now = NOW): string {
  const { outcome, state: after } = feed(state, bytes, now)
  expect(after).toBe(state) // a rejection never changes state
  return outcome.accepted ? 'accepted' : outcome.reason
}

function storeWith(...records: Uint8Array[]): RecordStoreState {
  let state = createRecordStore(network)
  for (const bytes of records) {
    const step = feed(state, bytes)
    if (!step.outcome.accepted) throw new Error(`setup record refused: ${step.outcome.reason} ${step.outcome.detail}`)
    state = step.state
  }
  return state
}

function eviction(evictor: Signer, evicted: Signer, chain: readonly Admission[], at = NOW, reason = 'compromised'): Eviction {
  return signEviction(evictor, { networkId: network.id, evicted: evicted.nodeId, at, reason, admissions: chain })
}

describe('encodings', () => {
  // Cross-checked by an independent Python decoder (struct + cryptography's Ed25519) of the layout in src/membership/records.ts.
  it('pins the exact bytes of an admission', () => {
    const pinned = admission(founder, alice, { expiresAt: NOW + 60 * MINUTE })
    expect(toHex(pinned.bytes)).toBe(
      '0201' +
        '7d5ce8d08f268e6a31b921b6c7046671' + // network id
        '8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394' + // joiner (alice) public key
        '000102030405060708090a0b0c0d0e0f' + // invite id
        '000001941f297c00' + // issued at: 2025-01-01T00:00:00Z in ms
        '000001941f606a80' + // expires at: one hour later
        '8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c' + // admitter (founder) public key
        PINNED_ADMISSION_SIGNATURE,
    )
  })

  it('pins the size and digest of a peer record', () => {
    const record = peerRecord(alice, network, aliceChain)
    expect(record.bytes.length).toBe(PINNED_RECORD_LENGTH)
    expect(createHash('sha256').update(record.bytes).digest('hex')).toBe(PINNED_RECORD_SHA256)
  })

  it('round-trips every kind', () => {
    const record = peerRecord(bob, network, bobChain, { routes: ['10.20.0.0/16', '2001:db8:1::/48'], endpoints: [{ address: 'fe80::1', port: 1, source: 'interface' }] })
    const decoded = decodeRecord(record.bytes)
    expect(decoded).toEqual({ ok: true, value: record })
    const leave = signLeave(alice, { networkId: network.id, seq: NOW + 5, admissions: aliceChain })
    expect(decodeRecord(leave.bytes)).toEqual({ ok: true, value: leave })
    const evict = eviction(alice, bob, aliceChain)
    expect(decodeRecord(evict.bytes)).toEqual({ ok: true, value: evict })
    const single = admission(founder, alice)
    expect(decodeAdmission(single.bytes)).toEqual({ ok: true, value: single })
  })

  it('refuses to sign values the schema cannot hold', () => {
    expect(() => peerRecord(alice, network, aliceChain, { hostname: 'bad host' })).toThrow(RangeError)
    expect(() => peerRecord(alice, network, aliceChain, { routes: ['10.0.0.1/8'] })).toThrow(RangeError)
    expect(() => peerRecord(alice, network, aliceChain, { wireguardPublicKey: 'short' })).toThrow(RangeError)
    expect(() => peerRecord(alice, network, aliceChain, { endpoints: [{ address: '2001:DB8::1', port: 1, source: 'observed' }] })).toThrow(RangeError)
    expect(() => peerRecord(alice, network, aliceChain, { endpoints: [{ address: '192.0.2.1', port: 0, source: 'observed' }] })).toThrow(RangeError)
  })

  it('detects forgery: a record whose hostname was edited fails its signature', () => {
    const record = peerRecord(alice, network, aliceChain)
    const forged = Buffer.from(record.bytes)
    const at = forged.indexOf('host-a')
    expect(at).toBeGreaterThan(0)
    forged.write('evil-b', at)
    expect(decodeRecord(new Uint8Array(forged))).toEqual({ ok: false, reason: 'bad-signature', detail: 'signature does not verify' })
  })

  it('uses wall-clock sequence numbers that still move forward', () => {
    expect(nextSequence(undefined, NOW)).toBe(NOW)
    expect(nextSequence(NOW + 10, NOW)).toBe(NOW + 11)
    expect(nextSequence(NOW - 10, NOW)).toBe(NOW)
  })
})

describe('record store: acceptance', () => {
  it('accepts the founder without admission and members with a chain rooted at the founder', () => {
    let state = createRecordStore(network)
    const steps = [peerRecord(founder, network, []), peerRecord(bob, network, bobChain), peerRecord(alice, network, aliceChain)].map((r) => {
      const step = feed(state, r.bytes)
      state = step.state
      return step.outcome
    })
    expect(steps.map((o) => o.accepted && o.change)).toEqual(['added', 'added', 'added'])
    expect(members(state).map((r) => r.nodeId)).toEqual([bob.nodeId, founder.nodeId, alice.nodeId].sort())
  })

  it('verifies each admission signature once, then serves it from the memo; a tampered admission still fails', () => {
    let state = createRecordStore(network)
    state = feed(state, peerRecord(bob, network, bobChain, { seq: NOW }).bytes).state
    expect(state.verifiedAdmissions.verifications).toBe(2)
    state = feed(state, peerRecord(bob, network, bobChain, { seq: NOW + 1 }).bytes).state
    state = feed(state, peerRecord(alice, network, aliceChain).bytes).state
    expect(state.verifiedAdmissions.verifications).toBe(2)
    const [first] = aliceChain
    if (first === undefined) throw new Error('fixture')
    const tampered = new Uint8Array(first.bytes)
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1
    const forged = peerRecord(carol, network, [{ ...first, bytes: tampered }, admission(alice, carol)])
    expect(rejection(state, forged.bytes)).toBe('no-admission')
  })

  it('accepts a deeper member before the members that admitted it (arrival order does not matter)', () => {
    const state = storeWith(peerRecord(bob, network, bobChain).bytes)
    expect(state.peers.has(bob.nodeId)).toBe(true)
  })

  it('updates on a newer sequence and drops replays', () => {
    const first = peerRecord(alice, network, aliceChain, { seq: NOW })
    const state = storeWith(first.bytes)
    expect(rejection(state, first.bytes)).toBe('replayed')
    expect(rejection(state, peerRecord(alice, network, aliceChain, { seq: NOW - 1 }).bytes)).toBe('replayed')
    const newer = feed(state, peerRecord(alice, network, aliceChain, { seq: NOW + 1, hostname: 'renamed' }).bytes)
    expect(newer.outcome).toMatchObject({ accepted: true, change: 'updated' })
    expect(newer.state.peers.get(alice.nodeId)?.hostname).toBe('renamed')
  })

  const refusals: [string, () => Uint8Array, string, number?][] = [
    ['garbage', () => Uint8Array.of(1, 2, 3), 'malformed'],
    ['an admission where a record belongs', () => admission(founder, alice).bytes, 'malformed'],
    ['a record for another network', () => peerRecord(alice, { ...network, id: 'ffffffffffffffffffffffffffffffff' as NetworkId }, aliceChain).bytes, 'wrong-network'],
    ['no admission', () => peerRecord(alice, network, []).bytes, 'no-admission'],
    ['a self-admission', () => peerRecord(mallory, network, [admission(mallory, mallory)]).bytes, 'no-admission'],
    ['a chain not rooted at the founder', () => peerRecord(bob, network, [admission(alice, bob)]).bytes, 'no-admission'],
    ['someone else’s chain', () => peerRecord(mallory, network, aliceChain).bytes, 'no-admission'],
    ['a chain with a gap', () => peerRecord(carol, network, [...aliceChain, admission(bob, carol)]).bytes, 'no-admission'],
    ['an admission for another network', () => peerRecord(alice, network, [admission(founder, alice, { networkId: 'ffffffffffffffffffffffffffffffff' as NetworkId })]).bytes, 'no-admission'],
    ['an expired admission', () => peerRecord(alice, network, [admission(founder, alice, { issuedAt: NOW - MINUTE, expiresAt: NOW })]).bytes, 'no-admission'],
    ['a founder carrying admissions', () => peerRecord(founder, network, aliceChain).bytes, 'no-admission'],
    ['an expired record', () => peerRecord(alice, network, aliceChain, { expiresAt: NOW }).bytes, 'expired'],
    ['an expiry far in the future', () => peerRecord(alice, network, aliceChain, { expiresAt: NOW + 24 * 60 * MINUTE }).bytes, 'malformed'],
    ['an overlay outside the network', () => peerRecord(alice, network, aliceChain, { overlayIpv4: '10.74.0.1' }).bytes, 'malformed'],
    ['the network address as overlay', () => peerRecord(alice, network, aliceChain, { overlayIpv4: '10.73.0.0' }).bytes, 'malformed'],
    ['an IPv6 overlay outside the ULA', () => peerRecord(alice, network, aliceChain, { overlayIpv6: 'fd00::1' }).bytes, 'malformed'],
  ]
  for (const [name, make, reason] of refusals) {
    it(`refuses ${name}: ${reason}`, () => {
      expect(rejection(createRecordStore(network), make())).toBe(reason)
    })
  }

  it('refuses a forged admission inside a valid record: no-admission', () => {
    const real = admission(founder, alice)
    const bytes = real.bytes.slice()
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1
    const forged: Admission = { ...real, bytes }
    expect(rejection(createRecordStore(network), peerRecord(alice, network, [forged]).bytes)).toBe('no-admission')
  })

  it('reports a detail line for debug logs', () => {
    const { outcome } = feed(createRecordStore(network), peerRecord(bob, network, [admission(alice, bob)]).bytes)
    expect(outcome).toEqual({
      accepted: false,
      reason: 'no-admission',
      detail: `admission 1 of 1 is signed by ${alice.nodeId}, expected ${founder.nodeId}`,
    })
  })
})

describe('record store: leave, eviction, expiry', () => {
  it('removes a node at once on leave, then drops its older records but takes a rejoin', () => {
    const record = peerRecord(alice, network, aliceChain, { seq: NOW })
    const state = storeWith(record.bytes)
    const leave = signLeave(alice, { networkId: network.id, seq: NOW + 1, admissions: aliceChain })
    const left = feed(state, leave.bytes, NOW + 1)
    expect(left.outcome).toEqual({ accepted: true, kind: 'leave', nodeId: alice.nodeId, change: 'removed', removed: [alice.nodeId] })
    expect(left.state.peers.has(alice.nodeId)).toBe(false)
    expect(rejection(left.state, record.bytes, NOW + 1)).toBe('replayed')
    expect(rejection(left.state, leave.bytes, NOW + 1)).toBe('replayed')
    const rejoin = feed(left.state, peerRecord(alice, network, aliceChain, { seq: NOW + 2 }).bytes, NOW + 2)
    expect(rejoin.outcome).toMatchObject({ accepted: true, change: 'added' })
  })

  it('refuses a leave older than the record it would remove', () => {
    const state = storeWith(peerRecord(alice, network, aliceChain, { seq: NOW + 10 }).bytes)
    expect(rejection(state, signLeave(alice, { networkId: network.id, seq: NOW + 5, admissions: aliceChain }).bytes)).toBe('replayed')
  })

  it('evicts a node: removes it, refuses its records from then on, and blocks admissions it signs afterwards', () => {
    const state = storeWith(peerRecord(alice, network, aliceChain).bytes, peerRecord(bob, network, bobChain).bytes)
    const evicted = feed(state, eviction(founder, alice, [], NOW + 1).bytes, NOW + 2)
    expect(evicted.outcome).toEqual({ accepted: true, kind: 'eviction', nodeId: alice.nodeId, change: 'removed', removed: [alice.nodeId] })
    const after = evicted.state
    expect(isEvicted(after, alice.nodeId)).toBe(true)
    // Bob was admitted by Alice before her eviction: he stays.
    expect(after.peers.has(bob.nodeId)).toBe(true)
    expect(rejection(after, peerRecord(alice, network, aliceChain, { seq: NOW + 3 }).bytes, NOW + 3)).toBe('evicted')
    const lateChain = [...aliceChain, admission(alice, carol, { issuedAt: NOW + 1 })]
    expect(rejection(after, peerRecord(carol, network, lateChain).bytes, NOW + 3)).toBe('no-admission')
    expect(rejection(after, eviction(founder, alice, [], NOW + 1).bytes, NOW + 3)).toBe('replayed')
  })

  it('also drops held records whose chain an eviction voids', () => {
    const lateChain = [...aliceChain, admission(alice, carol, { issuedAt: NOW + 5 })]
    const state = storeWith(peerRecord(carol, network, lateChain).bytes)
    const step = feed(state, eviction(founder, alice, [], NOW + 1).bytes, NOW + 6)
    expect(step.outcome).toMatchObject({ accepted: true, removed: [carol.nodeId] })
  })

  it('refuses evictions from non-members and from the already evicted', () => {
    expect(rejection(createRecordStore(network), eviction(mallory, alice, [admission(mallory, mallory)]).bytes)).toBe('no-admission')
    const state = feed(createRecordStore(network), eviction(founder, bob, [], NOW).bytes).state
    expect(rejection(state, eviction(bob, alice, bobChain, NOW + 1).bytes, NOW + 1)).toBe('evicted')
    expect(rejection(createRecordStore(network), eviction(founder, bob, [], NOW + 10 * MINUTE).bytes)).toBe('malformed')
  })

  it('settles mutual evictions the same way in either arrival order: the earlier one wins', () => {
    const first = eviction(alice, bob, aliceChain, NOW + 1)
    const second = eviction(bob, alice, bobChain, NOW + 2)
    const forward = feed(feed(createRecordStore(network), first.bytes, NOW + 3).state, second.bytes, NOW + 3).state
    const backward = feed(feed(createRecordStore(network), second.bytes, NOW + 3).state, first.bytes, NOW + 3).state
    expect([...forward.evicted]).toEqual([[bob.nodeId, NOW + 1]])
    expect([...backward.evicted]).toEqual([[bob.nodeId, NOW + 1]])
    expect(effectiveEvictions(backward.evictionLog)).toEqual(backward.evicted)
  })

  it('sweeps silent nodes once their records expire, and forgets old leaves', () => {
    let state = storeWith(
      peerRecord(alice, network, aliceChain, { expiresAt: NOW + 5 * MINUTE }).bytes,
      peerRecord(bob, network, bobChain, { expiresAt: NOW + 10 * MINUTE }).bytes,
    )
    expect(sweepExpired(state, NOW + 4 * MINUTE).state).toBe(state)
    const swept = sweepExpired(state, NOW + 5 * MINUTE)
    expect(swept.removed).toEqual([alice.nodeId])
    state = feed(swept.state, signLeave(bob, { networkId: network.id, seq: NOW + 1, admissions: bobChain }).bytes, NOW + 6 * MINUTE).state
    expect(state.departed.has(bob.nodeId)).toBe(true)
    expect(sweepExpired(state, NOW + 6 * MINUTE + 66 * MINUTE).state.departed.size).toBe(0)
  })
})

describe('admission of a joiner', () => {
  function invite(maxUses: number, issuer: Signer = founder): JoinToken {
    const text = createToken({ network, issuer, bootstrap: [], now: NOW, random: countingRandom(7), maxUses }).reveal()
    const parsed = parseToken(text, { now: NOW, expectedNetworkId: network.id })
    if (!parsed.ok) throw new Error(parsed.reason)
    return parsed.token
  }

  it('signs an admission whose chain the store accepts, and counts uses', () => {
    const token = invite(1)
    const first = admitJoiner(createRecordStore(network), { token, joiner: alice.nodeId, admitter: founder, admitterChain: [], now: NOW })
    expect(first.ok).toBe(true)
    if (!first.ok) return
    expect(first.admissions.map((a) => [a.admitter, a.joiner, a.inviteId])).toEqual([[founder.nodeId, alice.nodeId, token.inviteId]])
    expect(feed(first.state, peerRecord(alice, network, first.admissions).bytes).outcome.accepted).toBe(true)
    // The same joiner asking again is not a second use; another joiner is.
    expect(admitJoiner(first.state, { token, joiner: alice.nodeId, admitter: founder, admitterChain: [], now: NOW }).ok).toBe(true)
    expect(admitJoiner(first.state, { token, joiner: bob.nodeId, admitter: founder, admitterChain: [], now: NOW })).toEqual({
      ok: false,
      reason: 'invite already used 1 of 1 times',
    })
  })

  it('learns uses from admissions gossiped in records (best effort)', () => {
    const token = invite(1)
    const chain = [admission(founder, alice, { inviteId: token.inviteId })]
    const state = storeWith(peerRecord(alice, network, chain).bytes)
    expect(admitJoiner(state, { token, joiner: bob.nodeId, admitter: founder, admitterChain: [], now: NOW })).toMatchObject({ ok: false })
  })

  it('lets a member admit, extending its own chain', () => {
    const token = invite(2)
    const result = admitJoiner(createRecordStore(network), { token, joiner: bob.nodeId, admitter: alice, admitterChain: aliceChain, now: NOW })
    expect(result.ok && result.admissions.map((a) => a.joiner)).toEqual([alice.nodeId, bob.nodeId])
  })

  it('refuses expired invites, evicted joiners, unknown issuers and admitters without a chain', () => {
    const token = invite(5)
    const store = createRecordStore(network)
    const base = { token, joiner: bob.nodeId, admitter: founder, admitterChain: [] as Admission[], now: NOW }
    expect(admitJoiner(store, { ...base, now: token.expiresAt })).toEqual({ ok: false, reason: 'invite expired' })
    const evicted = feed(store, eviction(founder, bob, []).bytes).state
    expect(admitJoiner(evicted, base)).toEqual({ ok: false, reason: 'joiner is evicted' })
    expect(admitJoiner(store, { ...base, token: invite(1, mallory) })).toEqual({ ok: false, reason: 'invite issuer is not a known member' })
    expect(admitJoiner(store, { ...base, admitter: mallory })).toMatchObject({ ok: false, reason: expect.stringMatching(/^this member cannot admit/) as unknown })
  })
})

const PINNED_ADMISSION_SIGNATURE =
  '96f7cdccce263ff16a3c42c224b074e1122e249f8be7e8d7f228aa8ce263eaf5c37d18d09c57cf661a02dc4b0fffbd8d02344e616822bca7c76a47fb9860f50f'
const PINNED_RECORD_LENGTH = 445
const PINNED_RECORD_SHA256 = '68f2718fcf3a82afe83f0d8e48f109a403d42587320d78cb44c23e7ec42dc334'


describe('differsBeyondRefresh', () => {
  const chain = [admission(founder, alice)]
  const base = peerRecord(alice, network, chain)

  it('a refresh (sequence, expiry, link RTTs, signature) is not news', () => {
    const refreshed = peerRecord(alice, network, chain, { seq: NOW + 200_000, expiresAt: NOW + 13 * MINUTE, linkRtts: [{ peer: bob.nodeId, rttMs: 3 }] })
    expect(differsBeyondRefresh(refreshed, base)).toBe(false)
  })

  it('anything kernel state or stored links are built from is', () => {
    const changes: Partial<Parameters<typeof peerRecord>[3]>[] = [
      { hostname: 'host-b' },
      { overlayIpv4: '10.0.0.99' },
      { overlayIpv6: 'fd00::99' },
      { wireguardPublicKey: Buffer.alloc(32, 7).toString('base64') },
      { endpoints: [{ address: '192.0.2.1', port: 51822, source: 'configured' }, { address: '2001:db8::1', port: 51821, source: 'observed' }] },
      { endpoints: [{ address: '192.0.2.1', port: 51820, source: 'configured' }] },
      { capabilities: { linkKinds: ['wireguard'], wireguardBackend: 'userspace' } },
      { capabilities: { linkKinds: ['wireguard', 'gretap'], wireguardBackend: 'kernel' } },
      { routes: [] },
    ]
    for (const change of changes) expect(differsBeyondRefresh(peerRecord(alice, network, chain, change), base), JSON.stringify(change)).toBe(true)
    expect(differsBeyondRefresh(peerRecord(alice, network, [admission(founder, alice, { issuedAt: NOW - 1 })]), base)).toBe(true)
  })
})
