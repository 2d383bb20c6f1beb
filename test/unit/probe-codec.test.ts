// The probe wire format: exact sizes and bytes pinned, every packet round-trips,
// and the decoder never throws and accepts only canonical encodings.

import { describe, expect, it } from 'vitest'
import { MAX_DWELL_US, decodeProbePacket, encodeProbePacket, type ProbePacket } from '../../src/probe/codec.js'
import { prng } from './membership-fixtures.js'

const A = '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
const C = '12D3KooWCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC'

const examples: [ProbePacket, number][] = [
  [{ type: 'echo-request', seq: 1 }, 8],
  [{ type: 'echo-reply', seq: 0xffffffff, responderDwellUs: 17, responderPath: null }, 13],
  [{ type: 'echo-reply', seq: 7, responderDwellUs: 17, responderPath: C }, 13 + 52],
  [{ type: 'relay-request', seq: 2, returnLeg: 'direct', destination: C }, 62],
  [{ type: 'relay-forward', seq: 3, returnLeg: 'relay', requester: A, relayDwellUs: MAX_DWELL_US }, 66],
  [{ type: 'relay-reply', seq: 4, returnLeg: 'direct', requester: A, relayDwellUs: 1, responderDwellUs: 2 }, 70],
  [{ type: 'relay-return', seq: 5, destination: C, relayDwellUs: 1, responderDwellUs: 2, returnDwellUs: 3 }, 73],
]


function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

/** Any decode must either refuse, or yield a packet whose encoding is exactly the input. */
function expectCanonicalOrRefused(bytes: Uint8Array): void {
  const result = decodeProbePacket(bytes)
  if (result.ok) expect(hex(encodeProbePacket(result.packet))).toBe(hex(bytes))
  else expect(typeof result.reason).toBe('string')
}

describe('probe codec', () => {
  it.each(examples)('round-trips %o in %i bytes', (packet, length) => {
    const bytes = encodeProbePacket(packet)
    expect(bytes.length).toBe(length)
    expect(decodeProbePacket(bytes)).toEqual({ ok: true, packet })
  })

  it('pins the header and field layout', () => {
    expect(hex(encodeProbePacket({ type: 'echo-request', seq: 0x01020304 }))).toBe('6d50010101020304')
    expect(hex(encodeProbePacket({ type: 'echo-reply', seq: 1, responderDwellUs: 0x0a0b, responderPath: null }))).toBe('6d5001020000000100000a0b00')
    expect(hex(encodeProbePacket({ type: 'echo-reply', seq: 1, responderDwellUs: 0x0a0b, responderPath: 'abc' }))).toBe('6d5001020000000100000a0b03616263')
    expect(hex(encodeProbePacket({ type: 'relay-request', seq: 1, returnLeg: 'relay', destination: 'abc' }))).toBe('6d500103000000010103616263')
  })

  it.each([
    ['empty', '', 'short'],
    ['short header', '6d500101000000', 'short'],
    ['bad magic', '6d510101000000 01', 'bad-magic'],
    ['version 2', '6d500201 00000001', 'unsupported-version'],
    ['unknown type', '6d500107 00000001', 'unknown-type'],
    ['type 0', '6d500100 00000001', 'unknown-type'],
    ['trailing byte', '6d500101 00000001 00', 'trailing-bytes'],
    ['missing dwell', '6d500102 00000001 0000', 'bad-dwell'],
    ['dwell over 10 s', '6d500102 00000001 00989681', 'bad-dwell'],
    ['return leg 2', '6d500103 00000001 02 03616263', 'bad-return-leg'],
    ['empty node id', '6d500103 00000001 00 00', 'bad-node-id'],
    ['node id longer than its bytes', '6d500103 00000001 00 05616263', 'bad-node-id'],
    ['node id with a 0 (not base58)', '6d500103 00000001 00 03613062', 'bad-node-id'],
    ['node id with a space', '6d500103 00000001 00 03612062', 'bad-node-id'],
    ['node id of 65 chars', `6d500103 00000001 00 41${'61'.repeat(65)}`, 'bad-node-id'],
  ])('refuses %s', (_name, text, reason) => {
    expect(decodeProbePacket(Buffer.from(text.replaceAll(' ', ''), 'hex'))).toEqual({ ok: false, reason })
  })

  it.each([
    ['seq -1', { type: 'echo-request', seq: -1 }],
    ['seq 2^32', { type: 'echo-request', seq: 2 ** 32 }],
    ['dwell over 10 s', { type: 'echo-reply', seq: 1, responderDwellUs: MAX_DWELL_US + 1 }],
    ['fractional dwell', { type: 'echo-reply', seq: 1, responderDwellUs: 1.5 }],
    ['non-base58 id', { type: 'relay-request', seq: 1, returnLeg: 'direct', destination: 'O0Il' }],
  ] as [string, ProbePacket][])('refuses to encode %s', (_name, packet) => {
    expect(() => encodeProbePacket(packet)).toThrow(RangeError)
  })
})

describe('probe codec fuzz', () => {
  it('random bytes never throw; anything accepted is canonical', () => {
    const random = prng(7374)
    for (let i = 0; i < 5000; i++) {
      const bytes = new Uint8Array(random.int(90))
      for (let j = 0; j < bytes.length; j++) bytes[j] = random.int(256)
      // Most inputs start with a valid header, to get past the first checks.
      if (random.next() < 0.7 && bytes.length >= 4) bytes.set([0x6d, 0x50, 1, 1 + random.int(6)])
      expectCanonicalOrRefused(bytes)
    }
  })

  it.each(examples)('every truncation and extension of %o is refused', (packet) => {
    const valid = encodeProbePacket(packet)
    for (let length = 0; length < valid.length; length++) expect(decodeProbePacket(valid.subarray(0, length)).ok, `length ${length}`).toBe(false)
    expect(decodeProbePacket(Uint8Array.from([...valid, 0])).ok).toBe(false)
  })

  it.each(examples)('every single-bit flip of %o is refused or canonical', (packet) => {
    const valid = encodeProbePacket(packet)
    for (let bit = 0; bit < valid.length * 8; bit++) {
      const flipped = valid.slice()
      flipped[bit >> 3] = (flipped[bit >> 3] ?? 0) ^ (0x80 >> (bit & 7))
      expectCanonicalOrRefused(flipped)
    }
  })

  it('decodes a view into a larger buffer at an offset', () => {
    const valid = encodeProbePacket({ type: 'relay-reply', seq: 9, returnLeg: 'relay', requester: A, relayDwellUs: 5, responderDwellUs: 6 })
    const backing = new Uint8Array(valid.length + 10)
    backing.set(valid, 7)
    expect(decodeProbePacket(backing.subarray(7, 7 + valid.length)).ok).toBe(true)
  })
})
