import { readFileSync } from 'node:fs'
import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { Secret } from '../../src/logging/secret.js'
import type { ObservedWireguardDevice, WireguardDevice } from '../../src/kernel/types.js'
import { wireguardDeviceDiffers } from '../../src/kernel/wireguard/backend.js'
import {
  base64ToHexKey,
  decodeGetResponse,
  decodeSetResponse,
  encodeSetRequest,
  formatEndpoint,
  hexToBase64Key,
  parseEndpoint,
  planSetRequest,
  publicKeyFromPrivate,
  UapiError,
} from '../../src/kernel/wireguard/uapi.js'

// Test keys. The private key is Alice's from RFC 7748 §6.1, so its public key is
// pinned by the RFC; the "preshared key" is Bob's private key from the same section.
const PRIVATE_HEX = '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'
const PRIVATE = 'dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo='
const PUBLIC = 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo='
const PSK_HEX = '5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'
const PSK = 'XasIfmJKikt54X+Lg4AO5m87sSkmGLb9HC+LJ/+I4Os='
// Peers of the recorded response (public keys of throw-away keys).
const PEER_B = 'hSulEuR3g5gRcwHooVXCHHQLbh75QIf7Fb55A8jlFlo='
const PEER_B_HEX = '852ba512e4778398117301e8a155c21c740b6e1ef94087fb15be7903c8e5165a'
const PEER_C = 'vPObB+EA857U7TX5f6TVEjU8So1FY9LTlJOEqYBb6yQ='
const PEER_C_HEX = 'bcf39b07e100f39ed4ed35f97fa4d512353c4a8d4563d2d3949384a9805beb24'

/**
 * A real `get=1` response of wireguard-go 0.0.20220316, recorded in a scratch namespace after
 * `wg set` and a ping through the tunnel; private_key and the one preshared_key were then
 * replaced by the test keys above.
 */
const RECORDED_GET = readFileSync(new URL('./fixtures/wireguard-go-get.txt', import.meta.url), 'utf8')

/** The configuration the recorded device has: two peers, IPv6 and IPv4 endpoints. */
function recordedDevice(): WireguardDevice {
  return {
    name: 'md-test',
    privateKey: new Secret(PRIVATE),
    listenPort: 51820,
    fwmark: 4660,
    peers: [
      {
        publicKey: PEER_B,
        presharedKey: new Secret(PSK),
        endpoint: { address: 'fd00:2::2', port: 51821 },
        allowedIps: ['169.254.10.2/32', 'fd99::2/128', '0.0.0.0/0'],
        persistentKeepaliveSeconds: 25,
      },
      { publicKey: PEER_C, endpoint: { address: '203.0.113.7', port: 51999 }, allowedIps: ['10.9.0.0/16'] },
    ],
  }
}

const FRESH: ObservedWireguardDevice = { name: 'md-test', listenPort: 0, peers: [] }

/** Runs fn and returns what it threw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  throw new Error('expected a throw')
}

describe('UAPI keys', () => {
  it('converts base64 ↔ hex', () => {
    expect(base64ToHexKey(PRIVATE)).toBe(PRIVATE_HEX)
    expect(hexToBase64Key(PRIVATE_HEX)).toBe(PRIVATE)
    expect(hexToBase64Key(PRIVATE_HEX.toUpperCase())).toBe(PRIVATE)
  })

  it.each([
    ['empty', ''],
    ['31 bytes', Buffer.alloc(31, 7).toString('base64')],
    ['33 bytes', Buffer.alloc(33, 7).toString('base64')],
    ['no padding', PRIVATE.slice(0, 43)],
    ['non-canonical last character', PRIVATE.slice(0, 42) + 'p='],
    ['url-safe alphabet', 'dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LC_='],
    ['a newline', PRIVATE.slice(0, 43) + '\n'],
  ])('rejects a base64 key with %s, without echoing it', (_why, key) => {
    const error = thrown(() => base64ToHexKey(key, 'private key'))
    expect(error).toBeInstanceOf(UapiError)
    expect((error as Error).message).toBe('invalid private key: not a 32-byte base64 key')
  })

  it('rejects a hex key that is not 64 hex digits', () => {
    expect(() => hexToBase64Key(PRIVATE_HEX.slice(2))).toThrow(UapiError)
    expect(() => hexToBase64Key(PRIVATE_HEX.slice(2) + 'zz')).toThrow(UapiError)
  })

  it('derives the public key like `wg pubkey` (RFC 7748 §6.1 vector)', () => {
    expect(publicKeyFromPrivate(PRIVATE)).toBe(PUBLIC)
  })

  it('gives the same public key from its cache, and still rejects an invalid private key every time', () => {
    expect(publicKeyFromPrivate(PRIVATE)).toBe(PUBLIC)
    expect(publicKeyFromPrivate(PRIVATE)).toBe(PUBLIC)
    expect(() => publicKeyFromPrivate('not a key')).toThrow(UapiError)
    expect(() => publicKeyFromPrivate('not a key')).toThrow(UapiError)
  })
})

describe('UAPI set requests', () => {
  it('encodes a fresh two-peer device exactly', () => {
    const request = planSetRequest(recordedDevice(), FRESH)
    expect(request).toBeDefined()
    expect(encodeSetRequest(request ?? { peers: [] })).toBe(
      [
        'set=1',
        `private_key=${PRIVATE_HEX}`,
        'listen_port=51820',
        'fwmark=4660',
        `public_key=${PEER_B_HEX}`,
        `preshared_key=${PSK_HEX}`,
        'endpoint=[fd00:2::2]:51821',
        'persistent_keepalive_interval=25',
        'replace_allowed_ips=true',
        'allowed_ip=169.254.10.2/32',
        'allowed_ip=fd99::2/128',
        'allowed_ip=0.0.0.0/0',
        `public_key=${PEER_C_HEX}`,
        `preshared_key=${'0'.repeat(64)}`,
        'endpoint=203.0.113.7:51999',
        'persistent_keepalive_interval=0',
        'replace_allowed_ips=true',
        'allowed_ip=10.9.0.0/16',
        '',
        '',
      ].join('\n'),
    )
  })

  it('encodes replace_peers, peer removal and clearing of fwmark', () => {
    const text = encodeSetRequest({
      fwmark: 0,
      replacePeers: true,
      peers: [{ publicKey: PEER_C, remove: true, allowedIps: ['10.0.0.0/8'] }, { publicKey: PEER_B, allowedIps: [] }],
    })
    expect(text).toBe(
      ['set=1', 'fwmark=0', 'replace_peers=true', `public_key=${PEER_C_HEX}`, 'remove=true', `public_key=${PEER_B_HEX}`, 'replace_allowed_ips=true', '', ''].join(
        '\n',
      ),
    )
  })

  it.each([
    ['an endpoint address carrying a line', { endpoint: { address: '1.2.3.4\nprivate_key=00', port: 1 } }],
    ['an endpoint port out of range', { endpoint: { address: '1.2.3.4', port: 65536 } }],
    ['an allowed IP that is no prefix', { allowedIps: ['10.0.0.0/33'] }],
    ['an allowed IP without a length', { allowedIps: ['10.0.0.1'] }],
    ['an allowed IP carrying a line', { allowedIps: ['10.0.0.0/8\nremove=true'] }],
    ['a fractional keepalive', { persistentKeepaliveSeconds: 2.5 }],
    ['a bad preshared key', { presharedKey: new Secret('short') }],
  ])('refuses to encode %s', (_why, change) => {
    expect(() => encodeSetRequest({ peers: [{ publicKey: PEER_B, ...change }] })).toThrow(UapiError)
  })

  it('refuses a bad device port, fwmark or public key', () => {
    expect(() => encodeSetRequest({ listenPort: -1, peers: [] })).toThrow(UapiError)
    expect(() => encodeSetRequest({ fwmark: 2 ** 32, peers: [] })).toThrow(UapiError)
    expect(() => encodeSetRequest({ peers: [{ publicKey: 'nope' }] })).toThrow(UapiError)
  })
})

describe('UAPI endpoints', () => {
  it('writes IPv6 endpoints in brackets', () => {
    expect(formatEndpoint({ address: 'fd00::2', port: 51820 })).toBe('[fd00::2]:51820')
    expect(formatEndpoint({ address: '192.0.2.1', port: 1 })).toBe('192.0.2.1:1')
  })

  it.each([
    ['192.0.2.1:51820', { address: '192.0.2.1', port: 51820 }],
    ['[fd00::2]:51820', { address: 'fd00::2', port: 51820 }],
    ['[fe80::1%eth0]:51820', { address: 'fe80::1%eth0', port: 51820 }],
    ['[::ffff:192.0.2.1]:1', { address: '::ffff:192.0.2.1', port: 1 }],
  ])('reads %s', (text, endpoint) => {
    expect(parseEndpoint(text)).toEqual(endpoint)
  })

  it.each(['192.0.2.1', '[192.0.2.1]:1', 'fd00::1:51820', '[fd00::1]:65536', '[fd00::1]:', 'host:1', '01.2.3.4:1', '[fe80::1%a b]:1', '1.2.3.4:1\n'])(
    'rejects %j',
    (text) => {
      expect(parseEndpoint(text)).toBeUndefined()
    },
  )
})

describe('UAPI set planning', () => {
  it('sends nothing when the device already matches (the recorded device)', () => {
    const observed = decodeGetResponse('md-test', RECORDED_GET)
    expect(planSetRequest(recordedDevice(), observed)).toBeUndefined()
  })

  it('touches only what changed: a moved endpoint, a dropped peer, the same port', () => {
    const observed = decodeGetResponse('md-test', RECORDED_GET)
    const desired = recordedDevice()
    const [peerB] = desired.peers
    if (peerB === undefined) throw new Error('fixture')
    desired.peers = [{ ...peerB, endpoint: { address: 'fd00:2::3', port: 51821 } }]
    expect(planSetRequest(desired, observed)).toEqual({
      peers: [
        { publicKey: PEER_C, remove: true },
        {
          publicKey: PEER_B,
          presharedKey: peerB.presharedKey,
          endpoint: { address: 'fd00:2::3', port: 51821 },
          persistentKeepaliveSeconds: 25,
          allowedIps: peerB.allowedIps,
        },
      ],
    })
  })

  it('changes the private key, port and fwmark when they differ, and leaves port 0 alone', () => {
    const observed = decodeGetResponse('md-test', RECORDED_GET)
    const desired = { ...recordedDevice(), privateKey: new Secret(PSK), listenPort: 0, fwmark: undefined }
    const request = planSetRequest(desired, observed)
    expect(request?.privateKey?.reveal()).toBe(PSK)
    expect(request?.listenPort).toBeUndefined()
    expect(request?.fwmark).toBe(0)
    expect(request?.peers).toEqual([])
  })
})

describe('UAPI get responses', () => {
  it('decodes a recorded wireguard-go response', () => {
    const device = decodeGetResponse('md-test', RECORDED_GET)
    expect(device.privateKey?.reveal()).toBe(PRIVATE)
    expect(device.peers[0]?.presharedKey?.reveal()).toBe(PSK)
    // Everything but the secrets, exactly.
    expect(JSON.parse(JSON.stringify(device))).toEqual({
      name: 'md-test',
      privateKey: '[redacted]',
      publicKey: PUBLIC,
      listenPort: 51820,
      fwmark: 4660,
      peers: [
        {
          publicKey: PEER_B,
          presharedKey: '[redacted]',
          endpoint: { address: 'fd00:2::2', port: 51821 },
          lastHandshakeMs: 1795314555127,
          txBytes: 564,
          rxBytes: 476,
          persistentKeepaliveSeconds: 25,
          allowedIps: ['169.254.10.2/32', 'fd99::2/128', '0.0.0.0/0'],
        },
        { publicKey: PEER_C, endpoint: { address: '203.0.113.7', port: 51999 }, txBytes: 0, rxBytes: 0, allowedIps: ['10.9.0.0/16'] },
      ],
    })
    expect(wireguardDeviceDiffers(recordedDevice(), device)).toBe(false)
  })

  it('decodes a device with no key, port or peers', () => {
    expect(decodeGetResponse('md-x', 'errno=0\n\n')).toEqual({ name: 'md-x', listenPort: 0, peers: [] })
    expect(decodeGetResponse('md-x', `private_key=${'0'.repeat(64)}\nerrno=0\n\n`)).toEqual({ name: 'md-x', listenPort: 0, peers: [] })
  })

  it('skips keys it does not know', () => {
    const text = RECORDED_GET.replace('protocol_version=1\n', 'protocol_version=1\nfuture_key=whatever\n')
    expect(decodeGetResponse('md-test', text).peers).toHaveLength(2)
  })

  it('reports the errno of a failed request (wireguard-go sends it negated)', () => {
    const error = thrown(() => {
      decodeSetResponse('errno=-22\n\n')
    })
    expect(error).toBeInstanceOf(UapiError)
    expect((error as UapiError).errno).toBe(22)
    expect((thrown(() => decodeGetResponse('md-x', 'errno=5\n\n')) as UapiError).errno).toBe(5)
    expect(() => {
      decodeSetResponse('errno=0\n\n')
    }).not.toThrow()
  })

  const secretValue = 'ff'.repeat(31) + 'zz'
  it.each([
    ['no terminating empty line', 'errno=0\n', undefined],
    ['no errno', 'listen_port=1\n\n', 1],
    ['a line without =', 'listen_port\nerrno=0\n\n', 1],
    ['a line starting with =', '=1\nerrno=0\n\n', 1],
    ['a bad private key', `private_key=${secretValue}\nerrno=0\n\n`, 1],
    ['a port out of range', 'listen_port=65536\nerrno=0\n\n', 1],
    ['a negative fwmark', 'fwmark=-1\nerrno=0\n\n', 1],
    ['a peer key before public_key', 'allowed_ip=10.0.0.0/8\nerrno=0\n\n', 1],
    ['a device key after a peer', `public_key=${PEER_B_HEX}\nlisten_port=1\nerrno=0\n\n`, 2],
    ['an all-zero public key', `public_key=${'0'.repeat(64)}\nerrno=0\n\n`, 1],
    ['a bad endpoint', `public_key=${PEER_B_HEX}\nendpoint=fd00::1:51820\nerrno=0\n\n`, 2],
    ['a bad allowed IP', `public_key=${PEER_B_HEX}\nallowed_ip=10.0.0.0\nerrno=0\n\n`, 2],
    ['a huge counter', `public_key=${PEER_B_HEX}\nrx_bytes=99999999999999999999\nerrno=0\n\n`, 2],
    ['an unknown protocol version', `public_key=${PEER_B_HEX}\nprotocol_version=2\nerrno=0\n\n`, 2],
    ['a bad preshared key', `public_key=${PEER_B_HEX}\npreshared_key=${secretValue}\nerrno=0\n\n`, 2],
  ])('rejects %s with a UapiError naming the line, never the value', (_why, text, line) => {
    const error = thrown(() => decodeGetResponse('md-x', text))
    expect(error).toBeInstanceOf(UapiError)
    expect((error as UapiError).line).toBe(line)
    expect((error as Error).message).not.toContain('ffff')
  })
})

describe('UAPI decoder fuzz', () => {
  /** mulberry32: a tiny seeded PRNG so a failure reproduces. */
  function random(seed: number): () => number {
    let a = seed
    return () => {
      a = (a + 0x6d2b79f5) | 0
      let t = Math.imul(a ^ (a >>> 15), 1 | a)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
  }
  /** Picks a random element. */
  const picker =
    (next: () => number) =>
    <T>(items: readonly T[]): T =>
      items[Math.floor(next() * items.length)] as T
  const ALPHABET = Array.from('abcdef0123456789=\n:[]./-_ %xyz\u00e9\u0000')
  const KEYS = ['private_key', 'listen_port', 'fwmark', 'public_key', 'preshared_key', 'endpoint', 'allowed_ip', 'rx_bytes', 'last_handshake_time_sec', 'last_handshake_time_nsec', 'persistent_keepalive_interval', 'protocol_version', 'errno']

  /** Decodes and returns 'ok' or 'UapiError'; anything else thrown fails the test. */
  function outcome(text: string): string {
    try {
      decodeGetResponse('md-fuzz', text)
      return 'ok'
    } catch (error) {
      if (error instanceof UapiError) return 'UapiError'
      throw new Error(`decoder threw ${String(error)} for ${JSON.stringify(text)}`)
    }
  }

  it('never throws anything but UapiError on mutated recordings', () => {
    const next = random(0x5eed)
    const pick = picker(next)
    const seen = new Set<string>()
    for (let i = 0; i < 3000; i++) {
      const lines = RECORDED_GET.split('\n')
      for (let m = 1 + Math.floor(next() * 4); m > 0; m--) {
        const at = Math.floor(next() * lines.length)
        const line = lines[at] ?? ''
        const cut = Math.floor(next() * (line.length + 1))
        switch (Math.floor(next() * 6)) {
          case 0: // delete a character
            lines[at] = line.slice(0, cut) + line.slice(cut + 1)
            break
          case 1: // insert a character
            lines[at] = line.slice(0, cut) + pick(ALPHABET) + line.slice(cut)
            break
          case 2: // swap two lines
            lines[at] = lines[0] ?? ''
            lines[0] = line
            break
          case 3: // duplicate a line
            lines.splice(at, 0, line)
            break
          case 4: // a known key with a random value
            lines[at] = `${pick(KEYS)}=${Array.from({ length: Math.floor(next() * 70) }, () => pick(ALPHABET)).join('')}`
            break
          default: // truncate
            lines.length = at
        }
      }
      seen.add(outcome(lines.join('\n')))
    }
    // Both outcomes occur, so the mutations neither always break nor never break the input.
    expect([...seen].sort()).toEqual(['UapiError', 'ok'])
  })

  it('never throws anything but UapiError on random text', () => {
    const next = random(42)
    const pick = picker(next)
    for (let i = 0; i < 3000; i++) {
      const text = Array.from({ length: Math.floor(next() * 200) }, () => pick(ALPHABET)).join('')
      outcome(text + (next() < 0.5 ? '\nerrno=0\n\n' : ''))
    }
  })
})

describe('secrets in WireGuard devices', () => {
  const hexNeedles = [PRIVATE_HEX, PSK_HEX]
  const needles = [PRIVATE, PSK, ...hexNeedles, PRIVATE.slice(0, 20)]

  it.each([
    ['a desired device', (): unknown => recordedDevice()],
    ['a decoded device', (): unknown => decodeGetResponse('md-test', RECORDED_GET)],
  ])('never print a key: %s', (_what, make) => {
    const device = make()
    for (const text of [JSON.stringify(device), String(device), inspect(device, { depth: 10 }), JSON.stringify({ device })]) {
      for (const needle of needles) expect(text).not.toContain(needle)
    }
  })
})
