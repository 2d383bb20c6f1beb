// A pure codec for the cross-platform WireGuard configuration protocol
// (https://www.wireguard.com/xplatform/) that wireguard-go speaks on
// /var/run/wireguard/<name>.sock: "key=value" lines, keys in lowercase hex,
// a request or response ends with an empty line, every response ends with
// "errno=N". No I/O here; ./userspace.ts moves the text.
//
// Error messages name the offending line and key, never its value: a
// malformed value may be (part of) a private key.

import { createPrivateKey, createPublicKey } from 'node:crypto'
import { Secret } from '../../logging/secret.js'
import { BoundedMap } from '../../net/bounded-map.js'
import { ipFamily, parseCidr } from '../ip.js'
import type { Endpoint, ObservedWireguardDevice, ObservedWireguardPeer, WireguardDevice } from '../types.js'
import { isWireguardKey } from '../validate.js'
import { findPeer, peerDiffers, sameKey } from './backend.js'

/** A request or response that does not follow the protocol, or a response carrying a non-zero errno. */
export class UapiError extends Error {
  override readonly name = 'UapiError'
  constructor(
    message: string,
    /** The errno a peer reported (always positive; wireguard-go sends it negated), when that is the failure. */
    readonly errno?: number,
    /** 1-based line of a response that failed to decode. */
    readonly line?: number,
  ) {
    super(message)
  }
}

// ── Keys ─────────────────────────────────────────────────────────────────────

const HEX_KEY = /^[0-9a-fA-F]{64}$/
const ZERO_HEX = '0'.repeat(64)

/** Base64 (44 characters, 32 bytes, canonical padding bits) → lowercase hex. */
export function base64ToHexKey(key: string, what = 'key'): string {
  if (!isWireguardKey(key)) throw new UapiError(`invalid ${what}: not a 32-byte base64 key`)
  return Buffer.from(key, 'base64').toString('hex')
}

/** Hex (64 digits) → base64. */
export function hexToBase64Key(key: string, what = 'key'): string {
  if (!HEX_KEY.test(key)) throw new UapiError(`invalid ${what}: not a 32-byte hex key`)
  return Buffer.from(key, 'hex').toString('base64')
}

// PKCS#8 DER header for a raw X25519 private key (RFC 8410); node:crypto takes no raw form.
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')

/**
 * Public keys already derived, by private key: every device read (the link monitor reads each link every
 * second or so) returns the private key, and deriving its public key through node:crypto was the largest
 * part of decoding a read. Bounded; a device's key rarely changes. The private keys are held in memory
 * anyway (the agent configures them).
 */
const publicKeyCache = new BoundedMap<string, string>(256)

/** The Curve25519 public key (base64) of a base64 private key, as `wg pubkey` prints it. */
export function publicKeyFromPrivate(privateKey: string): string {
  const cached = publicKeyCache.get(privateKey)
  if (cached !== undefined) return cached
  const publicKey = derivePublicKey(privateKey)
  publicKeyCache.set(privateKey, publicKey)
  return publicKey
}

function derivePublicKey(privateKey: string): string {
  const raw = Buffer.from(base64ToHexKey(privateKey, 'private key'), 'hex')
  const key = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' })
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' })
  return spki.subarray(spki.length - 32).toString('base64')
}

// ── Values ───────────────────────────────────────────────────────────────────

/** "1.2.3.4:51820" or "[fd00::1]:51820", as `wg` and the UAPI write endpoints. */
export function formatEndpoint(endpoint: Endpoint): string {
  return endpoint.address.includes(':') ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`
}

/** Parses an endpoint as formatEndpoint writes it (IPv6 may carry a %zone); undefined when invalid. */
export function parseEndpoint(text: string): Endpoint | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)(%[\w.-]+)?\]|([0-9.]+)):(\d{1,5})$/.exec(text)
  if (match === null) return undefined
  const [, ipv6, zone = '', ipv4, port] = match
  const address = ipv6 ?? ipv4 ?? ''
  const family = ipFamily(address)
  if (family === undefined || (family === 6) !== (ipv6 !== undefined) || Number(port) > 65535) return undefined
  return { address: address + zone, port: Number(port) }
}

/** Whether text is "address/length" (the UAPI wants the length even for a host). */
function isPrefix(text: string): boolean {
  return text.includes('/') && parseCidr(text) !== undefined
}

// ── Requests ─────────────────────────────────────────────────────────────────

/** One peer entry of a set request. */
export interface UapiPeerChange {
  publicKey: string
  /** `remove=true`: drop the peer; no other field is sent. */
  remove?: boolean
  /** null sends the all-zero key, which clears it. */
  presharedKey?: Secret<string> | null
  endpoint?: Endpoint
  /** 0 turns keepalive off. */
  persistentKeepaliveSeconds?: number
  /** When present: `replace_allowed_ips=true` followed by these. */
  allowedIps?: string[]
}

/** A set request; absent fields are left as they are. */
export interface UapiSetRequest {
  privateKey?: Secret<string>
  listenPort?: number
  /** 0 clears it. */
  fwmark?: number
  /** `replace_peers=true`: peers not listed are removed (and listed ones lose their sessions). */
  replacePeers?: boolean
  peers: UapiPeerChange[]
}

export const GET_REQUEST = 'get=1\n\n'

/** Encodes a set request; every value is validated so nothing can smuggle in a line of its own. */
export function encodeSetRequest(request: UapiSetRequest): string {
  const lines = ['set=1']
  if (request.privateKey !== undefined) lines.push(`private_key=${base64ToHexKey(request.privateKey.reveal(), 'private key')}`)
  if (request.listenPort !== undefined) lines.push(`listen_port=${checkInteger(request.listenPort, 0xffff, 'listen port')}`)
  if (request.fwmark !== undefined) lines.push(`fwmark=${checkInteger(request.fwmark, 0xffffffff, 'fwmark')}`)
  if (request.replacePeers === true) lines.push('replace_peers=true')
  for (const peer of request.peers) {
    lines.push(`public_key=${base64ToHexKey(peer.publicKey, 'public key')}`)
    if (peer.remove === true) {
      lines.push('remove=true')
      continue
    }
    if (peer.presharedKey !== undefined) {
      lines.push(`preshared_key=${peer.presharedKey === null ? ZERO_HEX : base64ToHexKey(peer.presharedKey.reveal(), 'preshared key')}`)
    }
    if (peer.endpoint !== undefined) lines.push(`endpoint=${checkEndpoint(peer.endpoint)}`)
    if (peer.persistentKeepaliveSeconds !== undefined) {
      lines.push(`persistent_keepalive_interval=${checkInteger(peer.persistentKeepaliveSeconds, 0xffff, 'persistent keepalive')}`)
    }
    if (peer.allowedIps !== undefined) {
      lines.push('replace_allowed_ips=true')
      for (const cidr of peer.allowedIps) {
        if (!isPrefix(cidr)) throw new UapiError('invalid allowed IP')
        lines.push(`allowed_ip=${cidr}`)
      }
    }
  }
  return lines.join('\n') + '\n\n'
}

function checkInteger(value: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max) throw new UapiError(`invalid ${what}`)
  return value
}

function checkEndpoint(endpoint: Endpoint): string {
  const text = formatEndpoint(endpoint)
  if (parseEndpoint(text) === undefined) throw new UapiError('invalid endpoint')
  return text
}

/**
 * The smallest set request that turns `observed` into `desired` (undefined when it already matches).
 * The outcome equals replace_peers, but unchanged peers keep their sessions and an unchanged
 * port is not re-bound — wireguard-go re-binds its UDP socket on every listen_port line.
 */
export function planSetRequest(desired: WireguardDevice, observed: ObservedWireguardDevice): UapiSetRequest | undefined {
  const request: UapiSetRequest = { peers: [] }
  if (!sameKey(desired.privateKey.reveal(), observed.privateKey?.reveal())) request.privateKey = desired.privateKey
  if (desired.listenPort !== 0 && desired.listenPort !== observed.listenPort) request.listenPort = desired.listenPort
  if ((desired.fwmark ?? 0) !== (observed.fwmark ?? 0)) request.fwmark = desired.fwmark ?? 0
  for (const peer of observed.peers) {
    if (findPeer(desired.peers, peer.publicKey) === undefined) request.peers.push({ publicKey: peer.publicKey, remove: true })
  }
  for (const peer of desired.peers) {
    const current = findPeer(observed.peers, peer.publicKey)
    if (current !== undefined && !peerDiffers(peer, current)) continue
    request.peers.push({
      publicKey: peer.publicKey,
      presharedKey: peer.presharedKey ?? null,
      ...(peer.endpoint === undefined ? {} : { endpoint: peer.endpoint }),
      persistentKeepaliveSeconds: peer.persistentKeepaliveSeconds ?? 0,
      allowedIps: peer.allowedIps,
    })
  }
  const empty = Object.keys(request).length === 1 && request.peers.length === 0
  return empty ? undefined : request
}

// ── Responses ────────────────────────────────────────────────────────────────

/** Splits a response into its lines before the terminating empty line, and checks its errno. */
function responseLines(text: string): string[] {
  const end = text.indexOf('\n\n')
  if (end < 0) throw new UapiError('response does not end with an empty line')
  const lines = text.slice(0, end).split('\n')
  const last = lines.pop() ?? ''
  const match = /^errno=(-?\d{1,10})$/.exec(last)
  if (match === null) throw new UapiError('response does not end with errno=N', undefined, lines.length + 1)
  const errno = Math.abs(Number(match[1]))
  if (errno !== 0) throw new UapiError(`request failed with errno ${errno}`, errno)
  return lines
}

/** Decodes the response to a set request: nothing, or a UapiError carrying the errno. */
export function decodeSetResponse(text: string): void {
  const lines = responseLines(text)
  if (lines.length > 0) throw new UapiError('unexpected lines in a set response', undefined, 1)
}

/** Keys that belong to a peer, so they cannot appear before the first public_key. */
const PEER_KEYS = new Set([
  'preshared_key',
  'endpoint',
  'allowed_ip',
  'persistent_keepalive_interval',
  'last_handshake_time_sec',
  'last_handshake_time_nsec',
  'rx_bytes',
  'tx_bytes',
  'protocol_version',
])

/** Decodes the response to `get=1` into the observed device. Throws only UapiError. */
export function decodeGetResponse(name: string, text: string): ObservedWireguardDevice {
  const lines = responseLines(text)
  const device: ObservedWireguardDevice = { name, listenPort: 0, peers: [] }
  let peer: ObservedWireguardPeer | undefined
  let handshake = { sec: 0, nsec: 0 }
  lines.forEach((line, index) => {
    const fail = (why: string): never => {
      throw new UapiError(`line ${index + 1}: ${why}`, undefined, index + 1)
    }
    const equals = line.indexOf('=')
    if (equals <= 0) fail('not key=value')
    const key = line.slice(0, equals)
    const value = line.slice(equals + 1)
    const integer = (max: number): number => {
      if (!/^\d{1,20}$/.test(value) || Number(value) > max) fail(`${key} is not an integer in range`)
      return Number(value)
    }
    const hexKey = (): string | undefined => {
      if (!HEX_KEY.test(value)) fail(`${key} is not a 32-byte hex key`)
      return value === ZERO_HEX ? undefined : Buffer.from(value, 'hex').toString('base64')
    }
    if (key === 'public_key') {
      const publicKey = hexKey() ?? fail('public_key is all zeros')
      peer = { publicKey, allowedIps: [] }
      handshake = { sec: 0, nsec: 0 }
      device.peers.push(peer)
      return
    }
    if (peer === undefined) {
      // Device section: everything before the first public_key.
      if (key === 'private_key') {
        const privateKey = hexKey()
        if (privateKey !== undefined) {
          device.privateKey = new Secret(privateKey)
          device.publicKey = publicKeyFromPrivate(privateKey)
        }
      } else if (key === 'listen_port') device.listenPort = integer(0xffff)
      else if (key === 'fwmark') {
        const mark = integer(0xffffffff)
        if (mark !== 0) device.fwmark = mark
      } else if (PEER_KEYS.has(key)) fail(`${key} before any public_key`)
      return
    }
    switch (key) {
      case 'private_key':
      case 'listen_port':
      case 'fwmark':
        fail(`${key} after a peer`)
        break
      case 'preshared_key': {
        const psk = hexKey()
        if (psk === undefined) delete peer.presharedKey
        else peer.presharedKey = new Secret(psk)
        break
      }
      case 'endpoint':
        peer.endpoint = parseEndpoint(value) ?? fail('endpoint is not ip:port or [ip]:port')
        break
      case 'allowed_ip':
        if (!isPrefix(value)) fail('allowed_ip is not a prefix')
        peer.allowedIps.push(value)
        break
      case 'persistent_keepalive_interval': {
        const seconds = integer(0xffff)
        if (seconds === 0) delete peer.persistentKeepaliveSeconds
        else peer.persistentKeepaliveSeconds = seconds
        break
      }
      case 'last_handshake_time_sec':
      case 'last_handshake_time_nsec': {
        const part = integer(key.endsWith('_sec') ? Number.MAX_SAFE_INTEGER / 1000 : 999_999_999)
        handshake = key.endsWith('_sec') ? { ...handshake, sec: part } : { ...handshake, nsec: part }
        const ms = handshake.sec * 1000 + Math.floor(handshake.nsec / 1e6)
        if (ms === 0) delete peer.lastHandshakeMs
        else peer.lastHandshakeMs = ms
        break
      }
      case 'rx_bytes':
        peer.rxBytes = integer(Number.MAX_SAFE_INTEGER)
        break
      case 'tx_bytes':
        peer.txBytes = integer(Number.MAX_SAFE_INTEGER)
        break
      case 'protocol_version':
        if (integer(0xffffffff) !== 1) fail('unsupported protocol_version')
        break
      default:
      // Keys added by later protocol versions are skipped, not fatal.
    }
  })
  return device
}
