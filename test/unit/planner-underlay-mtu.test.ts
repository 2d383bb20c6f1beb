import { describe, expect, it } from 'vitest'
import type { ObservedLink, ObservedRoute } from '../../src/kernel/types.js'
import { DEFAULT_UNDERLAY_MTU, underlayMtuTowards } from '../../src/planner/underlay-mtu.js'

const link = (name: string, mtu: number): ObservedLink => ({ name, index: 1, kind: undefined, mtu, up: true })
const route = (dst: string, dev: string, extra: Partial<ObservedRoute> = {}): ObservedRoute => ({ family: dst.includes(':') ? 6 : 4, protocol: 3, table: 254, dst, type: 'unicast', nexthop: { dev }, ...extra })

const links = [link('eth0', 1500), link('ppp0', 1492), link('wg-corp', 1380), link('eth1', 9000)]
const routes = [
  route('0.0.0.0/0', 'ppp0'),
  route('10.0.0.0/8', 'wg-corp'),
  route('10.1.2.0/24', 'eth1'),
  route('192.0.2.0/24', 'eth0'),
  route('::/0', 'eth0'),
  route('2001:db8::/32', 'wg-corp'),
  route('198.51.100.0/24', 'wg-corp', { table: 100 }),
]

describe('underlay MTU towards an endpoint', () => {
  it.each([
    ['203.0.113.9', 1492],
    ['10.9.9.9', 1380],
    ['10.1.2.3', 9000],
    ['192.0.2.7', 1500],
    ['2001:db8::1', 1380],
    ['2001:db9::1', 1500],
    // Only the main table: policy tables are not followed.
    ['198.51.100.1', 1492],
  ])('%s → %i (longest match in the main table, its device MTU)', (address, mtu) => {
    expect(underlayMtuTowards(address, routes, links)).toBe(mtu)
  })

  it('falls back to 1500 without a route, a device or a parsable address', () => {
    expect(underlayMtuTowards('203.0.113.9', [], links)).toBe(DEFAULT_UNDERLAY_MTU)
    expect(underlayMtuTowards('203.0.113.9', routes, [])).toBe(DEFAULT_UNDERLAY_MTU)
    expect(underlayMtuTowards('not-an-ip', routes, links)).toBe(DEFAULT_UNDERLAY_MTU)
  })

  it('ignores non-unicast routes and keeps IPv6 at 1280 or more', () => {
    expect(underlayMtuTowards('10.9.9.9', [route('10.0.0.0/8', 'wg-corp', { type: 'blackhole' }), route('0.0.0.0/0', 'eth0')], links)).toBe(1500)
    expect(underlayMtuTowards('2001:db8::1', [route('::/0', 'tiny')], [link('tiny', 1000)])).toBe(1280)
  })
})
