// src/kernel/netlink.ts on the real kernel, inside a throw-away namespace,
// through dist/kernel/netlink-driver.js (a netlink socket belongs to the
// namespace of its process). `ip -j` is the independent oracle; the driver's
// own dumps must decode the same objects.

import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { attr, frameMessage, parseMessages, u8, type NlMessage } from '../../src/kernel/encode/nlattr.js'
import type { ObservedAddress, ObservedLink, ObservedRoute, ObservedRule } from '../../src/kernel/types.js'
import { Netns, type IpLink } from '../support/netns.js'
import { pollUntil } from '../support/poll.js'

const repo = join(import.meta.dirname, '..', '..')
const node = join(repo, 'node_modules', '.bin', 'node')
const driverJs = join(repo, 'dist', 'kernel', 'netlink-driver.js')

interface DriverError {
  operation: string
  errno: string
  message: string
}
type Outcome = { result: unknown } | { error: DriverError }
type Command = Record<string, unknown> & { op: string }

/** Runs commands through the driver inside `ns`; one outcome per command. */
function drive(ns: Netns, commands: Command[]): Outcome[] {
  const child = spawnSync('ip', ['netns', 'exec', ns.name, node, driverJs], { input: JSON.stringify(commands), encoding: 'utf8' })
  if (child.status !== 0 && child.status !== 1) throw new Error(`driver exited ${child.status}: ${child.stderr}`)
  return child.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Outcome)
}

/** The result of one command that must succeed; the caller names the shape it expects. */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
function ok<T = unknown>(ns: Netns, command: Command): T {
  const [outcome] = drive(ns, [command])
  if (!outcome || 'error' in outcome) throw new Error(`${command.op} failed: ${JSON.stringify(outcome)}`)
  return outcome.result as T
}

/** The error of one command that must fail. */
function fails(ns: Netns, command: Command): DriverError {
  const [outcome] = drive(ns, [command])
  if (!outcome || !('error' in outcome)) throw new Error(`${command.op} unexpectedly succeeded`)
  return outcome.error
}

/** The netlink messages a command sends inside `ns`, read from strace's hex dump of every sendmsg(). */
function sentMessages(ns: Netns, argv: string[], input?: string): NlMessage[] {
  const dir = mkdtempSync(join(tmpdir(), 'mt-strace-'))
  const trace = join(dir, 'trace')
  try {
    spawnSync('ip', ['netns', 'exec', ns.name, 'strace', '-f', '-qq', '-o', trace, '-e', 'trace=sendmsg', '-e', 'write=all', '-s', '0', ...argv], {
      input,
      encoding: 'utf8',
    })
    // Each sendmsg line is followed by " | 00000  34 00 …  ascii |" lines for its bytes.
    const datagrams: string[][] = []
    for (const line of readFileSync(trace, 'utf8').split('\n')) {
      if (/^(\d+ +)?sendmsg\(/.test(line)) datagrams.push([])
      const dump = /^ \| [0-9a-f]{5} {2}(.{49})/.exec(line)
      if (dump?.[1] !== undefined) datagrams.at(-1)?.push(dump[1].replaceAll(' ', ''))
    }
    return datagrams.flatMap((parts) => parseMessages(Buffer.from(parts.join(''), 'hex')))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A message as hex with the sequence number zeroed (ip takes it from the clock, meshd counts). */
function withoutSeq(message: NlMessage | undefined): string {
  return message ? frameMessage({ ...message, seq: 0 }).toString('hex') : 'missing'
}

interface IpAddrInfo {
  family: string
  local: string
  address?: string
  prefixlen: number
}
interface IpRoute {
  dst: string
  gateway?: string
  dev?: string
  protocol?: string
  metric?: number
  flags?: string[]
  nexthops?: { gateway: string; dev: string; weight: number; flags: string[] }[]
}
interface IpRule {
  priority: number
  src?: string
  srclen?: number
  dst?: string
  dstlen?: number
  iif?: string
  oif?: string
  fwmark?: string
  fwmask?: string
  table: string
  suppress_prefixlen?: number
  protocol?: string
}

/** ip prints the protocol by number or, once rt_protos.d names it, as "meshd". */
const MESHD_PROTO = ['73', 'meshd']

describe('netlink port in a namespace', () => {
  const ns = new Netns('mt-nl')

  beforeAll(() => {
    if (!existsSync(driverJs)) throw new Error(`${driverJs} is missing: run npm run build first`)
    // Underlay and point-to-point stand-ins: veth pairs, up.
    ns.ip('link', 'add', 'md-a', 'type', 'veth', 'peer', 'name', 'md-b')
    ns.ip('link', 'add', 'md-u0', 'type', 'veth', 'peer', 'name', 'md-u1')
    for (const link of ['md-a', 'md-b', 'md-u0', 'md-u1']) ns.ip('link', 'set', link, 'up')
  })
  afterAll(() => {
    ns.delete()
  })

  describe('links', () => {
    it('adds a bridge and a vxlan enslaved to it, as ip -d link shows them', () => {
      ok(ns, { op: 'linkAdd', link: { kind: 'bridge', name: 'md-br0', up: true, mtu: 1400 } })
      ok(ns, {
        op: 'linkAdd',
        link: { kind: 'vxlan', name: 'md-vx0', up: true, mtu: 1400, master: 'md-br0', vni: 42, port: 4789, local: '10.0.0.1', dev: 'md-u0', learning: false },
      })
      const [bridge] = ns.ipJson<IpLink[]>('-d', 'link', 'show', 'md-br0')
      expect(bridge?.linkinfo?.info_kind).toBe('bridge')
      expect(bridge?.flags).toContain('UP')
      const [vxlan] = ns.ipJson<(IpLink & { mtu: number })[]>('-d', 'link', 'show', 'md-vx0')
      expect(vxlan?.linkinfo?.info_kind).toBe('vxlan')
      expect(vxlan?.master).toBe('md-br0')
      expect(vxlan?.mtu).toBe(1400)
      expect(vxlan?.flags).toContain('UP')
      expect(vxlan?.linkinfo?.info_data).toMatchObject({ id: 42, port: 4789, local: '10.0.0.1', link: 'md-u0', learning: false })
    })

    it('dumps links with kind, master, mtu, up and the vxlan parameters', () => {
      const links = ok<ObservedLink[]>(ns, { op: 'linkList' })
      const byName = new Map(links.map((l) => [l.name, l]))
      expect(byName.get('md-vx0')).toMatchObject({
        kind: 'vxlan',
        master: 'md-br0',
        mtu: 1400,
        up: true,
        info: { vni: 42, port: 4789, local: '10.0.0.1', dev: 'md-u0', learning: false },
      })
      expect(byName.get('md-br0')).toMatchObject({ kind: 'bridge', mtu: 1400, up: true })
      expect(byName.get('md-a')).toMatchObject({ kind: 'veth', up: true })
      expect(byName.get('lo')?.kind).toBeUndefined()
      const ipIndexes = ns.ipJson<IpLink[]>('link', 'show').map((l) => [l.ifname, l.ifindex])
      expect(links.map((l) => [l.name, l.index])).toEqual(ipIndexes)
    })

    it('reads every link\'s byte counters in one dump, as ip -s link reports them', () => {
      ns.ip('link', 'set', 'lo', 'up')
      spawnSync('ip', ['netns', 'exec', ns.name, 'ping', '-n', '-q', '-c', '3', '-i', '0.2', '127.0.0.1'], { stdio: 'ignore' })
      const counters = ok<{ name: string; rxBytes: number; txBytes: number }[]>(ns, { op: 'linkCounters' })
      const lo = counters.find((c) => c.name === 'lo')
      const [fromIp] = ns.ipJson<{ stats64: { rx: { bytes: number }; tx: { bytes: number } } }[]>('-s', 'link', 'show', 'lo')
      // Three echo requests and replies of 84 bytes each, both ways on lo; nothing else moves in this namespace.
      expect(lo?.rxBytes).toBeGreaterThanOrEqual(6 * 84)
      expect(lo).toEqual({ name: 'lo', rxBytes: fromIp?.stats64.rx.bytes, txBytes: fromIp?.stats64.tx.bytes })
      expect(counters.map((c) => c.name).sort()).toEqual(ns.ipJson<IpLink[]>('link', 'show').map((l) => l.ifname).sort())
    })

    it('reads the same counters from /proc/net/dev, the link monitor\'s source, without falling back to the dump', () => {
      ns.ip('link', 'set', 'lo', 'up')
      spawnSync('ip', ['netns', 'exec', ns.name, 'ping', '-n', '-q', '-c', '2', '-i', '0.2', '127.0.0.1'], { stdio: 'ignore' })
      const { source, counters } = ok<{ source: string; counters: { name: string; rxBytes: number; txBytes: number }[] }>(ns, { op: 'procLinkCounters' })
      const [fromIp] = ns.ipJson<{ stats64: { rx: { bytes: number }; tx: { bytes: number } } }[]>('-s', 'link', 'show', 'lo')
      expect(source).toBe('proc')
      expect(counters.find((c) => c.name === 'lo')).toEqual({ name: 'lo', rxBytes: fromIp?.stats64.rx.bytes, txBytes: fromIp?.stats64.tx.bytes })
      // This namespace's links, not the host's: /proc/self/net follows the reading process's namespace.
      expect(counters.map((c) => c.name).sort()).toEqual(ns.ipJson<IpLink[]>('link', 'show').map((l) => l.ifname).sort())
    })

    it('sets mtu, down and nomaster', () => {
      ok(ns, { op: 'linkSet', name: 'md-vx0', change: { mtu: 1300, up: false, master: null } })
      const [vxlan] = ns.ipJson<(IpLink & { mtu: number })[]>('link', 'show', 'md-vx0')
      expect(vxlan?.mtu).toBe(1300)
      expect(vxlan?.flags).not.toContain('UP')
      expect(vxlan?.master).toBeUndefined()
      ok(ns, { op: 'linkSet', name: 'md-vx0', change: { up: true, master: 'md-br0' } })
      const [again] = ns.ipJson<IpLink[]>('link', 'show', 'md-vx0')
      expect(again?.master).toBe('md-br0')
      expect(again?.flags).toContain('UP')
    })

    it('returns typed errors: EEXIST for a duplicate, ENODEV for a missing link', () => {
      expect(fails(ns, { op: 'linkAdd', link: { kind: 'bridge', name: 'md-br0', up: false } })).toMatchObject({
        errno: 'EEXIST',
        operation: 'linkAdd md-br0 type bridge',
      })
      expect(fails(ns, { op: 'linkSet', name: 'md-missing', change: { up: true } })).toMatchObject({ errno: 'ENODEV', operation: 'linkSet md-missing' })
      expect(fails(ns, { op: 'linkDel', name: 'md-missing' }).errno).toBe('ENODEV')
      expect(fails(ns, { op: 'linkAdd', link: { kind: 'vxlan', name: 'md-vx9', up: false, vni: 9, port: 4789, dev: 'md-missing', learning: false } }).errno).toBe('ENODEV')
    })

    it('deletes links', () => {
      ok(ns, { op: 'linkDel', name: 'md-vx0' })
      ok(ns, { op: 'linkDel', name: 'md-br0' })
      const names = ns.ipJson<IpLink[]>('link', 'show').map((l) => l.ifname)
      expect(names).not.toContain('md-vx0')
      expect(names).not.toContain('md-br0')
    })
  })

  describe('addresses', () => {
    const p2p = { link: 'md-a', local: '169.254.1.1/32', peer: '169.254.1.2/32' }
    const v6 = { link: 'md-a', local: 'fd00::1/128' }
    const p2p6 = { link: 'md-a', local: 'fe80::1/128', peer: 'fe80::2/128' }

    it('adds point-to-point and IPv6 addresses, as ip -j addr shows them', () => {
      for (const address of [p2p, v6, p2p6]) ok(ns, { op: 'addrAdd', address })
      const info = ns.ipJson<{ addr_info: IpAddrInfo[] }[]>('addr', 'show', 'dev', 'md-a')[0]?.addr_info ?? []
      expect(info).toContainEqual(expect.objectContaining({ family: 'inet', local: '169.254.1.1', address: '169.254.1.2', prefixlen: 32 }))
      expect(info).toContainEqual(expect.objectContaining({ family: 'inet6', local: 'fd00::1', prefixlen: 128 }))
      expect(info).toContainEqual(expect.objectContaining({ family: 'inet6', local: 'fe80::1', address: 'fe80::2', prefixlen: 128 }))
    })

    it('dumps them with peer and protocol (IFA_PROTO)', () => {
      const addresses = ok<ObservedAddress[]>(ns, { op: 'addrList' })
      expect(addresses).toContainEqual({ family: 4, ...p2p, protocol: 73 })
      expect(addresses).toContainEqual({ family: 6, ...v6, protocol: 73 })
      expect(addresses).toContainEqual({ family: 6, ...p2p6, protocol: 73 })
      // Addresses meshd did not add keep the kernel's protocol, or none.
      expect(addresses.find((a) => a.link === 'lo' && a.family === 4)).toEqual({ family: 4, link: 'lo', local: '127.0.0.1/8' })
    })

    it('refuses a duplicate with EEXIST and deletes', () => {
      expect(fails(ns, { op: 'addrAdd', address: p2p }).errno).toBe('EEXIST')
      ok(ns, { op: 'addrDel', address: p2p6 })
      const info = ns.ipJson<{ addr_info: IpAddrInfo[] }[]>('addr', 'show', 'dev', 'md-a')[0]?.addr_info ?? []
      expect(info.map((a) => a.local)).not.toContain('fe80::1')
      expect(fails(ns, { op: 'addrDel', address: p2p6 }).errno).toBe('EADDRNOTAVAIL')
    })
  })

  describe('routes in table 7300', () => {
    const single = { table: 7300, dst: '10.1.0.0/24', metric: 10, nexthop: { via: '169.254.1.2', dev: 'md-a', onlink: true } }
    const multipath = {
      table: 7300,
      dst: '10.2.0.0/24',
      multipath: [
        { via: '169.254.1.2', dev: 'md-a', weight: 1, onlink: true },
        { via: '169.254.1.3', dev: 'md-b', weight: 3, onlink: true },
      ],
    }
    const single6 = { table: 7300, dst: 'fd00:1::/64', nexthop: { via: 'fe80::2', dev: 'md-a' } }
    const multipath6 = {
      table: 7300,
      dst: 'fd00:2::/64',
      multipath: [
        { via: 'fe80::2', dev: 'md-a', weight: 1 },
        { via: 'fe80::3', dev: 'md-b', weight: 2 },
      ],
    }

    it('replaces routes with proto 73, as ip -j route shows them', () => {
      for (const route of [single, multipath, single6, multipath6]) ok(ns, { op: 'routeReplace', route })
      const v4 = ns.ipJson<IpRoute[]>('route', 'show', 'table', '7300')
      const one = v4.find((r) => r.dst === '10.1.0.0/24')
      expect(one).toMatchObject({ gateway: '169.254.1.2', dev: 'md-a', metric: 10 })
      expect(one?.flags).toContain('onlink')
      expect(MESHD_PROTO).toContain(one?.protocol)
      const multi = v4.find((r) => r.dst === '10.2.0.0/24')
      expect(MESHD_PROTO).toContain(multi?.protocol)
      expect(multi?.nexthops).toEqual([
        { gateway: '169.254.1.2', dev: 'md-a', weight: 1, flags: ['onlink'] },
        { gateway: '169.254.1.3', dev: 'md-b', weight: 3, flags: ['onlink'] },
      ])
      const v6 = ns.ipJson<IpRoute[]>('-6', 'route', 'show', 'table', '7300')
      expect(v6.find((r) => r.dst === 'fd00:1::/64')).toMatchObject({ gateway: 'fe80::2', dev: 'md-a' })
      expect(v6.find((r) => r.dst === 'fd00:2::/64')?.nexthops?.map((h) => [h.gateway, h.dev, h.weight])).toEqual([
        ['fe80::2', 'md-a', 1],
        ['fe80::3', 'md-b', 2],
      ])
    })

    it('dumps them decoded, in both families, with table, protocol and next hops', () => {
      const routes = ok<ObservedRoute[]>(ns, { op: 'routeList' }).filter((r) => r.table === 7300)
      expect(routes).toEqual([
        { family: 4, protocol: 73, type: 'unicast', scope: 'global', ...single },
        { family: 4, protocol: 73, type: 'unicast', scope: 'global', ...multipath },
        // IPv6 routes get the kernel's default metric.
        { family: 6, protocol: 73, type: 'unicast', scope: 'global', metric: 1024, ...single6 },
        { family: 6, protocol: 73, type: 'unicast', scope: 'global', metric: 1024, ...multipath6 },
      ])
      const all = ok<ObservedRoute[]>(ns, { op: 'routeList' })
      expect(all.some((r) => r.table === 255 && r.otherType === 'local')).toBe(true)
    })

    it('replaces in place instead of adding a second route', () => {
      ok(ns, { op: 'routeReplace', route: { ...single, nexthop: { via: '169.254.1.9', dev: 'md-b', onlink: true } } })
      const matching = ns.ipJson<IpRoute[]>('route', 'show', 'table', '7300').filter((r) => r.dst === '10.1.0.0/24')
      expect(matching).toHaveLength(1)
      expect(matching[0]).toMatchObject({ gateway: '169.254.1.9', dev: 'md-b' })
    })

    it('deletes by identity and reports ESRCH for a missing route, ENODEV for a missing device', () => {
      ok(ns, { op: 'routeDel', route: { table: 7300, dst: '10.1.0.0/24', metric: 10 } })
      ok(ns, { op: 'routeDel', route: { table: 7300, dst: 'fd00:2::/64' } })
      expect(ns.ipJson<IpRoute[]>('route', 'show', 'table', '7300').map((r) => r.dst)).toEqual(['10.2.0.0/24'])
      expect(ns.ipJson<IpRoute[]>('-6', 'route', 'show', 'table', '7300').map((r) => r.dst)).toEqual(['fd00:1::/64'])
      expect(fails(ns, { op: 'routeDel', route: { table: 7300, dst: '10.1.0.0/24', metric: 10 } }).errno).toBe('ESRCH')
      expect(fails(ns, { op: 'routeReplace', route: { table: 7300, dst: '10.3.0.0/24', nexthop: { dev: 'md-missing' } } }).errno).toBe('ENODEV')
    })

    it('dumps a table large enough to span many datagrams', () => {
      const batch = Array.from({ length: 1500 }, (_, i) => `route add 10.${100 + (i >> 8)}.${i & 255}.0/24 dev md-a table 7301 proto 73`).join('\n')
      ns.exec('ip', ['-batch', '-'], `${batch}\n`)
      const routes = ok<ObservedRoute[]>(ns, { op: 'routeList' }).filter((r) => r.table === 7301)
      expect(routes).toHaveLength(1500)
      expect(routes[0]).toMatchObject({ family: 4, protocol: 73, scope: 'link', nexthop: { dev: 'md-a' } })
    })
  })

  describe('rules', () => {
    const full = {
      family: 4,
      priority: 7300,
      from: '10.0.0.0/8',
      to: '10.1.0.0/16',
      iif: 'md-a',
      oif: 'md-b',
      fwmark: { value: 1, mask: 0xff },
      table: 7300,
      suppressPrefixLength: 0,
    }
    const v6 = { family: 6, priority: 7305, to: 'fd00::/8', table: 7300 }

    it('adds rules with protocol 73, as ip -j rule shows them', () => {
      ok(ns, { op: 'ruleAdd', rule: full })
      ok(ns, { op: 'ruleAdd', rule: v6 })
      const rule = ns.ipJson<IpRule[]>('-N', 'rule', 'show').find((r) => r.priority === 7300)
      expect(rule).toMatchObject({ src: '10.0.0.0', srclen: 8, dst: '10.1.0.0', dstlen: 16, iif: 'md-a', oif: 'md-b', fwmark: '0x1', fwmask: '0xff', table: '7300', suppress_prefixlen: 0 })
      expect(MESHD_PROTO).toContain(rule?.protocol)
      const rule6 = ns.ipJson<IpRule[]>('-N', '-6', 'rule', 'show').find((r) => r.priority === 7305)
      expect(rule6).toMatchObject({ dst: 'fd00::', dstlen: 8, table: '7300' })
    })

    it('dumps rules of both families decoded', () => {
      const rules = ok<ObservedRule[]>(ns, { op: 'ruleList' })
      expect(rules).toContainEqual({ ...full, protocol: 73 })
      expect(rules).toContainEqual({ ...v6, protocol: 73 })
      expect(rules).toContainEqual({ family: 4, priority: 32766, table: 254, protocol: 2 })
    })

    it('refuses a duplicate with EEXIST, deletes, and reports ENOENT for a missing rule', () => {
      expect(fails(ns, { op: 'ruleAdd', rule: full }).errno).toBe('EEXIST')
      ok(ns, { op: 'ruleDel', rule: full })
      ok(ns, { op: 'ruleDel', rule: v6 })
      expect(ns.ipJson<IpRule[]>('rule', 'show').map((r) => r.priority)).toEqual([0, 32766, 32767])
      expect(fails(ns, { op: 'ruleDel', rule: full }).errno).toBe('ENOENT')
    })
  })

  describe('watch', () => {
    it('reports rule, route, address and link changes made by someone else', async () => {
      const child = spawn('ip', ['netns', 'exec', ns.name, node, driverJs], { stdio: ['pipe', 'pipe', 'inherit'] })
      child.stdin.end(JSON.stringify({ op: 'watch', count: 1000, timeoutMs: 30_000 }))
      const lines: Record<string, unknown>[] = []
      createInterface({ input: child.stdout }).on('line', (line) => lines.push(JSON.parse(line) as Record<string, unknown>))
      const seen = (what: string): true | undefined => (lines.some((l) => l.changed === what) ? true : undefined)
      try {
        await pollUntil(() => (lines.some((l) => l.ready === true) ? true : undefined), { deadlineMs: 10_000, what: 'the watcher to subscribe' })
        // One change at a time, each awaited, so unrelated notifications cannot confuse the check.
        ns.ip('rule', 'add', 'priority', '7390', 'table', '7302')
        await pollUntil(() => seen('rule'), { deadlineMs: 5000, what: 'a rule notification' })
        ns.ip('route', 'add', '10.77.0.0/24', 'dev', 'md-b', 'table', '7302')
        await pollUntil(() => seen('route'), { deadlineMs: 5000, what: 'a route notification' })
        ns.ip('addr', 'add', '10.77.1.1/32', 'dev', 'md-u1')
        await pollUntil(() => seen('address'), { deadlineMs: 5000, what: 'an address notification' })
        ns.ip('link', 'set', 'md-u1', 'mtu', '1280')
        await pollUntil(() => seen('link'), { deadlineMs: 5000, what: 'a link notification' })
      } finally {
        child.kill()
      }
    })
  })

  describe('what the process sends, compared with ip on this machine (both traced with strace)', () => {
    const driverArgv = [node, driverJs]
    const newMessage = (messages: NlMessage[], type: number): NlMessage | undefined => messages.find((m) => m.type === type)

    interface Case {
      what: string
      ip: string[]
      command: Command
      /** The message type to compare. */
      type: number
      before?: () => void
      /** Undoes what ip did, so the driver's request meets the same kernel state. */
      undo: () => void
      after?: () => void
    }
    const cases: Case[] = [
      {
        what: 'a multipath route in table 7300',
        ip: ['ip', 'route', 'replace', '10.20.0.0/24', 'metric', '10', 'table', '7300', 'proto', '73', 'nexthop', 'via', '169.254.9.2', 'dev', 'md-a', 'weight', '1', 'onlink', 'nexthop', 'via', '169.254.9.3', 'dev', 'md-b', 'weight', '3', 'onlink'],
        command: {
          op: 'routeReplace',
          route: { table: 7300, dst: '10.20.0.0/24', metric: 10, multipath: [{ via: '169.254.9.2', dev: 'md-a', weight: 1, onlink: true }, { via: '169.254.9.3', dev: 'md-b', weight: 3, onlink: true }] },
        },
        type: 24,
        undo: () => ns.ip('route', 'del', '10.20.0.0/24', 'table', '7300', 'metric', '10'),
      },
      {
        what: 'a rule with every selector',
        ip: ['ip', 'rule', 'add', 'priority', '7320', 'from', '10.0.0.0/8', 'to', '10.1.0.0/16', 'iif', 'md-a', 'oif', 'md-b', 'fwmark', '0x1/0xff', 'lookup', '7300', 'suppress_prefixlength', '0', 'protocol', '73'],
        command: { op: 'ruleAdd', rule: { family: 4, priority: 7320, from: '10.0.0.0/8', to: '10.1.0.0/16', iif: 'md-a', oif: 'md-b', fwmark: { value: 1, mask: 0xff }, table: 7300, suppressPrefixLength: 0 } },
        type: 32,
        undo: () => ns.ip('rule', 'del', 'priority', '7320'),
      },
      {
        what: 'a vxlan with mtu, up, master, local and dev',
        ip: ['ip', 'link', 'add', 'md-vx5', 'mtu', '1400', 'up', 'master', 'md-br5', 'type', 'vxlan', 'id', '5', 'dstport', '4789', 'local', '10.0.0.1', 'dev', 'md-u0', 'nolearning'],
        command: { op: 'linkAdd', link: { kind: 'vxlan', name: 'md-vx5', mtu: 1400, up: true, master: 'md-br5', vni: 5, port: 4789, local: '10.0.0.1', dev: 'md-u0', learning: false } },
        type: 16,
        before: () => ns.ip('link', 'add', 'md-br5', 'type', 'bridge'),
        undo: () => ns.ip('link', 'del', 'md-vx5'),
        after: () => ns.ip('link', 'del', 'md-br5'),
      },
    ]

    it.each(cases)('$what', ({ ip, command, type, before, undo, after }) => {
      before?.()
      const theirs = newMessage(sentMessages(ns, ip), type)
      undo()
      const ours = newMessage(sentMessages(ns, driverArgv, JSON.stringify(command)), type)
      after?.()
      expect(theirs, 'ip sent the message').toBeDefined()
      expect(withoutSeq(ours)).toBe(withoutSeq(theirs))
    })

    it('an address: the same bytes plus IFA_PROTO', () => {
      const theirs = newMessage(sentMessages(ns, ['ip', 'addr', 'add', '169.254.9.1/32', 'peer', '169.254.9.2/32', 'dev', 'md-b']), 20)
      ns.ip('addr', 'del', '169.254.9.1/32', 'peer', '169.254.9.2/32', 'dev', 'md-b')
      const ours = newMessage(sentMessages(ns, driverArgv, JSON.stringify({ op: 'addrAdd', address: { link: 'md-b', local: '169.254.9.1/32', peer: '169.254.9.2/32' } })), 20)
      expect(theirs, 'ip sent the message').toBeDefined()
      expect(ours?.flags).toBe(theirs?.flags)
      expect(ours?.payload.toString('hex')).toBe(`${theirs?.payload.toString('hex') ?? ''}${attr(11, u8(73)).toString('hex')}`)
    })
  })

  describe('WireGuard generic netlink', () => {
    it('reports availability the way the kernel does (false on a host without the module)', () => {
      const probe = spawnSync('ip', ['-n', ns.name, 'link', 'add', 'md-wgprobe', 'type', 'wireguard'], { stdio: 'ignore' })
      const kernelHasWireguard = probe.status === 0
      if (kernelHasWireguard) ns.ip('link', 'del', 'md-wgprobe')
      expect(ok(ns, { op: 'wgAvailable' })).toBe(kernelHasWireguard)
      if (!kernelHasWireguard) expect(fails(ns, { op: 'wgDeviceGet', name: 'md-w0' }).errno).toBe('EOPNOTSUPP')
    })
  })
})
