// A routed test underlay with per-direction UDP impairment and optional NAT.
//
//   host a (10.200.1.2) ─┐
//   host b (10.200.2.2) ─┼─ router ── impairment relay (userspace, see impairment-relay.ts)
//   host c ── nat ns ────┘  (c is 10.201.3.2 inside; the others reach it at 10.200.3.2)
//
// Every host namespace has a veth to one router namespace (host i: 10.200.i.2/24, the
// router 10.200.i.1, default route via the router), so all host-to-host traffic
// crosses the router. There nftables redirects every UDP packet between two host
// addresses to the relay, which applies the delay, jitter and loss configured for the
// direction and sends it on with the original source address and port preserved (the
// receiver sees the real sender, as without the relay). TCP and ICMP are routed by
// the kernel and are NOT impaired; `cut` drops every protocol.
//
// A host may sit behind a NAT namespace (host ↔ nat ↔ router), nftables masquerade:
//   - 'endpoint-independent': plain masquerade, which keeps the source port, so one
//     inside address:port maps to the same public port whatever the destination
//     (endpoint-independent mapping). Inbound is filtered as conntrack does: only
//     from a remote address:port the host has sent to (a port-restricted cone —
//     hole punching works: send to the peer first, then it can reach you).
//   - 'address-and-port-dependent': masquerade fully-random, so every new destination
//     gets a new random public port, with the same filtering: a port learned by one
//     peer is useless to another, and hole punching fails.
// In both modes unsolicited inbound packets are dropped silently (no ICMP).
//
// Usage (root; see test/netns/underlay.test.ts):
//
//   const ul = await Underlay.create({ hosts: ['a', 'b', 'c'], nat: { c: 'address-and-port-dependent' } })
//   ul.host('a').ns                      // Netns: start agents and tools in it
//   ul.host('c').address                 // where the others reach c (its NAT's public address)
//   await ul.impair('a', 'c', { delayMs: 70, jitterMs: 30 })   // a→c only; c→a unchanged
//   await ul.impair('a', 'c', {})        // clear a→c
//   await ul.cut('a', 'b'); await ul.restore('a', 'b')
//   await ul.close()
//
// What is and is not impaired: every UDP packet between two hosts' underlay
// addresses (so WireGuard, and everything inside it, including ICMP ping over the
// overlay). Not: TCP (libp2p control traffic) and ICMP on the underlay itself.
// `impair(…, { lossPct: 100 })` therefore silences WireGuard but not libp2p; `cut`
// silences both. The relay costs ~0.1 ms per packet even when nothing is configured
// (docs/benchmarks.md, "Test underlay"). IPv4 only.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Netns, run } from './netns.js'
import { pollUntil } from './poll.js'
import { validateImpairment, type Impairment, type RelayConfig, type RelayStats } from './impairment-relay.js'

export type NatMode = 'endpoint-independent' | 'address-and-port-dependent'

export interface UnderlayOptions {
  /** Host names, at most 200; each gets a namespace. */
  hosts: readonly string[]
  /** Hosts that sit behind a NAT namespace, and its kind. */
  nat?: Readonly<Record<string, NatMode>>
}

export interface UnderlayHost {
  readonly name: string
  /** The host's namespace: run the agent, servers and clients here. */
  readonly ns: Netns
  /** The address other hosts reach this host at (for a NATed host: its NAT's public address). */
  readonly address: string
  /** The address configured on the host's own eth0 (equal to `address` unless NATed). */
  readonly localAddress: string
  /** The NAT namespace and mode, for NATed hosts. */
  readonly nat?: { readonly mode: NatMode; readonly ns: Netns }
}

/** The ports the router redirects UDP to; the relay binds them all. */
export const RELAY_PORTS = { first: 20000, last: 20031 } as const

const relayScript = fileURLToPath(new URL('./impairment-relay.ts', import.meta.url))
const repoNode = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url))

/** Node >= 23.6 runs the .ts relay directly; the repository's Node 24 if present. */
function nodeBinary(): string {
  return existsSync(repoNode) ? repoNode : process.execPath
}

class RelayProcess {
  private readonly child: ChildProcessWithoutNullStreams
  private readonly pending = new Map<number, { resolve: (value: Record<string, unknown>) => void; reject: (error: Error) => void }>()
  private nextId = 1
  private readyResolve: (() => void) | undefined
  readonly ready: Promise<void>
  readonly stderr: string[] = []
  private exited = false

  constructor(router: Netns, config: RelayConfig) {
    this.child = spawn('ip', ['netns', 'exec', router.name, nodeBinary(), relayScript, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] })
    let readyReject: (error: Error) => void = () => undefined
    this.ready = new Promise<void>((resolve, reject) => {
      this.readyResolve = resolve
      readyReject = reject
    })
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.stderr.push(chunk.toString('utf8'))
      if (this.stderr.length > 200) this.stderr.splice(0, 100)
    })
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      let message: Record<string, unknown>
      try {
        message = JSON.parse(line) as Record<string, unknown>
      } catch {
        return
      }
      if (message.ready === true) {
        this.readyResolve?.()
        return
      }
      const waiter = typeof message.id === 'number' ? this.pending.get(message.id) : undefined
      if (waiter === undefined) return
      this.pending.delete(message.id as number)
      if (message.ok === true) waiter.resolve(message)
      else waiter.reject(new Error(`impairment relay: ${String(message.error)}`))
    })
    this.child.on('exit', (code, signal) => {
      this.exited = true
      const error = new Error(`impairment relay exited (${code ?? signal ?? '?'}): ${this.stderr.join('').trim()}`)
      readyReject(error)
      for (const waiter of this.pending.values()) waiter.reject(error)
      this.pending.clear()
    })
    this.child.stdin.on('error', () => undefined)
  }

  request(message: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error(`impairment relay is not running: ${this.stderr.join('').trim()}`))
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.child.stdin.write(`${JSON.stringify({ ...message, id })}\n`)
    })
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  async stop(): Promise<void> {
    if (this.exited) return
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => { resolve() }))
    this.child.stdin.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000)
    await exited
    clearTimeout(timer)
  }
}

export class Underlay {
  /** The router namespace every host-to-host packet crosses. */
  readonly router: Netns
  private readonly byName = new Map<string, UnderlayHost>()
  private readonly relay: RelayProcess
  private closed = false

  private constructor(router: Netns, hosts: UnderlayHost[], relay: RelayProcess) {
    this.router = router
    for (const host of hosts) this.byName.set(host.name, host)
    this.relay = relay
  }

  /** Builds the namespaces, links, nftables rules and the relay; everything is removed again if a step fails. */
  static async create(options: UnderlayOptions): Promise<Underlay> {
    const names = options.hosts
    if (names.length === 0 || names.length > 200) throw new RangeError('an underlay needs 1 to 200 hosts')
    if (new Set(names).size !== names.length) throw new RangeError('host names must be unique')
    for (const name of Object.keys(options.nat ?? {})) {
      if (!names.includes(name)) throw new RangeError(`nat names unknown host ${name}`)
    }
    const created: Netns[] = []
    const make = (prefix: string): Netns => {
      const ns = new Netns(prefix)
      created.push(ns)
      return ns
    }
    let relay: RelayProcess | undefined
    try {
      const router = make('ul-r')
      router.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
      // The router's conntrack entries are the relay's flow state, not part of what is
      // simulated: keep idle flows for 10 min (NAT namespaces keep the defaults).
      router.exec('sysctl', ['-qw', 'net.netfilter.nf_conntrack_udp_timeout=600', 'net.netfilter.nf_conntrack_udp_timeout_stream=600'])
      const hosts = names.map((name, index): UnderlayHost => {
        const i = index + 1
        const publicAddress = `10.200.${i}.2`
        const mode = options.nat?.[name]
        const ns = make(`ul-h${i}`)
        // The namespace on the router's side of this host's link: the host itself, or its NAT.
        const edge = mode === undefined ? ns : make(`ul-n${i}`)
        router.ip('link', 'add', `h${i}`, 'type', 'veth', 'peer', 'name', mode === undefined ? 'eth0' : 'wan', 'netns', edge.name)
        router.ip('addr', 'add', `10.200.${i}.1/24`, 'dev', `h${i}`)
        router.ip('link', 'set', `h${i}`, 'up')
        const edgeLink = mode === undefined ? 'eth0' : 'wan'
        edge.ip('addr', 'add', `${publicAddress}/24`, 'dev', edgeLink)
        edge.ip('link', 'set', edgeLink, 'up')
        edge.ip('route', 'add', 'default', 'via', `10.200.${i}.1`)
        if (mode === undefined) return { name, ns, address: publicAddress, localAddress: publicAddress }
        const localAddress = `10.201.${i}.2`
        edge.ip('link', 'add', 'lan', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name)
        edge.ip('addr', 'add', `10.201.${i}.1/24`, 'dev', 'lan')
        edge.ip('link', 'set', 'lan', 'up')
        ns.ip('addr', 'add', `${localAddress}/24`, 'dev', 'eth0')
        ns.ip('link', 'set', 'eth0', 'up')
        ns.ip('route', 'add', 'default', 'via', `10.201.${i}.1`)
        edge.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
        edge.exec('nft', ['-f', '-'], natRuleset(mode))
        return { name, ns, address: publicAddress, localAddress, nat: { mode, ns: edge } }
      })
      router.exec('nft', ['-f', '-'], routerRuleset(hosts.map((h) => h.address)))
      if (router.execStatus('test', ['-r', '/proc/net/nf_conntrack']) !== 0) {
        throw new Error('the impairment relay needs /proc/net/nf_conntrack (CONFIG_NF_CONNTRACK_PROCFS), which this kernel lacks')
      }
      const config: RelayConfig = {
        hosts: Object.fromEntries(hosts.map((h) => [h.address, h.name])),
        listenPorts: Array.from({ length: RELAY_PORTS.last - RELAY_PORTS.first + 1 }, (_, k) => RELAY_PORTS.first + k),
        nftTable: 'ip meshd_underlay',
        upstreamMap: 'upstream',
      }
      relay = new RelayProcess(router, config)
      const started = relay
      await Promise.race([
        started.ready,
        new Promise<never>((_, reject) => setTimeout(() => { reject(new Error(`impairment relay not ready after 15 s: ${started.stderr.join('')}`)) }, 15_000).unref()),
      ])
      return new Underlay(router, hosts, relay)
    } catch (error) {
      await relay?.stop()
      for (const ns of created.reverse()) ns.delete()
      throw error
    }
  }

  host(name: string): UnderlayHost {
    const host = this.byName.get(name)
    if (host === undefined) throw new RangeError(`no underlay host ${name}`)
    return host
  }

  get hosts(): readonly UnderlayHost[] {
    return [...this.byName.values()]
  }

  /**
   * Sets the impairment of UDP packets from `from` to `to` (one direction; missing
   * fields are 0, so `impair(a, b, {})` clears it). Applies to packets the relay
   * receives after the returned promise resolves; packets already delayed keep theirs.
   */
  async impair(from: string, to: string, impairment: Partial<Impairment>): Promise<void> {
    this.host(from)
    this.host(to)
    const valid = validateImpairment(impairment)
    await this.relay.request({ op: 'impair', from, to, ...valid })
  }

  /** Drops every packet (all protocols) between a and b, both ways, until `restore(a, b)`. Impairments are kept. */
  // eslint-disable-next-line @typescript-eslint/require-await -- async so callers need not change if this ever talks to the relay
  async cut(a: string, b: string): Promise<void> {
    this.cutSet('add', a, b)
  }

  /** Undoes `cut(a, b)`; a no-op if the pair is not cut. */
  // eslint-disable-next-line @typescript-eslint/require-await -- see cut()
  async restore(a: string, b: string): Promise<void> {
    this.cutSet('delete', a, b)
  }

  /** Clears every impairment and every cut: the underlay as created. */
  async reset(): Promise<void> {
    this.router.exec('nft', ['flush', 'set', 'ip', 'meshd_underlay', 'cut'])
    await this.relay.request({ op: 'reset' })
  }

  /** Counters of the relay (packets received, sent, dropped, delayed, flows, …). */
  async relayStats(): Promise<RelayStats> {
    const answer = await this.relay.request({ op: 'stats' })
    return answer.stats as RelayStats
  }

  /** Test hook: makes every relay flow look long idle, so its next packets take the re-check path. */
  async ageRelayFlows(): Promise<void> {
    await this.relay.request({ op: 'age' })
  }

  /** The relay's process id (in the router namespace), for checks that it is gone after close(). */
  get relayPid(): number | undefined {
    return this.relay.pid
  }

  /** Every namespace this underlay created (router, hosts, NATs). */
  get namespaces(): readonly Netns[] {
    return [this.router, ...this.hosts.flatMap((h) => (h.nat === undefined ? [h.ns] : [h.ns, h.nat.ns]))]
  }

  /** Stops the relay and deletes every namespace (killing what runs in them). Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.relay.stop()
    for (const ns of this.namespaces) ns.delete()
    const names = this.namespaces.map((ns) => ns.name)
    await pollUntil(() => {
      const left = new Set(listNetns())
      return names.some((n) => left.has(n)) ? undefined : true
    }, { deadlineMs: 5000, what: 'underlay namespaces to disappear' })
  }

  /** Packets the router dropped because of cut() so far (both hooks, every pair). */
  cutDrops(): number {
    return nftCounterSum(this.router, 'meshd_underlay', ['cut_in', 'cut_out'])
  }

  /** Unsolicited packets a NATed host's NAT dropped so far. */
  natDrops(name: string): number {
    const nat = this.host(name).nat
    if (nat === undefined) throw new RangeError(`host ${name} is not behind a NAT`)
    return nftCounterSum(nat.ns, 'meshd_nat', ['input', 'forward'])
  }

  private cutSet(verb: 'add' | 'delete', a: string, b: string): void {
    const x = this.host(a).address
    const y = this.host(b).address
    if (verb === 'delete') {
      // `delete element` fails on a missing element; `destroy` needs nft >= 1.0.8, so check first.
      const listed = this.router.exec('nft', ['list', 'set', 'ip', 'meshd_underlay', 'cut'])
      if (!listed.includes(`${x} . ${y}`)) return
    }
    this.router.exec('nft', [verb, 'element', 'ip', 'meshd_underlay', 'cut', `{ ${x} . ${y}, ${y} . ${x} }`])
  }
}

/** Sum of the packet counters of the rules in the named chains of an `ip` table. */
function nftCounterSum(ns: Netns, table: string, chains: readonly string[]): number {
  const listing = JSON.parse(ns.exec('nft', ['-j', 'list', 'table', 'ip', table])) as { nftables: { rule?: { chain: string; expr: { counter?: { packets: number } }[] } }[] }
  let sum = 0
  for (const item of listing.nftables) {
    if (item.rule === undefined || !chains.includes(item.rule.chain)) continue
    for (const expr of item.rule.expr) sum += expr.counter?.packets ?? 0
  }
  return sum
}

/** Names from `ip netns list` (lines like `name (id: 3)`). */
export function listNetns(): string[] {
  return run('ip', ['netns', 'list']).split('\n').map((line) => line.split(' ')[0] ?? '').filter(Boolean)
}

function routerRuleset(addresses: readonly string[]): string {
  return `table ip meshd_underlay {
  set hosts {
    type ipv4_addr
    elements = { ${addresses.join(', ')} }
  }
  # Pairs (source . destination) that cut() severed, checked before conntrack and again on the way out.
  set cut {
    type ipv4_addr . ipv4_addr
  }
  # Relay upstream socket port -> the client it speaks for (source NAT, so the far side sees the real sender).
  map upstream {
    type inet_service : ipv4_addr . inet_service
  }
  chain cut_in {
    type filter hook prerouting priority raw; policy accept;
    ip saddr . ip daddr @cut counter drop
  }
  chain cut_out {
    type filter hook postrouting priority 200; policy accept;
    ip saddr . ip daddr @cut counter drop
  }
  chain redirect_udp {
    type nat hook prerouting priority dstnat; policy accept;
    ip saddr @hosts ip daddr @hosts meta l4proto udp redirect to :${RELAY_PORTS.first}-${RELAY_PORTS.last}
  }
  chain upstream_snat {
    type nat hook postrouting priority srcnat; policy accept;
    meta l4proto udp snat ip to udp sport map @upstream
  }
}
`
}

function natRuleset(mode: NatMode): string {
  const masquerade = mode === 'address-and-port-dependent' ? 'masquerade fully-random' : 'masquerade'
  return `table ip meshd_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" ${masquerade}
  }
  # Only answers to what the inside sent (exact remote address and port) come in.
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state new counter drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "wan" ct state new counter drop
  }
}
`
}
