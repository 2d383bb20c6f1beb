import { describe, expect, it } from 'vitest'
import { kernelPassNeeded } from '../../src/agent/agent.js'
import { sameDesiredState } from '../../src/kernel/same-state.js'
import { Secret } from '../../src/logging/secret.js'
import { planMesh, type PeerLink } from '../../src/planner/mesh.js'

const KEY = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk='
const PSK = 'FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE='

function link(presharedKey = PSK, endpointPort = 51831): PeerLink {
  return {
    peerId: 'b',
    ifname: 'md-b',
    listenPort: 51821,
    peerPublicKey: 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=',
    presharedKey: new Secret(presharedKey),
    endpoint: { address: '192.0.2.2', port: endpointPort },
    local4: '169.254.1.1',
    peer4: '169.254.1.2',
    local6: 'fe80::1:1',
    peer6: 'fe80::1:2',
    underlayMtu: 1500,
    underlayFamily: 4,
  }
}

// Each call builds every object afresh, as the agent's planner does on each pass.
function plan(overrides: { link?: PeerLink; privateKey?: string } = {}): ReturnType<typeof planMesh> {
  return planMesh({
    self: { nodeId: 'a', overlay4: '10.73.0.1', overlay6: 'fd73::1', overlayDevice: 'dummy' },
    privateKey: new Secret(overrides.privateKey ?? KEY),
    networkCidr4: '10.73.0.0/16',
    networkCidr6: 'fd73::/48',
    members: [
      { nodeId: 'a', overlay4: '10.73.0.1', overlay6: 'fd73::1' },
      { nodeId: 'b', overlay4: '10.73.0.2', overlay6: 'fd73::2' },
    ],
    links: [overrides.link ?? link()],
    paths: new Map(),
  })
}

describe('sameDesiredState', () => {
  it('holds for two plans built from equal inputs', () => {
    expect(sameDesiredState(plan(), plan())).toBe(true)
  })

  it('sees a changed endpoint, preshared key or private key, though secrets print alike', () => {
    expect(sameDesiredState(plan(), plan({ link: link(PSK, 51999) }))).toBe(false)
    const otherPsk = 'k1UxTYvL+RjzMyhmaxmtD5Dl0TgElnsbUAbdLbp5Ryk='
    expect(JSON.stringify(plan({ link: link(otherPsk) }))).toBe(JSON.stringify(plan()))
    expect(sameDesiredState(plan(), plan({ link: link(otherPsk) }))).toBe(false)
    expect(sameDesiredState(plan(), plan({ privateKey: 'oKp1GVeBS4v1Gp3X6tyZ8b6XHUPRCpmIAu8J+Sf2r0M=' }))).toBe(false)
  })

  it('treats an absent field and one set to undefined alike, but not an added one', () => {
    const a = plan()
    const withUndefined = { ...a, links: a.links.map((l) => ({ ...l, master: undefined })) }
    expect(sameDesiredState(a, withUndefined)).toBe(true)
    const withMaster = { ...a, links: a.links.map((l) => ({ ...l, master: 'br0' })) }
    expect(sameDesiredState(a, withMaster)).toBe(false)
    expect(sameDesiredState(a, { ...a, sysctls: a.sysctls.slice(1) })).toBe(false)
  })
})

describe('kernelPassNeeded', () => {
  it('skips the kernel only for an unforced pass whose plan equals the last clean one', () => {
    const applied = plan()
    expect(kernelPassNeeded({ forced: false, desired: plan(), appliedCleanly: applied })).toBe(false)
    expect(kernelPassNeeded({ forced: true, desired: plan(), appliedCleanly: applied })).toBe(true)
    expect(kernelPassNeeded({ forced: false, desired: plan(), appliedCleanly: undefined })).toBe(true)
    expect(kernelPassNeeded({ forced: false, desired: plan({ link: { ...link(), underlayMtu: 1400 } }), appliedCleanly: applied })).toBe(true)
  })
})
