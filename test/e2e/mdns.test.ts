import { afterAll, describe, expect, it } from 'vitest'
import { AgentLab, createToken, meshd, startAgent, status, stopAgent, waitForAgent, type AgentHost } from '../support/agents.js'
import { pollUntil } from '../support/poll.js'

// Issue 4, item 1: optional mDNS discovery on a LAN. Real agents on one
// bridge. h1 creates the network with --mdns and issues tokens; then its
// address changes (renumbered and restarted), so the tokens' bootstrap
// addresses point nowhere. A joiner with --mdns finds h1 on the LAN and is
// admitted; a joiner without it has only the stale addresses and is refused
// with one line and a non-zero exit.

const RENUMBERED = '192.0.2.11'

describe('mDNS discovery on a LAN', () => {
  const lab = new AgentLab(3, 'mm')
  const [h1, h2, h3] = lab.hosts as [AgentHost, AgentHost, AgentHost]

  afterAll(() => lab.destroy())

  it('a joiner with --mdns finds a member whose token address is stale; without --mdns the join fails', async () => {
    // A LAN has a default route; these namespaces have none, so give multicast DNS (224.0.0.251) its way out.
    for (const host of lab.hosts) host.ns.ip('route', 'add', '224.0.0.0/4', 'dev', 'eth0')

    startAgent(h1, ['init', '--name', 'lan', '--cidr', '10.78.0.0/16', '--mdns'])
    await waitForAgent(h1)
    const token = createToken(h1, 2)
    expect(token).not.toContain(RENUMBERED)

    // h1 moves to a new address: the token still names the old one.
    await stopAgent(h1)
    // Old first: deleting a primary address also deletes the secondaries of its subnet.
    h1.ns.ip('addr', 'del', `${h1.ip}/24`, 'dev', 'eth0')
    h1.ns.ip('addr', 'add', `${RENUMBERED}/24`, 'dev', 'eth0')
    h1.ns.ip('route', 'add', '224.0.0.0/4', 'dev', 'eth0')
    startAgent(h1, ['agent', '--mdns'], { listenIp: RENUMBERED })
    await waitForAgent(h1)

    // Control: no mDNS, only the stale address. One line, non-zero exit, nothing kept.
    const refused = meshd(h3, ['join', token, '--foreground', '--listen', `/ip4/${h3.ip}/tcp/7373`], 60_000)
    expect(refused.status).not.toBe(0)
    expect(refused.stderr.trim().split('\n').filter((line) => line.startsWith('meshd:'))).toHaveLength(1)
    expect(status(h3)).toBeUndefined()

    startAgent(h2, ['join', token, '--mdns'])
    const h1Id = (await waitForAgent(h1)).self.id
    const joined = await pollUntil(
      () => {
        const view = status(h2)
        return view?.peers.some((peer) => peer.id === h1Id) === true ? view : undefined
      },
      { deadlineMs: 60_000, intervalMs: 500, what: 'h2 admitted through the member mDNS found' },
    )
    await pollUntil(() => (status(h1)?.peers.some((peer) => peer.id === joined.self.id) === true ? true : undefined), {
      deadlineMs: 30_000,
      intervalMs: 500,
      what: 'h1 sees h2 as a member',
    })
    // The only difference from h3's refused join is --mdns.
  })

  it('while the member that issued the token is down, a joiner with --mdns is admitted by another member mDNS finds', async () => {
    const token = createToken(h1, 1)
    const h2Id = status(h2)?.self.id
    expect(h2Id).toBeDefined()
    await stopAgent(h1)
    startAgent(h3, ['join', token, '--mdns'])
    await pollUntil(() => (status(h3)?.peers.some((peer) => peer.id === h2Id) === true ? true : undefined), {
      deadlineMs: 60_000,
      intervalMs: 500,
      what: 'h3 admitted by h2 (the token names only h1)',
    })
    expect(h3.log.join('')).toContain('admitted to the network by a host found by discovery')
  })
})
