import { describe, expect, it } from 'vitest'
import { DecodeError, decodeDesiredState } from '../../src/kernel/decode.js'
import { validateDesiredState } from '../../src/kernel/validate.js'
import { LINK_KINDS } from '../../src/kernel/types.js'

const KEY = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk='

describe('decodeDesiredState', () => {
  it('decodes every object kind into typed values, keys wrapped as secrets', () => {
    const state = decodeDesiredState({
      links: [{ kind: 'wireguard', name: 'md-w1' }, { kind: 'vxlan', name: 'md-vx', vni: 7, port: 4789 }],
      addresses: [{ link: 'md-w1', local: '169.254.1.1/32', peer: '169.254.1.2/32' }],
      routes: [{ table: 7300, dst: '100.64.0.2/32', nexthop: { via: '169.254.1.2', dev: 'md-w1', onlink: true } }],
      rules: [{ family: 4, priority: 7300, to: '100.64.0.0/16', table: 7300, fwmark: { value: 1 } }],
      wireguard: [{ name: 'md-w1', privateKey: KEY, listenPort: 51820, peers: [{ publicKey: 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=', allowedIps: ['0.0.0.0/0'] }] }],
      sysctls: [{ key: 'net.ipv4.ip_forward', value: 1 }],
    })
    expect(state.links[1]).toEqual({ kind: 'vxlan', name: 'md-vx', up: true, vni: 7, port: 4789, learning: false })
    expect(state.rules[0]?.fwmark).toEqual({ value: 1, mask: 0xffffffff })
    expect(state.sysctls[0]).toEqual({ key: 'net.ipv4.ip_forward', value: '1' })
    expect(JSON.stringify(state)).not.toContain(KEY)
    expect(state.wireguard[0]?.privateKey.reveal()).toBe(KEY)
    expect(validateDesiredState(state, { supportedKinds: new Set(LINK_KINDS) })).toEqual([])
  })

  it.each([
    [null, 'state: expected an object'],
    [{ links: {} }, 'links: expected an array'],
    [{ links: [{ kind: 'tap', name: 'md-x' }] }, 'links[0].kind: unknown link kind "tap"'],
    [{ routes: [{ table: '7300', dst: '1.2.3.0/24' }] }, 'routes[0].table: expected a number'],
    [{ rules: [{ family: 5, priority: 7300, table: 7300 }] }, 'rules[0].family: expected 4 or 6'],
    [{ wireguard: [{ name: 'md-w1', privateKey: 7, listenPort: 1 }] }, 'wireguard[0].privateKey: expected a string'],
  ])('refuses %j with "%s"', (input, message) => {
    expect(() => decodeDesiredState(input)).toThrow(new DecodeError(message))
  })

  it('never throws anything but DecodeError on random input', () => {
    let seed = 42
    const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
    const atoms: unknown[] = [null, 0, -1, 1.5, '', 'x', true, [], {}, 'md-a', 7300, '10.0.0.0/8']
    const pick = (): unknown => atoms[Math.floor(random() * atoms.length)]
    const keys = ['links', 'addresses', 'routes', 'rules', 'wireguard', 'sysctls', 'kind', 'name', 'dst', 'table', 'nexthop', 'peers']
    const build = (depth: number): unknown => {
      if (depth === 0 || random() < 0.3) return pick()
      if (random() < 0.5) return Array.from({ length: Math.floor(random() * 3) }, () => build(depth - 1))
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 4) }, () => [keys[Math.floor(random() * keys.length)] ?? 'x', build(depth - 1)]))
    }
    for (let i = 0; i < 2000; i++) {
      try {
        decodeDesiredState(build(4))
      } catch (error) {
        expect(error).toBeInstanceOf(DecodeError)
      }
    }
  })
})
