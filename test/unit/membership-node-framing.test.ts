// The frame decoder under every way a peer could cut, corrupt or overfill a
// stream: it must return exactly the frames sent whatever the chunking, and
// refuse (never throw, never buffer past the limit) everything else.

import { describe, expect, it } from 'vitest'
import { FRAME_HEADER_BYTES, FrameDecoder, encodeFrame } from '../../src/membership/framing.js'
import { prng } from './membership-fixtures.js'

const LIMIT = 1024

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((part) => [...part]))
}

/** Feeds `bytes` in chunks cut at random points; returns frames, or the first failure. */
function decodeChunked(bytes: Uint8Array, random: ReturnType<typeof prng>, limit = LIMIT): { frames: Uint8Array[]; failure?: string } {
  const decoder = new FrameDecoder(limit)
  const frames: Uint8Array[] = []
  let offset = 0
  while (offset < bytes.length) {
    const size = 1 + random.int(Math.min(64, bytes.length - offset))
    const pushed = decoder.push(bytes.subarray(offset, offset + size))
    offset += size
    if (!pushed.ok) return { frames, failure: pushed.reason }
    frames.push(...pushed.frames)
    expect(decoder.pendingBytes).toBeLessThanOrEqual(FRAME_HEADER_BYTES + limit)
  }
  const finished = decoder.finish()
  return finished.ok ? { frames } : { frames, failure: finished.reason }
}

describe('frame encoding', () => {
  it('is a u32 big-endian length, then the payload', () => {
    expect([...encodeFrame(Uint8Array.of(0xaa, 0xbb, 0xcc), LIMIT)]).toEqual([0, 0, 0, 3, 0xaa, 0xbb, 0xcc])
    expect([...encodeFrame(new Uint8Array(258), LIMIT).subarray(0, 4)]).toEqual([0, 0, 1, 2])
  })

  it('refuses to encode empty or oversized payloads', () => {
    expect(() => encodeFrame(new Uint8Array(0), LIMIT)).toThrow(RangeError)
    expect(() => encodeFrame(new Uint8Array(LIMIT + 1), LIMIT)).toThrow(RangeError)
  })
})

describe('frame decoder', () => {
  it('returns exactly the frames sent, however the stream is chunked', () => {
    const random = prng(7)
    for (let round = 0; round < 300; round++) {
      const payloads = Array.from({ length: 1 + random.int(6) }, () => random.bytes(1 + random.int(LIMIT)))
      const result = decodeChunked(concat(payloads.map((payload) => encodeFrame(payload, LIMIT))), random)
      expect(result.failure).toBeUndefined()
      expect(result.frames.map((frame) => [...frame])).toEqual(payloads.map((payload) => [...payload]))
    }
  })

  it('accepts a frame of exactly the limit and refuses one byte more, from the header alone', () => {
    const exact = new FrameDecoder(LIMIT).push(encodeFrame(new Uint8Array(LIMIT), LIMIT))
    expect(exact.ok && exact.frames[0]?.length).toBe(LIMIT)
    const header = Uint8Array.of(0, 0, (LIMIT + 1) >> 8, (LIMIT + 1) & 0xff)
    expect(new FrameDecoder(LIMIT).push(header)).toMatchObject({ ok: false, reason: 'frame-too-large' })
    expect(new FrameDecoder(LIMIT).push(Uint8Array.of(0xff, 0xff, 0xff, 0xff))).toMatchObject({ ok: false, reason: 'frame-too-large' })
  })

  it('refuses an empty frame', () => {
    expect(new FrameDecoder(LIMIT).push(Uint8Array.of(0, 0, 0, 0, 1))).toMatchObject({ ok: false, reason: 'frame-empty' })
  })

  it('reports a stream that ends inside a header or a payload', () => {
    const frame = encodeFrame(Uint8Array.of(1, 2, 3, 4, 5), LIMIT)
    for (let cut = 1; cut < frame.length; cut++) {
      const decoder = new FrameDecoder(LIMIT)
      expect(decoder.push(frame.subarray(0, cut))).toEqual({ ok: true, frames: [] })
      expect(decoder.finish()).toMatchObject({ ok: false, reason: 'frame-truncated' })
    }
  })

  it('stays failed after a bad length, whatever follows', () => {
    const decoder = new FrameDecoder(LIMIT)
    expect(decoder.push(Uint8Array.of(0, 0, 0, 0)).ok).toBe(false)
    expect(decoder.push(encodeFrame(Uint8Array.of(1), LIMIT))).toMatchObject({ ok: false, reason: 'frame-empty' })
    expect(decoder.finish()).toMatchObject({ ok: false, reason: 'frame-empty' })
    expect(decoder.pendingBytes).toBe(0)
  })

  it('never throws on random bytes, and never holds more than one frame', () => {
    const random = prng(8)
    for (let round = 0; round < 2000; round++) {
      const limit = 1 + random.int(LIMIT)
      const bytes = random.bytes(random.int(3 * LIMIT))
      // Small lengths are common in real headers; make some rounds start with one.
      if (random.next() < 0.5 && bytes.length >= 4) bytes.set([0, 0, random.int(4), random.int(256)])
      expect(() => decodeChunked(bytes, random, limit)).not.toThrow()
    }
  })

  it('refuses a valid frame stream with one bit flipped in a header, or decodes it to different frames', () => {
    const random = prng(9)
    const payloads = [random.bytes(40), random.bytes(300), random.bytes(7)]
    const stream = concat(payloads.map((payload) => encodeFrame(payload, LIMIT)))
    const headerBits = [0, 44, 348].flatMap((start) => Array.from({ length: 32 }, (_, bit) => start * 8 + bit))
    for (const bit of headerBits) {
      const mutated = stream.slice()
      mutated[bit >> 3] = (mutated[bit >> 3] ?? 0) ^ (0x80 >> (bit & 7))
      const result = decodeChunked(mutated, random)
      const same = result.failure === undefined && result.frames.length === payloads.length && result.frames.every((frame, i) => frame.length === payloads[i]?.length)
      expect(same).toBe(false)
    }
  })

  it('refuses a limit outside 1 byte to 1 MiB', () => {
    expect(() => new FrameDecoder(0)).toThrow(RangeError)
    expect(() => new FrameDecoder(2 ** 20 + 1)).toThrow(RangeError)
  })
})
