import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Netns } from '../support/netns.js'
import { pollUntil } from '../support/poll.js'

// Real agents (bin/meshd.js --foreground) in network namespaces on a bridge
// underlay, WireGuard through wireguard-go. Each host has its own state
// directory, control socket and libp2p listen address.

interface Host {
  ns: Netns
  ip: string
  stateDir: string
  socket: string
  agent?: ChildProcess
  log: string[]
}

interface StatusJson {
  self: { id: string; addresses: string[] }
  peers: { id: string; state: string; addresses: string[]; interface: string | null }[]
}

const root = mkdtempSync(join(tmpdir(), 'meshd-e2e-'))
const node = process.execPath

function meshd(host: Host, args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('ip', ['netns', 'exec', host.ns.name, node, 'bin/meshd.js', ...args, '--state-dir', host.stateDir, '--socket', host.socket], { encoding: 'utf8', timeout: 30_000 })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

function startAgent(host: Host, args: readonly string[]): void {
  const child = spawn(
    'ip',
    ['netns', 'exec', host.ns.name, node, 'bin/meshd.js', ...args, '--foreground', '--state-dir', host.stateDir, '--socket', host.socket, '--listen', `/ip4/${host.ip}/tcp/7373`],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHD_LOG_LEVEL: process.env.MESHD_TEST_LOG ?? 'info' } },
  )
  const keep = (chunk: Buffer): void => {
    host.log.push(chunk.toString('utf8'))
    if (host.log.length > 2000) host.log.splice(0, 1000)
  }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  host.agent = child
}

function status(host: Host): StatusJson | undefined {
  const result = meshd(host, ['status', '--json'])
  return result.status === 0 ? (JSON.parse(result.stdout) as StatusJson) : undefined
}

function mdLinks(host: Host): string[] {
  return host.ns.ipJson<{ ifname: string }[]>('link', 'show').map((l) => l.ifname).filter((name) => name.startsWith('md-'))
}

describe('meshd agents in namespaces', () => {
  const underlay = new Netns('mt-ul')
  const hosts: Host[] = [1, 2].map((i) => ({ ns: new Netns(`mt-a${i}`), ip: `192.0.2.${i}`, stateDir: join(root, `h${i}`, 'state'), socket: join(root, `h${i}`, 'meshd.sock'), log: [] }))
  const [h1, h2] = hosts as [Host, Host]

  beforeAll(() => {
    underlay.ip('link', 'add', 'br0', 'type', 'bridge')
    underlay.ip('link', 'set', 'br0', 'up')
    hosts.forEach((host, i) => {
      underlay.ip('link', 'add', `p${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.ns.name)
      underlay.ip('link', 'set', `p${i}`, 'master', 'br0', 'up')
      host.ns.ip('addr', 'add', `${host.ip}/24`, 'dev', 'eth0')
      host.ns.ip('link', 'set', 'eth0', 'up')
    })
  })

  afterAll(async () => {
    for (const host of hosts) host.agent?.kill('SIGTERM')
    await Promise.all(
      hosts.map((host) => {
        const agent = host.agent
        return agent === undefined || agent.exitCode !== null ? Promise.resolve() : new Promise<void>((resolve) => agent.once('exit', () => {
          resolve()
        }))
      }),
    )
    // Netns.delete kills every process left in the namespace (wireguard-go included).
    for (const ns of [...hosts.map((h) => h.ns), underlay]) ns.delete()
    rmSync(root, { recursive: true, force: true })
    if (process.env.MESHD_TEST_LOG !== undefined) for (const host of hosts) process.stderr.write(host.log.join(''))
  })

  it('init, token create, join: both hosts see one peer up and ping each other', async () => {
    startAgent(h1, ['init', '--name', 'lab', '--cidr', '10.73.0.0/16'])
    await pollUntil(() => status(h1), { deadlineMs: 30_000, what: 'h1 agent answers status' })
    const token = meshd(h1, ['token', 'create', '--ttl', '10m', '--uses', '3'])
    expect(token.status, token.stderr).toBe(0)
    expect(token.stdout.trim()).toMatch(/^meshd1\.\S+$/)

    startAgent(h2, ['join', token.stdout.trim()])
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
    await pollUntil(() => (h1.ns.execStatus('ping', ['-c1', '-W1', overlay2]) === 0 ? true : undefined), { deadlineMs: 20_000, what: 'h1 pings h2 overlay' })
    await pollUntil(() => (h2.ns.execStatus('ping', ['-c1', '-W1', overlay1]) === 0 ? true : undefined), { deadlineMs: 20_000, what: 'h2 pings h1 overlay' })
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
