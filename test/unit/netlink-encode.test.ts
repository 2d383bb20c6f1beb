// The pure encoders and decoders of src/kernel/encode/: address text, sockaddr,
// attribute framing, and the decoders that turn dump messages into Observed*
// shapes. Byte layouts against iproute2 are in iproute2-fixtures.test.ts.

import { describe, expect, it } from 'vitest'
import { decodeAddr, encodeAddrAdd } from '../../src/kernel/encode/addr.js'
import { formatIp, parseIp, parsePrefix } from '../../src/kernel/encode/inet.js'
import { decodeLink, decodeLinkCounters, encodeLinkAdd } from '../../src/kernel/encode/link.js'
import { attr, attrList, errnoName, frameMessage, parseMessages, str, u32, u8 } from '../../src/kernel/encode/nlattr.js'
import { decodeRoute, encodeRouteReplace, RT_TABLE_COMPAT } from '../../src/kernel/encode/route.js'
import { decodeRule, encodeRuleAdd } from '../../src/kernel/encode/rule.js'
import { decodeSockaddr, encodeSockaddr } from '../../src/kernel/encode/sockaddr.js'
import type { Link } from '../../src/kernel/types.js'

const ifindex = (name: string): number => ({ 'md-a': 3, 'md-b': 4, 'md-br': 6, 'md-u0': 5 })[name] ?? 99
const ifname = (index: number): string => ({ 3: 'md-a', 4: 'md-b', 5: 'md-u0', 6: 'md-br' })[index] ?? `if${index}`

describe('IP text ⇄ bytes', () => {
  it.each([
    ['10.0.0.1', '0a000001', '10.0.0.1'],
    ['fd00:0:0::01', 'fd000000000000000000000000000001', 'fd00::1'],
    ['::', '00000000000000000000000000000000', '::'],
    ['::1', '00000000000000000000000000000001', '::1'],
    ['fe80::1:0:0:1', 'fe800000000000000001000000000001', 'fe80::1:0:0:1'],
    ['1:0:0:2:0:0:0:3', '00010000000000020000000000000003', '1:0:0:2::3'],
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['::ffff:10.1.2.3', '00000000000000000000ffff0a010203', '::ffff:10.1.2.3'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008', '1:2:3:4:5:6:7:8'],
    ['1::', '00010000000000000000000000000000', '1::'],
  ])('%s', (text, hex, canonical) => {
    expect(parseIp(text).bytes.toString('hex')).toBe(hex)
    expect(formatIp(Buffer.from(hex, 'hex'))).toBe(canonical)
  })

  it('rejects what is not an address or a prefix', () => {
    expect(() => parseIp('10.0.0.256')).toThrow(TypeError)
    expect(() => parseIp('fe80::1%eth0')).toThrow(TypeError)
    expect(() => parsePrefix('10.0.0.0/33')).toThrow(TypeError)
    expect(() => parsePrefix('10.0.0.0/x')).toThrow(TypeError)
    expect(parsePrefix('10.0.0.1').length).toBe(32)
  })
})

describe('sockaddr for WireGuard endpoints', () => {
  it('encodes sockaddr_in: family (host order), port and address (network order), zero padding', () => {
    expect(encodeSockaddr({ address: '192.0.2.1', port: 51820 }).toString('hex')).toBe('0200ca6cc0000201' + '0000000000000000')
  })
  it('encodes sockaddr_in6 with a numeric scope id', () => {
    expect(encodeSockaddr({ address: 'fe80::1%3', port: 51820 }).toString('hex')).toBe(
      '0a00ca6c' + '00000000' + 'fe800000000000000000000000000001' + '03000000',
    )
  })
  it('decodes what it encodes, and nothing for AF_UNSPEC', () => {
    for (const endpoint of [
      { address: '198.51.100.7', port: 1 },
      { address: '2001:db8::7', port: 65535 },
      { address: 'fe80::2%12', port: 51821 },
    ]) {
      expect(decodeSockaddr(encodeSockaddr(endpoint))).toEqual(endpoint)
    }
    expect(decodeSockaddr(Buffer.alloc(16))).toBeUndefined()
  })
  it('rejects bad ports and named zones', () => {
    expect(() => encodeSockaddr({ address: '10.0.0.1', port: 70000 })).toThrow(RangeError)
    expect(() => encodeSockaddr({ address: 'fe80::1%eth0', port: 1 })).toThrow(TypeError)
  })
})

describe('netlink framing', () => {
  it('pads attributes to 4 bytes but counts only header and payload in the length', () => {
    expect(attr(3, str('md-a')).toString('hex')).toBe('090003006d642d6100000000')
    expect(attr(21, u8(73)).toString('hex')).toBe('0500150049000000')
  })
  it('splits datagrams into messages and attribute streams into attributes', () => {
    const datagram = Buffer.concat([frameMessage({ type: 24, flags: 2, seq: 7, payload: attr(1, u32(5)) }), frameMessage({ type: 3, flags: 2, seq: 7, payload: Buffer.alloc(4) })])
    const messages = parseMessages(datagram)
    expect(messages.map((m) => [m.type, m.seq, m.payload.length])).toEqual([
      [24, 7, 8],
      [3, 7, 4],
    ])
    expect(attrList(messages[0]?.payload ?? Buffer.alloc(0))).toEqual([{ type: 1, data: u32(5) }])
    expect(() => parseMessages(Buffer.concat([Buffer.from('40000000', 'hex'), Buffer.alloc(12)]))).toThrow(/malformed/)
  })
  it('names errnos the way the kernel does', () => {
    expect([errnoName(17), errnoName(19), errnoName(95), errnoName(11), errnoName(9999)]).toEqual(['EEXIST', 'ENODEV', 'EOPNOTSUPP', 'EAGAIN', 'E9999'])
  })
})

describe('link dump decoding', () => {
  /** A dump entry looks like our RTM_NEWLINK request plus the index and the kernel's flags. */
  function asDumped(link: Link, index: number, flags = 0x1): Buffer {
    const payload = Buffer.from(encodeLinkAdd(link, ifindex).payload)
    payload.writeInt32LE(index, 4)
    payload.writeUInt32LE(flags, 8)
    return payload
  }

  it.each<[Link, Record<string, unknown> | undefined]>([
    [{ kind: 'gretap', name: 'md-t0', up: true, local: '10.0.0.1', remote: '10.0.0.2', ttl: 64, key: 42, dev: 'md-u0' }, { local: '10.0.0.1', remote: '10.0.0.2', ttl: 64, key: 42, dev: 'md-u0' }],
    [{ kind: 'gre', name: 'md-g0', up: true, local: '10.0.0.1', remote: '10.0.0.2' }, { local: '10.0.0.1', remote: '10.0.0.2' }],
    [{ kind: 'vxlan', name: 'md-vx0', up: true, vni: 42, port: 4789, local: 'fd00::1', dev: 'md-u0', learning: false }, { vni: 42, port: 4789, local: 'fd00::1', dev: 'md-u0', learning: false }],
    [
      { kind: 'bond', name: 'md-bond0', up: true, mode: 'active-backup', miimonMs: 100, arpIntervalMs: 200, arpTargets: ['10.0.0.1'] },
      { mode: 'active-backup', miimonMs: 100, arpIntervalMs: 200, arpTargets: ['10.0.0.1'] },
    ],
    [{ kind: 'bridge', name: 'md-br', up: true }, undefined],
  ])('$kind', (link, info) => {
    const observed = decodeLink(asDumped({ ...link, mtu: 1400, master: 'md-br' }, 12), ifname)
    expect(observed).toEqual({ name: link.name, index: 12, kind: link.kind, mtu: 1400, up: true, master: 'md-br', ...(info ? { info } : {}) })
  })

  it('reads up from IFF_UP', () => {
    expect(decodeLink(asDumped({ kind: 'bridge', name: 'md-br', up: false }, 6, 0), ifname).up).toBe(false)
  })

  it('reads a link counters entry: the name and the byte counters of IFLA_STATS64, wherever they sit', () => {
    const stats = Buffer.alloc(8 * 24)
    stats.writeBigUInt64LE(3n, 0) // rx_packets
    stats.writeBigUInt64LE(2n, 8) // tx_packets
    stats.writeBigUInt64LE(2n ** 40n + 7n, 16) // rx_bytes, past 32 bits
    stats.writeBigUInt64LE(1234n, 24) // tx_bytes
    const header = Buffer.alloc(16)
    const entry = Buffer.concat([header, attr(4, u32(1420)), attr(3, str('md-abc')), attr(7, u8(0)), attr(23, stats), attr(26, Buffer.alloc(40))])
    expect(decodeLinkCounters(entry)).toEqual({ name: 'md-abc', rxBytes: 2 ** 40 + 7, txBytes: 1234 })
    expect(decodeLinkCounters(Buffer.concat([header, attr(3, str('lo'))]))).toBeUndefined()
    // A truncated attribute ends the walk: no counters rather than a throw.
    expect(decodeLinkCounters(Buffer.concat([header, attr(3, str('md-abc')), attr(23, stats).subarray(0, 20)]))).toBeUndefined()
  })
})

describe('address dump decoding: IFA_LOCAL is ours, IFA_ADDRESS the prefix (the peer on point-to-point)', () => {
  it.each([
    [{ link: 'md-a', local: '169.254.1.1/32', peer: '169.254.1.2/32' }, 4],
    [{ link: 'md-a', local: '10.1.0.1/24' }, 4],
    [{ link: 'md-a', local: 'fe80::1/128', peer: 'fe80::2/128' }, 6],
  ] as const)('%o', (address, family) => {
    const payload = encodeAddrAdd(address, 73, ifindex).payload
    expect(decodeAddr(payload, ifname)).toEqual({ family, ...address, protocol: 73 })
  })

  it('decodes an IPv6 address that has only IFA_ADDRESS (what the kernel dumps)', () => {
    const header = Buffer.from('0a400000' + '03000000', 'hex') // AF_INET6, /64, flags 0, scope universe, index 3
    const payload = Buffer.concat([header, attr(1, parseIp('fd00:1::5').bytes)])
    expect(decodeAddr(payload, ifname)).toEqual({ family: 6, link: 'md-a', local: 'fd00:1::5/64' })
  })
})

describe('route dump decoding', () => {
  it('reads the table from RTA_TABLE when the header says RT_TABLE_COMPAT', () => {
    const payload = Buffer.from(
      encodeRouteReplace({ table: 7300, dst: '10.1.0.0/24', metric: 10, nexthop: { via: '169.254.1.2', dev: 'md-a', onlink: true } }, 73, ifindex).payload,
    )
    payload.writeUInt8(RT_TABLE_COMPAT, 4)
    expect(decodeRoute(payload, ifname)).toEqual({
      family: 4,
      table: 7300,
      dst: '10.1.0.0/24',
      protocol: 73,
      type: 'unicast',
      scope: 'global',
      metric: 10,
      nexthop: { via: '169.254.1.2', dev: 'md-a', onlink: true },
    })
  })

  it('decodes RTA_MULTIPATH with weights and onlink', () => {
    const multipath = [
      { via: 'fe80::2', dev: 'md-a', weight: 1 },
      { via: 'fe80::3', dev: 'md-b', weight: 7, onlink: true },
    ]
    const payload = encodeRouteReplace({ table: 7301, dst: 'fd00:2::/64', multipath }, 73, ifindex).payload
    expect(decodeRoute(payload, ifname)).toMatchObject({ family: 6, table: 7301, dst: 'fd00:2::/64', multipath })
  })

  it('names kernel route types outside RouteType in otherType, and a missing RTA_DST as the default route', () => {
    const header = Buffer.from('02000000' + 'ff' + '02' + 'fe' + '02' + '00000000', 'hex') // AF_INET /0 table local, kernel, host, RTN_LOCAL
    const route = decodeRoute(Buffer.concat([header, attr(4, u32(1))]), ifname)
    expect(route).toEqual({ family: 4, table: 255, dst: '0.0.0.0/0', protocol: 2, otherType: 'local', scope: 'host', nexthop: { dev: 'if1' } })
  })
})

describe('rule dump decoding', () => {
  it('decodes what ruleAdd encodes', () => {
    const rule = { family: 4 as const, priority: 7300, from: '10.0.0.0/8', to: '10.1.0.0/16', iif: 'md-a', oif: 'md-b', fwmark: { value: 1, mask: 0xff }, table: 7300, suppressPrefixLength: 0 }
    expect(decodeRule(encodeRuleAdd(rule, 73).payload)).toEqual({ ...rule, protocol: 73 })
  })

  it('treats suppress_prefixlength 0xffffffff as unset and a bare fwmark as mask 0xffffffff', () => {
    const header = Buffer.from('0a000000' + 'fe000001' + '00000000', 'hex') // AF_INET6, table main, FR_ACT_TO_TBL
    const payload = Buffer.concat([header, attr(6, u32(32766)), attr(14, u32(0xffffffff)), attr(10, u32(5)), attr(21, u8(2))])
    expect(decodeRule(payload)).toEqual({ family: 6, priority: 32766, table: 254, protocol: 2, fwmark: { value: 5, mask: 0xffffffff } })
  })

  it('reports other actions and inversion', () => {
    const header = Buffer.from('02000000' + '00000006' + '02000000', 'hex') // FR_ACT_BLACKHOLE, FIB_RULE_INVERT
    expect(decodeRule(Buffer.concat([header, attr(6, u32(100))]))).toEqual({ family: 4, priority: 100, table: 0, protocol: 0, action: 'blackhole', invert: true })
  })
})
