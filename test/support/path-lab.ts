// Real agents on the routed test underlay (test/support/underlay.ts), for the
// path-selection tests and benchmarks: start a mesh, read each host's forward
// path and its "path changed" log lines, and stream pings over the overlay.

import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createToken, startAgent, status, stopAgent, waitForAgent, type AgentHost } from './agents.js'
import { pollUntil } from './poll.js'
import { Underlay, type NatMode } from './underlay.js'

export interface PathStatus {
  id: string
  name: string
  addresses: string[]
  state: string
  /** The pair link's WireGuard interface; null until the link is negotiated. */
  interface: string | null
  path: { via: string | null; forwardSavingMs: number | null }
  returnPath: { via: string | null } | null
  rttMs: number | null
  /** How libp2p reaches the peer: 'direct', 'pair-link', 'relayed' or null. */
  control?: string | null
}
export interface PathLabStatus {
  self: { id: string; addresses: string[]; rpFilter?: string }
  peers: PathStatus[]
}

export class PathLab {
  readonly root = mkdtempSync(join(tmpdir(), 'meshd-paths-'))
  readonly hosts = new Map<string, AgentHost>()
  constructor(readonly underlay: Underlay) {
    for (const uh of underlay.hosts) {
      this.hosts.set(uh.name, { name: uh.name, ns: uh.ns, ip: uh.localAddress, stateDir: join(this.root, uh.name, 'state'), socket: join(this.root, uh.name, 'meshd.sock'), log: [] })
    }
  }

  static async create(names: readonly string[], nat: Record<string, NatMode> = {}): Promise<PathLab> {
    return new PathLab(await Underlay.create({ hosts: names, nat }))
  }

  host(name: string): AgentHost {
    const host = this.hosts.get(name)
    if (host === undefined) throw new Error(`no host ${name}`)
    return host
  }

  status(name: string): PathLabStatus | undefined {
    return status(this.host(name)) as PathLabStatus | undefined
  }

  /**
   * `first` runs init; the others join with tokens from it; resolves when every host sees every other up.
   * libp2p listens on each host's underlay address, or on what `listenIps` gives for it (0.0.0.0: every address).
   */
  async startMesh(
    first: string,
    cidr: string,
    ready: (view: PathLabStatus) => boolean = (view) => view.peers.every((p) => p.state === 'up'),
    listenIps: Record<string, string> = {},
  ): Promise<void> {
    const founder = this.host(first)
    const listenOf = (host: AgentHost): { listenIp?: string } => (listenIps[host.name] === undefined ? {} : { listenIp: listenIps[host.name] })
    startAgent(founder, ['init', '--name', 'paths', '--cidr', cidr], listenOf(founder))
    await waitForAgent(founder)
    for (const host of this.hosts.values()) if (host !== founder) startAgent(host, ['join', createToken(founder, 1)], listenOf(host))
    const expected = this.hosts.size - 1
    await pollUntil(
      () => {
        for (const name of this.hosts.keys()) {
          const view = this.status(name)
          if (view?.peers.length !== expected || !ready(view)) return undefined
        }
        return true
      },
      { deadlineMs: 90_000, intervalMs: 500, what: 'every host sees every other' },
    )
  }

  overlayOf(name: string): string {
    const address = this.status(name)?.self.addresses[0]
    if (address === undefined) throw new Error(`${name} has no overlay address yet`)
    return address
  }

  idOf(name: string): string {
    const id = this.status(name)?.self.id
    if (id === undefined) throw new Error(`${name} has no id yet`)
    return id
  }

  /** The forward path `from` reports towards `to`: null (direct), a relay's id, or undefined (not known yet). */
  pathOf(from: string, to: string): string | null | undefined {
    const id = this.idOf(to)
    const peer = this.status(from)?.peers.find((p) => p.id === id)
    return peer === undefined ? undefined : peer.path.via
  }

  pathChanges(name: string, destination: string): { from: string; to: string; reason: string }[] {
    const id = this.idOf(destination)
    return this.host(name)
      .log.join('')
      .split('\n')
      .flatMap((line) => {
        try {
          const record = JSON.parse(line) as { msg?: string; destination?: string; from?: string; to?: string; reason?: string }
          return record.msg === 'path changed' && record.destination === id ? [{ from: record.from ?? '', to: record.to ?? '', reason: record.reason ?? '' }] : []
        } catch {
          return []
        }
      })
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.hosts.values()].map((h) => stopAgent(h, 'SIGTERM', 10_000).catch(() => undefined)))
    if (process.env.MESHD_TEST_LOG !== undefined) for (const h of this.hosts.values()) process.stderr.write(`── ${h.name} ──\n${h.log.join('')}`)
    await this.underlay.close()
    rmSync(this.root, { recursive: true, force: true })
  }
}

/** ICMP echo over the overlay: `count` pings `intervalS` apart; the reply RTTs in ms and the sequence numbers answered. */
export async function pingStream(host: AgentHost, address: string, count: number, intervalS: number): Promise<{ rtts: number[]; answered: number[] }> {
  const child = spawn('ip', ['netns', 'exec', host.ns.name, 'ping', '-n', '-c', String(count), '-i', String(intervalS), '-W', '2', address], { stdio: ['ignore', 'pipe', 'ignore'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')))
  await new Promise<void>((resolve) => child.once('close', () => { resolve(); }))
  const rtts: number[] = []
  const answered: number[] = []
  for (const match of out.matchAll(/icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms/g)) {
    answered.push(Number(match[1]))
    rtts.push(Number(match[2]))
  }
  return { rtts, answered }
}

export const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((x, y) => x - y)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}
