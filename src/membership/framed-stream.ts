// A libp2p stream seen as a sequence of frames (see ./framing.ts): read one
// frame, write one frame, close. Every call takes an AbortSignal; an abort or
// a framing error aborts the underlying stream, so a misbehaving peer cannot
// keep a handler waiting or make it buffer without bound.

import type { Stream } from '@libp2p/interface'
import { ProtocolError } from './errors.js'
import { FrameDecoder, encodeFrame } from './framing.js'

export interface SignalOptions {
  signal: AbortSignal
}

export class FramedStream {
  readonly #stream: Stream
  readonly #maxFrameBytes: number
  readonly #decoder: FrameDecoder
  readonly #iterator: AsyncIterator<Uint8Array | { subarray: () => Uint8Array }>
  readonly #frames: Uint8Array[] = []
  #ended = false

  constructor(stream: Stream, maxFrameBytes: number) {
    this.#stream = stream
    this.#maxFrameBytes = maxFrameBytes
    this.#decoder = new FrameDecoder(maxFrameBytes)
    // Created at once so bytes that arrive before the first read are kept.
    this.#iterator = stream[Symbol.asyncIterator]()
  }

  /** The next frame, or undefined when the peer closed its end cleanly between frames. */
  async read(options: SignalOptions): Promise<Uint8Array | undefined> {
    for (;;) {
      const frame = this.#frames.shift()
      if (frame !== undefined) return frame
      if (this.#ended) {
        const finished = this.#decoder.finish()
        if (!finished.ok) throw this.#broken(finished.reason, finished.detail)
        return undefined
      }
      const next = await this.#untilAborted(this.#iterator.next(), options.signal)
      if (next.done === true) {
        this.#ended = true
        continue
      }
      const chunk = next.value instanceof Uint8Array ? next.value : next.value.subarray()
      const pushed = this.#decoder.push(chunk)
      if (!pushed.ok) throw this.#broken(pushed.reason, pushed.detail)
      this.#frames.push(...pushed.frames)
    }
  }

  /** Like read, but the peer must send a frame: an end of stream is a protocol error. */
  async readRequired(what: string, options: SignalOptions): Promise<Uint8Array> {
    const frame = await this.read(options)
    if (frame === undefined) throw new ProtocolError('early-end', `stream ended before the ${what}`)
    return frame
  }

  async write(payload: Uint8Array, options: SignalOptions): Promise<void> {
    options.signal.throwIfAborted()
    if (!this.#stream.send(encodeFrame(payload, this.#maxFrameBytes))) await this.#stream.onDrain({ signal: options.signal })
  }

  /** Closes our writing end once everything queued is sent. */
  async close(options: SignalOptions): Promise<void> {
    await this.#stream.close({ signal: options.signal })
  }

  abort(error: Error): void {
    this.#stream.abort(error)
  }

  #broken(code: string, detail: string): ProtocolError {
    const error = new ProtocolError(code, detail)
    this.#stream.abort(error)
    return error
  }

  async #untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
    if (signal.aborted) {
      this.#stream.abort(toError(signal.reason))
      throw toError(signal.reason)
    }
    let onAbort: (() => void) | undefined
    const aborted = new Promise<never>((_resolve, reject) => {
      onAbort = () => {
        this.#stream.abort(toError(signal.reason))
        reject(toError(signal.reason))
      }
      signal.addEventListener('abort', onAbort, { once: true })
    })
    try {
      return await Promise.race([promise, aborted])
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
    }
  }
}

function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error('aborted')
}
