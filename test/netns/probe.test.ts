// The prober on real sockets: three namespaces a, b, c joined pairwise by veth
// pairs with point-to-point link-local addresses (as meshd puts on WireGuard
// links), one probe service per namespace in its own driver process. Relaying
// is done by the services in userspace, so no forwarding is needed.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Netns } from '../support/netns.js'
import { pollUntil } from '../support/poll.js'
import type { LinkStats, PingResult, ProbeLink, RelayedStats } from '../../src/probe/types.js'

const DRIVER = 'dist/probe/driver.js'
const NODE = process.execPath
const ids = {
  a: '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
  b: '12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB',
  c: '12D3KooWCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC',
}
type Node = keyof typeof ids

interface Snapshot {
  links: LinkStats[]
  relayed: RelayedStats[]
}

/** One probe service in a namespace, spoken to in JSON lines. */
class ProbeDriver {
  readonly events: { event: string; kind?: string; peerId?: string }[] = []
  readonly #replies = new Map<number, (value: Record<string, unknown>) => void>()
  readonly #child: ChildProcessWithoutNullStreams
  #nextId = 1
  stderr = ''

  constructor(ns: Netns, selfId: string) {
    this.#child = spawn('ip', ['netns', 'exec', ns.name, NODE, DRIVER, selfId])
    this.#child.stderr.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString()
    })
    createInterface({ input: this.#child.stdout }).on('line', (line) => {
      const message = JSON.parse(line) as Record<string, unknown>
      if (typeof message.reply === 'number') this.#replies.get(message.reply)?.(message)
      else this.events.push(message as { event: string })
    })
  }

  send(command: Record<string, unknown>): void {
    this.#child.stdin.write(JSON.stringify(command) + '\n')
  }

  async snapshot(): Promise<Snapshot> {
    const id = this.#nextId++
    const reply = new Promise<Record<string, unknown>>((resolve) => this.#replies.set(id, resolve))
    this.send({ op: 'snapshot', id })
    return (await reply).snapshot as Snapshot
  }

  async ping(peerId: string, count: number): Promise<PingResult> {
    const id = this.#nextId++
    const reply = new Promise<Record<string, unknown>>((resolve) => this.#replies.set(id, resolve))
    this.send({ op: 'ping', id, peerId, count })
    return (await reply).ping as PingResult
  }

  stop(): void {
    this.#child.stdin.end()
  }
}

describe('probe service in namespaces', () => {
  const ns = { a: new Netns('mt-pa'), b: new Netns('mt-pb'), c: new Netns('mt-pc') }
  const links: Record<Node, ProbeLink[]> = { a: [], b: [], c: [] }
  const drivers = {} as Record<Node, ProbeDriver>

  /** A veth pair x–y with `local peer` /32 addresses on both ends, like a WireGuard mesh link. */
  function connect(x: Node, y: Node, subnet: number): void {
    const xName = `p-${x}${y}`
    const yName = `p-${y}${x}`
    ns[x].ip('link', 'add', xName, 'type', 'veth', 'peer', 'name', yName, 'netns', ns[y].name)
    const xAddr = `169.254.${subnet}.1`
    const yAddr = `169.254.${subnet}.2`
    ns[x].ip('addr', 'add', xAddr, 'peer', `${yAddr}/32`, 'dev', xName)
    ns[y].ip('addr', 'add', yAddr, 'peer', `${xAddr}/32`, 'dev', yName)
    ns[x].ip('link', 'set', xName, 'up')
    ns[y].ip('link', 'set', yName, 'up')
    links[x].push({ peerId: ids[y], local4: xAddr, peer4: yAddr })
    links[y].push({ peerId: ids[x], local4: yAddr, peer4: xAddr })
  }

  beforeAll(() => {
    connect('a', 'b', 12)
    connect('a', 'c', 13)
    connect('b', 'c', 23)
    for (const node of ['a', 'b', 'c'] as const) {
      drivers[node] = new ProbeDriver(ns[node], ids[node])
      drivers[node].send({ op: 'setLinks', links: links[node] })
    }
    drivers.a.send({ op: 'setRelayCandidates', candidates: { [ids.c]: [ids.b] } })
    drivers.a.send({ op: 'setActive', peerId: ids.c, active: true })
  })
  afterAll(() => {
    for (const driver of Object.values(drivers)) driver.stop()
    for (const n of Object.values(ns)) n.delete()
  })

  it('measures every link and the relayed path to c through b, answered over the direct return leg', async () => {
    const snapshot = await pollUntil(
      async () => {
        const s = await drivers.a.snapshot()
        const linksAlive = [ids.b, ids.c].every((peer) => s.links.find((l) => l.peerId === peer && l.alive && l.rttMs !== undefined))
        const relayed = s.relayed.find((r) => r.destination === ids.c && r.relay === ids.b && r.alive && r.rttMs !== undefined)
        return linksAlive && relayed ? s : undefined
      },
      { deadlineMs: 15_000, what: `a's links and relayed path to be measured (driver stderr: ${drivers.a.stderr})` },
    )
    expect(snapshot.relayed.find((r) => r.destination === ids.c)).toMatchObject({ relay: ids.b, returnLeg: 'direct', alive: true })
    expect(snapshot.links.find((l) => l.peerId === ids.c)?.lossPct).toBeLessThan(100)
    // b and c measure their links too.
    await pollUntil(async () => ((await drivers.c.snapshot()).links.every((l) => l.alive) ? true : undefined), { deadlineMs: 15_000, what: "c's links alive" })
  })

  it('notices the a–c link going down, and relayed probes switch to the relay return leg and stay alive', async () => {
    ns.a.ip('link', 'set', 'p-ac', 'down')
    await pollUntil(() => (drivers.a.events.some((e) => e.event === 'change' && e.kind === 'link-dead' && e.peerId === ids.c) ? true : undefined), {
      deadlineMs: 10_000,
      what: 'a link-dead event for c',
    })
    const relayed = await pollUntil(
      async () => {
        const s = await drivers.a.snapshot()
        const path = s.relayed.find((r) => r.destination === ids.c && r.relay === ids.b)
        return path?.returnLeg === 'relay' && path.alive && path.samples >= 3 && path.lossPct === 0 ? path : undefined
      },
      { deadlineMs: 15_000, what: 'the relayed path to c to come back over b, alive' },
    )
    expect(relayed.rttMs).toBeGreaterThan(0)
    const direct = (await drivers.a.snapshot()).links.find((l) => l.peerId === ids.c)
    expect(direct?.alive).toBe(false)
  })

  it('pings c on every path: nothing comes back direct, everything through b', async () => {
    const result = await drivers.a.ping(ids.c, 3)
    expect(result.paths.map((p) => [p.via, p.returnLeg, p.sent, p.received])).toEqual([
      [null, 'direct', 3, 0],
      [ids.b, 'relay', 3, 3],
    ])
    expect(result.paths[1]?.avgMs).toBeGreaterThan(0)
  })
})
