// Messages of the join protocol (/meshd/join/1.0.0), one frame each:
//
//   request  (joiner → member): u8 0x10, u8 version 1, u16 length, token text (ASCII)
//   admitted (member → joiner): u8 0x11, u8 version 1, u8 count (≤ 8), count × (u16 length, signed admission)
//   refused  (member → joiner): u8 0x12, u8 version 1, u8 length, reason (printable ASCII, ≤ 200)
//
// The joiner's node id is not in the request: the member takes it from the
// Noise-authenticated connection. The token travels whole because the member
// judges the invite with parseToken (signature, expiry, network) exactly as
// the joiner did; the stream is encrypted and the member already holds the
// network secret the token carries.

import { ByteReader, ByteWriter, DecodeError, type StringField } from './codec.js'
import { MAX_ADMISSION_BYTES, MAX_ADMISSION_DEPTH, decodeAdmission, type Admission } from './records.js'
import { MAX_TOKEN_TEXT_LENGTH } from './token.js'

export const JOIN_PROTOCOL = '/meshd/join/1.0.0'
export const JOIN_MESSAGE_VERSION = 1
/** Largest join frame: the longer of a request with the longest token and a full admission chain. */
export const MAX_JOIN_FRAME_BYTES = Math.max(2 + 2 + MAX_TOKEN_TEXT_LENGTH, 2 + 1 + MAX_ADMISSION_DEPTH * (2 + MAX_ADMISSION_BYTES))

const MessageType = { request: 0x10, admitted: 0x11, refused: 0x12 } as const

export const JOIN_REASON_FIELD: StringField = { name: 'refusal reason', minLength: 1, maxLength: 200, pattern: /^[\x20-\x7e]+$/ }
const TOKEN_TEXT_FIELD: StringField = { name: 'token', minLength: 1, maxLength: MAX_TOKEN_TEXT_LENGTH, pattern: /^[\x21-\x7e]+$/ }

export type JoinResponse = { kind: 'admitted'; admissions: Admission[] } | { kind: 'refused'; reason: string }
export type MessageDecode<T> = { ok: true; value: T } | { ok: false; detail: string }

export function encodeJoinRequest(tokenText: string): Uint8Array {
  const compact = tokenText.replace(/\s+/g, '')
  return header(MessageType.request).bytes16(encodeAscii(compact, TOKEN_TEXT_FIELD), MAX_TOKEN_TEXT_LENGTH).finish()
}

/** The token text of a join request; its content is judged by parseToken afterwards. */
export function decodeJoinRequest(bytes: Uint8Array): MessageDecode<string> {
  return decode(bytes, MessageType.request, (reader) => decodeAscii(reader.bytes16(MAX_TOKEN_TEXT_LENGTH), TOKEN_TEXT_FIELD))
}

export function encodeJoinResponse(response: JoinResponse): Uint8Array {
  if (response.kind === 'refused') return header(MessageType.refused).string8(joinReasonText(response.reason), JOIN_REASON_FIELD).finish()
  if (response.admissions.length > MAX_ADMISSION_DEPTH) throw new RangeError(`an admission chain has at most ${MAX_ADMISSION_DEPTH} links`)
  const writer = header(MessageType.admitted).u8(response.admissions.length)
  for (const admission of response.admissions) writer.bytes16(admission.bytes, MAX_ADMISSION_BYTES)
  return writer.finish()
}

/** Admissions come back signature-checked; whether they form a chain to the joiner is the caller's check. */
export function decodeJoinResponse(bytes: Uint8Array): MessageDecode<JoinResponse> {
  const type = bytes[0]
  if (type === MessageType.refused) {
    return decode(bytes, MessageType.refused, (reader) => ({ kind: 'refused' as const, reason: reader.string8(JOIN_REASON_FIELD) }))
  }
  return decode(bytes, MessageType.admitted, (reader) => {
    const count = reader.count(MAX_ADMISSION_DEPTH, 'admissions')
    const admissions = Array.from({ length: count }, () => {
      const result = decodeAdmission(reader.bytes16(MAX_ADMISSION_BYTES))
      if (!result.ok) throw new DecodeError(`admission: ${result.detail}`)
      return result.value
    })
    return { kind: 'admitted' as const, admissions }
  })
}

/** A refusal line that always fits the wire field: printable ASCII, at most 200 characters. */
export function joinReasonText(reason: string): string {
  const printable = reason.replace(/[^\x20-\x7e]/g, '?').slice(0, JOIN_REASON_FIELD.maxLength)
  return printable.length === 0 ? 'refused' : printable
}

function header(type: number): ByteWriter {
  return new ByteWriter().u8(type).u8(JOIN_MESSAGE_VERSION)
}

function decode<T>(bytes: Uint8Array, type: number, read: (reader: ByteReader) => T): MessageDecode<T> {
  try {
    const reader = new ByteReader(bytes)
    const actualType = reader.u8()
    if (actualType !== type) throw new DecodeError(`unexpected message type 0x${actualType.toString(16)}`)
    const version = reader.u8()
    if (version !== JOIN_MESSAGE_VERSION) throw new DecodeError(`join message version ${version} is not supported`)
    const value = read(reader)
    reader.end()
    return { ok: true, value }
  } catch (error) {
    return { ok: false, detail: error instanceof Error ? error.message : 'undecodable' }
  }
}

function encodeAscii(text: string, field: StringField): Uint8Array {
  if (text.length < field.minLength || text.length > field.maxLength || !field.pattern.test(text)) throw new RangeError(`invalid ${field.name}`)
  return new TextEncoder().encode(text)
}

function decodeAscii(bytes: Uint8Array, field: StringField): string {
  const text = Buffer.from(bytes).toString('latin1')
  if (text.length < field.minLength || !field.pattern.test(text)) throw new DecodeError(`invalid ${field.name}`)
  return text
}
