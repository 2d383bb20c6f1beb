import { afterAll, describe, expect, it } from 'vitest'
import { pollUntil } from '../support/poll.js'
import { AgentLab, createToken, mdLinks, meshd, pingOnce, startAgent, status, waitForAgent, type StatusJson } from '../support/agents.js'

// Real agents (bin/meshd.js --foreground) in network namespaces on a bridge
// underlay, WireGuard through wireguard-go (harness: test/support/agents.ts).

describe('meshd agents in namespaces', () => {
  const lab = new AgentLab(2)
  const [h1, h2] = [lab.host(0), lab.host(1)]

  afterAll(() => lab.destroy())

  it('init, token create, join: both hosts see one peer up and ping each other', async () => {
    // h2's underlay is smaller than Ethernet (as over PPPoE): its mesh link must follow, 1400 − 60.
    h2.ns.ip('link', 'set', 'eth0', 'mtu', '1400')
    startAgent(h1, ['init', '--name', 'lab', '--cidr', '10.73.0.0/16'])
    await waitForAgent(h1)
    const token = createToken(h1, 3)
    expect(token).toMatch(/^meshd1\.\S+$/)

    startAgent(h2, ['join', token])
    const views = await pollUntil(
      () => {
        const a = status(h1)
        const b = status(h2)
        return a?.peers.length === 1 && b?.peers.length === 1 && a.peers[0]?.state === 'up' && b.peers[0]?.state === 'up' ? [a, b] : undefined
      },
      { deadlineMs: 60_000, intervalMs: 500, what: 'one peer up on each host' },
    )
    const [s1, s2] = views as [StatusJson, StatusJson]
    expect(s1.peers[0]?.id).toBe(s2.self.id)
    const overlay1 = s1.self.addresses[0] ?? ''
    const overlay2 = s2.self.addresses[0] ?? ''
    await pollUntil(() => (pingOnce(h1, overlay2) ? true : undefined), { deadlineMs: 20_000, what: 'h1 pings h2 overlay' })
    await pollUntil(() => (pingOnce(h2, overlay1) ? true : undefined), { deadlineMs: 20_000, what: 'h2 pings h1 overlay' })
    const mtuOf = (host: typeof h1): number[] => host.ns.ipJson<{ ifname: string; mtu: number }[]>('link', 'show').filter((l) => l.ifname.startsWith('md-') && l.ifname !== 'md-self').map((l) => l.mtu)
    expect(mtuOf(h1)).toEqual([1440])
    expect(mtuOf(h2)).toEqual([1340])
  })

  it('publishes a new record when an interface gets an address, on the kernel notification rather than the 30 s backstop', async () => {
    const republished = (): number => h1.log.join('').split('\n').filter((line) => line.includes('own endpoints changed')).length
    const before = republished()
    // A second interface (systeminformation reports one IPv4 address per interface, so a secondary address would not show).
    h1.ns.ip('link', 'add', 'uplink2', 'type', 'veth', 'peer', 'name', 'uplink2-peer')
    try {
      h1.ns.ip('addr', 'add', '198.18.0.1/24', 'dev', 'uplink2')
      h1.ns.ip('link', 'set', 'uplink2-peer', 'up')
      h1.ns.ip('link', 'set', 'uplink2', 'up')
      await pollUntil(() => (republished() > before ? true : undefined), { deadlineMs: 15_000, what: 'h1 republishing its record with the new address' })
    } finally {
      h1.ns.ip('link', 'del', 'uplink2')
    }
  })

  it('down on h2 removes every md- link and keeps user routes and rules', async () => {
    h2.ns.ip('route', 'add', '198.51.100.0/24', 'via', '192.0.2.1', 'table', '100')
    h2.ns.ip('rule', 'add', 'priority', '1000', 'to', '198.51.100.0/24', 'lookup', '100')
    const down = meshd(h2, ['down'])
    expect(down.status, down.stderr).toBe(0)
    await pollUntil(() => (mdLinks(h2).length === 0 ? true : undefined), { deadlineMs: 10_000, what: 'no md- link on h2' })
    expect(h2.ns.ipJson<{ dst: string }[]>('route', 'show', 'table', '100').map((r) => r.dst)).toContain('198.51.100.0/24')
    expect(h2.ns.ipJson<{ priority: number }[]>('rule', 'show').map((r) => r.priority)).toContain(1000)
    const after = status(h2)
    expect(after?.peers.every((p) => p.state !== 'up')).toBe(true)
  })
})
