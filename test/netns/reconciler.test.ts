import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Netns } from '../support/netns.js'
import { pollUntil } from '../support/poll.js'

// The reconciler against the real kernel, inside throw-away namespaces, with
// `ip -j` and `wg` as the independent oracle. wireguard-go stands in for kernel
// WireGuard, which this host lacks (the kernel tier covers that).

const DRIVER = 'dist/kernel/reconcile-driver.js'
const NODE = process.execPath

interface DriverResult {
  planned: number
  applied: number
  operations: string[]
  failures: { operation: string; errno?: string }[]
  error?: string
}

function wgKeypair(): { privateKey: string; publicKey: string } {
  const privateKey = spawnSync('wg', ['genkey'], { encoding: 'utf8' }).stdout.trim()
  const publicKey = spawnSync('wg', ['pubkey'], { input: privateKey, encoding: 'utf8' }).stdout.trim()
  return { privateKey, publicKey }
}

function apply(ns: Netns, desired: unknown): DriverResult {
  const result = spawnSync('ip', ['netns', 'exec', ns.name, NODE, DRIVER, 'apply'], { input: JSON.stringify(desired), encoding: 'utf8' })
  const line = result.stdout.trim().split('\n').at(-1) ?? ''
  if (!line.startsWith('{')) throw new Error(`driver printed nothing (exit ${result.status}): ${result.stderr}`)
  return JSON.parse(line) as DriverResult
}

/** Everything in the namespace, as `ip -j` reports it, minus counters that move by themselves. */
function snapshot(ns: Netns): string {
  const strip = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (k, v: unknown) => (['stats64', 'stats', 'ifindex', 'link_index', 'valid_life_time', 'preferred_life_time', 'operstate', 'flags', 'linkmode', 'txqlen'].includes(k) ? undefined : v)))
  return JSON.stringify({
    links: strip(ns.ipJson('link', 'show')),
    addrs: strip(ns.ipJson('addr', 'show')),
    // -N: numbers, not names, so registering "meshd" with iproute2 does not change the picture.
    routes4: ns.ipJson('-N', 'route', 'show', 'table', 'all'),
    routes6: ns.ipJson('-N', '-6', 'route', 'show', 'table', 'all'),
    rules4: ns.ipJson('-N', 'rule', 'show'),
    rules6: ns.ipJson('-N', '-6', 'rule', 'show'),
  })
}

describe('reconciler in a namespace', () => {
  const ns = new Netns('mt-rec')
  const tag = randomBytes(2).toString('hex')
  // Names must be unique across namespaces: wireguard-go sockets live in one shared directory.
  const wgA = `md-wa${tag}`
  const wgB = `md-wb${tag}`
  const self = wgKeypair()
  const peerB = wgKeypair()
  const peerC = wgKeypair()
  let userSnapshot = ''

  function desired(): Record<string, unknown> {
    return {
      links: [
        { kind: 'wireguard', name: wgA, mtu: 1420 },
        // Not wireguard-go's own 1420: set after the process has attached (it resets the MTU).
        { kind: 'wireguard', name: wgB, mtu: 1440 },
        { kind: 'bridge', name: 'md-br' },
        { kind: 'vxlan', name: 'md-vx', vni: 73, port: 4789, local: '192.0.2.1', dev: 'eth0', master: 'md-br' },
      ],
      addresses: [
        { link: 'lo', local: '10.73.0.1/32' },
        { link: wgA, local: '169.254.1.1/32', peer: '169.254.1.2/32' },
        { link: wgA, local: 'fe80::1:1/128', peer: 'fe80::1:2/128' },
        { link: wgB, local: '169.254.2.1/32', peer: '169.254.2.2/32' },
      ],
      routes: [
        { table: 7300, dst: '10.73.0.2/32', nexthop: { via: '169.254.1.2', dev: wgA, onlink: true } },
        { table: 7300, dst: '10.73.0.3/32', nexthop: { via: '169.254.2.2', dev: wgB, onlink: true } },
        { table: 7300, dst: '10.73.9.0/24', multipath: [{ via: '169.254.1.2', dev: wgA, onlink: true }, { via: '169.254.2.2', dev: wgB, onlink: true }] },
        { table: 7300, dst: 'fd73::2/128', nexthop: { dev: wgA } },
      ],
      rules: [
        { family: 4, priority: 7300, to: '10.73.0.0/16', table: 7300 },
        { family: 6, priority: 7300, to: 'fd73::/48', table: 7300 },
        { family: 4, priority: 7305, iif: wgA, table: 7301 },
      ],
      wireguard: [
        { name: wgA, privateKey: self.privateKey, listenPort: 51000, peers: [{ publicKey: peerB.publicKey, allowedIps: ['0.0.0.0/0', '::/0'], endpoint: { address: '192.0.2.2', port: 51001 }, persistentKeepaliveSeconds: 25 }] },
        { name: wgB, privateKey: self.privateKey, listenPort: 51002, peers: [{ publicKey: peerC.publicKey, allowedIps: ['0.0.0.0/0', '::/0'] }] },
      ],
      sysctls: [
        { key: 'net.ipv4.ip_forward', value: '1' },
        { key: `net.ipv4.conf.${wgA}.rp_filter`, value: '2' },
      ],
    }
  }

  beforeAll(() => {
    // The user's own objects, which must survive everything meshd does.
    ns.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1')
    ns.ip('link', 'set', 'eth0', 'up')
    ns.ip('addr', 'add', '192.0.2.1/24', 'dev', 'eth0')
    ns.ip('route', 'add', '198.51.100.0/24', 'via', '192.0.2.254', 'dev', 'eth0')
    ns.ip('route', 'add', '203.0.113.0/24', 'via', '192.0.2.254', 'dev', 'eth0', 'table', '7300')
    ns.ip('rule', 'add', 'priority', '7310', 'from', '192.0.2.0/24', 'lookup', '100')
    ns.ip('addr', 'add', '10.99.0.1/32', 'dev', 'lo')
    userSnapshot = snapshot(ns)
  })
  afterAll(() => {
    apply(ns, {})
    ns.delete()
  })

  it('creates every object kind, as ip -j and wg report them', () => {
    const result = apply(ns, desired())
    expect(result.error).toBeUndefined()
    expect(result.failures).toEqual([])

    const links = ns.ipJson<{ ifname: string; mtu: number; master?: string; linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> } }[]>('-d', 'link', 'show')
    const byName = new Map(links.map((l) => [l.ifname, l]))
    expect(byName.get(wgA)?.linkinfo?.info_kind).toBe('tun')
    // A persistent tun made before wireguard-go started, which attached to it (packet information on, as it opens tuns).
    expect(byName.get(wgA)?.linkinfo?.info_data).toMatchObject({ type: 'tun', persist: true, pi: true })
    expect(byName.get(wgA)?.mtu).toBe(1420)
    expect(byName.get(wgB)?.mtu).toBe(1440)
    expect(byName.get('md-br')?.linkinfo?.info_kind).toBe('bridge')
    expect(byName.get('md-vx')?.linkinfo?.info_data).toMatchObject({ id: 73, port: 4789, local: '192.0.2.1', learning: false })
    expect(byName.get('md-vx')?.master).toBe('md-br')

    const addrs = ns.ipJson<{ ifname: string; addr_info: { local: string; address?: string; prefixlen: number; protocol?: string }[] }[]>('addr', 'show', 'dev', wgA)
    // The kernel adds its own fe80::/64 to every new link; meshd leaves it alone.
    expect(addrs[0]?.addr_info.filter((a) => a.prefixlen !== 64).map((a) => `${a.local} peer ${a.address ?? '-'}/${a.prefixlen}`).sort()).toEqual(['169.254.1.1 peer 169.254.1.2/32', 'fe80::1:1 peer fe80::1:2/128'])
    const lo = ns.ipJson<{ addr_info: { local: string; protocol?: string }[] }[]>('addr', 'show', 'dev', 'lo')
    // iproute2 6.1 does not print IFA_PROTO; the netlink tests check meshd's stamp on it.
    expect(lo[0]?.addr_info.map((a) => a.local)).toContain('10.73.0.1')

    const routes = ns.ipJson<{ dst: string; gateway?: string; dev?: string; protocol: string; flags: string[]; nexthops?: { gateway: string; dev: string }[] }[]>('route', 'show', 'table', '7300')
    const ours = routes.filter((r) => r.protocol === '73' || r.protocol === 'meshd')
    expect(ours.map((r) => r.dst).sort()).toEqual(['10.73.0.2', '10.73.0.3', '10.73.9.0/24'])
    expect(ours.find((r) => r.dst === '10.73.0.2')).toMatchObject({ gateway: '169.254.1.2', dev: wgA, flags: ['onlink'] })
    expect(ours.find((r) => r.dst === '10.73.9.0/24')?.nexthops?.map((n) => n.dev).sort()).toEqual([wgA, wgB].sort())
    // iproute2 prints meshd's registered protocol and table names.
    expect(ns.ip('route', 'show', 'table', 'meshd', '10.73.0.2')).toMatch(/proto meshd/)
    const routes6 = ns.ipJson<{ dst: string; dev?: string; protocol: string }[]>('-6', 'route', 'show', 'table', '7300')
    expect(routes6.find((r) => r.dst === 'fd73::2')).toMatchObject({ dev: wgA })

    const rules = ns.ipJson<{ priority: number; dst?: string; dstlen?: number; iif?: string; table: string; protocol?: string }[]>('-N', 'rule', 'show')
    expect(rules.filter((r) => r.priority >= 7300 && r.priority < 7310).map((r) => [r.priority, r.dst ? `${r.dst}/${r.dstlen ?? 32}` : r.iif, r.table])).toEqual([
      [7300, '10.73.0.0/16', '7300'],
      [7305, wgA, '7301'],
    ])

    const dump = ns.exec('wg', ['show', wgA, 'dump']).trim().split('\n')
    expect(dump[0]?.split('\t').slice(1, 3)).toEqual([self.publicKey, '51000'])
    expect(dump[1]?.split('\t')).toEqual(expect.arrayContaining([peerB.publicKey, '192.0.2.2:51001', '0.0.0.0/0,::/0', '25']))
    expect(ns.exec('cat', [`/proc/sys/net/ipv4/conf/${wgA}/rp_filter`]).trim()).toBe('2')
  })

  it('changes nothing on a second apply', async () => {
    // IPv6 duplicate address detection finishing in between would change the picture by itself.
    await pollUntil(() => (JSON.stringify(ns.ipJson('addr', 'show')).includes('"tentative"') ? undefined : true), { deadlineMs: 10_000, what: 'IPv6 DAD to finish' })
    const before = snapshot(ns)
    const result = apply(ns, desired())
    expect(result.operations).toEqual([])
    expect(snapshot(ns)).toBe(before)
  })

  it('applies a path change as one route replacement', () => {
    const next = desired()
    ;(next.routes as { dst: string; nexthop?: unknown }[])[0] = { table: 7300, dst: '10.73.0.2/32', nexthop: { via: '169.254.2.2', dev: wgB, onlink: true } } as never
    const result = apply(ns, next)
    expect(result.operations).toEqual(['routeReplace'])
    const route = ns.ipJson<{ dst: string; gateway: string; dev: string }[]>('route', 'show', 'table', '7300', '10.73.0.2')
    expect(route[0]).toMatchObject({ gateway: '169.254.2.2', dev: wgB })
  })

  it('restarts a killed wireguard-go (its persistent tun stays, without carrier) and configures it again', async () => {
    // Back from the path change.
    expect(apply(ns, desired()).operations).toEqual(['routeReplace'])
    const pid = Number(spawnSync('pgrep', ['-f', `^wireguard-go -f ${wgB}$`], { encoding: 'utf8' }).stdout.trim())
    expect(pid).toBeGreaterThan(0)
    process.kill(pid, 'SIGKILL')
    await pollUntil(() => (ns.ipJson<{ flags: string[] }[]>('link', 'show', wgB)[0]?.flags.includes('NO-CARRIER') ? true : undefined), { deadlineMs: 5_000, what: 'the tun to lose its carrier' })
    // Routes through it stay (flagged linkdown).
    expect(ns.ipJson<{ dst: string }[]>('route', 'show', 'table', '7300').map((r) => r.dst)).toContain('10.73.0.3')
    const result = apply(ns, desired())
    expect(result.failures).toEqual([])
    expect(result.operations).toEqual(['wgEnsure', 'wgSet', 'linkSet'])
    const restarted = Number(spawnSync('pgrep', ['-f', `^wireguard-go -f ${wgB}$`], { encoding: 'utf8' }).stdout.trim())
    expect(restarted).toBeGreaterThan(0)
    expect(restarted).not.toBe(pid)
    const dump = ns.exec('wg', ['show', wgB, 'dump']).trim().split('\n')
    expect(dump[0]?.split('\t').slice(1, 3)).toEqual([self.publicKey, '51002'])
    expect(dump[1]?.split('\t')[0]).toBe(peerC.publicKey)
    expect(ns.ipJson<{ mtu: number; flags: string[] }[]>('link', 'show', wgB)[0]).toMatchObject({ mtu: 1440, flags: expect.arrayContaining(['UP', 'LOWER_UP']) as unknown })
    expect(apply(ns, desired()).operations).toEqual([])
  })

  it('refuses an invalid state before any change', async () => {
    // IPv6 duplicate address detection finishing in between would change the picture by itself.
    await pollUntil(() => (JSON.stringify(ns.ipJson('addr', 'show')).includes('"tentative"') ? undefined : true), { deadlineMs: 10_000, what: 'IPv6 DAD to finish' })
    const before = snapshot(ns)
    const bad = desired()
    ;(bad.links as unknown[]).push({ kind: 'dummy', name: 'md-abcdefghijklmnop' })
    const result = apply(ns, bad)
    expect(result.error).toMatch(/InvalidDesiredState: .*interface name is 19 bytes/)
    expect(snapshot(ns)).toBe(before)
  })

  it('apply(empty) leaves exactly the objects that were there before', () => {
    const result = apply(ns, {})
    expect(result.failures).toEqual([])
    expect(snapshot(ns)).toBe(userSnapshot)
    // No process, no socket, no (persistent) tun left.
    for (const name of [wgA, wgB]) {
      expect(spawnSync('pgrep', ['-f', `wireguard-go -f ${name}`]).status).not.toBe(0)
      expect(existsSync(`/var/run/wireguard/${name}.sock`)).toBe(false)
    }
    expect(ns.ipJson<{ ifname: string }[]>('link', 'show').map((l) => l.ifname).filter((n) => n.startsWith('md-'))).toEqual([])
  })

  it('repairs drift within a deadline when someone deletes its route', async () => {
    const driver: ChildProcessWithoutNullStreams = spawn('ip', ['netns', 'exec', ns.name, NODE, DRIVER, 'serve'])
    const events: DriverResult[] = []
    createInterface({ input: driver.stdout }).on('line', (line) => events.push(JSON.parse(line) as DriverResult))
    try {
      driver.stdin.write(JSON.stringify(desired()) + '\n')
      await pollUntil(() => (events.some((e) => (e as { event?: string }).event === 'applied') ? true : undefined), { deadlineMs: 30_000, what: 'first apply' })
      ns.ip('route', 'del', '10.73.0.3/32', 'table', '7300')
      await pollUntil(() => (ns.ipJson<{ dst: string }[]>('route', 'show', 'table', '7300').some((r) => r.dst === '10.73.0.3') ? true : undefined), {
        deadlineMs: 5_000,
        what: 'the deleted route to come back',
      })
      ns.ip('link', 'set', 'md-br', 'down')
      await pollUntil(() => (ns.ipJson<{ flags: string[] }[]>('link', 'show', 'md-br')[0]?.flags.includes('UP') ? true : undefined), { deadlineMs: 5_000, what: 'the bridge to come back up' })
    } finally {
      driver.stdin.end()
      await new Promise((resolve) => driver.on('close', resolve))
    }
  })

  it('repairs a WireGuard peer changed behind its back at a resync (the read-back cache does not see it before)', async () => {
    const driver: ChildProcessWithoutNullStreams = spawn('ip', ['netns', 'exec', ns.name, NODE, DRIVER, 'serve'])
    const events: (DriverResult & { event?: string })[] = []
    createInterface({ input: driver.stdout }).on('line', (line) => events.push(JSON.parse(line) as DriverResult & { event?: string }))
    const applied = async (send: string): Promise<DriverResult> => {
      const from = events.length
      driver.stdin.write(send + '\n')
      return pollUntil(() => events.slice(from).find((e) => e.event === 'applied'), { deadlineMs: 30_000, what: 'an applied event' })
    }
    const peers = (): string[] => ns.exec('wg', ['show', wgB, 'peers']).trim().split('\n').filter(Boolean)
    try {
      await applied(JSON.stringify(desired()))
      // A second pass learns the devices' links; from then on unchanged devices are not read back.
      expect((await applied(JSON.stringify(desired()))).operations).toEqual([])
      ns.exec('wg', ['set', wgB, 'peer', peerC.publicKey, 'remove'])
      expect(peers()).toEqual([])
      // Neither backend notifies a configuration change: an ordinary pass trusts what it applied.
      expect((await applied(JSON.stringify(desired()))).operations).toEqual([])
      const repaired = await applied('resync')
      expect(repaired.operations).toEqual(['wgSet'])
      expect(repaired.failures).toEqual([])
      expect(peers()).toEqual([peerC.publicKey])
    } finally {
      driver.stdin.end()
      await new Promise((resolve) => driver.on('close', resolve))
    }
  })
})
