import { Secret } from '../../src/logging/secret.js'
import type { DesiredState } from '../../src/kernel/types.js'

/** Test keys (base64 WireGuard keys); never real ones. */
export const TEST_PRIVATE_KEY = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk='
export const TEST_PEER_KEY = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='

/** A one-peer mesh as the agent asks for it: overlay dummy, one WireGuard link, a route, a rule, a sysctl. */
export function onePeerMesh(): DesiredState {
  return {
    links: [
      { kind: 'dummy', name: 'md-self', up: true },
      { kind: 'wireguard', name: 'md-w-b', up: true, mtu: 1440 },
    ],
    addresses: [
      { link: 'md-self', local: '100.64.0.1/32' },
      { link: 'md-w-b', local: '169.254.10.1/32', peer: '169.254.10.2/32' },
    ],
    routes: [{ table: 7300, dst: '100.64.0.2/32', nexthop: { via: '169.254.10.2', dev: 'md-w-b', onlink: true } }],
    rules: [{ family: 4, priority: 7300, to: '100.64.0.0/16', table: 7300 }],
    wireguard: [
      {
        name: 'md-w-b',
        privateKey: new Secret(TEST_PRIVATE_KEY),
        listenPort: 51820,
        peers: [{ publicKey: TEST_PEER_KEY, allowedIps: ['0.0.0.0/0', '::/0'], endpoint: { address: '192.0.2.2', port: 51821 }, persistentKeepaliveSeconds: 25 }],
      },
    ],
    sysctls: [{ key: 'net.ipv4.conf.md-w-b.rp_filter', value: '2' }],
  }
}
