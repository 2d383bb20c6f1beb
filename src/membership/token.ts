// Join tokens: one line a member hands to a new host. A token carries the
// network secret (the joiner needs it for the libp2p private network), so the
// token is itself a secret: it is created and returned as a Secret.
//
// Text form:  meshd1.<base64url(body ‖ signature)>
//
// body (canonical binary, see ./codec.ts):
//   u8  kind = 0x01, u8 schema version = 1
//   16  network id            u8+ network name
//   32  network secret        32  founder public key
//   4+1 IPv4 overlay (address, prefix)
//   6   IPv6 ULA /48 prefix (must equal the one derived from the id)
//   u8  count, then u8+ each: bootstrap multiaddrs
//   u64 issued at (ms)        u64 expires at (ms)
//   u16 allowed uses          16  invite id
//   32  issuer public key
// signature: Ed25519 by the issuer over SIGNING_CONTEXT ‖ body.

import { Secret } from '../logging/secret.js'
import {
  ByteReader,
  ByteWriter,
  DecodeError,
  ObjectKind,
  PUBLIC_KEY_BYTES,
  SIGNATURE_BYTES,
  decodeBase64Url,
  encodeBase64Url,
  fromHex,
  toHex,
  type StringField,
} from './codec.js'
import { formatIpv4Cidr, formatIpv6, ipv4FromBytes, ipv4ToBytes, parseIpv4Cidr, parseIpv6Cidr } from '../net/ip.js'
import { nodeIdFromPublicKey, publicKeyOfNodeId, verifyBody, type NodeId, type Signer } from './keys.js'
import {
  NETWORK_ID_BYTES,
  NETWORK_NAME_FIELD,
  NETWORK_SECRET_BYTES,
  OVERLAY_PREFIX_RANGE,
  networkIdFor,
  ulaForNetwork,
  type Network,
  type NetworkId,
} from './network.js'

export const TOKEN_PREFIX = 'meshd'
export const TOKEN_VERSION = 1
export const DEFAULT_TOKEN_TTL_MS = 24 * 60 * 60 * 1000
export const MAX_TOKEN_TTL_MS = 30 * 24 * 60 * 60 * 1000
export const DEFAULT_TOKEN_USES = 1
export const MAX_TOKEN_USES = 1000
export const MAX_BOOTSTRAP_ADDRESSES = 8
/** Longer pasted text is refused before any decoding. */
export const MAX_TOKEN_TEXT_LENGTH = 4096
export const INVITE_ID_BYTES = 16

declare const inviteIdBrand: unique symbol
/** 16 random bytes as 32 hex characters. */
export type InviteId = string & { readonly [inviteIdBrand]: true }

export const MULTIADDR_FIELD: StringField = { name: 'bootstrap address', minLength: 2, maxLength: 200, pattern: /^\/[\x21-\x7e]+$/ }

export interface JoinToken {
  readonly version: typeof TOKEN_VERSION
  /** The whole network, secret included. */
  readonly network: Network
  readonly bootstrap: readonly string[]
  readonly issuedAt: number
  readonly expiresAt: number
  readonly maxUses: number
  readonly inviteId: InviteId
  readonly issuer: NodeId
  readonly issuerPublicKey: Uint8Array
}

export type TokenRejection = 'not-meshd' | 'unknown-version' | 'malformed' | 'bad-signature' | 'expired' | 'wrong-network'

/** `reason` is one line for a person, `detail` (when present) is for debug logs; neither ever contains the secret. */
export type TokenParseResult = { ok: true; token: JoinToken } | { ok: false; code: TokenRejection; reason: string; detail?: string }

export interface CreateTokenInit {
  network: Network
  issuer: Signer
  bootstrap: readonly string[]
  now: number
  random: (size: number) => Uint8Array
  ttlMs?: number
  maxUses?: number
}

/** Throws RangeError for arguments no valid token could carry (a caller bug or bad configuration). */
export function createToken(init: CreateTokenInit): Secret<string> {
  const ttlMs = init.ttlMs ?? DEFAULT_TOKEN_TTL_MS
  const maxUses = init.maxUses ?? DEFAULT_TOKEN_USES
  if (!Number.isInteger(ttlMs) || ttlMs <= 0 || ttlMs > MAX_TOKEN_TTL_MS) throw new RangeError(`token lifetime must be 1 ms to ${MAX_TOKEN_TTL_MS} ms`)
  if (!Number.isInteger(maxUses) || maxUses < 1 || maxUses > MAX_TOKEN_USES) throw new RangeError(`token uses must be 1 to ${MAX_TOKEN_USES}`)
  if (init.bootstrap.length > MAX_BOOTSTRAP_ADDRESSES) throw new RangeError(`at most ${MAX_BOOTSTRAP_ADDRESSES} bootstrap addresses fit in a token`)
  const inviteId = init.random(INVITE_ID_BYTES)
  const cidr = parseIpv4Cidr(init.network.ipv4Cidr)
  const ula = parseIpv6Cidr(init.network.ipv6Ula)
  if (cidr === undefined || ula === undefined) throw new RangeError('network has an invalid overlay')

  const writer = new ByteWriter()
    .u8(ObjectKind.token)
    .u8(TOKEN_VERSION)
    .fixed(fromHex(init.network.id, NETWORK_ID_BYTES) ?? new Uint8Array(0), NETWORK_ID_BYTES)
    .string8(init.network.name, NETWORK_NAME_FIELD)
    .fixed(init.network.secret.reveal(), NETWORK_SECRET_BYTES)
    .fixed(publicKeyOfNodeId(init.network.founder), PUBLIC_KEY_BYTES)
    .fixed(ipv4ToBytes(cidr.base), 4)
    .u8(cidr.prefix)
    .fixed(ula.base.subarray(0, 6), 6)
    .u8(init.bootstrap.length)
  for (const address of init.bootstrap) writer.string8(address, MULTIADDR_FIELD)
  writer
    .u64(init.now)
    .u64(init.now + ttlMs)
    .u16(maxUses)
    .fixed(inviteId, INVITE_ID_BYTES)
    .fixed(init.issuer.publicKey, PUBLIC_KEY_BYTES)
  const body = writer.finish()
  const signed = new Uint8Array(body.length + SIGNATURE_BYTES)
  signed.set(body)
  signed.set(init.issuer.signBody(body), body.length)
  return new Secret(`${TOKEN_PREFIX}${TOKEN_VERSION}.${encodeBase64Url(signed)}`)
}

export interface ParseTokenOptions {
  now: number
  /** Set when the caller is already a member: a token for any other network is refused. */
  expectedNetworkId?: NetworkId
}

/** Never throws: every input gives a typed result. Whitespace anywhere (line wraps from a terminal) is ignored. */
export function parseToken(text: string, options: ParseTokenOptions): TokenParseResult {
  if (typeof text !== 'string' || text.length > MAX_TOKEN_TEXT_LENGTH) return reject('not-meshd', 'not a meshd token')
  const compact = text.replace(/\s+/g, '')
  const header = /^meshd([0-9]{1,6})\./.exec(compact)
  if (header === null) return reject('not-meshd', `not a meshd token (a token starts with "${TOKEN_PREFIX}${TOKEN_VERSION}.")`)
  const version = Number(header[1])
  if (version !== TOKEN_VERSION) {
    return reject('unknown-version', `token version ${version} is not supported (this meshd reads version ${TOKEN_VERSION}); upgrade meshd or ask for a version ${TOKEN_VERSION} token`)
  }
  const bytes = decodeBase64Url(compact.slice(header[0].length))
  if (bytes === undefined) return reject('malformed', 'token is truncated or corrupted (invalid base64url); copy the whole line again')
  if (bytes.length <= SIGNATURE_BYTES) return reject('malformed', 'token is truncated (too short); copy the whole line again')

  const body = bytes.subarray(0, bytes.length - SIGNATURE_BYTES)
  const signature = bytes.subarray(bytes.length - SIGNATURE_BYTES)
  let decoded: DecodedBody
  try {
    decoded = decodeBody(body)
  } catch (error) {
    const detail = error instanceof DecodeError ? error.message : 'undecodable'
    return reject('malformed', 'token is truncated or corrupted; copy the whole line again', detail)
  }
  if (!verifyBody(decoded.issuerPublicKey, body, signature)) {
    return reject('bad-signature', 'token signature does not verify: the token was altered')
  }
  const token = toToken(decoded)
  if (token === undefined) return reject('malformed', 'token is inconsistent: its network id does not match its contents')
  if (options.expectedNetworkId !== undefined && token.network.id !== options.expectedNetworkId) {
    return reject('wrong-network', `token is for network "${token.network.name}" (${token.network.id}), not this network (${options.expectedNetworkId})`)
  }
  if (options.now >= token.expiresAt) {
    return reject('expired', `token expired at ${new Date(token.expiresAt).toISOString()}; ask a member for a new one`)
  }
  return { ok: true, token }
}

function reject(code: TokenRejection, reason: string, detail?: string): TokenParseResult {
  return detail === undefined ? { ok: false, code, reason } : { ok: false, code, reason, detail }
}

interface DecodedBody {
  networkId: Uint8Array
  name: string
  secret: Uint8Array
  founderPublicKey: Uint8Array
  ipv4Base: Uint8Array
  ipv4Prefix: number
  ulaPrefix: Uint8Array
  bootstrap: string[]
  issuedAt: number
  expiresAt: number
  maxUses: number
  inviteId: Uint8Array
  issuerPublicKey: Uint8Array
}

/** Structure and field bounds only; throws DecodeError. */
function decodeBody(body: Uint8Array): DecodedBody {
  const reader = new ByteReader(body)
  if (reader.u8() !== ObjectKind.token) throw new DecodeError('not a token body')
  if (reader.u8() !== TOKEN_VERSION) throw new DecodeError('body version does not match the prefix')
  const networkId = reader.fixed(NETWORK_ID_BYTES)
  const name = reader.string8(NETWORK_NAME_FIELD)
  const secret = reader.fixed(NETWORK_SECRET_BYTES)
  const founderPublicKey = reader.fixed(PUBLIC_KEY_BYTES)
  const ipv4Base = reader.fixed(4)
  const ipv4Prefix = reader.u8()
  const ulaPrefix = reader.fixed(6)
  const bootstrapCount = reader.count(MAX_BOOTSTRAP_ADDRESSES, 'bootstrap addresses')
  const bootstrap: string[] = []
  for (let i = 0; i < bootstrapCount; i++) bootstrap.push(reader.string8(MULTIADDR_FIELD))
  const issuedAt = reader.u64()
  const expiresAt = reader.u64()
  const maxUses = reader.u16()
  const inviteId = reader.fixed(INVITE_ID_BYTES)
  const issuerPublicKey = reader.fixed(PUBLIC_KEY_BYTES)
  reader.end()
  if (expiresAt <= issuedAt || expiresAt - issuedAt > MAX_TOKEN_TTL_MS) throw new DecodeError('lifetime out of range')
  if (maxUses < 1 || maxUses > MAX_TOKEN_USES) throw new DecodeError('allowed uses out of range')
  if (ipv4Prefix < OVERLAY_PREFIX_RANGE.shortest || ipv4Prefix > OVERLAY_PREFIX_RANGE.longest) throw new DecodeError('overlay prefix out of range')
  return { networkId, name, secret, founderPublicKey, ipv4Base, ipv4Prefix, ulaPrefix, bootstrap, issuedAt, expiresAt, maxUses, inviteId, issuerPublicKey }
}

/** Builds the typed token and checks that the id commits to the contents; undefined when it does not. */
function toToken(body: DecodedBody): JoinToken | undefined {
  const cidr = parseIpv4Cidr(formatIpv4Cidr({ base: ipv4FromBytes(body.ipv4Base), prefix: body.ipv4Prefix }))
  if (cidr === undefined) return undefined
  const ipv4Cidr = formatIpv4Cidr(cidr)
  const founder = nodeIdFromPublicKey(body.founderPublicKey)
  const secret = new Secret(body.secret)
  const id = networkIdFor({ secret, founder, name: body.name, ipv4Cidr })
  if (id !== toHex(body.networkId)) return undefined
  const ipv6Ula = ulaForNetwork(id)
  const ulaBytes = new Uint8Array(16)
  ulaBytes.set(body.ulaPrefix)
  if (`${formatIpv6(ulaBytes)}/48` !== ipv6Ula) return undefined
  return {
    version: TOKEN_VERSION,
    network: { id, name: body.name, founder, secret, ipv4Cidr, ipv6Ula },
    bootstrap: body.bootstrap,
    issuedAt: body.issuedAt,
    expiresAt: body.expiresAt,
    maxUses: body.maxUses,
    inviteId: toHex(body.inviteId) as InviteId,
    issuer: nodeIdFromPublicKey(body.issuerPublicKey),
    issuerPublicKey: body.issuerPublicKey,
  }
}
