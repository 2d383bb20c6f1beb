import { describe, expect, it } from 'vitest'
import { Secret } from '../../src/logging/secret.js'
import { describeOperation, planOperations } from '../../src/kernel/plan.js'
import { validateDesiredState } from '../../src/kernel/validate.js'
import { onePeerMesh, TEST_PEER_KEY, TEST_PRIVATE_KEY } from '../support/kernel-fixtures.js'
import { EMPTY_STATE, LINK_KINDS, RTPROT_MESHD, type DesiredState, type ObservedState } from '../../src/kernel/types.js'

const KEY_A = TEST_PRIVATE_KEY
const PUB_B = TEST_PEER_KEY

const onePeer = onePeerMesh

const EMPTY_OBSERVED: ObservedState = { links: [], addresses: [], routes: [], rules: [], wireguard: [], sysctls: [] }

function userObjects(): ObservedState {
  return {
    links: [
      { name: 'lo', index: 1, kind: undefined, mtu: 65536, up: true },
      { name: 'eth0', index: 2, kind: 'veth', mtu: 1500, up: true },
    ],
    addresses: [{ link: 'eth0', local: '192.0.2.1/24', family: 4, protocol: 0 }],
    routes: [
      { table: 254, dst: '0.0.0.0/0', nexthop: { via: '192.0.2.254', dev: 'eth0' }, family: 4, protocol: 3 },
      // A user route in meshd's table range but with another protocol: not ours.
      { table: 7300, dst: '10.9.0.0/16', nexthop: { via: '192.0.2.254', dev: 'eth0' }, family: 4, protocol: 4 },
    ],
    rules: [{ family: 4, priority: 7310, table: 100, from: '10.0.0.0/8', protocol: 4 }],
    wireguard: [],
    sysctls: [],
  }
}

describe('planOperations', () => {
  it('builds a one-peer mesh from nothing in apply order', () => {
    const ops = planOperations(EMPTY_OBSERVED, onePeer(), { wireguardBackend: 'kernel' }).map(describeOperation)
    expect(ops).toEqual([
      // New WireGuard links first (other links may sit on them), all together.
      'ip link add md-w-b type wireguard',
      'ip link add md-self type dummy',
      'ip link set md-self up',
      // Configured before it comes up, so it never binds a random port.
      'wg setconf md-w-b (1 peers, port 51820)',
      'sysctl -w net.ipv4.conf.md-w-b.rp_filter=2',
      'ip addr add 100.64.0.1/32 dev md-self',
      'ip addr add 169.254.10.1/32 peer 169.254.10.2/32 dev md-w-b',
      // Up once addressed, as wg-quick does, MTU in the same message.
      'ip link set md-w-b mtu 1440 up',
      'ip route replace 100.64.0.2/32 via 169.254.10.2 dev md-w-b onlink table 7300',
      'ip -4 rule add priority 7300 to 100.64.0.0/16 lookup 7300',
    ])
  })

  it('starts wireguard-go instead of adding a kernel link on the userspace backend', () => {
    const ops = planOperations(EMPTY_OBSERVED, onePeer(), { wireguardBackend: 'userspace' }).map(describeOperation)
    expect(ops).toContain('wireguard-go md-w-b')
    expect(ops).not.toContain('ip link add md-w-b type wireguard')
  })

  it('without persistent tuns, brings new wireguard-go links up in waves: started, configured, addressed and up before the next wave', () => {
    const names = ['md-w1', 'md-w2', 'md-w3']
    const desired: DesiredState = {
      ...EMPTY_STATE,
      links: names.map((name) => ({ kind: 'wireguard' as const, name, up: true, mtu: 1420 })),
      addresses: [{ link: 'lo', local: '100.64.0.1/32' }, ...names.map((name, i) => ({ link: name, local: `169.254.${i + 1}.1/32`, peer: `169.254.${i + 1}.2/32` }))],
      routes: [
        { table: 7300, dst: '100.64.0.2/32', nexthop: { via: '169.254.1.2', dev: 'md-w1', onlink: true } },
        { table: 7300, dst: '100.64.0.3/32', src: '100.64.0.1', nexthop: { via: '169.254.2.2', dev: 'md-w2', onlink: true } },
        { table: 7300, dst: '100.64.0.4/32', nexthop: { via: '169.254.3.2', dev: 'md-w3', onlink: true } },
        {
          table: 7300,
          dst: '100.64.9.0/24',
          multipath: [
            { via: '169.254.1.2', dev: 'md-w1', onlink: true },
            { via: '169.254.3.2', dev: 'md-w3', onlink: true },
          ],
        },
      ],
      wireguard: names.map((name, i) => ({ name, privateKey: new Secret(KEY_A), listenPort: 51820 + i, peers: [] })),
    }
    const ops = planOperations(EMPTY_OBSERVED, desired, { wireguardBackend: 'userspace', userspaceTuns: 'wireguard-go', wireguardWave: 2 }).map(describeOperation)
    expect(ops).toEqual([
      'wireguard-go md-w1',
      'wireguard-go md-w2',
      'wg setconf md-w1 (0 peers, port 51820)',
      'wg setconf md-w2 (0 peers, port 51821)',
      'ip addr add 169.254.1.1/32 peer 169.254.1.2/32 dev md-w1',
      'ip addr add 169.254.2.1/32 peer 169.254.2.2/32 dev md-w2',
      'ip link set md-w1 mtu 1420 up',
      'ip link set md-w2 mtu 1420 up',
      // Routes through the wave's links come with it.
      'ip route replace 100.64.0.2/32 via 169.254.1.2 dev md-w1 onlink table 7300',
      'wireguard-go md-w3',
      'wg setconf md-w3 (0 peers, port 51822)',
      'ip addr add 169.254.3.1/32 peer 169.254.3.2/32 dev md-w3',
      'ip link set md-w3 mtu 1420 up',
      'ip route replace 100.64.0.4/32 via 169.254.3.2 dev md-w3 onlink table 7300',
      'ip route replace 100.64.9.0/24 nexthop via 169.254.1.2 dev md-w1 weight 1 nexthop via 169.254.3.2 dev md-w3 weight 1 table 7300',
      'ip addr add 100.64.0.1/32 dev lo',
      // A preferred source needs its address: after every address, as without waves.
      'ip route replace 100.64.0.3/32 via 169.254.2.2 dev md-w2 onlink src 100.64.0.1 table 7300',
    ])
  })

  it('on wireguard-go, makes persistent tuns and does all kernel work before any process starts; then starts, configures, sets the MTU', () => {
    const desired = onePeer()
    desired.links.push({ kind: 'wireguard', name: 'md-w-c', up: true, mtu: 1420 })
    desired.addresses.push({ link: 'md-w-c', local: '169.254.11.1/32', peer: '169.254.11.2/32' })
    desired.wireguard.push({ name: 'md-w-c', privateKey: new Secret(KEY_A), listenPort: 51821, peers: [] })
    const ops = planOperations(EMPTY_OBSERVED, desired, { wireguardBackend: 'userspace' }).map(describeOperation)
    expect(ops).toEqual([
      'ip tuntap add dev md-w-b mode tun',
      'ip tuntap add dev md-w-c mode tun',
      'ip link add md-self type dummy',
      'ip link set md-self up',
      'sysctl -w net.ipv4.conf.md-w-b.rp_filter=2',
      'ip addr add 100.64.0.1/32 dev md-self',
      'ip addr add 169.254.10.1/32 peer 169.254.10.2/32 dev md-w-b',
      'ip addr add 169.254.11.1/32 peer 169.254.11.2/32 dev md-w-c',
      // wireguard-go's own MTU, so that attaching changes nothing; up without carrier, routes are accepted.
      'ip link set md-w-b mtu 1420 up',
      'ip link set md-w-c mtu 1420 up',
      'ip route replace 100.64.0.2/32 via 169.254.10.2 dev md-w-b onlink table 7300',
      'ip -4 rule add priority 7300 to 100.64.0.0/16 lookup 7300',
      'wireguard-go md-w-b',
      'wireguard-go md-w-c',
      'wg setconf md-w-b (1 peers, port 51820)',
      'wg setconf md-w-c (0 peers, port 51821)',
      // Another MTU only once wireguard-go has set its own.
      'ip link set md-w-b mtu 1440',
    ])
  })

  it('on wireguard-go, restarts the process of a tun without carrier and configures it, whatever the device read says', () => {
    const desired = onePeer()
    const observed: ObservedState = {
      links: [
        { name: 'md-self', index: 3, kind: 'dummy', mtu: 1500, up: true },
        { name: 'md-w-b', index: 4, kind: 'tun', mtu: 1440, up: true, carrier: false },
      ],
      addresses: desired.addresses.map((a) => ({ ...a, family: 4 as const, protocol: RTPROT_MESHD })),
      routes: [{ table: 7300, dst: '100.64.0.2/32', scope: 'global', nexthop: { via: '169.254.10.2', dev: 'md-w-b', onlink: true, weight: 1 }, family: 4, protocol: RTPROT_MESHD }],
      rules: [{ family: 4, priority: 7300, to: '100.64.0.0/16', table: 7300, protocol: RTPROT_MESHD }],
      // As the reconciler's cache reports a device it trusts.
      wireguard: desired.wireguard.map((d) => ({ ...d })),
      sysctls: [{ key: 'net.ipv4.conf.md-w-b.rp_filter', value: '2' }],
    }
    expect(planOperations(observed, desired, { wireguardBackend: 'userspace' }).map(describeOperation)).toEqual([
      'wireguard-go md-w-b',
      'wg setconf md-w-b (1 peers, port 51820)',
      'ip link set md-w-b mtu 1440',
    ])
    // With carrier, the same observation plans nothing.
    const running = { ...observed, links: observed.links.map((l) => ({ ...l, carrier: true })) }
    expect(planOperations(running, desired, { wireguardBackend: 'userspace' })).toEqual([])
  })

  it('plans nothing when the kernel already matches', () => {
    const desired = onePeer()
    const observed: ObservedState = {
      links: [
        { name: 'md-self', index: 3, kind: 'dummy', mtu: 1500, up: true },
        { name: 'md-w-b', index: 4, kind: 'wireguard', mtu: 1440, up: true },
      ],
      addresses: desired.addresses.map((a) => ({ ...a, family: 4 as const, protocol: RTPROT_MESHD })),
      // The kernel reports canonical forms and explicit scope; the plan must see them as equal.
      routes: [{ table: 7300, dst: '100.64.0.2/32', scope: 'global', nexthop: { via: '169.254.10.2', dev: 'md-w-b', onlink: true, weight: 1 }, family: 4, protocol: RTPROT_MESHD }],
      rules: [{ family: 4, priority: 7300, to: '100.64.0.0/16', table: 7300, protocol: RTPROT_MESHD }],
      wireguard: [{ name: 'md-w-b', privateKey: new Secret(KEY_A), listenPort: 51820, peers: [{ publicKey: PUB_B, allowedIps: ['::/0', '0.0.0.0/0'], endpoint: { address: '192.0.2.2', port: 51821 }, persistentKeepaliveSeconds: 25 }] }],
      sysctls: [{ key: 'net.ipv4.conf.md-w-b.rp_filter', value: '2' }],
    }
    expect(planOperations(observed, desired, { wireguardBackend: 'kernel' })).toEqual([])
  })

  it('tears down only what meshd owns when asked for the empty state', () => {
    const observed = userObjects()
    observed.links.push({ name: 'md-w-b', index: 4, kind: 'wireguard', mtu: 1440, up: true })
    observed.addresses.push({ link: 'md-w-b', local: '169.254.10.1/32', peer: '169.254.10.2/32', family: 4, protocol: RTPROT_MESHD })
    observed.addresses.push({ link: 'lo', local: '100.64.0.1/32', family: 4, protocol: RTPROT_MESHD })
    observed.routes.push({ table: 7300, dst: '100.64.0.2/32', nexthop: { via: '169.254.10.2', dev: 'md-w-b', onlink: true }, family: 4, protocol: RTPROT_MESHD })
    observed.rules.push({ family: 4, priority: 7300, to: '100.64.0.0/16', table: 7300, protocol: RTPROT_MESHD })
    const ops = planOperations(observed, EMPTY_STATE, { wireguardBackend: 'kernel' }).map(describeOperation)
    expect(ops).toEqual([
      'ip -4 rule del priority 7300 to 100.64.0.0/16 lookup 7300',
      // The route through md-w-b and the address on it go with the link; the one on lo (proto meshd) is deleted.
      'ip addr del 100.64.0.1/32 dev lo',
      'ip link del md-w-b',
    ])
  })

  it('changes what can change in place and re-creates what cannot', () => {
    const desired: DesiredState = {
      ...EMPTY_STATE,
      links: [
        { kind: 'vxlan', name: 'md-vx', up: true, vni: 42, port: 4789, learning: false, mtu: 1400 },
        { kind: 'dummy', name: 'md-d', up: false, mtu: 1300 },
      ],
      addresses: [{ link: 'md-vx', local: '10.42.0.1/24' }],
    }
    const observed: ObservedState = {
      ...EMPTY_OBSERVED,
      links: [
        { name: 'md-vx', index: 5, kind: 'vxlan', mtu: 1400, up: true, info: { vni: 41, port: 4789, learning: false } },
        { name: 'md-d', index: 6, kind: 'dummy', mtu: 1500, up: true },
      ],
      addresses: [{ link: 'md-vx', local: '10.42.0.1/24', family: 4, protocol: RTPROT_MESHD }],
    }
    expect(planOperations(observed, desired, { wireguardBackend: 'kernel' }).map(describeOperation)).toEqual([
      'ip link del md-vx',
      'ip link add md-vx type vxlan',
      'ip link set md-vx mtu 1400 up',
      'ip link set md-d mtu 1300 down',
      'ip addr add 10.42.0.1/24 dev md-vx',
    ])
  })

  it('creates bonds before their slaves and enslaves them', () => {
    const desired: DesiredState = {
      ...EMPTY_STATE,
      links: [
        { kind: 'gretap', name: 'md-gt1', up: true, local: '10.0.0.1', remote: '10.0.0.2', master: 'md-bond' },
        { kind: 'bond', name: 'md-bond', up: true, mode: 'balance-rr', miimonMs: 100 },
      ],
    }
    expect(planOperations(EMPTY_OBSERVED, desired, { wireguardBackend: 'kernel' }).map(describeOperation)).toEqual([
      'ip link add md-bond type bond',
      'ip link set md-bond up',
      'ip link add md-gt1 type gretap',
      'ip link set md-gt1 master md-bond up',
    ])
  })

  it('replaces a route whose next hop moved (a path change) and deletes a stale one', () => {
    const desired: DesiredState = { ...EMPTY_STATE, routes: [{ table: 7300, dst: '100.64.0.3/32', nexthop: { via: '169.254.10.2', dev: 'md-w-b', onlink: true } }] }
    const observed: ObservedState = {
      ...EMPTY_OBSERVED,
      routes: [
        { table: 7300, dst: '100.64.0.3/32', nexthop: { via: '169.254.11.2', dev: 'md-w-c', onlink: true }, family: 4, protocol: RTPROT_MESHD },
        { table: 7300, dst: '100.64.0.9/32', nexthop: { via: '169.254.11.2', dev: 'md-w-c', onlink: true }, family: 4, protocol: RTPROT_MESHD },
      ],
    }
    expect(planOperations(observed, desired, { wireguardBackend: 'kernel' }).map(describeOperation)).toEqual([
      'ip route replace 100.64.0.3/32 via 169.254.10.2 dev md-w-b onlink table 7300',
      'ip route del 100.64.0.9/32 via 169.254.11.2 dev md-w-c onlink table 7300',
    ])
  })

  it('reconfigures WireGuard when a peer is added, and not when only the order differs', () => {
    const desired = onePeer()
    const device = desired.wireguard[0]
    if (!device) throw new Error('fixture')
    const observedDevice = { name: device.name, privateKey: device.privateKey, listenPort: 51820, peers: [] }
    const base: ObservedState = { ...EMPTY_OBSERVED, links: [{ name: 'md-w-b', index: 4, kind: 'wireguard', mtu: 1440, up: true }], wireguard: [observedDevice] }
    const wgLink = desired.links[1]
    if (!wgLink) throw new Error('fixture')
    const only = { ...EMPTY_STATE, links: [wgLink], wireguard: desired.wireguard }
    expect(planOperations(base, only, { wireguardBackend: 'kernel' }).map((o) => o.op)).toEqual(['wgSet'])
  })
})

describe('validateDesiredState', () => {
  const all = { supportedKinds: new Set(LINK_KINDS) }

  it('accepts a well-formed state', () => {
    expect(validateDesiredState(onePeer(), all)).toEqual([])
  })

  it.each([
    ['a name over 15 bytes', { ...EMPTY_STATE, links: [{ kind: 'dummy', name: 'md-this-is-too-long', up: true }] }, 'link md-this-is-too-long', 'interface name is 19 bytes, the kernel allows 15'],
    ['a name without the prefix', { ...EMPTY_STATE, links: [{ kind: 'dummy', name: 'wg0', up: true }] }, 'link wg0', 'meshd link names must start with "md-" so that meshd can recognise them'],
    ['the same prefix twice in a table', { ...EMPTY_STATE, routes: [{ table: 7300, dst: '10.0.0.0/24', type: 'blackhole' }, { table: 7300, dst: '10.0.0.0/24', type: 'blackhole' }] }, 'route 10.0.0.0/24 table 7300', 'the same prefix and metric appear twice in this table'],
    ['a route outside meshd tables', { ...EMPTY_STATE, routes: [{ table: 254, dst: '10.0.0.0/24', type: 'blackhole' }] }, 'route 10.0.0.0/24 table 254', "table 254 is not one of meshd's tables"],
    ['host bits in a destination', { ...EMPTY_STATE, routes: [{ table: 7300, dst: '10.0.0.1/24', type: 'blackhole' }] }, 'route 10.0.0.1/24 table 7300', 'destination has host bits set (did you mean 10.0.0.0/24?)'],
    ['a rule outside the priority range', { ...EMPTY_STATE, rules: [{ family: 4, priority: 100, table: 7300 }] }, 'rule priority 100', "priority is outside meshd's rule range"],
  ] as [string, DesiredState, string, string][])('refuses %s', (_label, state, object, reason) => {
    expect(validateDesiredState(state, all)).toEqual([{ object, reason }])
  })

  it('refuses a link kind this kernel lacks', () => {
    const state: DesiredState = { ...EMPTY_STATE, links: [{ kind: 'gretap', name: 'md-gt', up: true, local: '10.0.0.1', remote: '10.0.0.2' }] }
    expect(validateDesiredState(state, { supportedKinds: new Set(['dummy']) })).toEqual([{ object: 'link md-gt', reason: 'link kind "gretap" is not available on this kernel' }])
  })

  it('refuses a malformed key without printing it', () => {
    const state = onePeer()
    const device = state.wireguard[0]
    if (!device) throw new Error('fixture')
    device.privateKey = new Secret('not-a-key-but-secret-material')
    const problems = validateDesiredState(state, all)
    expect(problems).toEqual([{ object: 'wireguard md-w-b', reason: 'private key is not a base64 WireGuard key' }])
    expect(JSON.stringify(problems)).not.toContain('secret-material')
  })
})
