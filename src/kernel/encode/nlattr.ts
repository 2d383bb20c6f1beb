// Netlink framing as plain Buffer arithmetic: message headers, attributes
// (TLVs) and the flag and errno vocabularies of include/uapi/linux/netlink.h.
// Pure: no sockets, no `netlink` package. Everything meshd sends to the kernel
// is built with these helpers, so unit tests can compare bytes with iproute2.

import { constants as osConstants } from 'node:os'

// ── Message header (struct nlmsghdr) ─────────────────────────────────────────

export const NLMSG_HDRLEN = 16

export const NLMSG_NOOP = 1
export const NLMSG_ERROR = 2
export const NLMSG_DONE = 3
export const NLMSG_OVERRUN = 4
/** Types below this are control messages; protocol messages (and generic-netlink family ids) start here. */
export const NLMSG_MIN_TYPE = 0x10

export const NLM_F_REQUEST = 0x01
export const NLM_F_MULTI = 0x02
export const NLM_F_ACK = 0x04
export const NLM_F_DUMP_INTR = 0x10
// Modifiers to GET requests
export const NLM_F_ROOT = 0x100
export const NLM_F_MATCH = 0x200
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
// Modifiers to NEW requests
export const NLM_F_REPLACE = 0x100
export const NLM_F_EXCL = 0x200
export const NLM_F_CREATE = 0x400

/** A request before framing: the socket layer adds length, sequence number and port. */
export interface NlRequest {
  type: number
  /** NLM_F_* flags other than NLM_F_REQUEST/NLM_F_ACK, which the socket layer adds. */
  flags: number
  payload: Buffer
}

export interface NlMessage {
  type: number
  flags: number
  seq: number
  pid: number
  payload: Buffer
}

/** Frames one message: nlmsghdr followed by the (already aligned) payload. */
export function frameMessage(message: Omit<NlMessage, 'pid'> & { pid?: number }): Buffer {
  const header = Buffer.alloc(NLMSG_HDRLEN)
  header.writeUInt32LE(NLMSG_HDRLEN + message.payload.length, 0)
  header.writeUInt16LE(message.type, 4)
  header.writeUInt16LE(message.flags, 6)
  header.writeUInt32LE(message.seq >>> 0, 8)
  header.writeUInt32LE(message.pid ?? 0, 12)
  return Buffer.concat([header, message.payload, padding(message.payload.length)])
}

/** Splits a datagram into messages; throws on a malformed length. */
export function parseMessages(datagram: Buffer): NlMessage[] {
  const messages: NlMessage[] = []
  let offset = 0
  while (offset + NLMSG_HDRLEN <= datagram.length) {
    const length = datagram.readUInt32LE(offset)
    if (length < NLMSG_HDRLEN || offset + length > datagram.length) {
      throw new Error(`malformed netlink message: length ${length} at offset ${offset} of ${datagram.length}`)
    }
    messages.push({
      type: datagram.readUInt16LE(offset + 4),
      flags: datagram.readUInt16LE(offset + 6),
      seq: datagram.readUInt32LE(offset + 8),
      pid: datagram.readUInt32LE(offset + 12),
      payload: datagram.subarray(offset + NLMSG_HDRLEN, offset + length),
    })
    offset += align(length)
  }
  return messages
}

/** The errno of an NLMSG_ERROR payload (struct nlmsgerr): 0 for an ACK, a positive errno otherwise. */
export function parseErrorPayload(payload: Buffer): number {
  if (payload.length < 4) throw new Error('malformed NLMSG_ERROR: shorter than its error field')
  return -payload.readInt32LE(0)
}

/**
 * The errno carried by NLMSG_DONE: dumps that fail part-way report it there
 * (netlink_dump_done). Older kernels send an empty payload.
 */
export function parseDonePayload(payload: Buffer): number {
  return payload.length >= 4 ? -payload.readInt32LE(0) : 0
}

// Aliases that share a number with a more common name; the kernel's own name wins.
const PREFERRED_ERRNO_NAMES: Record<number, string> = { 11: 'EAGAIN', 35: 'EDEADLK', 95: 'EOPNOTSUPP' }
const ERRNO_NAMES = new Map<number, string>()
for (const [name, value] of Object.entries(osConstants.errno)) {
  if (!ERRNO_NAMES.has(value)) ERRNO_NAMES.set(value, name)
}
for (const [value, name] of Object.entries(PREFERRED_ERRNO_NAMES)) ERRNO_NAMES.set(Number(value), name)

/** "EEXIST" for 17; "E<n>" for numbers Node does not name. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`
}

// ── Attributes (struct nlattr) ───────────────────────────────────────────────

export const NLA_HDRLEN = 4
/** Set on nested attributes by libmnl (wg(8)); iproute2 leaves it clear. */
export const NLA_F_NESTED = 0x8000
export const NLA_F_NET_BYTEORDER = 0x4000
const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff

export function align(length: number): number {
  return (length + 3) & ~3
}

function padding(length: number): Buffer {
  return Buffer.alloc(align(length) - length)
}

/** One attribute: header, payload, and the padding to the next 4-byte boundary (counted by the enclosing length, as iproute2 does). */
export function attr(type: number, payload: Buffer): Buffer {
  const length = NLA_HDRLEN + payload.length
  if (length > 0xffff) throw new RangeError(`netlink attribute ${type} too long (${length} bytes)`)
  const header = Buffer.alloc(NLA_HDRLEN)
  header.writeUInt16LE(length, 0)
  header.writeUInt16LE(type, 2)
  return Buffer.concat([header, payload, padding(payload.length)])
}

/** A nested attribute holding already-encoded attributes. */
export function nest(type: number, children: readonly Buffer[]): Buffer {
  return attr(type, Buffer.concat(children))
}

export function u8(value: number): Buffer {
  const b = Buffer.alloc(1)
  b.writeUInt8(value)
  return b
}
export function u16(value: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16LE(value)
  return b
}
/** Network byte order: ports, GRE keys. */
export function u16be(value: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(value)
  return b
}
export function u32(value: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(value >>> 0)
  return b
}
export function u32be(value: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(value >>> 0)
  return b
}
/** A NUL-terminated string (NLA_STRING / NLA_NUL_STRING). */
export function str(value: string): Buffer {
  return Buffer.concat([Buffer.from(value, 'utf8'), Buffer.alloc(1)])
}

export interface RawAttr {
  /** Type without the NLA_F_NESTED / NLA_F_NET_BYTEORDER bits. */
  type: number
  data: Buffer
}

/**
 * A little-endian u16 at an offset the caller has bounds-checked. Not
 * Buffer#readUInt16LE: that goes through Node's argument-checking wrapper,
 * which allocates on every call, and dumps walk thousands of attributes a second.
 */
const le16 = (b: Buffer, offset: number): number => (b[offset] ?? 0) | ((b[offset + 1] ?? 0) << 8)

/** All attributes of a stream, in order, repeated types included. */
export function attrList(stream: Buffer): RawAttr[] {
  const list: RawAttr[] = []
  let offset = 0
  while (offset + NLA_HDRLEN <= stream.length) {
    const length = le16(stream, offset)
    if (length < NLA_HDRLEN || offset + length > stream.length) {
      throw new Error(`malformed netlink attribute: length ${length} at offset ${offset} of ${stream.length}`)
    }
    list.push({ type: le16(stream, offset + 2) & NLA_TYPE_MASK, data: stream.subarray(offset + NLA_HDRLEN, offset + length) })
    offset += align(length)
  }
  return list
}

/** The data of the first attribute of `type` in a stream, found without decoding the others (hot path: link dumps). */
export function findAttr(stream: Buffer, type: number): Buffer | undefined {
  let offset = 0
  while (offset + NLA_HDRLEN <= stream.length) {
    const length = le16(stream, offset)
    if (length < NLA_HDRLEN || offset + length > stream.length) return undefined
    if ((le16(stream, offset + 2) & NLA_TYPE_MASK) === type) return stream.subarray(offset + NLA_HDRLEN, offset + length)
    offset += align(length)
  }
  return undefined
}

/** Attributes by type; a repeated type keeps its last value. */
export function attrMap(stream: Buffer): Map<number, Buffer> {
  return new Map(attrList(stream).map((a) => [a.type, a.data]))
}

export function getU8(data: Buffer | undefined): number | undefined {
  return data && data.length >= 1 ? data.readUInt8(0) : undefined
}
export function getU16(data: Buffer | undefined): number | undefined {
  return data && data.length >= 2 ? data.readUInt16LE(0) : undefined
}
export function getU16be(data: Buffer | undefined): number | undefined {
  return data && data.length >= 2 ? data.readUInt16BE(0) : undefined
}
export function getU32(data: Buffer | undefined): number | undefined {
  return data && data.length >= 4 ? data.readUInt32LE(0) : undefined
}
export function getU32be(data: Buffer | undefined): number | undefined {
  return data && data.length >= 4 ? data.readUInt32BE(0) : undefined
}
/** u64 counters as numbers: exact below 2^53 bytes, which no counter reaches. */
export function getU64(data: Buffer | undefined): number | undefined {
  return data && data.length >= 8 ? Number(data.readBigUInt64LE(0)) : undefined
}
export function getStr(data: Buffer | undefined): string | undefined {
  if (!data) return undefined
  const end = data.indexOf(0)
  return data.toString('utf8', 0, end === -1 ? data.length : end)
}
