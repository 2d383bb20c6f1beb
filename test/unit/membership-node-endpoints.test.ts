// Endpoint candidates for peer records: preference order, deduplication,
// the cap, and the addresses a peer elsewhere could never use.

import { describe, expect, it } from 'vitest'
import { addressOfMultiaddr, gatherEndpoints, tcpPortOfMultiaddrs, type InterfaceAddress } from '../../src/membership/endpoints.js'
import { MAX_ENDPOINTS } from '../../src/membership/records.js'

const network = { ipv4Cidr: '10.73.0.0/16', ipv6Ula: 'fd12:3456:789a::/48' }

const interfaces: InterfaceAddress[] = [
  { interfaceName: 'lo', address: '127.0.0.1', internal: true },
  { interfaceName: 'lo', address: '::1', internal: true },
  { interfaceName: 'eth0', address: '192.168.1.20', internal: false },
  { interfaceName: 'eth0', address: 'fe80::1%eth0', internal: false },
  { interfaceName: 'eth0', address: '2001:db8::20', internal: false },
  { interfaceName: 'eth1', address: '169.254.3.4', internal: false },
  { interfaceName: 'md-abcdefghijkl', address: '192.0.2.99', internal: false },
  { interfaceName: 'meshd0', address: '10.73.4.5', internal: false },
  { interfaceName: 'meshd0', address: 'fd12:3456:789a::5', internal: false },
]

describe('gatherEndpoints', () => {
  it('orders configured, observed, interface; drops loopback, link-local, overlay and meshd links', () => {
    const endpoints = gatherEndpoints({
      configured: [{ address: '203.0.113.5', port: 4000, source: 'configured' }],
      interfaces,
      observed: ['198.51.100.9', '192.168.1.20'],
      port: 7373,
      network,
    })
    expect(endpoints).toEqual([
      { address: '203.0.113.5', port: 4000, source: 'configured' },
      { address: '198.51.100.9', port: 7373, source: 'observed' },
      { address: '192.168.1.20', port: 7373, source: 'observed' },
      { address: '2001:db8::20', port: 7373, source: 'interface' },
    ])
  })

  it('keeps loopback when asked (single-host tests)', () => {
    const endpoints = gatherEndpoints({ configured: [], interfaces: interfaces.slice(0, 2), observed: [], port: 7373, network, includeLoopback: true })
    expect(endpoints.map((endpoint) => endpoint.address)).toEqual(['127.0.0.1', '::1'])
  })

  it('caps the list at what a record can carry', () => {
    const many = Array.from({ length: 40 }, (_, i): InterfaceAddress => ({ interfaceName: `eth${i}`, address: `192.0.2.${i + 1}`, internal: false }))
    expect(gatherEndpoints({ configured: [], interfaces: many, observed: [], port: 7373, network })).toHaveLength(MAX_ENDPOINTS)
  })

  it('ignores text that is not an address', () => {
    expect(gatherEndpoints({ configured: [], interfaces: [{ interfaceName: 'x', address: 'not-an-ip', internal: false }], observed: ['::'], port: 1, network })).toEqual([])
  })
})

describe('multiaddr helpers', () => {
  it('reads addresses and the first TCP port, skipping relayed addresses', () => {
    expect(addressOfMultiaddr('/ip4/203.0.113.7/tcp/4001')).toBe('203.0.113.7')
    expect(addressOfMultiaddr('/ip6/2001:db8::1/tcp/4001/p2p/x')).toBe('2001:db8::1')
    expect(addressOfMultiaddr('/dns4/example.com/tcp/1')).toBeUndefined()
    expect(tcpPortOfMultiaddrs(['/ip4/1.2.3.4/tcp/9/p2p/a/p2p-circuit/p2p/b', '/ip4/127.0.0.1/tcp/7373/p2p/x'])).toBe(7373)
    expect(tcpPortOfMultiaddrs(['/ip4/1.2.3.4/udp/9'])).toBeUndefined()
  })
})
