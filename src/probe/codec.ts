// Wire format of probe packets (UDP payloads between link-local addresses).
//
// Every packet: magic "mP" (0x6d 0x50) ‖ version (1) ‖ type ‖ seq (u32 BE) ‖
// type-specific fields. Node ids are u8 length ‖ base58btc ASCII (libp2p PeerId
// strings, 1–64 chars). Dwell times are u32 microseconds, at most 10 s. Every
// packet has exactly one length for its ids, so the decoder checks the total
// length exactly: trailing bytes are an error, not padding.
//
//   echo-request    A→C direct                      seq
//   echo-reply      C→A direct                      seq, responderDwellUs, responderPath (C's forward path to A: "" direct, else the relay's id)
//   relay-request   A→B "forward to C"              seq, returnLeg, destination
//   relay-forward   B→C                             seq, returnLeg, requester, relayDwellUs
//   relay-reply     C→A (returnLeg direct) or C→B   seq, returnLeg, requester, relayDwellUs, responderDwellUs
//   relay-return    B→A (returnLeg relay)           seq, destination, relayDwellUs, responderDwellUs, returnDwellUs
//
// The relay learns the requester, and the destination learns the relay, from
// the link the packet arrived on, so neither travels where it is implied.

import type { ReturnLeg } from './types.js'

export const PROBE_MAGIC = 0x6d50
export const PROBE_VERSION = 1
export const MAX_NODE_ID_LENGTH = 64
/** A dwell longer than this is nonsense (or an attack on the arithmetic); such packets are refused. */
export const MAX_DWELL_US = 10_000_000
const BASE58 = /^[1-9A-HJ-NP-Za-km-z]+$/

export const PacketType = {
  echoRequest: 1,
  echoReply: 2,
  relayRequest: 3,
  relayForward: 4,
  relayReply: 5,
  relayReturn: 6,
} as const

export type ProbePacket =
  | { type: 'echo-request'; seq: number }
  | { type: 'echo-reply'; seq: number; responderDwellUs: number; responderPath: string | null }
  | { type: 'relay-request'; seq: number; returnLeg: ReturnLeg; destination: string }
  | { type: 'relay-forward'; seq: number; returnLeg: ReturnLeg; requester: string; relayDwellUs: number }
  | { type: 'relay-reply'; seq: number; returnLeg: ReturnLeg; requester: string; relayDwellUs: number; responderDwellUs: number }
  | { type: 'relay-return'; seq: number; destination: string; relayDwellUs: number; responderDwellUs: number; returnDwellUs: number }

export type DecodeResult = { ok: true; packet: ProbePacket } | { ok: false; reason: string }

const HEADER_BYTES = 8

/** True for a string the codec can carry as a node id. */
export function isEncodableNodeId(id: string): boolean {
  return id.length >= 1 && id.length <= MAX_NODE_ID_LENGTH && BASE58.test(id)
}

/** Encoded size of a packet, for budgets. */
export function encodedLength(packet: ProbePacket): number {
  return encodeProbePacket(packet).length
}

/** Encodes a packet; throws RangeError on values the decoder would refuse (a programming error, not input). */
export function encodeProbePacket(packet: ProbePacket): Uint8Array {
  const ids: string[] = []
  const u32s: number[] = []
  let returnLeg: ReturnLeg | undefined
  /** A trailing id that may be empty (echo-reply's responderPath). */
  let optionalId: string | null | undefined
  let type: number
  switch (packet.type) {
    case 'echo-request':
      type = PacketType.echoRequest
      break
    case 'echo-reply':
      type = PacketType.echoReply
      u32s.push(packet.responderDwellUs)
      optionalId = packet.responderPath
      break
    case 'relay-request':
      type = PacketType.relayRequest
      returnLeg = packet.returnLeg
      ids.push(packet.destination)
      break
    case 'relay-forward':
      type = PacketType.relayForward
      returnLeg = packet.returnLeg
      ids.push(packet.requester)
      u32s.push(packet.relayDwellUs)
      break
    case 'relay-reply':
      type = PacketType.relayReply
      returnLeg = packet.returnLeg
      ids.push(packet.requester)
      u32s.push(packet.relayDwellUs, packet.responderDwellUs)
      break
    case 'relay-return':
      type = PacketType.relayReturn
      ids.push(packet.destination)
      u32s.push(packet.relayDwellUs, packet.responderDwellUs, packet.returnDwellUs)
      break
  }
  if (!Number.isInteger(packet.seq) || packet.seq < 0 || packet.seq > 0xffffffff) throw new RangeError(`probe seq out of range: ${packet.seq}`)
  for (const id of optionalId ? [...ids, optionalId] : ids) if (!isEncodableNodeId(id)) throw new RangeError('probe node id is not 1–64 base58 characters')
  for (const value of u32s) if (!Number.isInteger(value) || value < 0 || value > MAX_DWELL_US) throw new RangeError(`probe dwell out of range: ${value}`)
  const length = HEADER_BYTES + (returnLeg === undefined ? 0 : 1) + ids.reduce((sum, id) => sum + 1 + id.length, 0) + 4 * u32s.length + (optionalId === undefined ? 0 : 1 + (optionalId?.length ?? 0))
  const bytes = new Uint8Array(length)
  const view = new DataView(bytes.buffer)
  view.setUint16(0, PROBE_MAGIC)
  bytes[2] = PROBE_VERSION
  bytes[3] = type
  view.setUint32(4, packet.seq)
  let at = HEADER_BYTES
  if (returnLeg !== undefined) bytes[at++] = returnLeg === 'direct' ? 0 : 1
  for (const id of ids) {
    bytes[at++] = id.length
    for (let i = 0; i < id.length; i++) bytes[at++] = id.charCodeAt(i)
  }
  for (const value of u32s) {
    view.setUint32(at, value)
    at += 4
  }
  if (optionalId !== undefined) {
    const id = optionalId ?? ''
    bytes[at++] = id.length
    for (let i = 0; i < id.length; i++) bytes[at++] = id.charCodeAt(i)
  }
  return bytes
}

/** Decodes and validates a packet. Never throws: bad input yields a reason. */
export function decodeProbePacket(bytes: Uint8Array): DecodeResult {
  if (bytes.length < HEADER_BYTES) return { ok: false, reason: 'short' }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint16(0) !== PROBE_MAGIC) return { ok: false, reason: 'bad-magic' }
  if (bytes[2] !== PROBE_VERSION) return { ok: false, reason: 'unsupported-version' }
  const type = bytes[3]
  const seq = view.getUint32(4)
  let at = HEADER_BYTES

  const readReturnLeg = (): ReturnLeg | undefined => {
    if (at >= bytes.length) return undefined
    const value = bytes[at++]
    return value === 0 ? 'direct' : value === 1 ? 'relay' : undefined
  }
  const readId = (): string | undefined => {
    if (at >= bytes.length) return undefined
    const length = bytes[at++] ?? 0
    if (length === 0 || length > MAX_NODE_ID_LENGTH || at + length > bytes.length) return undefined
    const id = String.fromCharCode(...bytes.subarray(at, at + length))
    at += length
    return BASE58.test(id) ? id : undefined
  }
  const readDwell = (): number | undefined => {
    if (at + 4 > bytes.length) return undefined
    const value = view.getUint32(at)
    at += 4
    return value <= MAX_DWELL_US ? value : undefined
  }
  const finish = (packet: ProbePacket): DecodeResult => (at === bytes.length ? { ok: true, packet } : { ok: false, reason: 'trailing-bytes' })

  switch (type) {
    case PacketType.echoRequest:
      return finish({ type: 'echo-request', seq })
    case PacketType.echoReply: {
      const responderDwellUs = readDwell()
      if (responderDwellUs === undefined) return { ok: false, reason: 'bad-dwell' }
      if (at >= bytes.length) return { ok: false, reason: 'bad-node-id' }
      let responderPath: string | null = null
      if (bytes[at] === 0) at++
      else {
        const id = readId()
        if (id === undefined) return { ok: false, reason: 'bad-node-id' }
        responderPath = id
      }
      return finish({ type: 'echo-reply', seq, responderDwellUs, responderPath })
    }
    case PacketType.relayRequest: {
      const returnLeg = readReturnLeg()
      if (returnLeg === undefined) return { ok: false, reason: 'bad-return-leg' }
      const destination = readId()
      if (destination === undefined) return { ok: false, reason: 'bad-node-id' }
      return finish({ type: 'relay-request', seq, returnLeg, destination })
    }
    case PacketType.relayForward: {
      const returnLeg = readReturnLeg()
      if (returnLeg === undefined) return { ok: false, reason: 'bad-return-leg' }
      const requester = readId()
      if (requester === undefined) return { ok: false, reason: 'bad-node-id' }
      const relayDwellUs = readDwell()
      if (relayDwellUs === undefined) return { ok: false, reason: 'bad-dwell' }
      return finish({ type: 'relay-forward', seq, returnLeg, requester, relayDwellUs })
    }
    case PacketType.relayReply: {
      const returnLeg = readReturnLeg()
      if (returnLeg === undefined) return { ok: false, reason: 'bad-return-leg' }
      const requester = readId()
      if (requester === undefined) return { ok: false, reason: 'bad-node-id' }
      const relayDwellUs = readDwell()
      const responderDwellUs = readDwell()
      if (relayDwellUs === undefined || responderDwellUs === undefined) return { ok: false, reason: 'bad-dwell' }
      return finish({ type: 'relay-reply', seq, returnLeg, requester, relayDwellUs, responderDwellUs })
    }
    case PacketType.relayReturn: {
      const destination = readId()
      if (destination === undefined) return { ok: false, reason: 'bad-node-id' }
      const relayDwellUs = readDwell()
      const responderDwellUs = readDwell()
      const returnDwellUs = readDwell()
      if (relayDwellUs === undefined || responderDwellUs === undefined || returnDwellUs === undefined) return { ok: false, reason: 'bad-dwell' }
      return finish({ type: 'relay-return', seq, destination, relayDwellUs, responderDwellUs, returnDwellUs })
    }
    default:
      return { ok: false, reason: 'unknown-type' }
  }
}
