import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { toHex } from '../../src/membership/codec.js'
import { formatIpv6, parseIpv4Cidr, parseIpv6, parseIpv6Cidr } from '../../src/net/ip.js'
import { Secret } from '../../src/logging/secret.js'
import {
  DEFAULT_OVERLAY_CIDR,
  createNetwork,
  derivePnetKey,
  formatPnetKey,
  networkIdFor,
  ulaForNetwork,
  type CreateNetworkInit,
} from '../../src/membership/network.js'
import { countingRandom, labNetwork, seededSigner } from './membership-fixtures.js'

const founder = seededSigner(1).nodeId

function create(overrides: Partial<CreateNetworkInit>): ReturnType<typeof createNetwork> {
  return createNetwork({ name: 'lab', founder, existingRoutes: [], random: countingRandom(0), ...overrides })
}

function reasonOf(result: ReturnType<typeof createNetwork>): string {
  return result.ok ? 'ok' : result.reason
}

describe('createNetwork', () => {
  // Cross-checked with an independent Python implementation (hashlib + RFC 5869 HKDF) of the same derivations.
  it('pins the id, ULA and pnet key of a fixed secret and founder', () => {
    const network = labNetwork()
    expect(toHex(network.secret.reveal())).toBe('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f')
    expect(network).toMatchObject({
      id: '7d5ce8d08f268e6a31b921b6c7046671',
      name: 'lab',
      founder: '12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5',
      ipv4Cidr: '10.73.0.0/16',
      ipv6Ula: 'fda0:4a09:fe7b::/48',
    })
    expect(toHex(derivePnetKey(network.secret).reveal())).toBe('835b032a7e335536ac2c12ae19398bdb29d39edacb9edc56cb3094082c01aa79')
  })

  it('derives the id from secret, founder, name and overlay: changing any changes it', () => {
    const base = { secret: new Secret(new Uint8Array(32)), founder, name: 'lab', ipv4Cidr: '10.73.0.0/16' }
    const id = networkIdFor(base)
    expect(networkIdFor({ ...base })).toBe(id)
    expect(networkIdFor({ ...base, secret: new Secret(new Uint8Array(32).fill(1)) })).not.toBe(id)
    expect(networkIdFor({ ...base, founder: seededSigner(2).nodeId })).not.toBe(id)
    expect(networkIdFor({ ...base, name: 'lab2' })).not.toBe(id)
    expect(networkIdFor({ ...base, ipv4Cidr: '10.74.0.0/16' })).not.toBe(id)
  })

  it('makes an RFC 4193 ULA /48 from the id', () => {
    const ula = ulaForNetwork(labNetwork().id)
    const cidr = parseIpv6Cidr(ula)
    expect(cidr?.prefix).toBe(48)
    expect(cidr?.base[0]).toBe(0xfd)
  })

  it('uses 10.73.0.0/16 by default, ignoring the default route and IPv6 routes', () => {
    const result = create({ existingRoutes: ['0.0.0.0/0', 'default', '192.168.1.0/24', 'fe80::/64', '::/0', '10.72.0.0/16'] })
    expect(result.ok && result.value.ipv4Cidr).toBe(DEFAULT_OVERLAY_CIDR)
  })

  it('moves the default to the next free /16 when the host already routes it', () => {
    expect(create({ existingRoutes: ['10.73.5.0/24'] })).toMatchObject({ ok: true, value: { ipv4Cidr: '10.74.0.0/16' } })
    expect(create({ existingRoutes: ['10.73.0.0/16', '10.74.0.0/15'] })).toMatchObject({ ok: true, value: { ipv4Cidr: '10.76.0.0/16' } })
    expect(create({ existingRoutes: ['10.0.0.0/8'] })).toMatchObject({ ok: true, value: { ipv4Cidr: '172.16.0.0/16' } })
    expect(create({ existingRoutes: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'] })).toEqual({
      ok: false,
      reason: 'every private /16 overlaps a host route; pass an overlay CIDR explicitly',
    })
  })

  it('refuses an overlay that overlaps a host route and suggests a free one of the same size', () => {
    expect(reasonOf(create({ cidr: '10.0.0.0/16', existingRoutes: ['10.0.0.0/8'] }))).toBe(
      'overlay 10.0.0.0/16 overlaps the host route 10.0.0.0/8; try 172.16.0.0/16',
    )
    expect(reasonOf(create({ cidr: '10.73.0.0/16', existingRoutes: ['10.73.1.7'] }))).toBe(
      'overlay 10.73.0.0/16 overlaps the host route 10.73.1.7/32; try 10.74.0.0/16',
    )
    expect(reasonOf(create({ cidr: '192.168.0.0/24', existingRoutes: ['192.168.0.0/24'] }))).toBe(
      'overlay 192.168.0.0/24 overlaps the host route 192.168.0.0/24; try 10.73.0.0/24',
    )
  })

  it('refuses reserved ranges, bad prefixes and host bits', () => {
    expect(reasonOf(create({ cidr: '169.254.0.0/16' }))).toBe(
      'overlay 169.254.0.0/16 overlaps 169.254.0.0/16 (link-local, used by meshd for its pair links); try 10.73.0.0/16',
    )
    expect(reasonOf(create({ cidr: '127.0.0.0/16' }))).toMatch(/loopback/)
    expect(reasonOf(create({ cidr: '10.0.0.0/29' }))).toBe('overlay 10.0.0.0/29 must have a prefix length between /8 and /28')
    expect(reasonOf(create({ cidr: '10.73.0.1/16' }))).toBe('overlay "10.73.0.1/16" is not an IPv4 CIDR with host bits zero; did you mean 10.73.0.0/16?')
    expect(reasonOf(create({ cidr: 'fd00::/48' }))).toBe('overlay "fd00::/48" is not an IPv4 CIDR with host bits zero')
    expect(reasonOf(create({ existingRoutes: ['banana'] }))).toBe('cannot read host route "banana"')
  })

  it('refuses names that would not survive a terminal or a log line', () => {
    expect(create({ name: 'home-lab_2.eu' }).ok).toBe(true)
    for (const name of ['', '-x', 'a b', 'ünïcode', 'x'.repeat(64), 'a\nb']) {
      expect(reasonOf(create({ name }))).toMatch(/^invalid network name/)
    }
  })

  it('keeps the secret out of JSON, inspect and string forms', () => {
    const network = labNetwork()
    const hex = toHex(network.secret.reveal())
    for (const text of [JSON.stringify(network), inspect(network, { depth: 5 }), String(network.secret)]) {
      expect(text).not.toContain(hex)
      expect(text).not.toContain(Buffer.from(network.secret.reveal()).toString('base64'))
    }
  })

  it('formats the pnet key as an @libp2p/pnet swarm key', () => {
    const text = new TextDecoder().decode(formatPnetKey(derivePnetKey(labNetwork().secret)).reveal())
    expect(text).toBe('/key/swarm/psk/1.0.0/\n/base16/\n835b032a7e335536ac2c12ae19398bdb29d39edacb9edc56cb3094082c01aa79')
  })
})

describe('ip helpers', () => {
  it('writes IPv6 as RFC 5952 says', () => {
    const cases: [string, string][] = [
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['::ffff:192.0.2.1', '::ffff:c000:201'],
      ['FE80::ABCD', 'fe80::abcd'],
      ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ]
    for (const [input, canonical] of cases) {
      const bytes = parseIpv6(input)
      expect(bytes, input).toBeDefined()
      expect(formatIpv6(bytes ?? new Uint8Array(16))).toBe(canonical)
    }
    for (const bad of ['', '1::2::3', '12345::', 'fe80::1%eth0', '1.2.3.4', '::1.2.3.04']) expect(parseIpv6(bad), bad).toBeUndefined()
  })

  it('reads IPv4 CIDRs strictly', () => {
    expect(parseIpv4Cidr('10.0.0.0/8')).toEqual({ base: 0x0a000000, prefix: 8 })
    for (const bad of ['10.0.0.1/8', '10.0.0.0', '10.0.0.0/33', '010.0.0.0/8', '10.0.0.0/08', '10.0.0/8', '256.0.0.0/8', ' 10.0.0.0/8']) {
      expect(parseIpv4Cidr(bad), bad).toBeUndefined()
    }
  })
})
