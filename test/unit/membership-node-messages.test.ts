// Codecs of the join and link-negotiation messages: exact bytes pinned (a
// change is a visible protocol break), round trips, and fuzzing — decoders
// never throw and refuse truncations, trailing bytes and out-of-range fields.

import { describe, expect, it } from 'vitest'
import { Secret } from '../../src/logging/secret.js'
import { toHex } from '../../src/membership/codec.js'
import { decodeJoinRequest, decodeJoinResponse, encodeJoinRequest, encodeJoinResponse, joinReasonText } from '../../src/membership/join-messages.js'
import { decodeLinkMessage, encodeLinkMessage, linkReasonText, type LinkMessage, type LinkOffer } from '../../src/membership/link-messages.js'
import { signAdmission } from '../../src/membership/records.js'
import type { InviteId } from '../../src/membership/token.js'
import { NOW, labNetwork, prng, seededSigner } from './membership-fixtures.js'

const INCARNATION = Uint8Array.from({ length: 16 }, (_, i) => i)
const KEY = new Uint8Array(32).fill(0xee)

const offer: LinkOffer = {
  incarnation: INCARNATION,
  listenPort: 51820,
  linkLocalsInUse: ['169.254.1.0', '169.254.1.1'],
  endpoints: [
    { address: '192.0.2.1', port: 51820, source: 'configured' },
    { address: '2001:db8::1', port: 51820, source: 'interface' },
  ],
  observedAddress: '198.51.100.7',
}

const messages: LinkMessage[] = [
  { type: 'request', incarnation: INCARNATION },
  { type: 'propose', offer, presharedKey: new Secret(KEY) },
  { type: 'accept', offer: { ...offer, observedAddress: undefined, linkLocalsInUse: [] } },
  { type: 'confirm', attempt: 3 },
  { type: 'refuse', reason: 'not a member (yet)' },
]

/** Comparable form: the key revealed, bytes as arrays. */
function plain(message: LinkMessage): unknown {
  return JSON.parse(JSON.stringify(message, (_key, value: unknown) => (value instanceof Uint8Array ? [...value] : value instanceof Secret ? [...(value.reveal() as Uint8Array)] : value)))
}

describe('link messages', () => {
  it('pins the exact bytes of a proposal', () => {
    const proposal = messages[1]
    if (proposal === undefined) throw new Error('fixture')
    expect(toHex(encodeLinkMessage(proposal))).toBe(
      '2101' + // propose, version 1
        '000102030405060708090a0b0c0d0e0f' + // incarnation
        'ca6c' + // listen port 51820
        '0002' + 'a9fe0100' + 'a9fe0101' + // 2 link-locals in use
        '02' + // 2 endpoints
        '04c0000201' + 'ca6c' + '00' + // 192.0.2.1:51820 configured
        '0620010db8000000000000000000000001' + 'ca6c' + '01' + // [2001:db8::1]:51820 interface
        '04c6336407' + // observed 198.51.100.7
        'ee'.repeat(32), // preshared key
    )
  })

  it('round-trips every message type', () => {
    for (const message of messages) {
      const decoded = decodeLinkMessage(encodeLinkMessage(message))
      if (!decoded.ok) throw new Error(decoded.detail)
      expect(plain(decoded.value)).toEqual(plain(message))
    }
  })

  it('keeps the preshared key out of JSON and inspection', () => {
    const decoded = decodeLinkMessage(encodeLinkMessage(messages[1] ?? messages[0] as LinkMessage))
    expect(decoded.ok).toBe(true)
    expect(JSON.stringify(decoded)).not.toContain('ee'.repeat(4))
    expect(JSON.stringify(decoded)).toContain('[redacted]')
  })

  it('refuses every truncation and any trailing byte', () => {
    for (const message of messages) {
      const bytes = encodeLinkMessage(message)
      for (let cut = 0; cut < bytes.length; cut++) expect(decodeLinkMessage(bytes.subarray(0, cut)).ok).toBe(false)
      expect(decodeLinkMessage(Uint8Array.from([...bytes, 0])).ok).toBe(false)
    }
  })

  it('refuses out-of-range fields', () => {
    const bytes = encodeLinkMessage(messages[1] ?? (messages[0] as LinkMessage))
    const patched = (offset: number, ...values: number[]): Uint8Array => {
      const copy = bytes.slice()
      copy.set(values, offset)
      return copy
    }
    expect(decodeLinkMessage(patched(1, 2)).ok).toBe(false) // version 2
    expect(decodeLinkMessage(patched(0, 0x2f)).ok).toBe(false) // unknown type
    expect(decodeLinkMessage(patched(18, 0, 0)).ok).toBe(false) // listen port 0
    expect(decodeLinkMessage(patched(22, 0x0a)).ok).toBe(false) // in-use address 10.254.1.0 is not link-local
    expect(decodeLinkMessage(patched(30, 17)).ok).toBe(false) // 17 endpoints
    expect(decodeLinkMessage(patched(31, 5)).ok).toBe(false) // address family 5
    expect(decodeLinkMessage(patched(38, 3)).ok).toBe(false) // endpoint source 3
  })

  it('refuses to encode what no peer could decode', () => {
    expect(() => encodeLinkMessage({ type: 'accept', offer: { ...offer, listenPort: 0 } })).toThrow(RangeError)
    expect(() => encodeLinkMessage({ type: 'accept', offer: { ...offer, linkLocalsInUse: ['10.0.0.1'] } })).toThrow(RangeError)
    expect(() => encodeLinkMessage({ type: 'request', incarnation: new Uint8Array(3) })).toThrow(RangeError)
  })

  it('never throws on random bytes', () => {
    const random = prng(21)
    for (let i = 0; i < 5000; i++) {
      const bytes = random.bytes(random.int(200))
      if (bytes.length > 1 && random.next() < 0.7) bytes.set([0x20 + random.int(5), 1])
      expect(() => decodeLinkMessage(bytes)).not.toThrow()
    }
  })

  it('makes any reason fit the wire', () => {
    expect(linkReasonText('')).toBe('refused')
    expect(linkReasonText('é\n'.repeat(300))).toHaveLength(200)
    expect(decodeLinkMessage(encodeLinkMessage({ type: 'refuse', reason: 'x\u0000y' }))).toMatchObject({ ok: true, value: { reason: 'x?y' } })
  })
})

describe('join messages', () => {
  const founder = seededSigner(1)
  const alice = seededSigner(2)
  const network = labNetwork(founder)
  const admission = signAdmission(founder, { networkId: network.id, joiner: alice.nodeId, inviteId: '000102030405060708090a0b0c0d0e0f' as InviteId, issuedAt: NOW, expiresAt: null })

  it('pins the request layout and strips whitespace from pasted tokens', () => {
    expect(toHex(encodeJoinRequest('meshd1.AB\ncd'))).toBe('1001' + '000b' + Buffer.from('meshd1.ABcd').toString('hex'))
    expect(decodeJoinRequest(encodeJoinRequest('meshd1.ABcd'))).toEqual({ ok: true, value: 'meshd1.ABcd' })
  })

  it('round-trips an admission chain and a refusal', () => {
    const admitted = decodeJoinResponse(encodeJoinResponse({ kind: 'admitted', admissions: [admission] }))
    expect(admitted.ok && admitted.value.kind === 'admitted' && toHex(admitted.value.admissions[0]?.bytes ?? new Uint8Array(0))).toBe(toHex(admission.bytes))
    expect(decodeJoinResponse(encodeJoinResponse({ kind: 'refused', reason: 'invite already used 1 of 1 times' }))).toEqual({
      ok: true,
      value: { kind: 'refused', reason: 'invite already used 1 of 1 times' },
    })
    expect(joinReasonText('bad\u0007bell')).toBe('bad?bell')
  })

  it('refuses an admission whose signature does not verify', () => {
    const bytes = encodeJoinResponse({ kind: 'admitted', admissions: [admission] })
    const forged = bytes.slice()
    forged[forged.length - 1] = (forged[forged.length - 1] ?? 0) ^ 1
    expect(decodeJoinResponse(forged).ok).toBe(false)
  })

  it('refuses truncations, trailing bytes and random input without throwing', () => {
    const samples = [encodeJoinRequest('meshd1.token'), encodeJoinResponse({ kind: 'admitted', admissions: [admission] }), encodeJoinResponse({ kind: 'refused', reason: 'no' })]
    for (const bytes of samples) {
      for (let cut = 0; cut < bytes.length; cut++) {
        expect(decodeJoinRequest(bytes.subarray(0, cut)).ok && cut === bytes.length).toBe(false)
        expect(decodeJoinResponse(bytes.subarray(0, cut)).ok).toBe(false)
      }
      expect(decodeJoinResponse(Uint8Array.from([...bytes, 0])).ok).toBe(false)
      expect(decodeJoinRequest(Uint8Array.from([...bytes, 0])).ok).toBe(false)
    }
    const random = prng(22)
    for (let i = 0; i < 3000; i++) {
      const bytes = random.bytes(random.int(300))
      if (bytes.length > 1 && random.next() < 0.7) bytes.set([0x10 + random.int(3), 1])
      expect(() => decodeJoinRequest(bytes)).not.toThrow()
      expect(() => decodeJoinResponse(bytes)).not.toThrow()
    }
  })
})
