// WireGuard generic-netlink messages against bytes derived by hand from
// include/uapi/linux/wireguard.h and wg(8)'s attribute order (this host has no
// kernel WireGuard to capture from): WG_CMD_SET_DEVICE with REPLACE_PEERS,
// splitting of large peer lists, and decoding of WG_CMD_GET_DEVICE replies.

import { describe, expect, it } from 'vitest'
import { attr, attrList, attrMap, NLMSG_HDRLEN, str, u16, u32, u8 } from '../../src/kernel/encode/nlattr.js'
import {
  decodeDevice,
  encodeDeviceGet,
  encodeDeviceSet,
  WG_MESSAGE_BUDGET,
  WGDEVICE_A,
  WGPEER_A,
  WGPEER_F_REPLACE_ALLOWEDIPS,
} from '../../src/kernel/encode/wireguard.js'
import { encodeSockaddr } from '../../src/kernel/encode/sockaddr.js'
import type { WireguardDevice, WireguardPeer } from '../../src/kernel/types.js'
import { Secret } from '../../src/logging/secret.js'

const key = (byte: number): string => Buffer.alloc(32, byte).toString('base64')
const hexKey = (byte: number): string => Buffer.alloc(32, byte).toString('hex')

describe('WG_CMD_SET_DEVICE', () => {
  it('lays out one device with one peer exactly as wireguard.h and wg(8) do', () => {
    const device: WireguardDevice = {
      name: 'wg0',
      privateKey: new Secret(key(1)),
      listenPort: 51820,
      peers: [
        {
          publicKey: key(2),
          presharedKey: new Secret(key(3)),
          endpoint: { address: '192.0.2.1', port: 51820 },
          persistentKeepaliveSeconds: 25,
          allowedIps: ['0.0.0.0/0', '::/0'],
        },
      ],
    }
    const expected = [
      '01010000', // genlmsghdr: WG_CMD_SET_DEVICE, version 1
      '08000200' + '77673000', // WGDEVICE_A_IFNAME "wg0\0"
      '24000300' + hexKey(1), // WGDEVICE_A_PRIVATE_KEY
      '06000600' + '6cca' + '0000', // WGDEVICE_A_LISTEN_PORT 51820 (u16, host order) + padding
      '08000700' + '00000000', // WGDEVICE_A_FWMARK 0
      '08000500' + '01000000', // WGDEVICE_A_FLAGS WGDEVICE_F_REPLACE_PEERS
      'bc000880', // WGDEVICE_A_PEERS | NLA_F_NESTED, 188 bytes
      'b8000080', //   peer 0 | NLA_F_NESTED, 184 bytes
      '24000100' + hexKey(2), //     WGPEER_A_PUBLIC_KEY
      '24000200' + hexKey(3), //     WGPEER_A_PRESHARED_KEY
      '14000400' + '0200' + 'ca6c' + 'c0000201' + '0000000000000000', //     WGPEER_A_ENDPOINT sockaddr_in
      '06000500' + '1900' + '0000', //     WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL 25
      '08000300' + '02000000', //     WGPEER_A_FLAGS WGPEER_F_REPLACE_ALLOWEDIPS
      '48000980', //     WGPEER_A_ALLOWEDIPS | NLA_F_NESTED, 72 bytes
      '1c000080', //       allowed IP 0, 28 bytes
      '06000100' + '0200' + '0000', //         WGALLOWEDIP_A_FAMILY AF_INET
      '08000200' + '00000000', //         WGALLOWEDIP_A_IPADDR 0.0.0.0
      '05000300' + '00' + '000000', //         WGALLOWEDIP_A_CIDR_MASK 0
      '28000180', //       allowed IP 1, 40 bytes
      '06000100' + '0a00' + '0000', //         WGALLOWEDIP_A_FAMILY AF_INET6
      '14000200' + '00'.repeat(16), //         WGALLOWEDIP_A_IPADDR ::
      '05000300' + '00' + '000000', //         WGALLOWEDIP_A_CIDR_MASK 0
    ].join('')
    const messages = encodeDeviceSet(device)
    expect(messages).toHaveLength(1)
    expect(messages[0]?.toString('hex')).toBe(expected)
  })

  it('sends fwmark when set and omits optional peer attributes when absent', () => {
    const [payload] = encodeDeviceSet({ name: 'wg0', privateKey: new Secret(key(1)), listenPort: 1, fwmark: 0x10, peers: [{ publicKey: key(2), allowedIps: [] }] })
    const attrs = attrMap((payload ?? Buffer.alloc(0)).subarray(4))
    expect(attrs.get(WGDEVICE_A.FWMARK)).toEqual(u32(0x10))
    const peers = attrList(attrs.get(WGDEVICE_A.PEERS) ?? Buffer.alloc(0))
    expect(peers).toHaveLength(1)
    expect(attrList(peers[0]?.data ?? Buffer.alloc(0)).map((a) => a.type)).toEqual([WGPEER_A.PUBLIC_KEY, WGPEER_A.FLAGS])
  })

  function peer(i: number, allowedIps: string[]): WireguardPeer {
    const publicKey = Buffer.alloc(32)
    publicKey.writeUInt32BE(i + 1, 0)
    return { publicKey: publicKey.toString('base64'), endpoint: { address: '2001:db8::1', port: 51820 + i }, allowedIps }
  }

  it('splits many peers into messages within the budget; only the first replaces peers', () => {
    const peers = Array.from({ length: 100 }, (_, i) => peer(i, [`10.${i}.0.0/16`, `fd00:${(i + 1).toString(16)}::/64`]))
    const messages = encodeDeviceSet({ name: 'md-w1', privateKey: new Secret(key(1)), listenPort: 51820, peers })
    expect(messages.length).toBeGreaterThan(1)
    for (const [i, payload] of messages.entries()) {
      expect(NLMSG_HDRLEN + payload.length).toBeLessThanOrEqual(WG_MESSAGE_BUDGET)
      const attrs = attrMap(payload.subarray(4))
      expect(attrs.get(WGDEVICE_A.IFNAME)).toEqual(str('md-w1'))
      expect(attrs.has(WGDEVICE_A.PRIVATE_KEY)).toBe(i === 0)
      expect(attrs.has(WGDEVICE_A.FLAGS)).toBe(i === 0)
      // Peer entries are numbered from 0 in every message.
      expect(attrList(attrs.get(WGDEVICE_A.PEERS) ?? Buffer.alloc(0)).map((a) => a.type)).toEqual(
        Array.from({ length: attrList(attrs.get(WGDEVICE_A.PEERS) ?? Buffer.alloc(0)).length }, (_, n) => n),
      )
    }
    const decoded = decodeDevice(messages)
    expect(decoded.peers.map((p) => [p.publicKey, p.endpoint, p.allowedIps])).toEqual(peers.map((p) => [p.publicKey, p.endpoint, p.allowedIps]))
  })

  it('continues a peer whose allowed IPs overflow, appending without REPLACE_ALLOWEDIPS', () => {
    const many = Array.from({ length: 300 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`)
    const messages = encodeDeviceSet({ name: 'md-w1', privateKey: new Secret(key(1)), listenPort: 51820, peers: [peer(0, many), peer(1, ['10.255.0.0/16'])] })
    expect(messages.length).toBeGreaterThan(1)
    const peerEntries = messages.map((m) => attrList(attrMap(m.subarray(4)).get(WGDEVICE_A.PEERS) ?? Buffer.alloc(0)).map((e) => attrMap(e.data)))
    const [first, second] = peerEntries
    expect(first?.[0]?.get(WGPEER_A.FLAGS)).toEqual(u32(WGPEER_F_REPLACE_ALLOWEDIPS))
    expect(second?.[0]?.get(WGPEER_A.PUBLIC_KEY)).toEqual(first?.[0]?.get(WGPEER_A.PUBLIC_KEY))
    expect(second?.[0]?.has(WGPEER_A.FLAGS)).toBe(false)
    expect(second?.[0]?.has(WGPEER_A.ENDPOINT)).toBe(false)
    const decoded = decodeDevice(messages)
    expect(decoded.peers.map((p) => p.allowedIps.length)).toEqual([300, 1])
    expect(decoded.peers[0]?.allowedIps).toEqual(many)
  })

  it('never puts key material in an error message', () => {
    const secret = 'not-a-key-but-secret'
    const run = (): unknown => encodeDeviceSet({ name: 'wg0', privateKey: new Secret(secret), listenPort: 1, peers: [] })
    expect(run).toThrow(/private key is not a base64 32-byte key/)
    try {
      run()
    } catch (error) {
      expect(String(error)).not.toContain(secret)
    }
  })
})

describe('WG_CMD_GET_DEVICE', () => {
  it('asks for one device by name, as a dump', () => {
    const request = encodeDeviceGet('md-w1')
    expect(request.flags).toBe(0x300)
    expect(request.payload.toString('hex')).toBe('00010000' + '0a000200' + Buffer.from('md-w1\0').toString('hex') + '0000')
  })

  it('decodes device and peers, leaving zero keys and unset values out and secrets wrapped', () => {
    const handshake = Buffer.alloc(16)
    handshake.writeBigInt64LE(1700000000n, 0)
    handshake.writeBigInt64LE(250_000_000n, 8)
    const peerAttrs = Buffer.concat([
      attr(WGPEER_A.PUBLIC_KEY, Buffer.alloc(32, 2)),
      attr(WGPEER_A.PRESHARED_KEY, Buffer.alloc(32, 0)),
      attr(WGPEER_A.LAST_HANDSHAKE_TIME, handshake),
      attr(WGPEER_A.RX_BYTES, Buffer.from('0010000000000000', 'hex')),
      attr(WGPEER_A.TX_BYTES, Buffer.alloc(8)),
      attr(WGPEER_A.PERSISTENT_KEEPALIVE_INTERVAL, u16(0)),
      attr(WGPEER_A.ENDPOINT, encodeSockaddr({ address: '192.0.2.9', port: 4500 })),
      attr(WGPEER_A.ALLOWEDIPS | 0x8000, attr(0x8000, Buffer.concat([attr(1, u16(2)), attr(2, Buffer.from([10, 0, 0, 0])), attr(3, u8(8))]))),
      attr(WGPEER_A.PROTOCOL_VERSION, u32(1)),
    ])
    const payload = Buffer.concat([
      Buffer.from('00010000', 'hex'),
      attr(WGDEVICE_A.IFINDEX, u32(7)),
      attr(WGDEVICE_A.IFNAME, str('md-w1')),
      attr(WGDEVICE_A.PRIVATE_KEY, Buffer.alloc(32, 1)),
      attr(WGDEVICE_A.PUBLIC_KEY, Buffer.alloc(32, 9)),
      attr(WGDEVICE_A.LISTEN_PORT, u16(51820)),
      attr(WGDEVICE_A.FWMARK, u32(0)),
      attr(WGDEVICE_A.PEERS | 0x8000, attr(0x8000, peerAttrs)),
    ])
    const device = decodeDevice([payload])
    expect(device.privateKey?.reveal()).toBe(key(1))
    expect(JSON.stringify(device)).not.toContain(key(1))
    expect({ ...device, privateKey: undefined }).toEqual({
      name: 'md-w1',
      privateKey: undefined,
      publicKey: key(9),
      listenPort: 51820,
      peers: [
        {
          publicKey: key(2),
          endpoint: { address: '192.0.2.9', port: 4500 },
          allowedIps: ['10.0.0.0/8'],
          lastHandshakeMs: 1700000000250,
          rxBytes: 4096,
          txBytes: 0,
        },
      ],
    })
  })
})
