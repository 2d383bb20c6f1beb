import { describe, expect, it } from 'vitest'
import {
  classifyControl,
  emptyPairLinkDialState,
  libp2pPortOf,
  PAIR_LINK_DIAL_WAIT_MS,
  PAIR_LINK_RETRY_MS,
  pairLinkDials,
  type PairLinkCandidate,
} from '../../src/agent/control-route.js'
import { isMeshInternalAddress } from '../../src/membership/endpoints.js'

const SMALL = '12D3KooWA'
const LARGE = '12D3KooWZ'
const RELAYED = `/ip4/192.0.2.1/tcp/7373/p2p/12D3KooWR/p2p-circuit/p2p/${LARGE}`
const OVER_LINK = `/ip4/169.254.3.2/tcp/7373/p2p/${LARGE}`
const UNDERLAY = `/ip4/192.0.2.9/tcp/7373/p2p/${LARGE}`

const candidate = (overrides: Partial<PairLinkCandidate> = {}): PairLinkCandidate => ({
  peer: LARGE,
  connections: [RELAYED],
  linkUp: true,
  peer4: '169.254.3.2',
  libp2pPort: 7373,
  ...overrides,
})

describe('control route of a member', () => {
  it('names the best connection there is: the pair link, then the underlay, then a relay', () => {
    expect(classifyControl([], '169.254.3.2')).toBeNull()
    expect(classifyControl([RELAYED], '169.254.3.2')).toBe('relayed')
    expect(classifyControl([RELAYED, UNDERLAY], '169.254.3.2')).toBe('direct')
    expect(classifyControl([RELAYED, OVER_LINK], '169.254.3.2')).toBe('pair-link')
    // Another link-local address is not this pair's link.
    expect(classifyControl(['/ip4/169.254.9.9/tcp/7373'], '169.254.3.2')).toBe('direct')
    expect(classifyControl([OVER_LINK], undefined)).toBe('direct')
  })

  it("takes the libp2p port from an interface or observed candidate before a configured one (that may be a forward)", () => {
    expect(
      libp2pPortOf([
        { address: '203.0.113.5', port: 40000, source: 'configured' },
        { address: '10.0.0.5', port: 7373, source: 'interface' },
      ]),
    ).toBe(7373)
    expect(libp2pPortOf([{ address: '203.0.113.5', port: 40000, source: 'configured' }])).toBe(40000)
    expect(libp2pPortOf([])).toBeUndefined()
  })
})

describe('dials over pair links', () => {
  it('the smaller id dials at once, to the link-local address and libp2p port', () => {
    const { dials } = pairLinkDials(SMALL, [candidate()], emptyPairLinkDialState, 1_000)
    expect(dials).toEqual([{ peer: LARGE, address: `/ip4/169.254.3.2/tcp/7373/p2p/${LARGE}` }])
  })

  it('also with no connection at all, but never with a direct or pair-link one, a link that is not up, or no port', () => {
    expect(pairLinkDials(SMALL, [candidate({ connections: [] })], emptyPairLinkDialState, 0).dials).toHaveLength(1)
    for (const other of [
      candidate({ connections: [RELAYED, UNDERLAY] }),
      candidate({ connections: [OVER_LINK] }),
      candidate({ linkUp: false }),
      candidate({ libp2pPort: undefined }),
      candidate({ peer4: undefined }),
    ]) {
      expect(pairLinkDials(SMALL, [other], emptyPairLinkDialState, 0).dials).toEqual([])
    }
  })

  it('the larger id waits for the other side, then dials itself', () => {
    const peer = candidate({ peer: SMALL, connections: [`/p2p/12D3KooWR/p2p-circuit/p2p/${SMALL}`] })
    let step = pairLinkDials(LARGE, [peer], emptyPairLinkDialState, 0)
    expect(step.dials).toEqual([])
    step = pairLinkDials(LARGE, [peer], step.state, PAIR_LINK_DIAL_WAIT_MS - 1)
    expect(step.dials).toEqual([])
    step = pairLinkDials(LARGE, [peer], step.state, PAIR_LINK_DIAL_WAIT_MS)
    expect(step.dials.map((d) => d.peer)).toEqual([SMALL])
  })

  it('after an attempt, tries again only once the retry time has passed', () => {
    let step = pairLinkDials(SMALL, [candidate()], emptyPairLinkDialState, 0)
    expect(step.dials).toHaveLength(1)
    step = pairLinkDials(SMALL, [candidate()], step.state, PAIR_LINK_RETRY_MS - 1)
    expect(step.dials).toEqual([])
    step = pairLinkDials(SMALL, [candidate()], step.state, PAIR_LINK_RETRY_MS)
    expect(step.dials).toHaveLength(1)
  })

  it('forgets members that no longer need a dial, so a later need waits afresh', () => {
    const peer = candidate({ peer: SMALL })
    let step = pairLinkDials(LARGE, [peer], emptyPairLinkDialState, 0)
    step = pairLinkDials(LARGE, [candidate({ peer: SMALL, connections: [OVER_LINK] })], step.state, 5_000)
    expect(step.state.neededSince.size).toBe(0)
    step = pairLinkDials(LARGE, [peer], step.state, PAIR_LINK_DIAL_WAIT_MS + 1)
    expect(step.dials).toEqual([])
  })
})

describe('mesh-internal addresses', () => {
  const network = { ipv4Cidr: '10.73.0.0/16', ipv6Ula: 'fd12:3456:789a::/48' }
  it('are link-local and overlay addresses, never the underlay', () => {
    for (const address of ['169.254.0.1', '169.254.255.254', '10.73.4.5', 'fe80::1', 'fe80::1%md-abc', 'fd12:3456:789a:1::5']) expect(isMeshInternalAddress(address, network), address).toBe(true)
    for (const address of ['10.74.0.1', '192.0.2.1', '203.0.113.9', '2001:db8::1', 'fd12:3456:789b::1', '127.0.0.1', 'not an address']) expect(isMeshInternalAddress(address, network), address).toBe(false)
  })
})
