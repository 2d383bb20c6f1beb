// Message framing for meshd's own libp2p protocols (join, sync, link):
// every message is a u32 big-endian length, then that many bytes.
//
// The decoder is pure and incremental: feed it chunks as they arrive, take
// whole frames out. It never buffers more than one frame of the configured
// maximum, and once it has seen a bad length it stays failed, so a peer that
// sends garbage gets one clear rejection and the stream is dropped. It never
// throws on input.

export const FRAME_HEADER_BYTES = 4
/** Upper bound for any protocol's frames; each protocol sets its own, smaller maximum. */
export const MAX_FRAME_BYTES_LIMIT = 1 << 20

export type FrameError = 'frame-empty' | 'frame-too-large' | 'frame-truncated'

export type FramePush = { ok: true; frames: Uint8Array[] } | { ok: false; reason: FrameError; detail: string }

export class FrameDecoder {
  readonly #maxFrameBytes: number
  #buffer = new Uint8Array(0)
  #failure: { reason: FrameError; detail: string } | undefined

  constructor(maxFrameBytes: number) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes > MAX_FRAME_BYTES_LIMIT) {
      throw new RangeError(`frame limit must be 1 to ${MAX_FRAME_BYTES_LIMIT} bytes`)
    }
    this.#maxFrameBytes = maxFrameBytes
  }

  /** Bytes held that do not yet form a whole frame. */
  get pendingBytes(): number {
    return this.#buffer.length
  }

  /** Appends a chunk and returns every frame it completes. */
  push(chunk: Uint8Array): FramePush {
    if (this.#failure !== undefined) return { ok: false, ...this.#failure }
    const joined = new Uint8Array(this.#buffer.length + chunk.length)
    joined.set(this.#buffer)
    joined.set(chunk, this.#buffer.length)
    const frames: Uint8Array[] = []
    let offset = 0
    while (joined.length - offset >= FRAME_HEADER_BYTES) {
      const length = readU32(joined, offset)
      if (length === 0) return this.#fail('frame-empty', 'zero-length frame')
      if (length > this.#maxFrameBytes) return this.#fail('frame-too-large', `frame of ${length} bytes exceeds ${this.#maxFrameBytes}`)
      if (joined.length - offset - FRAME_HEADER_BYTES < length) break
      frames.push(joined.slice(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + length))
      offset += FRAME_HEADER_BYTES + length
    }
    this.#buffer = joined.slice(offset)
    return { ok: true, frames }
  }

  /** Call at end of input: a partial frame left over is an error. */
  finish(): { ok: true } | { ok: false; reason: FrameError; detail: string } {
    if (this.#failure !== undefined) return { ok: false, ...this.#failure }
    if (this.#buffer.length > 0) return this.#fail('frame-truncated', `stream ended inside a frame (${this.#buffer.length} bytes pending)`)
    return { ok: true }
  }

  #fail(reason: FrameError, detail: string): { ok: false; reason: FrameError; detail: string } {
    this.#failure = { reason, detail }
    this.#buffer = new Uint8Array(0)
    return { ok: false, reason, detail }
  }
}

/** One frame: u32 BE length ‖ payload. */
export function encodeFrame(payload: Uint8Array, maxFrameBytes: number): Uint8Array {
  if (payload.length === 0 || payload.length > maxFrameBytes) throw new RangeError(`frame payload of ${payload.length} bytes outside 1..${maxFrameBytes}`)
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length)
  new DataView(frame.buffer).setUint32(0, payload.length)
  frame.set(payload, FRAME_HEADER_BYTES)
  return frame
}

function readU32(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset + offset, FRAME_HEADER_BYTES).getUint32(0)
}
