// Messages of link negotiation (/meshd/link/1.0.0), one frame each. Every
// message starts with u8 type, u8 version (1):
//
//   0x20 request  (higher id → lower id: "please negotiate with me")
//        16 incarnation
//   0x21 propose  (lower id → higher id)
//        offer, then 32 preshared key
//   0x22 accept   (higher id → lower id)
//        offer
//   0x23 confirm  (lower id → higher id: both computed the same link-locals)
//        u16 link-local attempt
//   0x24 refuse   (either way)
//        u8 length, reason (printable ASCII, ≤ 200)
//
// offer = 16 incarnation ‖ u16 listen port (1..65535)
//       ‖ u16 count (≤ 4096), count × 4 IPv4 link-local addresses in use on the sender's other links
//       ‖ u8 count (≤ 16), count × endpoint
//       ‖ observed address of the receiver (family 0 = none)
// endpoint = address ‖ u16 port (1..65535) ‖ u8 source (0 configured, 1 interface, 2 observed)
// address  = u8 family (4 or 6), then 4 or 16 bytes
//
// The preshared key only ever travels inside the Noise-encrypted stream; in
// memory it is a Secret, so logging a decoded message never shows it.

import { Secret } from '../logging/secret.js'
import { ByteReader, ByteWriter, DecodeError, type StringField } from './codec.js'
import { formatIpv4, formatIpv6, ipv4FromBytes, ipv4ToBytes, parseIpv4, parseIpv6 } from '../net/ip.js'
import { ENDPOINT_SOURCES, MAX_ENDPOINTS, type EndpointCandidate } from './records.js'

export const LINK_PROTOCOL = '/meshd/link/1.0.0'
export const LINK_MESSAGE_VERSION = 1
export const INCARNATION_BYTES = 16
export const PRESHARED_KEY_BYTES = 32
/** A host with 2 048 links has 4 096 link-local addresses in use. */
export const MAX_LINK_LOCALS_IN_USE = 4096
export const MAX_LINK_FRAME_BYTES = 2 + INCARNATION_BYTES + 2 + 2 + 4 * MAX_LINK_LOCALS_IN_USE + 1 + MAX_ENDPOINTS * 20 + 17 + PRESHARED_KEY_BYTES

export const LINK_REASON_FIELD: StringField = { name: 'refusal reason', minLength: 1, maxLength: 200, pattern: /^[\x20-\x7e]+$/ }

const MessageType = { request: 0x20, propose: 0x21, accept: 0x22, confirm: 0x23, refuse: 0x24 } as const

/** What each side tells the other about its end of the link. */
export interface LinkOffer {
  /** Random per start of the sender's service: a new value means the sender restarted. */
  readonly incarnation: Uint8Array
  /** The sender's WireGuard listen port for this link. */
  readonly listenPort: number
  /** IPv4 link-local addresses (both ends) of the sender's other links, so the pair can avoid them. */
  readonly linkLocalsInUse: readonly string[]
  /** Where the sender can be reached; ports are this link's listen port. */
  readonly endpoints: readonly EndpointCandidate[]
  /** The address the receiver's connection comes from, as the sender sees it (a STUN-like hint). */
  readonly observedAddress: string | undefined
}

export type LinkMessage =
  | { readonly type: 'request'; readonly incarnation: Uint8Array }
  | { readonly type: 'propose'; readonly offer: LinkOffer; readonly presharedKey: Secret<Uint8Array> }
  | { readonly type: 'accept'; readonly offer: LinkOffer }
  | { readonly type: 'confirm'; readonly attempt: number }
  | { readonly type: 'refuse'; readonly reason: string }

export type LinkDecode = { ok: true; value: LinkMessage } | { ok: false; detail: string }

/** Throws RangeError for a message no peer could decode (a caller bug). */
export function encodeLinkMessage(message: LinkMessage): Uint8Array {
  const writer = new ByteWriter().u8(MessageType[message.type]).u8(LINK_MESSAGE_VERSION)
  switch (message.type) {
    case 'request':
      writer.fixed(message.incarnation, INCARNATION_BYTES)
      break
    case 'propose':
      writeOffer(writer, message.offer)
      writer.fixed(message.presharedKey.reveal(), PRESHARED_KEY_BYTES)
      break
    case 'accept':
      writeOffer(writer, message.offer)
      break
    case 'confirm':
      writer.u16(message.attempt)
      break
    case 'refuse':
      writer.string8(linkReasonText(message.reason), LINK_REASON_FIELD)
      break
  }
  return writer.finish()
}

/** Never throws. */
export function decodeLinkMessage(bytes: Uint8Array): LinkDecode {
  try {
    const reader = new ByteReader(bytes)
    const type = reader.u8()
    const version = reader.u8()
    if (version !== LINK_MESSAGE_VERSION) throw new DecodeError(`link message version ${version} is not supported`)
    const message = readBody(type, reader)
    reader.end()
    return { ok: true, value: message }
  } catch (error) {
    return { ok: false, detail: error instanceof Error ? error.message : 'undecodable' }
  }
}

/** A refusal line that always fits the wire field. */
export function linkReasonText(reason: string): string {
  const printable = reason.replace(/[^\x20-\x7e]/g, '?').slice(0, LINK_REASON_FIELD.maxLength)
  return printable.length === 0 ? 'refused' : printable
}

function readBody(type: number, reader: ByteReader): LinkMessage {
  switch (type) {
    case MessageType.request:
      return { type: 'request', incarnation: reader.fixed(INCARNATION_BYTES) }
    case MessageType.propose: {
      const offer = readOffer(reader)
      return { type: 'propose', offer, presharedKey: new Secret(reader.fixed(PRESHARED_KEY_BYTES)) }
    }
    case MessageType.accept:
      return { type: 'accept', offer: readOffer(reader) }
    case MessageType.confirm:
      return { type: 'confirm', attempt: reader.u16() }
    case MessageType.refuse:
      return { type: 'refuse', reason: reader.string8(LINK_REASON_FIELD) }
    default:
      throw new DecodeError(`unknown link message type 0x${type.toString(16)}`)
  }
}

function writeOffer(writer: ByteWriter, offer: LinkOffer): void {
  writer.fixed(offer.incarnation, INCARNATION_BYTES)
  writePort(writer, offer.listenPort)
  if (offer.linkLocalsInUse.length > MAX_LINK_LOCALS_IN_USE) throw new RangeError(`at most ${MAX_LINK_LOCALS_IN_USE} link-locals in use`)
  writer.u16(offer.linkLocalsInUse.length)
  for (const address of offer.linkLocalsInUse) writer.fixed(ipv4ToBytes(requireLinkLocal(address)), 4)
  if (offer.endpoints.length > MAX_ENDPOINTS) throw new RangeError(`at most ${MAX_ENDPOINTS} endpoints`)
  writer.u8(offer.endpoints.length)
  for (const endpoint of offer.endpoints) {
    writeAddress(writer, endpoint.address)
    writePort(writer, endpoint.port)
    const source = ENDPOINT_SOURCES.indexOf(endpoint.source)
    if (source < 0) throw new RangeError('unknown endpoint source')
    writer.u8(source)
  }
  if (offer.observedAddress === undefined) writer.u8(0)
  else writeAddress(writer, offer.observedAddress)
}

function readOffer(reader: ByteReader): LinkOffer {
  const incarnation = reader.fixed(INCARNATION_BYTES)
  const listenPort = readPort(reader)
  const inUseCount = reader.u16()
  if (inUseCount > MAX_LINK_LOCALS_IN_USE) throw new DecodeError(`${inUseCount} link-locals in use exceeds ${MAX_LINK_LOCALS_IN_USE}`)
  const linkLocalsInUse = Array.from({ length: inUseCount }, () => {
    const address = ipv4FromBytes(reader.fixed(4))
    if (!isLinkLocal(address)) throw new DecodeError('an in-use address is not IPv4 link-local')
    return formatIpv4(address)
  })
  const endpoints = Array.from({ length: reader.count(MAX_ENDPOINTS, 'endpoints') }, (): EndpointCandidate => {
    const address = readAddress(reader)
    const port = readPort(reader)
    const source = ENDPOINT_SOURCES[reader.u8()]
    if (source === undefined) throw new DecodeError('unknown endpoint source')
    return { address, port, source }
  })
  const family = reader.u8()
  const observedAddress = family === 0 ? undefined : readAddressOfFamily(reader, family)
  return { incarnation, listenPort, linkLocalsInUse, endpoints, observedAddress }
}

function writePort(writer: ByteWriter, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 0xffff) throw new RangeError(`invalid port ${port}`)
  writer.u16(port)
}

function readPort(reader: ByteReader): number {
  const port = reader.u16()
  if (port === 0) throw new DecodeError('port 0')
  return port
}

function writeAddress(writer: ByteWriter, address: string): void {
  const v4 = parseIpv4(address)
  if (v4 !== undefined) {
    writer.u8(4).fixed(ipv4ToBytes(v4), 4)
    return
  }
  const v6 = parseIpv6(address)
  if (v6 === undefined) throw new RangeError(`invalid address ${JSON.stringify(address.slice(0, 80))}`)
  writer.u8(6).fixed(v6, 16)
}

function readAddress(reader: ByteReader): string {
  return readAddressOfFamily(reader, reader.u8())
}

function readAddressOfFamily(reader: ByteReader, family: number): string {
  if (family === 4) return formatIpv4(ipv4FromBytes(reader.fixed(4)))
  if (family === 6) return formatIpv6(reader.fixed(16))
  throw new DecodeError(`address family ${family}`)
}

function isLinkLocal(address: number): boolean {
  return address >>> 16 === 0xa9fe
}

function requireLinkLocal(text: string): number {
  const address = parseIpv4(text)
  if (address === undefined || !isLinkLocal(address)) throw new RangeError(`${JSON.stringify(text.slice(0, 80))} is not an IPv4 link-local address`)
  return address
}
