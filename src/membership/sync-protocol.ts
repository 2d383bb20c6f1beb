// Record exchange on connect (/meshd/sync/1.0.0), so a joiner or a healed
// partition does not wait for the next refresh: each side sends every signed
// object it holds (peer records, leaves it remembers, evictions), one per
// frame, closes its writing end, and reads the other side's until the end.
// Both directions run at once, so flow control can never deadlock them.
//
// Frames are at most MAX_RECORD_BYTES; each received object is judged by the
// record store exactly like gossip. A bad frame ends the exchange; objects
// already accepted stay accepted (each was valid on its own).

import type { Stream } from '@libp2p/interface'
import { FramedStream, type SignalOptions } from './framed-stream.js'
import { MAX_RECORD_BYTES } from './records.js'

export const SYNC_PROTOCOL = '/meshd/sync/1.0.0'
/** More objects than this in one exchange is a misbehaving peer. */
export const MAX_SYNC_OBJECTS = 65_536

export interface SyncExchange {
  /** Signed objects to send, taken when the exchange starts. */
  held: readonly Uint8Array[]
  /** Called with each received object's bytes. */
  receive: (bytes: Uint8Array) => void
}

export interface SyncResult {
  sent: number
  received: number
}

/** Runs one exchange on an open stream, from either end. */
export async function exchangeRecords(stream: Stream, exchange: SyncExchange, options: SignalOptions): Promise<SyncResult> {
  const framed = new FramedStream(stream, MAX_RECORD_BYTES)
  const send = async (): Promise<number> => {
    for (const bytes of exchange.held) await framed.write(bytes, options)
    await framed.close(options)
    return exchange.held.length
  }
  const receive = async (): Promise<number> => {
    let count = 0
    for (let frame = await framed.read(options); frame !== undefined; frame = await framed.read(options)) {
      if (++count > MAX_SYNC_OBJECTS) {
        framed.abort(new Error('too many objects'))
        break
      }
      exchange.receive(frame)
    }
    return count
  }
  const [sent, received] = await Promise.all([send(), receive()])
  return { sent, received }
}
