import { describe, expect, it } from 'vitest'
import { decideCapabilities } from '../../src/kernel/capabilities.js'

describe('decideCapabilities', () => {
  it('on this host (no wireguard, dummy, gretap, bond modules) falls back explicitly', () => {
    const caps = decideCapabilities({ creatable: new Set(['veth', 'bridge', 'vxlan']), kernelWireguard: false, wireguardGo: true }, 'auto')
    expect([...caps.linkKinds].sort()).toEqual(['bridge', 'vxlan', 'wireguard'])
    expect(caps.wireguard).toEqual({ backend: 'userspace', reason: 'auto: the kernel lacks the "wireguard" generic-netlink family; using wireguard-go' })
    expect(caps.overlayDevice).toBe('lo')
    expect(caps.fallbacks).toEqual([
      { feature: 'kernel WireGuard', reason: 'module missing; wireguard-go in use (slower)' },
      { feature: 'dummy', reason: 'module missing; overlay address is on lo' },
      { feature: 'bonded tunnels', reason: 'unavailable: no gretap or bond support' },
    ])
  })

  it('on a full kernel uses kernel WireGuard and a dummy, with no fallbacks', () => {
    const all = new Set(['wireguard', 'dummy', 'gre', 'gretap', 'bond', 'vxlan', 'bridge'])
    const caps = decideCapabilities({ creatable: all, kernelWireguard: true, wireguardGo: false }, 'auto')
    expect(caps.wireguard.backend).toBe('kernel')
    expect(caps.overlayDevice).toBe('dummy')
    expect(caps.fallbacks).toEqual([])
  })

  it('honours a userspace override even where the kernel has WireGuard', () => {
    const caps = decideCapabilities({ creatable: new Set(['wireguard', 'dummy']), kernelWireguard: true, wireguardGo: true }, 'userspace')
    expect(caps.wireguard).toEqual({ backend: 'userspace', reason: 'configured: userspace (wireguard-go)' })
  })

  it('says so, rather than falling back silently, when the configured backend is missing', () => {
    const caps = decideCapabilities({ creatable: new Set(), kernelWireguard: false, wireguardGo: true }, 'kernel')
    expect(caps.wireguard.backend).toBe('none')
    expect(caps.wireguard.reason).toMatch(/configured backend "kernel" is unavailable/)
    expect(caps.linkKinds.has('wireguard')).toBe(false)
  })
})
