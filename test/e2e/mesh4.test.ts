import { existsSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { pollUntil } from '../support/poll.js'
import { AgentLab, createToken, mdLinks, meshd, pingOnce, startAgent, status, waitForAgent, type AgentHost, type StatusJson } from '../support/agents.js'

// Four real agents (bin/meshd.js --foreground, wireguard-go) on a bridge
// underlay: h1 runs init, h2–h4 join with tokens h1's agent creates. Checked
// with the hosts' own tools: ping over the overlay, `status --json`, and
// `ip -j` for kernel state.

const OWNED_FIRST = 7300
const OWNED_LAST = 7399
const MESHD_PROTO = ['meshd', 73, '73']

interface JsonRoute {
  dst: string
  table?: string | number
  protocol?: string | number
  dev?: string
}
interface JsonRule {
  priority: number
  table?: string | number
  protocol?: string | number
}
interface JsonAddr {
  ifname: string
  addr_info: { family: string; local: string; prefixlen: number; protocol?: string | number }[]
}

function ownedTable(table: string | number | undefined): boolean {
  const n = Number(table)
  return table === 'meshd' || (Number.isInteger(n) && n >= OWNED_FIRST && n <= OWNED_LAST)
}

/** Every kernel object of meshd's in the host's namespace, as one line each; empty when there is none. */
function meshdObjects(host: AgentHost, overlay: readonly string[]): string[] {
  const found: string[] = []
  for (const link of mdLinks(host)) found.push(`link ${link}`)
  for (const entry of host.ns.ipJson<JsonAddr[]>('addr', 'show')) {
    for (const a of entry.addr_info) {
      const stamped = a.protocol !== undefined && MESHD_PROTO.includes(a.protocol)
      if (stamped || overlay.includes(a.local) || a.local.startsWith('169.254.')) found.push(`addr ${a.local}/${a.prefixlen} dev ${entry.ifname}`)
    }
  }
  for (const family of ['-4', '-6']) {
    for (const route of host.ns.ipJson<JsonRoute[]>(family, 'route', 'show', 'table', 'all')) {
      if (ownedTable(route.table) || (route.protocol !== undefined && MESHD_PROTO.includes(route.protocol)) || route.dev?.startsWith('md-') === true) {
        found.push(`route ${route.dst} table ${route.table ?? 'main'}`)
      }
    }
    for (const rule of host.ns.ipJson<JsonRule[]>(family, 'rule', 'show')) {
      if ((rule.priority >= OWNED_FIRST && rule.priority <= OWNED_LAST) || ownedTable(rule.table) || (rule.protocol !== undefined && MESHD_PROTO.includes(rule.protocol))) {
        found.push(`rule ${rule.priority} table ${rule.table ?? ''}`)
      }
    }
  }
  return found
}

describe('a 4-host mesh of real agents', () => {
  const lab = new AgentLab(4, 'm4')
  const hosts = lab.hosts
  const [h1, h2, h3, h4] = hosts as [AgentHost, AgentHost, AgentHost, AgentHost]
  const views = new Map<AgentHost, StatusJson>()

  afterAll(() => lab.destroy())

  it('init on one host, join on three: every host pings every other and sees 3 peers up', async () => {
    startAgent(h1, ['init', '--name', 'lab4', '--cidr', '10.74.0.0/16'])
    await waitForAgent(h1)
    const tokens = [h2, h3, h4].map(() => createToken(h1, 1))
    expect(new Set(tokens).size).toBe(3)
    for (const [i, joiner] of [h2, h3, h4].entries()) startAgent(joiner, ['join', tokens[i] ?? ''])

    await pollUntil(
      () => {
        for (const host of hosts) {
          const view = status(host)
          if (view === undefined || view.peers.length !== 3 || view.peers.some((p) => p.state !== 'up')) return undefined
          views.set(host, view)
        }
        return true
      },
      { deadlineMs: 90_000, intervalMs: 500, what: 'status --json shows 3 peers up on every host' },
    )
    // Each host lists the other three, by id.
    for (const host of hosts) {
      const others = hosts.filter((other) => other !== host).map((other) => views.get(other)?.self.id)
      expect(views.get(host)?.peers.map((p) => p.id).sort()).toEqual([...others].sort())
    }

    const pending = new Set<string>()
    for (const from of hosts) for (const to of hosts) if (from !== to) pending.add(`${from.name}>${to.name}`)
    await pollUntil(
      () => {
        for (const from of hosts) {
          for (const to of hosts) {
            const key = `${from.name}>${to.name}`
            if (!pending.has(key)) continue
            const target = views.get(to)?.self.addresses[0] ?? ''
            if (pingOnce(from, target)) pending.delete(key)
          }
        }
        return pending.size === 0 ? true : undefined
      },
      { deadlineMs: 30_000, intervalMs: 200, what: `overlay pings between every pair (still failing: ${[...pending].join(' ')})` },
    )
    expect(pending.size).toBe(0)
    // Every host has one md- link per peer.
    for (const host of hosts) expect(mdLinks(host)).toHaveLength(3)
  })

  it('leave on h4: it disappears from the others\' status and their md- link to it goes', async () => {
    const h4id = views.get(h4)?.self.id ?? ''
    const linkTo = new Map<AgentHost, string>()
    for (const host of [h1, h2, h3]) {
      const ifname = views.get(host)?.peers.find((p) => p.id === h4id)?.interface
      expect(ifname, `${host.name}'s interface to h4`).toMatch(/^md-/)
      linkTo.set(host, ifname ?? '')
      expect(mdLinks(host)).toContain(ifname)
    }

    const leave = meshd(h4, ['leave'])
    expect(leave.status, leave.stderr).toBe(0)

    await pollUntil(
      () => {
        for (const host of [h1, h2, h3]) {
          const view = status(host)
          if (view === undefined || view.peers.some((p) => p.id === h4id) || view.peers.length !== 2) return undefined
          if (mdLinks(host).includes(linkTo.get(host) ?? '')) return undefined
        }
        return true
      },
      { deadlineMs: 60_000, intervalMs: 500, what: 'h4 gone from the status and kernel of h1, h2, h3' },
    )
    for (const host of [h1, h2, h3]) {
      expect(mdLinks(host)).toHaveLength(2)
      expect(status(host)?.peers.every((p) => p.state === 'up')).toBe(true)
    }
    // The leaver's agent stops and its host holds nothing of meshd.
    await pollUntil(() => (h4.agent?.exitCode !== null ? true : undefined), { deadlineMs: 20_000, what: 'h4 agent exits after leave' })
    expect(meshdObjects(h4, views.get(h4)?.self.addresses ?? [])).toEqual([])
    // …and keeps no state: every file (links.json included) and the directory are gone.
    expect(existsSync(h4.stateDir), `${h4.stateDir} after leave`).toBe(false)
  })

  it('down on h3 leaves no meshd object, and the user\'s route and rule survive', async () => {
    const overlay = views.get(h3)?.self.addresses ?? []
    // The oracle sees every kind while the mesh is up, so an empty answer afterwards means something.
    const before = meshdObjects(h3, overlay)
    for (const kind of ['link', 'addr', 'route', 'rule']) expect(before.some((line) => line.startsWith(`${kind} `)), `${kind} before down: ${before.join(', ')}`).toBe(true)
    h3.ns.ip('route', 'add', '198.51.100.0/24', 'via', '192.0.2.1', 'table', '100')
    h3.ns.ip('rule', 'add', 'priority', '1000', 'to', '198.51.100.0/24', 'lookup', '100')

    const down = meshd(h3, ['down'])
    expect(down.status, down.stderr).toBe(0)
    await pollUntil(() => (meshdObjects(h3, overlay).length === 0 ? true : undefined), { deadlineMs: 15_000, what: 'no meshd object on h3' })
    expect(meshdObjects(h3, overlay)).toEqual([])

    expect(h3.ns.ipJson<JsonRoute[]>('route', 'show', 'table', '100')).toContainEqual(expect.objectContaining({ dst: '198.51.100.0/24' }))
    expect(h3.ns.ipJson<JsonRule[]>('rule', 'show')).toContainEqual(expect.objectContaining({ priority: 1000, table: '100' }))
    // The underlay is untouched.
    expect(h3.ns.ipJson<JsonAddr[]>('addr', 'show', 'dev', 'eth0')[0]?.addr_info.map((a) => a.local)).toContain(h3.ip)
  })
})
