// Kernel WireGuard's generic-netlink messages (include/uapi/linux/wireguard.h),
// laid out as wg(8)'s ipc-linux.h lays them out: nests carry NLA_F_NESTED and
// list entries are numbered from 0 within each message.
//
// Splitting: a device with many peers does not fit one message. Like wg(8),
// each message is kept within WG_MESSAGE_BUDGET bytes (wg uses
// min(page size, 8 KiB), i.e. 4 KiB here). The first message carries the device
// attributes and WGDEVICE_F_REPLACE_PEERS; later ones carry only the name and
// more peers. A peer whose allowed IPs overflow continues in the next message
// as its public key plus the remaining allowed IPs, without
// WGPEER_F_REPLACE_ALLOWEDIPS so the kernel appends them.

import { Secret } from '../../logging/secret.js'
import type { Endpoint, ObservedWireguardDevice, ObservedWireguardPeer, WireguardDevice, WireguardPeer } from '../types.js'
import { genlAttrs, genlmsghdr, GENL_HDRLEN } from './genl.js'
import { afOf, familyOfAf, formatPrefix, parsePrefix } from './inet.js'
import { attr, attrList, attrMap, getStr, getU16, getU32, getU64, NLA_F_NESTED, NLM_F_DUMP, NLMSG_HDRLEN, str, u16, u32, u8 } from './nlattr.js'
import { decodeSockaddr, encodeSockaddr } from './sockaddr.js'

export const WG_GENL_NAME = 'wireguard'
export const WG_GENL_VERSION = 1
export const WG_KEY_LEN = 32
/** Upper bound of one WG_CMD_SET_DEVICE message, netlink header included. */
export const WG_MESSAGE_BUDGET = 4096

export const WG_CMD_GET_DEVICE = 0
export const WG_CMD_SET_DEVICE = 1

export const WGDEVICE_A = { IFINDEX: 1, IFNAME: 2, PRIVATE_KEY: 3, PUBLIC_KEY: 4, FLAGS: 5, LISTEN_PORT: 6, FWMARK: 7, PEERS: 8 } as const
export const WGDEVICE_F_REPLACE_PEERS = 1
export const WGPEER_A = {
  PUBLIC_KEY: 1, PRESHARED_KEY: 2, FLAGS: 3, ENDPOINT: 4, PERSISTENT_KEEPALIVE_INTERVAL: 5,
  LAST_HANDSHAKE_TIME: 6, RX_BYTES: 7, TX_BYTES: 8, ALLOWEDIPS: 9, PROTOCOL_VERSION: 10,
} as const
export const WGPEER_F_REPLACE_ALLOWEDIPS = 2
export const WGALLOWEDIP_A = { FAMILY: 1, IPADDR: 2, CIDR_MASK: 3 } as const

/** Decodes a base64 Curve25519 key. The message never contains the key: it may be private. */
export function keyBytes(base64: string, what: string): Buffer {
  const bytes = Buffer.from(base64, 'base64')
  if (bytes.length !== WG_KEY_LEN || bytes.toString('base64') !== base64) {
    throw new TypeError(`${what} is not a base64 ${WG_KEY_LEN}-byte key`)
  }
  return bytes
}

function nested(type: number, children: readonly Buffer[]): Buffer {
  return attr(type | NLA_F_NESTED, Buffer.concat(children))
}

/** `wg show NAME dump`: a dump request for one device. */
export function encodeDeviceGet(name: string): { flags: number; payload: Buffer } {
  return { flags: NLM_F_DUMP, payload: Buffer.concat([genlmsghdr(WG_CMD_GET_DEVICE, WG_GENL_VERSION), attr(WGDEVICE_A.IFNAME, str(name))]) }
}

function allowedIpEntry(index: number, cidr: string): Buffer {
  const prefix = parsePrefix(cidr)
  return nested(index, [
    attr(WGALLOWEDIP_A.FAMILY, u16(afOf(prefix.family))),
    attr(WGALLOWEDIP_A.IPADDR, prefix.bytes),
    attr(WGALLOWEDIP_A.CIDR_MASK, u8(prefix.length)),
  ])
}

/** A peer's attributes before its allowed IPs, in wg(8)'s order. */
function peerHead(peer: WireguardPeer): Buffer[] {
  const head = [attr(WGPEER_A.PUBLIC_KEY, keyBytes(peer.publicKey, 'peer public key'))]
  if (peer.presharedKey) head.push(attr(WGPEER_A.PRESHARED_KEY, keyBytes(peer.presharedKey.reveal(), 'preshared key')))
  if (peer.endpoint) head.push(attr(WGPEER_A.ENDPOINT, encodeSockaddr(peer.endpoint)))
  if (peer.persistentKeepaliveSeconds !== undefined) {
    head.push(attr(WGPEER_A.PERSISTENT_KEEPALIVE_INTERVAL, u16(peer.persistentKeepaliveSeconds)))
  }
  head.push(attr(WGPEER_A.FLAGS, u32(WGPEER_F_REPLACE_ALLOWEDIPS)))
  return head
}

const sizeOf = (buffers: readonly Buffer[]): number => buffers.reduce((sum, b) => sum + b.length, 0)
const NEST_HDRLEN = 4

class SetMessage {
  readonly peers: Buffer[] = []
  constructor(readonly deviceAttrs: Buffer[]) {}
  /** Bytes this message takes on the wire if one more peer of `peerBytes` is added. */
  sizeWith(peerBytes: number): number {
    return NLMSG_HDRLEN + GENL_HDRLEN + sizeOf(this.deviceAttrs) + NEST_HDRLEN + sizeOf(this.peers) + peerBytes
  }
  encode(): Buffer {
    const parts = [genlmsghdr(WG_CMD_SET_DEVICE, WG_GENL_VERSION), ...this.deviceAttrs]
    if (this.peers.length > 0) parts.push(nested(WGDEVICE_A.PEERS, this.peers))
    return Buffer.concat(parts)
  }
}

/**
 * `wg setconf NAME`: the WG_CMD_SET_DEVICE payloads (genlmsghdr + attributes)
 * that make the device exactly `device`, split to fit WG_MESSAGE_BUDGET.
 * Listen port and fwmark are always sent (fwmark 0 clears it).
 */
export function encodeDeviceSet(device: WireguardDevice, budget = WG_MESSAGE_BUDGET): Buffer[] {
  const name = attr(WGDEVICE_A.IFNAME, str(device.name))
  const messages: SetMessage[] = [
    new SetMessage([
      name,
      attr(WGDEVICE_A.PRIVATE_KEY, keyBytes(device.privateKey.reveal(), 'private key')),
      attr(WGDEVICE_A.LISTEN_PORT, u16(device.listenPort)),
      attr(WGDEVICE_A.FWMARK, u32(device.fwmark ?? 0)),
      attr(WGDEVICE_A.FLAGS, u32(WGDEVICE_F_REPLACE_PEERS)),
    ]),
  ]
  const current = (): SetMessage => messages[messages.length - 1] as SetMessage
  const startMessage = (): SetMessage => {
    const next = new SetMessage([name])
    messages.push(next)
    return next
  }

  for (const peer of device.peers) {
    let head = peerHead(peer)
    let remaining = peer.allowedIps
    for (;;) {
      const message = current()
      const index = message.peers.length
      // Take as many allowed IPs as fit after the head.
      const taken: Buffer[] = []
      const fixed = NEST_HDRLEN + sizeOf(head) + (remaining.length > 0 ? NEST_HDRLEN : 0)
      for (const cidr of remaining) {
        const entry = allowedIpEntry(taken.length, cidr)
        if (message.sizeWith(fixed + sizeOf(taken) + entry.length) > budget) break
        taken.push(entry)
      }
      const fitsHead = message.sizeWith(NEST_HDRLEN + sizeOf(head)) <= budget
      if (!fitsHead || (remaining.length > 0 && taken.length === 0)) {
        if (message.peers.length === 0) throw new RangeError(`wireguard ${device.name}: one peer does not fit a ${budget}-byte message`)
        startMessage()
        continue
      }
      const body = taken.length > 0 ? [...head, nested(WGPEER_A.ALLOWEDIPS, taken)] : head
      message.peers.push(nested(index, body))
      remaining = remaining.slice(taken.length)
      if (remaining.length === 0) break
      // The rest of this peer's allowed IPs go on in a new message, appended.
      startMessage()
      head = [attr(WGPEER_A.PUBLIC_KEY, keyBytes(peer.publicKey, 'peer public key'))]
    }
  }
  return messages.map((m) => m.encode())
}

function isZero(bytes: Buffer): boolean {
  return bytes.every((byte) => byte === 0)
}

function decodePeer(data: Buffer): ObservedWireguardPeer | undefined {
  const a = attrMap(data)
  const publicKey = a.get(WGPEER_A.PUBLIC_KEY)
  if (!publicKey) return undefined
  const peer: ObservedWireguardPeer = { publicKey: publicKey.toString('base64'), allowedIps: [] }
  const psk = a.get(WGPEER_A.PRESHARED_KEY)
  if (psk && psk.length === WG_KEY_LEN && !isZero(psk)) peer.presharedKey = new Secret(psk.toString('base64'))
  const endpointData = a.get(WGPEER_A.ENDPOINT)
  const endpoint: Endpoint | undefined = endpointData ? decodeSockaddr(endpointData) : undefined
  if (endpoint) peer.endpoint = endpoint
  const keepalive = getU16(a.get(WGPEER_A.PERSISTENT_KEEPALIVE_INTERVAL))
  if (keepalive) peer.persistentKeepaliveSeconds = keepalive
  const handshake = a.get(WGPEER_A.LAST_HANDSHAKE_TIME)
  if (handshake && handshake.length >= 16) {
    // struct __kernel_timespec: s64 seconds, s64 nanoseconds.
    const ms = Number(handshake.readBigInt64LE(0)) * 1000 + Math.floor(Number(handshake.readBigInt64LE(8)) / 1e6)
    if (ms > 0) peer.lastHandshakeMs = ms
  }
  const rx = getU64(a.get(WGPEER_A.RX_BYTES))
  if (rx !== undefined) peer.rxBytes = rx
  const tx = getU64(a.get(WGPEER_A.TX_BYTES))
  if (tx !== undefined) peer.txBytes = tx
  const allowed = a.get(WGPEER_A.ALLOWEDIPS)
  if (allowed) peer.allowedIps = attrList(allowed).flatMap((entry) => decodeAllowedIp(entry.data) ?? [])
  return peer
}

function decodeAllowedIp(data: Buffer): string | undefined {
  const a = attrMap(data)
  const family = familyOfAf(getU16(a.get(WGALLOWEDIP_A.FAMILY)) ?? 0)
  const ip = a.get(WGALLOWEDIP_A.IPADDR)
  const mask = a.get(WGALLOWEDIP_A.CIDR_MASK)
  if (family === undefined || !ip || !mask) return undefined
  return formatPrefix(ip, mask.readUInt8(0))
}

/**
 * Decodes the replies to WG_CMD_GET_DEVICE (payloads after the netlink
 * header). A peer that continues from one message to the next repeats its
 * public key first; its allowed IPs are merged, as wg(8) does.
 */
export function decodeDevice(payloads: readonly Buffer[]): ObservedWireguardDevice {
  const device: ObservedWireguardDevice = { name: '', listenPort: 0, peers: [] }
  for (const payload of payloads) {
    const a = attrMap(genlAttrs(payload))
    const name = getStr(a.get(WGDEVICE_A.IFNAME))
    if (name !== undefined) device.name = name
    const privateKey = a.get(WGDEVICE_A.PRIVATE_KEY)
    if (privateKey && privateKey.length === WG_KEY_LEN && !isZero(privateKey)) device.privateKey = new Secret(privateKey.toString('base64'))
    const publicKey = a.get(WGDEVICE_A.PUBLIC_KEY)
    if (publicKey && publicKey.length === WG_KEY_LEN && !isZero(publicKey)) device.publicKey = publicKey.toString('base64')
    const port = getU16(a.get(WGDEVICE_A.LISTEN_PORT))
    if (port !== undefined) device.listenPort = port
    const fwmark = getU32(a.get(WGDEVICE_A.FWMARK))
    if (fwmark) device.fwmark = fwmark
    const peers = a.get(WGDEVICE_A.PEERS)
    if (!peers) continue
    for (const entry of attrList(peers)) {
      const peer = decodePeer(entry.data)
      if (!peer) continue
      const last = device.peers[device.peers.length - 1]
      if (last && last.publicKey === peer.publicKey) last.allowedIps.push(...peer.allowedIps)
      else device.peers.push(peer)
    }
  }
  return device
}
