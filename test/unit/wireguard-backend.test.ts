import { describe, expect, it } from 'vitest'
import { Secret } from '../../src/logging/secret.js'
import type { ObservedWireguardDevice, WireguardDevice } from '../../src/kernel/types.js'
import { chooseBackend, wireguardDeviceDiffers } from '../../src/kernel/wireguard/backend.js'
import { canonicalCidr, formatEndpoint, formatIp, parseEndpoint, parseIp, sameEndpoint } from '../../src/kernel/wireguard/ip.js'

const KEY_A = 'dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo='
const KEY_B = 'XasIfmJKikt54X+Lg4AO5m87sSkmGLb9HC+LJ/+I4Os='
const PEER_1 = 'hSulEuR3g5gRcwHooVXCHHQLbh75QIf7Fb55A8jlFlo='
const PEER_2 = 'vPObB+EA857U7TX5f6TVEjU8So1FY9LTlJOEqYBb6yQ='
const ZERO = Buffer.alloc(32).toString('base64')

describe('chooseBackend', () => {
  it.each([
    [true, undefined, 'kernel'],
    [false, undefined, 'userspace'],
    [true, 'auto', 'kernel'],
    [false, 'auto', 'userspace'],
    [true, 'userspace', 'userspace'],
    [false, 'userspace', 'userspace'],
    [true, 'kernel', 'kernel'],
    [false, 'kernel', 'error'],
  ] as const)('kernel available %s, override %s → %s', (kernelAvailable, override, kind) => {
    const choice = chooseBackend({ kernelAvailable, ...(override === undefined ? {} : { override }) })
    expect(choice.kind).toBe(kind)
    expect(choice.reason).not.toBe('')
  })

  it('explains an unavailable kernel override instead of falling back', () => {
    expect(chooseBackend({ kernelAvailable: false, override: 'kernel' }).reason).toMatch(/unavailable/)
  })
})

function desired(): WireguardDevice {
  return {
    name: 'md-x',
    privateKey: new Secret(KEY_A),
    listenPort: 51820,
    peers: [
      { publicKey: PEER_1, presharedKey: new Secret(KEY_B), endpoint: { address: 'fd00::2', port: 51821 }, allowedIps: ['0.0.0.0/0', '::/0'], persistentKeepaliveSeconds: 25 },
      { publicKey: PEER_2, allowedIps: ['10.0.0.0/24'] },
    ],
  }
}

function observed(): ObservedWireguardDevice {
  return {
    name: 'md-x',
    privateKey: new Secret(KEY_A),
    publicKey: 'ignored',
    listenPort: 51820,
    peers: [
      // Reversed order, plus state that is not configuration.
      { publicKey: PEER_2, presharedKey: new Secret(ZERO), allowedIps: ['10.0.0.0/24'], endpoint: { address: '192.0.2.9', port: 4000 }, rxBytes: 9 },
      { publicKey: PEER_1, presharedKey: new Secret(KEY_B), endpoint: { address: 'fd00:0:0::2', port: 51821 }, allowedIps: ['::/0', '0.0.0.0/0'], persistentKeepaliveSeconds: 25, lastHandshakeMs: 1 },
    ],
  }
}

describe('wireguardDeviceDiffers', () => {
  it('sees no difference in order, canonical forms, zero preshared keys, learned endpoints or counters', () => {
    expect(wireguardDeviceDiffers(desired(), observed())).toBe(false)
  })

  type Edit = (d: WireguardDevice, o: ObservedWireguardDevice) => void
  const peer = <T>(list: T[], i: number): T => list[i] as T
  it.each<[string, Edit, boolean]>([
    ['another private key', (d) => (d.privateKey = new Secret(KEY_B)), true],
    ['no observed private key', (_d, o) => delete o.privateKey, true],
    ['another listen port', (_d, o) => (o.listenPort = 51821), true],
    ['desired port 0 (any)', (d, o) => ((d.listenPort = 0), (o.listenPort = 40000)), false],
    ['fwmark 0 vs unset', (d, o) => ((d.fwmark = 0), delete o.fwmark), false],
    ['another fwmark', (d) => (d.fwmark = 7), true],
    ['an extra observed peer', (_d, o) => o.peers.push({ publicKey: KEY_A, allowedIps: [] }), true],
    ['a missing observed peer', (_d, o) => o.peers.pop(), true],
    ['the same count but another key', (_d, o) => (peer(o.peers, 0).publicKey = KEY_A), true],
    ['another preshared key', (_d, o) => (peer(o.peers, 1).presharedKey = new Secret(KEY_A)), true],
    ['a preshared key removed', (_d, o) => delete peer(o.peers, 1).presharedKey, true],
    ['another endpoint port', (_d, o) => (peer(o.peers, 1).endpoint = { address: 'fd00::2', port: 1 }), true],
    ['another endpoint address', (_d, o) => (peer(o.peers, 1).endpoint = { address: 'fd00::3', port: 51821 }), true],
    ['no observed endpoint', (_d, o) => delete peer(o.peers, 1).endpoint, true],
    ['an extra allowed IP', (_d, o) => peer(o.peers, 1).allowedIps.push('10.1.0.0/16'), true],
    ['an allowed IP written with host bits', (d) => (peer(d.peers, 1).allowedIps = ['10.0.0.77/24']), false],
    ['keepalive off vs 25', (_d, o) => delete peer(o.peers, 1).persistentKeepaliveSeconds, true],
    ['keepalive 0 vs unset', (d) => (peer(d.peers, 1).persistentKeepaliveSeconds = 0), false],
  ])('%s → %s', (_why, edit, differs) => {
    const [d, o] = [desired(), observed()]
    edit(d, o)
    expect(wireguardDeviceDiffers(d, o)).toBe(differs)
  })
})

describe('IP helpers', () => {
  it.each([
    ['10.0.0.77/24', '10.0.0.0/24'],
    ['10.1.2.3/32', '10.1.2.3/32'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['FD00:0000::1/128', 'fd00::1/128'],
    ['fd00::1:2/112', 'fd00::1:0/112'],
    ['::/0', '::/0'],
    ['2001:db8:0:0:1:0:0:1/128', '2001:db8::1:0:0:1/128'],
    ['::ffff:192.0.2.1/128', '::ffff:c000:201/128'],
    ['not-a-prefix', 'not-a-prefix'],
  ])('canonicalCidr(%s) = %s', (input, output) => {
    expect(canonicalCidr(input)).toBe(output)
  })

  it('formats IPv6 per RFC 5952: the first longest zero run, never a single group', () => {
    const text = (s: string): string => formatIp(parseIp(s) ?? { family: 4, bytes: new Uint8Array(4) })
    expect(text('1:0:0:2:0:0:0:3')).toBe('1:0:0:2::3')
    expect(text('1:0:0:2:0:0:3:4')).toBe('1::2:0:0:3:4')
    expect(text('1:0:2:3:4:5:6:7')).toBe('1:0:2:3:4:5:6:7')
    expect(text('fe80::1%eth0')).toBe('fe80::1%eth0')
  })

  it('rejects invalid addresses', () => {
    for (const bad of ['', '1.2.3', '01.2.3.4', '1.2.3.4%eth0', 'fd00::g', 'fe80::1%bad zone']) expect(parseIp(bad)).toBeUndefined()
  })

  it('writes and reads endpoints the way the UAPI does', () => {
    expect(formatEndpoint({ address: 'fd00::2', port: 51820 })).toBe('[fd00::2]:51820')
    expect(formatEndpoint({ address: '192.0.2.1', port: 1 })).toBe('192.0.2.1:1')
    expect(parseEndpoint('[fe80::1%eth0]:51820')).toEqual({ address: 'fe80::1%eth0', port: 51820 })
    expect(parseEndpoint('192.0.2.1:51820')).toEqual({ address: '192.0.2.1', port: 51820 })
    for (const bad of ['192.0.2.1', '[192.0.2.1]:1', 'fd00::1:51820', '[fd00::1]:65536', '[fd00::1]:', 'host:1']) {
      expect(parseEndpoint(bad)).toBeUndefined()
    }
    expect(sameEndpoint({ address: 'FD00:0::2', port: 1 }, { address: 'fd00::2', port: 1 })).toBe(true)
  })
})
