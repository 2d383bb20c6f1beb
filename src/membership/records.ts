// Signed membership objects and their canonical binary encodings (see
// ./codec.ts for why binary): admissions, peer records, leaves, evictions.
//
// Each object is body ‖ Ed25519 signature. Decoding is strict: every field is
// bounded, the body must re-encode to exactly the bytes received (one encoding
// per value), and the outer signature must verify against the key inside the
// signer's node id. Admissions nested in a record are decoded here but their
// signatures and chain are judged by the record store (./record-store.ts),
// which knows the network's founder.
//
// Admission chains: a record carries the admissions from the founder down to
// its node: [founder→X, X→Y, …, →node]. The founder's own records carry an
// empty chain. A chain is self-contained, so a record can be judged in any
// order of arrival (gossip after a partition) without first holding the
// records of the members that admitted it.

import {
  ByteReader,
  ByteWriter,
  DecodeError,
  ObjectKind,
  PUBLIC_KEY_BYTES,
  SIGNATURE_BYTES,
  bytesEqual,
  fromHex,
  toHex,
  type StringField,
} from './codec.js'
import { formatIpv4, formatIpv6, ipv4FromBytes, ipv4ToBytes, parseIpv4, parseIpv4Cidr, parseIpv6, parseIpv6Cidr } from '../net/ip.js'
import { nodeIdFromPublicKey, publicKeyOfNodeId, verifyBody, type NodeId, type Signer } from './keys.js'
import { NETWORK_ID_BYTES, type NetworkId } from './network.js'
import { INVITE_ID_BYTES, type InviteId } from './token.js'
import type { LinkKind } from '../kernel/types.js'

export const RECORD_SCHEMA_VERSION = 1
/** Any signed object larger than this is refused before decoding. */
export const MAX_RECORD_BYTES = 8192
export const MAX_ADMISSION_BYTES = 512
/** Longest founder→node admission chain a record may carry. */
export const MAX_ADMISSION_DEPTH = 8
export const MAX_ENDPOINTS = 16
export const MAX_ROUTES = 64
/** Link RTTs a record carries: the node's fastest links, enough to rank it as a relay (design §5). */
export const MAX_LINK_RTTS = 64
/** RTTs are whole milliseconds in a u16. */
export const MAX_LINK_RTT_MS = 0xffff
export const WIREGUARD_KEY_BYTES = 32

export const HOSTNAME_FIELD: StringField = { name: 'hostname', minLength: 1, maxLength: 253, pattern: /^[A-Za-z0-9][A-Za-z0-9._-]*$/ }
export const EVICTION_REASON_FIELD: StringField = { name: 'eviction reason', minLength: 0, maxLength: 200, pattern: /^[\x20-\x7e]*$/ }

// ── Types ────────────────────────────────────────────────────────────────────

export type EndpointSource = 'configured' | 'interface' | 'observed'
export const ENDPOINT_SOURCES: readonly EndpointSource[] = ['configured', 'interface', 'observed']

export interface EndpointCandidate {
  /** Canonical IPv4 or IPv6 text. */
  readonly address: string
  readonly port: number
  readonly source: EndpointSource
}

/** Link kinds a node can build toward a peer; a subset of the kernel's kinds. */
export type LinkCapability = Extract<LinkKind, 'wireguard' | 'gre' | 'gretap' | 'vxlan' | 'bond'>
/** Wire codes: position in this list. Append only; never reorder. */
export const LINK_CAPABILITIES: readonly LinkCapability[] = ['wireguard', 'gre', 'gretap', 'vxlan', 'bond']
export type WireguardBackendKind = 'kernel' | 'userspace'
export const WIREGUARD_BACKENDS: readonly WireguardBackendKind[] = ['kernel', 'userspace']

export interface Capabilities {
  readonly linkKinds: readonly LinkCapability[]
  readonly wireguardBackend: WireguardBackendKind
}

/** A member vouches that `joiner` belongs to the network. */
export interface Admission {
  readonly kind: 'admission'
  readonly networkId: NetworkId
  readonly joiner: NodeId
  readonly inviteId: InviteId
  readonly issuedAt: number
  /** null: does not expire. */
  readonly expiresAt: number | null
  readonly admitter: NodeId
  /** The signed encoding, to forward unchanged. */
  readonly bytes: Uint8Array
}

export interface PeerRecord {
  readonly kind: 'peer'
  readonly networkId: NetworkId
  readonly nodeId: NodeId
  readonly seq: number
  readonly expiresAt: number
  readonly hostname: string
  readonly overlayIpv4: string
  readonly overlayIpv6: string
  /** Base64 Curve25519 key, as WireGuard prints it. */
  readonly wireguardPublicKey: string
  readonly endpoints: readonly EndpointCandidate[]
  readonly capabilities: Capabilities
  /** CIDRs this node routes for (subnet routes); may be empty. */
  readonly routes: readonly string[]
  /** Measured RTTs of the node's own links, at most MAX_LINK_RTTS: what others use to pick relays to probe. */
  readonly linkRtts: readonly LinkRtt[]
  readonly admissions: readonly Admission[]
  readonly bytes: Uint8Array
}

export interface LinkRtt {
  readonly peer: NodeId
  readonly rttMs: number
}

/** The node leaves on its own; signed by it. */
export interface Leave {
  readonly kind: 'leave'
  readonly networkId: NetworkId
  readonly nodeId: NodeId
  /** In the node's record sequence space: newer than every record it sent. */
  readonly seq: number
  readonly admissions: readonly Admission[]
  readonly bytes: Uint8Array
}

/** A member removes another node for good; signed by the evicting member. */
export interface Eviction {
  readonly kind: 'eviction'
  readonly networkId: NetworkId
  readonly evicted: NodeId
  readonly evictor: NodeId
  readonly at: number
  readonly reason: string
  /** The evictor's own admission chain. */
  readonly admissions: readonly Admission[]
  readonly bytes: Uint8Array
}

export type SignedRecord = PeerRecord | Leave | Eviction

export type DecodeFailure = 'malformed' | 'bad-signature'
export type DecodeResult<T> = { ok: true; value: T } | { ok: false; reason: DecodeFailure; detail: string }

/** Sequence numbers for a node's records and its leave: wall-clock ms, so a restarted node (which forgot its counter) still moves forward. */
export function nextSequence(previous: number | undefined, now: number): number {
  return Math.max((previous ?? 0) + 1, Math.floor(now))
}

/**
 * Whether `next` says more than a periodic refresh of `previous` does: a refresh moves the sequence, the expiry,
 * the measured link RTTs and the signature, nothing that kernel state or stored links are built from. Consumers
 * that build those skip plain refreshes (issue 5: at 20 peers each refresh re-ran the agent's whole pass); pure.
 */
export function differsBeyondRefresh(next: PeerRecord, previous: PeerRecord): boolean {
  return (
    next.nodeId !== previous.nodeId ||
    next.networkId !== previous.networkId ||
    next.hostname !== previous.hostname ||
    next.overlayIpv4 !== previous.overlayIpv4 ||
    next.overlayIpv6 !== previous.overlayIpv6 ||
    next.wireguardPublicKey !== previous.wireguardPublicKey ||
    next.capabilities.wireguardBackend !== previous.capabilities.wireguardBackend ||
    !sameItems(next.capabilities.linkKinds, previous.capabilities.linkKinds, (a, b) => a === b) ||
    !sameItems(next.routes, previous.routes, (a, b) => a === b) ||
    !sameItems(next.endpoints, previous.endpoints, (a, b) => a.address === b.address && a.port === b.port && a.source === b.source) ||
    !sameItems(next.admissions, previous.admissions, (a, b) => bytesEqual(a.bytes, b.bytes))
  )
}

function sameItems<T>(a: readonly T[], b: readonly T[], same: (x: T, y: T) => boolean): boolean {
  return a.length === b.length && a.every((item, i) => same(item, b[i] as T))
}

// ── Signing ──────────────────────────────────────────────────────────────────

type Unsigned<T> = Omit<T, 'kind' | 'bytes'>

export function signAdmission(admitter: Signer, fields: Omit<Unsigned<Admission>, 'admitter'>): Admission {
  const value: Unsigned<Admission> = { ...fields, admitter: admitter.nodeId }
  return { kind: 'admission', ...value, bytes: seal(admitter, writeAdmission(value)) }
}

export function signPeerRecord(node: Signer, fields: Omit<Unsigned<PeerRecord>, 'nodeId' | 'linkRtts'> & { linkRtts?: readonly LinkRtt[] }): PeerRecord {
  // Whole milliseconds, as encoded, so the signed value and its bytes agree.
  const linkRtts = (fields.linkRtts ?? []).map((link) => ({ peer: link.peer, rttMs: Number.isFinite(link.rttMs) ? Math.min(MAX_LINK_RTT_MS, Math.round(link.rttMs)) : link.rttMs }))
  const value: Unsigned<PeerRecord> = { ...fields, linkRtts, nodeId: node.nodeId }
  return { kind: 'peer', ...value, bytes: seal(node, writePeerRecord(value)) }
}

export function signLeave(node: Signer, fields: Omit<Unsigned<Leave>, 'nodeId'>): Leave {
  const value: Unsigned<Leave> = { ...fields, nodeId: node.nodeId }
  return { kind: 'leave', ...value, bytes: seal(node, writeLeave(value)) }
}

export function signEviction(evictor: Signer, fields: Omit<Unsigned<Eviction>, 'evictor'>): Eviction {
  const value: Unsigned<Eviction> = { ...fields, evictor: evictor.nodeId }
  return { kind: 'eviction', ...value, bytes: seal(evictor, writeEviction(value)) }
}

function seal(signer: Signer, body: Uint8Array): Uint8Array {
  const signed = new Uint8Array(body.length + SIGNATURE_BYTES)
  signed.set(body)
  signed.set(signer.signBody(body), body.length)
  return signed
}

// ── Decoding ─────────────────────────────────────────────────────────────────

/** A peer record, leave or eviction from the wire. Never throws. */
export function decodeRecord(bytes: Uint8Array): DecodeResult<SignedRecord> {
  return decodeSigned<SignedRecord>(bytes, (kind, reader) => {
    switch (kind) {
      case ObjectKind.peerRecord: {
        const value = readPeerRecord(reader)
        return { value: { kind: 'peer', ...value, bytes }, signer: value.nodeId, body: writePeerRecord(value) }
      }
      case ObjectKind.leave: {
        const value = readLeave(reader)
        return { value: { kind: 'leave', ...value, bytes }, signer: value.nodeId, body: writeLeave(value) }
      }
      case ObjectKind.eviction: {
        const value = readEviction(reader)
        return { value: { kind: 'eviction', ...value, bytes }, signer: value.evictor, body: writeEviction(value) }
      }
      default:
        throw new DecodeError(`object kind 0x${kind.toString(16)} is not a record`)
    }
  })
}

/** One admission (e.g. the one a member sends a joiner), signature checked. Never throws. */
export function decodeAdmission(bytes: Uint8Array): DecodeResult<Admission> {
  const result = decodeAdmissionUnverified(bytes)
  if (!result.ok) return result
  return verifyAdmissionSignature(result.value) ? result : { ok: false, reason: 'bad-signature', detail: 'admission signature does not verify' }
}

export function verifyAdmissionSignature(admission: Admission): boolean {
  const body = admission.bytes.subarray(0, admission.bytes.length - SIGNATURE_BYTES)
  const signature = admission.bytes.subarray(admission.bytes.length - SIGNATURE_BYTES)
  return verifyBody(publicKeyOfNodeId(admission.admitter), body, signature)
}

function decodeAdmissionUnverified(bytes: Uint8Array): DecodeResult<Admission> {
  return decodeSigned(
    bytes,
    (kind, reader) => {
      if (kind !== ObjectKind.admission) throw new DecodeError('not an admission')
      const value = readAdmission(reader)
      return { value: { kind: 'admission', ...value, bytes }, signer: value.admitter, body: writeAdmission(value) }
    },
    { verify: false, maxBytes: MAX_ADMISSION_BYTES },
  )
}

interface Decoded<T> {
  value: T
  signer: NodeId
  /** The body re-encoded from the decoded value: must equal the received body. */
  body: Uint8Array
}

function decodeSigned<T>(
  bytes: Uint8Array,
  readBody: (kind: number, reader: ByteReader) => Decoded<T>,
  options: { verify: boolean; maxBytes: number } = { verify: true, maxBytes: MAX_RECORD_BYTES },
): DecodeResult<T> {
  if (!(bytes instanceof Uint8Array)) return { ok: false, reason: 'malformed', detail: 'not bytes' }
  if (bytes.length > options.maxBytes) return { ok: false, reason: 'malformed', detail: `${bytes.length} bytes exceeds ${options.maxBytes}` }
  if (bytes.length <= SIGNATURE_BYTES + 2) return { ok: false, reason: 'malformed', detail: 'too short' }
  const body = bytes.subarray(0, bytes.length - SIGNATURE_BYTES)
  const signature = bytes.subarray(bytes.length - SIGNATURE_BYTES)
  let decoded: Decoded<T>
  try {
    const reader = new ByteReader(body)
    const kind = reader.u8()
    const version = reader.u8()
    if (version !== RECORD_SCHEMA_VERSION) throw new DecodeError(`schema version ${version} is not supported`)
    decoded = readBody(kind, reader)
    reader.end()
  } catch (error) {
    // RangeError from re-encoding a decoded value counts as malformed too.
    return { ok: false, reason: 'malformed', detail: error instanceof Error ? error.message : 'undecodable' }
  }
  if (!bytesEqual(decoded.body, body)) return { ok: false, reason: 'malformed', detail: 'not in canonical form' }
  if (options.verify && !verifyBody(publicKeyOfNodeId(decoded.signer), body, signature)) {
    return { ok: false, reason: 'bad-signature', detail: 'signature does not verify' }
  }
  return { ok: true, value: decoded.value }
}

// ── Field codecs ─────────────────────────────────────────────────────────────
// Each write* emits the body without its signature; each read* is its exact
// inverse (after the kind and version bytes) and throws DecodeError.

function writeAdmission(value: Unsigned<Admission>): Uint8Array {
  return header(ObjectKind.admission)
    .fixed(networkIdBytes(value.networkId), NETWORK_ID_BYTES)
    .fixed(publicKeyOfNodeId(value.joiner), PUBLIC_KEY_BYTES)
    .fixed(fromHex(value.inviteId, INVITE_ID_BYTES) ?? new Uint8Array(0), INVITE_ID_BYTES)
    .u64(value.issuedAt)
    .u64(value.expiresAt ?? 0)
    .fixed(publicKeyOfNodeId(value.admitter), PUBLIC_KEY_BYTES)
    .finish()
}

function readAdmission(reader: ByteReader): Unsigned<Admission> {
  const networkId = readNetworkId(reader)
  const joiner = readNodeId(reader)
  const inviteId = toHex(reader.fixed(INVITE_ID_BYTES)) as InviteId
  const issuedAt = reader.u64()
  const expiry = reader.u64()
  const admitter = readNodeId(reader)
  if (expiry !== 0 && expiry <= issuedAt) throw new DecodeError('admission expires before it is issued')
  return { networkId, joiner, inviteId, issuedAt, expiresAt: expiry === 0 ? null : expiry, admitter }
}

function writePeerRecord(value: Unsigned<PeerRecord>): Uint8Array {
  const writer = header(ObjectKind.peerRecord)
    .fixed(networkIdBytes(value.networkId), NETWORK_ID_BYTES)
    .fixed(publicKeyOfNodeId(value.nodeId), PUBLIC_KEY_BYTES)
    .u64(value.seq)
    .u64(value.expiresAt)
    .string8(value.hostname, HOSTNAME_FIELD)
    .fixed(ipv4ToBytes(requireIpv4(value.overlayIpv4)), 4)
    .fixed(requireIpv6(value.overlayIpv6), 16)
    .fixed(wireguardKeyBytes(value.wireguardPublicKey), WIREGUARD_KEY_BYTES)
  writeCount(writer, value.endpoints.length, MAX_ENDPOINTS, 'endpoints')
  for (const endpoint of value.endpoints) writeEndpoint(writer, endpoint)
  writeCount(writer, value.capabilities.linkKinds.length, LINK_CAPABILITIES.length, 'link kinds')
  for (const kind of value.capabilities.linkKinds) writer.u8(codeOf(LINK_CAPABILITIES, kind, 'link kind'))
  writer.u8(codeOf(WIREGUARD_BACKENDS, value.capabilities.wireguardBackend, 'WireGuard backend'))
  writeCount(writer, value.routes.length, MAX_ROUTES, 'routes')
  for (const route of value.routes) writeRoute(writer, route)
  writeCount(writer, value.linkRtts.length, MAX_LINK_RTTS, 'link RTTs')
  for (const link of value.linkRtts) {
    if (!Number.isFinite(link.rttMs) || link.rttMs < 0) throw new RangeError('link RTT must be a finite number of ms ≥ 0')
    writer.fixed(publicKeyOfNodeId(link.peer), PUBLIC_KEY_BYTES).u16(Math.min(MAX_LINK_RTT_MS, Math.round(link.rttMs)))
  }
  writeAdmissions(writer, value.admissions)
  return writer.finish()
}

function readPeerRecord(reader: ByteReader): Unsigned<PeerRecord> {
  const networkId = readNetworkId(reader)
  const nodeId = readNodeId(reader)
  const seq = reader.u64()
  const expiresAt = reader.u64()
  const hostname = reader.string8(HOSTNAME_FIELD)
  const overlayIpv4 = formatIpv4(ipv4FromBytes(reader.fixed(4)))
  const overlayIpv6 = formatIpv6(reader.fixed(16))
  const wireguardPublicKey = Buffer.from(reader.fixed(WIREGUARD_KEY_BYTES)).toString('base64')
  const endpoints = Array.from({ length: reader.count(MAX_ENDPOINTS, 'endpoints') }, () => readEndpoint(reader))
  const linkKinds = Array.from({ length: reader.count(LINK_CAPABILITIES.length, 'link kinds') }, () => valueOf(LINK_CAPABILITIES, reader.u8(), 'link kind'))
  if (new Set(linkKinds).size !== linkKinds.length) throw new DecodeError('duplicate link kind')
  const wireguardBackend = valueOf(WIREGUARD_BACKENDS, reader.u8(), 'WireGuard backend')
  const routes = Array.from({ length: reader.count(MAX_ROUTES, 'routes') }, () => readRoute(reader))
  const linkRtts = Array.from({ length: reader.count(MAX_LINK_RTTS, 'link RTTs') }, (): LinkRtt => ({ peer: readNodeId(reader), rttMs: reader.u16() }))
  const linkPeers = new Set(linkRtts.map((l) => l.peer))
  if (linkPeers.size !== linkRtts.length) throw new DecodeError('duplicate link RTT peer')
  if (linkPeers.has(nodeId)) throw new DecodeError('a link RTT to the node itself')
  const admissions = readAdmissions(reader)
  return { networkId, nodeId, seq, expiresAt, hostname, overlayIpv4, overlayIpv6, wireguardPublicKey, endpoints, capabilities: { linkKinds, wireguardBackend }, routes, linkRtts, admissions }
}

function writeLeave(value: Unsigned<Leave>): Uint8Array {
  const writer = header(ObjectKind.leave).fixed(networkIdBytes(value.networkId), NETWORK_ID_BYTES).fixed(publicKeyOfNodeId(value.nodeId), PUBLIC_KEY_BYTES).u64(value.seq)
  writeAdmissions(writer, value.admissions)
  return writer.finish()
}

function readLeave(reader: ByteReader): Unsigned<Leave> {
  return { networkId: readNetworkId(reader), nodeId: readNodeId(reader), seq: reader.u64(), admissions: readAdmissions(reader) }
}

function writeEviction(value: Unsigned<Eviction>): Uint8Array {
  const writer = header(ObjectKind.eviction)
    .fixed(networkIdBytes(value.networkId), NETWORK_ID_BYTES)
    .fixed(publicKeyOfNodeId(value.evicted), PUBLIC_KEY_BYTES)
    .fixed(publicKeyOfNodeId(value.evictor), PUBLIC_KEY_BYTES)
    .u64(value.at)
    .string8(value.reason, EVICTION_REASON_FIELD)
  writeAdmissions(writer, value.admissions)
  return writer.finish()
}

function readEviction(reader: ByteReader): Unsigned<Eviction> {
  return {
    networkId: readNetworkId(reader),
    evicted: readNodeId(reader),
    evictor: readNodeId(reader),
    at: reader.u64(),
    reason: reader.string8(EVICTION_REASON_FIELD),
    admissions: readAdmissions(reader),
  }
}

function writeAdmissions(writer: ByteWriter, admissions: readonly Admission[]): void {
  writeCount(writer, admissions.length, MAX_ADMISSION_DEPTH, 'admissions')
  for (const admission of admissions) writer.bytes16(admission.bytes, MAX_ADMISSION_BYTES)
}

function readAdmissions(reader: ByteReader): Admission[] {
  return Array.from({ length: reader.count(MAX_ADMISSION_DEPTH, 'admissions') }, () => {
    const result = decodeAdmissionUnverified(reader.bytes16(MAX_ADMISSION_BYTES))
    if (!result.ok) throw new DecodeError(`admission: ${result.detail}`)
    return result.value
  })
}

function writeEndpoint(writer: ByteWriter, endpoint: EndpointCandidate): void {
  writeAddress(writer, endpoint.address)
  if (!Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 0xffff) throw new RangeError(`invalid port ${endpoint.port}`)
  writer.u16(endpoint.port).u8(codeOf(ENDPOINT_SOURCES, endpoint.source, 'endpoint source'))
}

function readEndpoint(reader: ByteReader): EndpointCandidate {
  const address = readAddress(reader)
  const port = reader.u16()
  if (port === 0) throw new DecodeError('endpoint port 0')
  return { address, port, source: valueOf(ENDPOINT_SOURCES, reader.u8(), 'endpoint source') }
}

/** u8 family (4|6), then 4 or 16 address bytes. */
function writeAddress(writer: ByteWriter, address: string): void {
  const v4 = parseIpv4(address)
  if (v4 !== undefined) {
    writer.u8(4).fixed(ipv4ToBytes(v4), 4)
    return
  }
  writer.u8(6).fixed(requireIpv6(address), 16)
}

function readAddress(reader: ByteReader): string {
  const family = reader.u8()
  if (family === 4) return formatIpv4(ipv4FromBytes(reader.fixed(4)))
  if (family === 6) return formatIpv6(reader.fixed(16))
  throw new DecodeError(`address family ${family}`)
}

/** Address (as above), then u8 prefix length; host bits must be zero. */
function writeRoute(writer: ByteWriter, route: string): void {
  const [address = '', prefix] = route.split('/')
  const valid = address.includes(':') ? parseIpv6Cidr(route) !== undefined : parseIpv4Cidr(route) !== undefined
  if (!valid) throw new RangeError(`invalid route ${JSON.stringify(route.slice(0, 80))}`)
  writeAddress(writer, address)
  writer.u8(Number(prefix))
}

function readRoute(reader: ByteReader): string {
  const address = readAddress(reader)
  const prefix = reader.u8()
  const text = `${address}/${prefix}`
  const cidr = address.includes(':') ? parseIpv6Cidr(text) : parseIpv4Cidr(text)
  if (cidr === undefined) throw new DecodeError('route is not a CIDR with host bits zero')
  return text
}

function header(kind: ObjectKind): ByteWriter {
  return new ByteWriter().u8(kind).u8(RECORD_SCHEMA_VERSION)
}

function writeCount(writer: ByteWriter, count: number, max: number, what: string): void {
  if (count > max) throw new RangeError(`${count} ${what} exceeds ${max}`)
  writer.u8(count)
}

function codeOf<T>(table: readonly T[], value: T, what: string): number {
  const code = table.indexOf(value)
  if (code < 0) throw new RangeError(`unknown ${what}`)
  return code
}

function valueOf<T>(table: readonly T[], code: number, what: string): T {
  const value = table[code]
  if (value === undefined) throw new DecodeError(`unknown ${what} ${code}`)
  return value
}

function readNodeId(reader: ByteReader): NodeId {
  return nodeIdFromPublicKey(reader.fixed(PUBLIC_KEY_BYTES))
}

function readNetworkId(reader: ByteReader): NetworkId {
  return toHex(reader.fixed(NETWORK_ID_BYTES)) as NetworkId
}

function networkIdBytes(id: NetworkId): Uint8Array {
  const bytes = fromHex(id, NETWORK_ID_BYTES)
  if (bytes === undefined) throw new RangeError('invalid network id')
  return bytes
}

function requireIpv4(text: string): number {
  const value = parseIpv4(text)
  if (value === undefined) throw new RangeError(`invalid IPv4 address ${JSON.stringify(text.slice(0, 80))}`)
  return value
}

/** Canonical (RFC 5952) text only, so a signed value reads back exactly as it was written. */
function requireIpv6(text: string): Uint8Array {
  const value = parseIpv6(text)
  if (value === undefined || formatIpv6(value) !== text) throw new RangeError(`not a canonical IPv6 address: ${JSON.stringify(text.slice(0, 80))}`)
  return value
}

function wireguardKeyBytes(base64: string): Uint8Array {
  const bytes = Buffer.from(base64, 'base64')
  if (bytes.length !== WIREGUARD_KEY_BYTES || bytes.toString('base64') !== base64) throw new RangeError('invalid WireGuard public key')
  return new Uint8Array(bytes)
}
