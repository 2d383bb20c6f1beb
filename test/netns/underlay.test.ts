import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Netns } from '../support/netns.js'
import { pollUntil } from '../support/poll.js'
import { UdpPeer, type Datagram } from '../support/udp-peer.js'
import { listNetns, Underlay } from '../support/underlay.js'

// The routed test underlay (test/support/underlay.ts) with plain UDP peers in the
// host namespaces: every peer binds one port and answers "ping…" with "pong…".
// a, b and c are plain hosts; e sits behind an endpoint-independent NAT and p
// behind an address-and-port-dependent one. ICMP (used only for `cut`) is never
// impaired, only UDP is.

const PORT = 5000
const ms = (ns: bigint): number => Number(ns) / 1e6

describe('test underlay: routed, per-direction UDP impairment, NAT', () => {
  let ul: Underlay
  const peers = new Map<string, UdpPeer>()
  const peer = (name: string): UdpPeer => {
    const found = peers.get(name)
    if (found === undefined) throw new Error(`no peer ${name}`)
    return found
  }
  let seq = 0

  /** a pings b once; returns the send time, b's receive time of the ping and a's receive time of the pong. */
  async function pingOnce(from: string, to: string, deadlineMs = 5000): Promise<{ sent: bigint; atTarget: Datagram; back: Datagram }> {
    const tag = `ping-${from}-${to}-${++seq}`
    const target = ul.host(to)
    const sent = await peer(from).send(target.address, PORT, tag)
    const atTarget = await peer(to).waitFor((d) => d.data === tag, deadlineMs, `${tag} at ${to}`)
    const back = await peer(from).waitFor((d) => d.data === `pong${tag.slice(4)}`, deadlineMs, `pong for ${tag} at ${from}`)
    return { sent, atTarget, back }
  }

  beforeAll(async () => {
    ul = await Underlay.create({ hosts: ['a', 'b', 'c', 'e', 'p'], nat: { e: 'endpoint-independent', p: 'address-and-port-dependent' } })
    for (const host of ul.hosts) peers.set(host.name, await UdpPeer.start(host.ns, PORT, { echo: true }))
  })

  afterAll(async () => {
    await Promise.all([...peers.values()].map((p) => p.close()))
    await ul.close()
  })

  it('(1) carries UDP both ways between hosts, with the real source address and port', async () => {
    const ac = await pingOnce('a', 'c')
    expect(ac.atTarget).toMatchObject({ address: ul.host('a').address, port: PORT })
    expect(ac.back).toMatchObject({ address: ul.host('c').address, port: PORT })
    const ca = await pingOnce('c', 'a')
    expect(ca.atTarget).toMatchObject({ address: ul.host('c').address, port: PORT })
    const ba = await pingOnce('b', 'a')
    expect(ba.back).toMatchObject({ address: ul.host('a').address, port: PORT })
    const stats = await ul.relayStats()
    expect(stats.sent).toBeGreaterThanOrEqual(6)
    expect(stats.unknownFlows).toBe(0)
  })

  it('(2) delays each direction by what was configured for it', async () => {
    await ul.impair('a', 'c', { delayMs: 60 })
    await ul.impair('c', 'a', { delayMs: 10 })
    for (let i = 0; i < 3; i++) {
      const { sent, atTarget, back } = await pingOnce('a', 'c')
      const forward = ms(atTarget.tNs - sent)
      const reverse = ms(back.tNs - atTarget.tNs)
      expect(forward).toBeGreaterThanOrEqual(60)
      expect(reverse).toBeGreaterThanOrEqual(10)
      expect(forward + reverse).toBeGreaterThanOrEqual(70)
      expect(forward + reverse).toBeLessThan(3000) // sanity only
    }
    // The same pair started from the other end gets the same per-direction delays.
    const { sent, atTarget, back } = await pingOnce('c', 'a')
    expect(ms(atTarget.tNs - sent)).toBeGreaterThanOrEqual(10)
    expect(ms(back.tNs - atTarget.tNs)).toBeGreaterThanOrEqual(60)
    // Other directions are untouched: a↔b has nothing configured and passes undelayed (no timer).
    const delayedBefore = (await ul.relayStats()).delayed
    await pingOnce('a', 'b')
    expect((await ul.relayStats()).delayed).toBe(delayedBefore)
    await ul.impair('a', 'c', {})
    await ul.impair('c', 'a', {})
  })

  it('(2) spreads delays over delay ± jitter', async () => {
    await ul.impair('b', 'c', { delayMs: 20, jitterMs: 15 })
    const b = peer('b')
    const c = peer('c')
    const tags = Array.from({ length: 20 }, () => `jit-${++seq}`)
    const sent = new Map<string, bigint>()
    for (const tag of tags) sent.set(tag, await b.send(ul.host('c').address, PORT, tag))
    const delays = await Promise.all(tags.map(async (tag) => {
      const got = await c.waitFor((d) => d.data === tag, 5000, tag)
      return ms(got.tNs - (sent.get(tag) ?? 0n))
    }))
    for (const delay of delays) expect(delay).toBeGreaterThanOrEqual(5)
    // Uniform over 30 ms: 20 draws all within 5 ms of each other has probability < 1e-14.
    expect(Math.max(...delays) - Math.min(...delays)).toBeGreaterThan(5)
    await ul.impair('b', 'c', {})
  })

  it('keeps a flow working after it idled, whichever side speaks first', async () => {
    // a↔c was opened by a (a's side is answered through its redirect entry). After a long
    // idle time the relay must re-check that entry rather than open a clashing upstream.
    await pingOnce('a', 'c')
    await ul.ageRelayFlows()
    const before = (await ul.relayStats()).rechecks
    const { atTarget } = await pingOnce('c', 'a')
    expect(atTarget).toMatchObject({ address: ul.host('c').address, port: PORT })
    expect((await ul.relayStats()).rechecks).toBeGreaterThan(before)
    await ul.ageRelayFlows()
    await pingOnce('a', 'c')
  })

  it('rejects impairments out of range and unknown hosts', async () => {
    await expect(ul.impair('a', 'c', { lossPct: 101 })).rejects.toThrow(/lossPct/)
    await expect(ul.impair('a', 'c', { delayMs: -1 })).rejects.toThrow(/delayMs/)
    await expect(ul.impair('a', 'zz', {})).rejects.toThrow(/zz/)
  })

  it('(3) 100 % loss cuts one direction; clearing it brings it back', async () => {
    await ul.impair('a', 'c', { lossPct: 100 })
    const before = await ul.relayStats()
    const tag = `lost-${++seq}`
    await peer('a').send(ul.host('c').address, PORT, tag)
    await pollUntil(async () => ((await ul.relayStats()).dropped > before.dropped ? true : undefined), { deadlineMs: 5000, what: 'the relay to drop a→c' })
    expect(peer('c').received.some((d) => d.data === tag)).toBe(false)
    // c→a still flows: a gets c's ping, but its pong (a→c) is lost.
    const back = `ping-back-${++seq}`
    await peer('c').send(ul.host('a').address, PORT, back)
    await peer('a').waitFor((d) => d.data === back, 5000, 'c→a while a→c is lossy')
    await ul.impair('a', 'c', {})
    await pingOnce('a', 'c')
  })

  it('(3) cut() drops every protocol both ways until restore()', async () => {
    const b = ul.host('b')
    expect(ul.host('a').ns.execStatus('ping', ['-c', '1', '-W', '5', b.address])).toBe(0)
    await ul.cut('a', 'b')
    const dropsBefore = ul.cutDrops()
    const tag = `cut-${++seq}`
    await peer('a').send(b.address, PORT, tag)
    await pollUntil(() => (ul.cutDrops() > dropsBefore ? true : undefined), { deadlineMs: 5000, what: 'the router to drop a→b' })
    expect(peer('b').received.some((d) => d.data === tag)).toBe(false)
    expect(ul.host('b').ns.execStatus('ping', ['-c', '1', '-W', '1', ul.host('a').address])).not.toBe(0)
    await pingOnce('a', 'c') // other pairs unaffected
    await ul.restore('a', 'b')
    await ul.restore('a', 'b') // idempotent
    await pingOnce('a', 'b')
    await pingOnce('b', 'a')
    // reset() undoes cuts and impairments alike.
    await ul.cut('b', 'c')
    await ul.impair('a', 'b', { lossPct: 100 })
    await ul.reset()
    await pingOnce('b', 'c')
    await pingOnce('a', 'b')
  })

  it('(4) endpoint-independent NAT: same public port for every destination, reachable after a punch', async () => {
    const e = ul.host('e')
    expect(e.localAddress).not.toBe(e.address)
    // e talks to a first; a learns e's public address:port.
    const toA = await pingOnce('e', 'a')
    expect(toA.atTarget.address).toBe(e.address)
    const mapped = toA.atTarget.port
    // b knows that address:port (e.g. from a) but e has not sent to b: filtered.
    const dropsBefore = ul.natDrops('e')
    const early = `early-${++seq}`
    await peer('b').send(e.address, mapped, early)
    await pollUntil(() => (ul.natDrops('e') > dropsBefore ? true : undefined), { deadlineMs: 5000, what: "e's NAT to drop b's unsolicited packet" })
    expect(peer('e').received.some((d) => d.data === early)).toBe(false)
    // e punches towards b: same public port (endpoint-independent mapping)…
    const toB = await pingOnce('e', 'b')
    expect(toB.atTarget).toMatchObject({ address: e.address, port: mapped })
    // …so b reaches e at the port a saw.
    const tag = `ping-via-mapped-${++seq}`
    await peer('b').send(e.address, mapped, tag)
    await peer('e').waitFor((d) => d.data === tag, 5000, 'b → e at the mapped port')
  })

  it('(4) address-and-port-dependent NAT: a new public port per destination, hole punching fails', async () => {
    const p = ul.host('p')
    const toA = await pingOnce('p', 'a')
    expect(toA.atTarget.address).toBe(p.address)
    const seenByA = toA.atTarget.port
    const toB = await pingOnce('p', 'b') // p has now sent to b too ("punched")
    const seenByB = toB.atTarget.port
    expect(seenByB).not.toBe(seenByA)
    // b tries the port a saw: dropped even though p sent to b.
    const dropsBefore = ul.natDrops('p')
    const tag = `ping-apd-${++seq}`
    await peer('b').send(p.address, seenByA, tag)
    await pollUntil(() => (ul.natDrops('p') > dropsBefore ? true : undefined), { deadlineMs: 5000, what: "p's NAT to drop b's packet" })
    expect(peer('p').received.some((d) => d.data === tag)).toBe(false)
    // The port b itself saw works (an answer to p's own flow).
    const ok = `ping-apd-ok-${++seq}`
    await peer('b').send(p.address, seenByB, ok)
    await peer('p').waitFor((d) => d.data === ok, 5000, 'b → p at the port b saw')
  })

  it('(6) carries WireGuard (wireguard-go) with both ends initiating, and through the endpoint-independent NAT', async () => {
    // a↔c: both know each other's endpoint and start handshakes at once; a↔e: a knows e's public
    // address and port (the NAT keeps the port), so it gets in once e's own handshake punched the hole.
    const tunnels: [string, string, string][] = [['a', 'c', '10.99.1'], ['a', 'e', '10.99.2']]
    const made: { ns: Netns; link: string }[] = []
    const keyDir = mkdtempSync(join(tmpdir(), 'meshd-ul-wg-'))
    try {
      for (const [x, y, net] of tunnels) {
        const ends = [ul.host(x), ul.host(y)] as const
        const keys = ends.map((host) => {
          const link = `ulw${randomBytes(4).toString('hex')}`
          host.ns.exec('wireguard-go', [link])
          made.push({ ns: host.ns, link })
          const key = host.ns.exec('wg', ['genkey']).trim()
          return { host, link, key, pub: host.ns.exec('wg', ['pubkey'], `${key}\n`).trim() }
        })
        const port = String(51820 + tunnels.findIndex((t) => t[2] === net))
        keys.forEach((me, i) => {
          const other = keys[1 - i]
          if (other === undefined) throw new Error('unreachable')
          const keyFile = join(keyDir, me.link)
          writeFileSync(keyFile, `${me.key}\n`, { mode: 0o600 })
          me.host.ns.exec('wg', ['set', me.link, 'private-key', keyFile, 'listen-port', port, 'peer', other.pub, 'endpoint', `${other.host.address}:${port}`, 'allowed-ips', '0.0.0.0/0', 'persistent-keepalive', '1'])
          me.host.ns.ip('addr', 'add', `${net}.${i + 1}/24`, 'dev', me.link)
          me.host.ns.ip('link', 'set', me.link, 'up')
        })
        await pollUntil(() => (ends[0].ns.execStatus('ping', ['-c', '1', '-W', '1', `${net}.2`]) === 0 ? true : undefined), { deadlineMs: 15_000, what: `a ping from ${x} to ${y} over WireGuard` })
        expect(ends[1].ns.execStatus('ping', ['-c', '1', '-W', '2', `${net}.1`])).toBe(0)
      }
    } finally {
      // Deleting the link makes wireguard-go exit cleanly and remove its UAPI socket (shared by all namespaces).
      for (const { ns, link } of made) {
        try {
          ns.ip('link', 'del', link)
        } catch {
          // already gone
        }
      }
      rmSync(keyDir, { recursive: true, force: true })
      await pollUntil(() => (made.every(({ link }) => !existsSync(`/var/run/wireguard/${link}.sock`)) ? true : undefined), { deadlineMs: 5000, what: 'wireguard-go to exit' })
    }
  })

  it('(5) close() leaves no namespace and no process behind', async () => {
    const names = ul.namespaces.map((ns) => ns.name)
    const pids = [ul.relayPid, ...[...peers.values()].map((p) => p.pid)].filter((pid): pid is number => pid !== undefined)
    await ul.close()
    const left = listNetns()
    expect(names.filter((n) => left.includes(n))).toEqual([])
    await pollUntil(() => (pids.every((pid) => !alive(pid)) ? true : undefined), { deadlineMs: 5000, what: 'relay and peers to exit' })
  })
})

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
