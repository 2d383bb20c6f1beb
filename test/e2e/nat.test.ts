import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { pingOnce } from '../support/agents.js'
import { PathLab } from '../support/path-lab.js'
import { pollUntil } from '../support/poll.js'

// Issue 5 item 6: a host behind an endpoint-independent NAT (nftables
// masquerade on a router namespace) joins and talks directly to every member,
// with no port forward: it knocks first, WireGuard learns its mapped address.

interface EndpointStatus {
  peers: { id: string; state: string; endpoint: string | null; path: { via: string | null } }[]
}

describe('a host behind a masquerading NAT', () => {
  let lab: PathLab

  beforeAll(async () => {
    lab = await PathLab.create(['a', 'n', 'c'], { n: 'endpoint-independent' })
    await lab.startMesh('a', '10.77.0.0/16')
  }, 180_000)
  afterAll(() => lab.destroy())

  it('joins without a port forward: direct links up both ways, pings across, its mapped address learned', async () => {
    const n = lab.underlay.host('n')
    expect(n.nat?.mode).toBe('endpoint-independent')
    const nId = lab.idOf('n')
    for (const name of ['a', 'c']) {
      // The public host reaches n directly (not through a relay), at n's NAT address.
      const view = await pollUntil(
        () => {
          const peer = (lab.status(name) as EndpointStatus | undefined)?.peers.find((p) => p.id === nId)
          return peer?.state === 'up' && peer.path.via === null && peer.endpoint?.startsWith(`${n.address}:`) === true ? peer : undefined
        },
        { deadlineMs: 60_000, intervalMs: 500, what: `${name} reaches n directly at its NAT address` },
      )
      expect(view.endpoint).not.toContain(n.localAddress)
      await pollUntil(() => (pingOnce(lab.host(name), lab.overlayOf('n')) ? true : undefined), { deadlineMs: 20_000, what: `${name} pings n` })
      await pollUntil(() => (pingOnce(lab.host('n'), lab.overlayOf(name)) ? true : undefined), { deadlineMs: 20_000, what: `n pings ${name}` })
    }
  })
})
