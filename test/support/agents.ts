// Real agents (bin/meshd.js --foreground) in network namespaces on a bridge
// underlay (192.0.2.0/24 in its own namespace), WireGuard through
// wireguard-go. Each host has its own state directory, control socket and
// libp2p listen address. Shared by the e2e tests and bench/agent.bench.ts.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Netns } from './netns.js'
import { pollUntil } from './poll.js'

export interface AgentHost {
  readonly name: string
  readonly ns: Netns
  /** Underlay address on eth0. */
  readonly ip: string
  readonly stateDir: string
  readonly socket: string
  agent?: ChildProcess
  /** The agent's output (JSON log lines), trimmed to the last ~1000 chunks. */
  log: string[]
}

export interface PeerStatusJson {
  id: string
  name: string
  state: string
  addresses: string[]
  interface: string | null
  endpoint: string | null
  lastHandshake: string | null
}

export interface StatusJson {
  self: { id: string; name: string; addresses: string[] }
  peers: PeerStatusJson[]
}

export interface CommandResult {
  status: number | null
  stdout: string
  stderr: string
}

const node = process.execPath
export const MESHD_BIN = 'bin/meshd.js'

/** `count` hosts, each in its own namespace with eth0 on one bridge, plus the underlay namespace holding the bridge. */
export class AgentLab {
  readonly root = mkdtempSync(join(tmpdir(), 'meshd-e2e-'))
  readonly underlay: Netns
  readonly hosts: AgentHost[]

  constructor(count: number, prefix = 'mt') {
    this.underlay = new Netns(`${prefix}-ul`)
    this.hosts = []
    try {
      this.underlay.ip('link', 'add', 'br0', 'type', 'bridge')
      this.underlay.ip('link', 'set', 'br0', 'up')
      for (let i = 1; i <= count; i++) {
        const ns = new Netns(`${prefix}-a${i}`)
        const host: AgentHost = { name: `h${i}`, ns, ip: `192.0.2.${i}`, stateDir: join(this.root, `h${i}`, 'state'), socket: join(this.root, `h${i}`, 'meshd.sock'), log: [] }
        this.hosts.push(host)
        this.underlay.ip('link', 'add', `p${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name)
        this.underlay.ip('link', 'set', `p${i}`, 'master', 'br0', 'up')
        ns.ip('addr', 'add', `${host.ip}/24`, 'dev', 'eth0')
        ns.ip('link', 'set', 'eth0', 'up')
      }
    } catch (error) {
      this.destroySync()
      throw error
    }
  }

  host(index: number): AgentHost {
    const host = this.hosts[index]
    if (host === undefined) throw new Error(`no host ${index}`)
    return host
  }

  /** Stops every agent (SIGTERM, then SIGKILL after 10 s), deletes the namespaces and the state. Safe after a failed setup. */
  async destroy(): Promise<void> {
    await Promise.all(this.hosts.map((host) => stopAgent(host, 'SIGTERM', 10_000).catch(() => undefined)))
    if (process.env.MESHD_TEST_LOG !== undefined) for (const host of this.hosts) process.stderr.write(`── ${host.name} ──\n${host.log.join('')}`)
    this.destroySync()
  }

  private destroySync(): void {
    // Netns.delete kills every process left in the namespace (wireguard-go included).
    for (const ns of [...this.hosts.map((h) => h.ns), this.underlay]) ns.delete()
    rmSync(this.root, { recursive: true, force: true })
  }
}

/** Runs one meshd command in the host's namespace against its state directory and socket. */
export function meshd(host: AgentHost, args: readonly string[], timeoutMs = 30_000): CommandResult {
  const result = spawnSync('ip', ['netns', 'exec', host.ns.name, node, MESHD_BIN, ...args, '--state-dir', host.stateDir, '--socket', host.socket], { encoding: 'utf8', timeout: timeoutMs })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

/**
 * Starts `meshd <args>` in the host's namespace: init and join get `--foreground`; `agent` always runs in the foreground.
 * `ip netns exec` execs the command, so the child's pid is the agent's.
 */
export function startAgent(host: AgentHost, args: readonly string[], options: { listenIp?: string } = {}): ChildProcess {
  const listen = `/ip4/${options.listenIp ?? host.ip}/tcp/7373`
  const child = spawn(
    'ip',
    ['netns', 'exec', host.ns.name, node, MESHD_BIN, ...args, ...(args[0] === 'agent' ? [] : ['--foreground']), '--state-dir', host.stateDir, '--socket', host.socket, '--listen', listen],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHD_LOG_LEVEL: process.env.MESHD_TEST_LOG ?? 'info' } },
  )
  // MESHD_TEST_AGENT_LOG_DIR=<dir>: every agent's whole output also goes to <dir>/<host>.log (the in-memory copy is cut).
  const logDir = process.env.MESHD_TEST_AGENT_LOG_DIR
  const keep = (chunk: Buffer): void => {
    if (logDir !== undefined) appendFileSync(join(logDir, `${host.name}.log`), chunk)
    host.log.push(chunk.toString('utf8'))
    if (host.log.length > 2000) host.log.splice(0, 1000)
  }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  host.agent = child
  return child
}

/** Signals the host's agent and waits for it to exit; SIGKILL after `graceMs`. */
export async function stopAgent(host: AgentHost, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
  const agent = host.agent
  if (agent === undefined || agent.exitCode !== null || agent.signalCode !== null) return
  const exited = new Promise<void>((resolve) => agent.once('exit', () => {
    resolve()
  }))
  agent.kill(signal)
  const timer = setTimeout(() => agent.kill('SIGKILL'), graceMs)
  try {
    await exited
  } finally {
    clearTimeout(timer)
  }
}

/** `meshd status --json`, or undefined when the agent does not answer (yet). */
export function status(host: AgentHost): StatusJson | undefined {
  const result = meshd(host, ['status', '--json'])
  return result.status === 0 ? (JSON.parse(result.stdout) as StatusJson) : undefined
}

/** Waits until the host's agent answers status; fails at once, with its last output, if the agent exits. */
export function waitForAgent(host: AgentHost, deadlineMs = 30_000): Promise<StatusJson> {
  return pollUntil(
    () => {
      const agent = host.agent
      if (agent !== undefined && (agent.exitCode !== null || agent.signalCode !== null)) {
        throw new Error(`${host.name} agent exited (${agent.exitCode ?? agent.signalCode}): ${host.log.join('').slice(-1500)}`)
      }
      return status(host)
    },
    { deadlineMs, intervalMs: 200, what: `${host.name} agent answers status` },
  )
}

/** `meshd token create`, trimmed; throws with stderr on failure. */
export function createToken(host: AgentHost, uses = 1, ttl = '10m'): string {
  const result = meshd(host, ['token', 'create', '--ttl', ttl, '--uses', String(uses)])
  if (result.status !== 0) throw new Error(`token create on ${host.name} exited ${result.status}: ${result.stderr.trim()}`)
  return result.stdout.trim()
}

/** One ping (1 s wait) from the host's namespace; true on a reply. */
export function pingOnce(host: AgentHost, address: string): boolean {
  return host.ns.execStatus('ping', ['-c1', '-W1', '-q', address]) === 0
}

/** Names of the md-* links in the host's namespace (`ip -j link show`). */
export function mdLinks(host: AgentHost): string[] {
  return host.ns
    .ipJson<{ ifname: string }[]>('link', 'show')
    .map((l) => l.ifname)
    .filter((name) => name.startsWith('md-'))
}

/** pids of the host namespace's wireguard-go processes. */
export function wireguardGoPids(host: AgentHost): number[] {
  const pids = spawnSync('ip', ['netns', 'pids', host.ns.name], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number)
  return pids.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('wireguard-go')
    } catch {
      return false
    }
  })
}
