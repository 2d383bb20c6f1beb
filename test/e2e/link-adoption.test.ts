// Link adoption after a restart, in one process over loopback (membership
// nodes from ./membership-cluster.ts, no kernel): a member restarted with the
// links it stored keeps them — same ports, link-locals and preshared key on
// both ends — and one whose peer's endpoints changed meanwhile negotiates
// again but keeps the preshared key, so a tunnel in use is never re-keyed.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { LinkParams } from '../../src/membership/link-negotiation.js'
import { pollUntil } from '../support/poll.js'
import { joinWithToken, startFounder, startMember, stopMember, tokenFrom, type Member } from './membership-cluster.js'

const DEADLINE = { deadlineMs: 20_000 }

function linkBetween(from: Member, to: Member): LinkParams | undefined {
  return from.links?.links().get(to.identity.nodeId)
}

const hex = (link: LinkParams | undefined): string => Buffer.from(link?.presharedKey.reveal() ?? []).toString('hex')

/** What the kernel holds of a link, from one side: ports, addresses, key. */
function kernelView(link: LinkParams | undefined): unknown {
  return link === undefined ? undefined : { local: link.localListenPort, peer: link.peerListenPort, addresses: link.addresses, key: hex(link) }
}

describe('a restarted member adopts its stored links', () => {
  let founder: Member
  let member: Member
  const running: Member[] = []

  beforeAll(async () => {
    founder = await startFounder()
    member = await joinWithToken('m', tokenFrom(founder))
    running.push(founder, member)
    await pollUntil(() => (linkBetween(founder, member) && linkBetween(member, founder) ? true : undefined), { ...DEADLINE, what: 'link negotiated' })
  })

  afterAll(async () => {
    for (const m of running) await stopMember(m).catch(() => undefined)
  })

  async function restart(adopted: LinkParams[]): Promise<Member> {
    await stopMember(member)
    running.splice(running.indexOf(member), 1)
    member = await startMember('m', member.identity, member.network, member.admissions, { node: { bootstrap: founder.node.listenAddresses() }, links: { adopted } })
    running.push(member)
    return member
  }

  it('keeps an adopted link whose peer is unchanged: same ports, link-locals and key on both ends', async () => {
    const before = { ours: linkBetween(member, founder), theirs: linkBetween(founder, member) }
    expect(hex(before.ours)).toBe(hex(before.theirs))
    const restarted = await restart([before.ours as LinkParams])
    // The stored link is there from the start, before the founder is even seen.
    expect(kernelView(linkBetween(restarted, founder))).toEqual(kernelView(before.ours))
    await pollUntil(() => (restarted.service.member(founder.identity.nodeId) !== undefined ? true : undefined), { ...DEADLINE, what: 'founder seen again' })
    await pollUntil(() => (founder.service.member(restarted.identity.nodeId)?.seq !== undefined ? true : undefined), { ...DEADLINE, what: 'restarted member seen' })
    expect(kernelView(linkBetween(restarted, founder))).toEqual(kernelView(before.ours))
    expect(kernelView(linkBetween(founder, restarted))).toEqual(kernelView(before.theirs))
    // Not negotiated again by the restarted side.
    expect(restarted.links?.counters.get('link.negotiated') ?? 0).toBe(0)
  })

  it('negotiates an adopted link again when the peer\'s endpoints changed, keeping the key', async () => {
    const before = linkBetween(member, founder) as LinkParams
    const stale: LinkParams = { ...before, peerEndpoints: [{ address: '127.0.0.9', port: before.peerListenPort, source: 'interface' }] }
    const restarted = await restart([stale])
    await pollUntil(() => ((restarted.links?.counters.get('link.negotiated') ?? 0) > 0 ? true : undefined), { ...DEADLINE, what: 'link negotiated again' })
    const ours = linkBetween(restarted, founder)
    const theirs = linkBetween(founder, restarted)
    expect(ours?.peerEndpoints.map((e) => e.address)).not.toContain('127.0.0.9')
    expect(hex(ours)).toBe(hex(before))
    expect(hex(theirs)).toBe(hex(before))
    expect(ours?.pair).toEqual(theirs?.pair)
  })
})
