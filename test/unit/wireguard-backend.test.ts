import { describe, expect, it } from 'vitest'
import { Secret } from '../../src/logging/secret.js'
import type { ObservedWireguardDevice, WireguardDevice } from '../../src/kernel/types.js'
import { chooseBackend, wireguardDeviceDiffers } from '../../src/kernel/wireguard/backend.js'

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
    ['an IPv6 allowed IP in long form', (d) => (peer(d.peers, 0).allowedIps = ['0.0.0.0/0', '0:0::0/0']), false],
    ['an IPv6 endpoint in upper case', (d) => (peer(d.peers, 0).endpoint = { address: 'FD00::0:2', port: 51821 }), false],
    ['the same endpoint with a zone', (d) => (peer(d.peers, 0).endpoint = { address: 'fd00::2%eth0', port: 51821 }), true],
    ['keepalive off vs 25', (_d, o) => delete peer(o.peers, 1).persistentKeepaliveSeconds, true],
    ['keepalive 0 vs unset', (d) => (peer(d.peers, 1).persistentKeepaliveSeconds = 0), false],
  ])('%s → %s', (_why, edit, differs) => {
    const [d, o] = [desired(), observed()]
    edit(d, o)
    expect(wireguardDeviceDiffers(d, o)).toBe(differs)
  })
})
