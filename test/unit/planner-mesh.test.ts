import { describe, expect, it } from 'vitest'
import { Secret } from '../../src/logging/secret.js'
import { describeOperation, planOperations } from '../../src/kernel/plan.js'
import { validateDesiredState } from '../../src/kernel/validate.js'
import { LINK_KINDS } from '../../src/kernel/types.js'
import { planMesh, type MeshInput, type PeerLink } from '../../src/planner/mesh.js'

const KEY = new Secret('yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=')
const PUB_B = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='
const PUB_C = 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw='

function link(peer: 'b' | 'c'): PeerLink {
  const n = peer === 'b' ? 1 : 2
  return {
    peerId: peer,
    ifname: `md-${peer}`,
    listenPort: 51820 + n,
    peerPublicKey: peer === 'b' ? PUB_B : PUB_C,
    endpoint: { address: `192.0.2.${n + 1}`, port: 51830 + n },
    local4: `169.254.${n}.1`,
    peer4: `169.254.${n}.2`,
    local6: `fe80::${n}:1`,
    peer6: `fe80::${n}:2`,
    underlayMtu: 1500,
    underlayFamily: n === 1 ? 4 : 6,
  }
}

function input(paths: MeshInput['paths'] = new Map()): MeshInput {
  return {
    self: { nodeId: 'a', overlay4: '10.73.0.1', overlay6: 'fd73::1', overlayDevice: 'dummy' },
    privateKey: KEY,
    networkCidr4: '10.73.0.0/16',
    networkCidr6: 'fd73::/48',
    members: [
      { nodeId: 'a', overlay4: '10.73.0.1', overlay6: 'fd73::1' },
      { nodeId: 'b', overlay4: '10.73.0.2', overlay6: 'fd73::2' },
      { nodeId: 'c', overlay4: '10.73.0.3', overlay6: 'fd73::3' },
    ],
    links: [link('c'), link('b')],
    paths,
  }
}

describe('planMesh', () => {
  it('plans a three-member mesh exactly', () => {
    const desired = planMesh(input())
    expect(validateDesiredState(desired, { supportedKinds: new Set(LINK_KINDS) })).toEqual([])
    const ops = planOperations({ links: [], addresses: [], routes: [], rules: [], wireguard: [], sysctls: [] }, desired, { wireguardBackend: 'kernel' }).map(describeOperation)
    expect(ops).toEqual([
      'ip link add md-b type wireguard',
      'ip link add md-c type wireguard',
      'ip link add md-self type dummy',
      'ip link set md-self up',
      'wg setconf md-b (1 peers, port 51821)',
      'wg setconf md-c (1 peers, port 51822)',
      'sysctl -w net.ipv4.ip_forward=1',
      'sysctl -w net.ipv6.conf.all.forwarding=1',
      'sysctl -w net.ipv4.conf.md-b.rp_filter=2',
      'sysctl -w net.ipv4.conf.md-c.rp_filter=2',
      'ip addr add 10.73.0.1/32 dev md-self',
      'ip addr add fd73::1/128 dev md-self',
      'ip addr add 169.254.1.1/32 peer 169.254.1.2/32 dev md-b',
      'ip addr add fe80::1:1/128 peer fe80::1:2/128 dev md-b',
      'ip addr add 169.254.2.1/32 peer 169.254.2.2/32 dev md-c',
      'ip addr add fe80::2:1/128 peer fe80::2:2/128 dev md-c',
      // Up only once addressed (as wg-quick); MTU from the underlay minus WireGuard's overhead: 60 over IPv4, 80 over IPv6.
      'ip link set md-b mtu 1440 up',
      'ip link set md-c mtu 1420 up',
      'ip route replace 10.73.0.2/32 via 169.254.1.2 dev md-b onlink table 7301',
      'ip route replace fd73::2/128 via fe80::1:2 dev md-b table 7301',
      // Traffic this host originates leaves from its overlay address, so a relayed destination can answer it.
      'ip route replace 10.73.0.2/32 via 169.254.1.2 dev md-b onlink src 10.73.0.1 table 7300',
      'ip route replace fd73::2/128 via fe80::1:2 dev md-b src fd73::1 table 7300',
      'ip route replace 10.73.0.3/32 via 169.254.2.2 dev md-c onlink table 7301',
      'ip route replace fd73::3/128 via fe80::2:2 dev md-c table 7301',
      'ip route replace 10.73.0.3/32 via 169.254.2.2 dev md-c onlink src 10.73.0.1 table 7300',
      'ip route replace fd73::3/128 via fe80::2:2 dev md-c src fd73::1 table 7300',
      'ip -4 rule add priority 7300 to 10.73.0.0/16 iif md-b lookup 7301',
      'ip -6 rule add priority 7300 to fd73::/48 iif md-b lookup 7301',
      'ip -4 rule add priority 7300 to 10.73.0.0/16 iif md-c lookup 7301',
      'ip -6 rule add priority 7300 to fd73::/48 iif md-c lookup 7301',
      'ip -4 rule add priority 7310 to 10.73.0.0/16 lookup 7300',
      'ip -6 rule add priority 7310 to fd73::/48 lookup 7300',
    ])
    const device = desired.wireguard.find((d) => d.name === 'md-b')
    expect(device?.peers).toEqual([{ publicKey: PUB_B, endpoint: { address: '192.0.2.2', port: 51831 }, allowedIps: ['0.0.0.0/0', '::/0'], persistentKeepaliveSeconds: 25 }])
  })

  it('routes a destination through its chosen relay, keeping the direct route for relayed traffic', () => {
    const desired = planMesh(input(new Map([['c', { via: 'b' }]])))
    const toC = desired.routes.filter((r) => r.dst === '10.73.0.3/32')
    expect(toC).toEqual([
      { table: 7301, dst: '10.73.0.3/32', nexthop: { via: '169.254.2.2', dev: 'md-c', onlink: true } },
      { table: 7300, dst: '10.73.0.3/32', src: '10.73.0.1', nexthop: { via: '169.254.1.2', dev: 'md-b', onlink: true } },
    ])
  })

  it('falls back to direct when the chosen relay has no link, and to lo without dummy', () => {
    const plain = input(new Map([['c', { via: 'z' }]]))
    plain.self.overlayDevice = 'lo'
    const desired = planMesh(plain)
    expect(desired.routes.find((r) => r.table === 7300 && r.dst === '10.73.0.3/32')?.nexthop?.dev).toBe('md-c')
    expect(desired.links.map((l) => l.name)).toEqual(['md-b', 'md-c'])
    expect(desired.addresses.slice(0, 2)).toEqual([{ link: 'lo', local: '10.73.0.1/32' }, { link: 'lo', local: 'fd73::1/128' }])
  })
})
