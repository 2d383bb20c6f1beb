// An in-memory kernel for reconciler unit tests (after Tailscale's fake OS):
// it keeps links, addresses, routes, rules and WireGuard devices, refuses what a
// kernel refuses (EEXIST, ENODEV, ESRCH), and prints itself as canonical text.

import { KernelError, type LinkChange, type RtnetlinkPort } from '../../src/kernel/port.js'
import { addressKey, routeKey, ruleKey } from '../../src/kernel/plan.js'
import { effectiveRouteScope } from '../../src/kernel/route-defaults.js'
import { parseCidr } from '../../src/kernel/ip.js'
import { RTPROT_MESHD, type Address, type Link, type LinkCounters, type ObservedAddress, type ObservedLink, type ObservedRoute, type ObservedRule, type ObservedWireguardDevice, type Route, type Rule, type WireguardDevice } from '../../src/kernel/types.js'
import type { SysctlPort } from '../../src/kernel/sysctl.js'
import type { WireguardBackend } from '../../src/kernel/wireguard/backend.js'

export class FakeKernel implements RtnetlinkPort {
  links = new Map<string, ObservedLink>()
  addresses = new Map<string, ObservedAddress>()
  routes = new Map<string, ObservedRoute>()
  rules = new Map<string, ObservedRule>()
  devices = new Map<string, ObservedWireguardDevice>()
  sysctls = new Map<string, string>()
  calls: string[] = []
  /** Makes the named operation fail once with this errno, e.g. { routeReplace: 'ENETUNREACH' }. */
  failNext: Record<string, string> = {}
  #nextIndex = 10

  constructor() {
    this.addUserLink('lo', 'loopback')
  }

  /** A link the user made (not meshd's). */
  addUserLink(name: string, kind: string | undefined): void {
    this.links.set(name, { name, index: this.#nextIndex++, kind, mtu: 1500, up: true })
  }

  #check(op: string): void {
    this.calls.push(op)
    const errno = this.failNext[op]
    if (errno) {
      this.failNext = Object.fromEntries(Object.entries(this.failNext).filter(([k]) => k !== op))
      throw new KernelError(op, errno)
    }
  }

  /** Counters the test sets per link name; links without any report zero. */
  readonly counters = new Map<string, { rxBytes: number; txBytes: number }>()
  linkCounters(): Promise<LinkCounters[]> {
    return Promise.resolve([...this.links.keys()].map((name) => ({ name, rxBytes: 0, txBytes: 0, ...this.counters.get(name) })))
  }
  linkList(): Promise<ObservedLink[]> {
    return Promise.resolve([...this.links.values()].map((l) => ({ ...l })))
  }
  addrList(): Promise<ObservedAddress[]> {
    return Promise.resolve([...this.addresses.values()])
  }
  routeList(): Promise<ObservedRoute[]> {
    return Promise.resolve([...this.routes.values()])
  }
  ruleList(): Promise<ObservedRule[]> {
    return Promise.resolve([...this.rules.values()])
  }

  linkAdd(link: Link): Promise<void> {
    this.#check('linkAdd')
    if (this.links.has(link.name)) return Promise.reject(new KernelError('linkAdd', 'EEXIST'))
    const info: Record<string, unknown> = {}
    if (link.kind === 'vxlan') Object.assign(info, { vni: link.vni, port: link.port, learning: link.learning })
    if (link.kind === 'gre' || link.kind === 'gretap') Object.assign(info, { local: link.local, remote: link.remote })
    if (link.kind === 'bond') Object.assign(info, { mode: link.mode })
    this.links.set(link.name, { name: link.name, index: this.#nextIndex++, kind: link.kind, mtu: 1500, up: false, info })
    return Promise.resolve()
  }
  linkSet(name: string, change: LinkChange): Promise<void> {
    this.#check('linkSet')
    const link = this.links.get(name)
    if (!link) return Promise.reject(new KernelError('linkSet', 'ENODEV'))
    if (change.mtu !== undefined) link.mtu = change.mtu
    if (change.up !== undefined) link.up = change.up
    if (change.master === null) delete link.master
    else if (change.master !== undefined) {
      if (!this.links.has(change.master)) return Promise.reject(new KernelError('linkSet', 'ENODEV'))
      link.master = change.master
    }
    return Promise.resolve()
  }
  linkDel(name: string): Promise<void> {
    this.#check('linkDel')
    if (!this.links.delete(name)) return Promise.reject(new KernelError('linkDel', 'ENODEV'))
    // The kernel takes a link's addresses and routes with it.
    for (const [k, a] of this.addresses) if (a.link === name) this.addresses.delete(k)
    for (const [k, r] of this.routes) if ((r.multipath ?? (r.nexthop ? [r.nexthop] : [])).some((n) => n.dev === name)) this.routes.delete(k)
    this.devices.delete(name)
    return Promise.resolve()
  }
  addrAdd(address: Address): Promise<void> {
    this.#check('addrAdd')
    if (!this.links.has(address.link)) return Promise.reject(new KernelError('addrAdd', 'ENODEV'))
    const key = addressKey(address)
    if (this.addresses.has(key)) return Promise.reject(new KernelError('addrAdd', 'EEXIST'))
    const family = parseCidr(address.local)?.family ?? 4
    this.addresses.set(key, { ...address, family, protocol: RTPROT_MESHD })
    return Promise.resolve()
  }
  addrDel(address: Address): Promise<void> {
    this.#check('addrDel')
    if (!this.addresses.delete(addressKey(address))) return Promise.reject(new KernelError('addrDel', 'EADDRNOTAVAIL'))
    return Promise.resolve()
  }
  routeReplace(route: Route): Promise<void> {
    this.#check('routeReplace')
    for (const hop of route.multipath ?? (route.nexthop ? [route.nexthop] : [])) {
      const link = this.links.get(hop.dev)
      if (!link) return Promise.reject(new KernelError('routeReplace', 'ENODEV'))
      if (!link.up) return Promise.reject(new KernelError('routeReplace', 'ENETDOWN'))
    }
    const family = parseCidr(route.dst)?.family ?? 4
    this.routes.set(routeKey(route), { ...route, scope: effectiveRouteScope(route), family, protocol: RTPROT_MESHD })
    return Promise.resolve()
  }
  routeDel(route: Route): Promise<void> {
    this.#check('routeDel')
    if (!this.routes.delete(routeKey(route))) return Promise.reject(new KernelError('routeDel', 'ESRCH'))
    return Promise.resolve()
  }
  ruleAdd(rule: Rule): Promise<void> {
    this.#check('ruleAdd')
    const key = ruleKey(rule)
    if (this.rules.has(key)) return Promise.reject(new KernelError('ruleAdd', 'EEXIST'))
    this.rules.set(key, { ...rule, protocol: RTPROT_MESHD })
    return Promise.resolve()
  }
  ruleDel(rule: Rule): Promise<void> {
    this.#check('ruleDel')
    if (!this.rules.delete(ruleKey(rule))) return Promise.reject(new KernelError('ruleDel', 'ENOENT'))
    return Promise.resolve()
  }
  watch(): () => void {
    return () => undefined
  }
  close(): void {
    // nothing to release
  }

  /** Objects the user made directly, bypassing meshd (for survival tests). */
  addUserRoute(route: ObservedRoute): void {
    this.routes.set(routeKey(route), route)
  }
  addUserRule(rule: ObservedRule): void {
    this.rules.set(ruleKey(rule), rule)
  }
  addUserAddress(address: ObservedAddress): void {
    this.addresses.set(addressKey(address), address)
  }

  /** Canonical text of the whole state, sorted, for exact comparisons. Keys never appear. */
  dump(): string {
    const lines = [
      ...[...this.links.values()].map((l) => `link ${l.name} ${l.kind ?? '-'} mtu ${l.mtu}${l.up ? ' up' : ''}${l.master ? ` master ${l.master}` : ''}`),
      ...[...this.addresses.keys()].map((k) => `addr ${k}`),
      ...[...this.routes.values()].map((r) => `route ${routeKey(r)} proto ${r.protocol}`),
      ...[...this.rules.values()].map((r) => `rule ${ruleKey(r)} proto ${r.protocol}`),
      ...[...this.devices.values()].map((d) => `wg ${d.name} port ${d.listenPort} peers ${d.peers.map((p) => p.publicKey).sort().join(',')}`),
      ...[...this.sysctls.entries()].map(([k, v]) => `sysctl ${k}=${v}`),
    ]
    return lines.sort().join('\n')
  }

  /** A kernel-WireGuard backend over this fake. */
  wireguardBackend(): WireguardBackend {
    return {
      kind: 'kernel',
      ensureInterface: () => Promise.resolve(),
      removeInterface: () => Promise.resolve(),
      listInterfaces: () => Promise.resolve([]),
      get: (name) => {
        const device = this.devices.get(name)
        return device ? Promise.resolve(device) : Promise.reject(new KernelError('wgGet', 'ENODEV'))
      },
      set: (device: WireguardDevice) => {
        this.#check('wgSet')
        if (!this.links.has(device.name)) return Promise.reject(new KernelError('wgSet', 'ENODEV'))
        this.devices.set(device.name, {
          name: device.name,
          privateKey: device.privateKey,
          listenPort: device.listenPort,
          ...(device.fwmark === undefined ? {} : { fwmark: device.fwmark }),
          peers: device.peers.map((p) => ({ ...p })),
        })
        return Promise.resolve()
      },
      close: () => Promise.resolve(),
    }
  }

  /** Processes of the fake wireguard-go backend, by interface name. */
  processes = new Set<string>()

  /**
   * A wireguard-go backend over this fake, as the real one behaves with
   * persistent tuns: createInterfaces makes tun links without carrier; a start
   * attaches (carrier, MTU 1420, an empty device); removal stops the process
   * and deletes the link; `kill` makes a process die and leaves its tun.
   */
  userspaceBackend(): WireguardBackend & { kill(name: string): void } {
    const kernel = this.wireguardBackend()
    return {
      ...kernel,
      kind: 'userspace',
      canCreateInterfaces: () => Promise.resolve(true),
      createInterfaces: (names) => {
        const failures = new Map<string, Error>()
        for (const name of names) {
          try {
            this.#check('tunAdd')
            if (this.links.has(name)) throw new KernelError('tuntap add', 'EBUSY')
            this.links.set(name, { name, index: this.#nextIndex++, kind: 'tun', mtu: 1500, up: false, carrier: false })
          } catch (error) {
            failures.set(name, error as Error)
          }
        }
        return Promise.resolve(failures)
      },
      ensureInterface: (name) => {
        this.#check('wgEnsure')
        if (this.processes.has(name)) return Promise.resolve()
        const link = this.links.get(name) ?? { name, index: this.#nextIndex++, kind: 'tun', mtu: 1500, up: false }
        this.links.set(name, { ...link, mtu: 1420, carrier: true })
        this.processes.add(name)
        this.devices.set(name, { name, listenPort: 0, peers: [] })
        return Promise.resolve()
      },
      removeInterface: (name) => {
        this.processes.delete(name)
        this.devices.delete(name)
        this.links.delete(name)
        return Promise.resolve()
      },
      listInterfaces: () => Promise.resolve([...this.processes].sort()),
      get: (name) => (this.processes.has(name) ? kernel.get(name, { signal: AbortSignal.timeout(1000) }) : Promise.reject(new KernelError('wireguard get', 'ENODEV'))),
      set: (device, options) => (this.processes.has(device.name) ? kernel.set(device, options) : Promise.reject(new KernelError('wireguard set', 'ENODEV'))),
      kill: (name) => {
        this.processes.delete(name)
        this.devices.delete(name)
        const link = this.links.get(name)
        if (link) link.carrier = false
      },
    }
  }

  sysctlPort(): SysctlPort {
    return {
      read: (key) => Promise.resolve(this.sysctls.get(key)),
      write: (key, value) => {
        this.sysctls.set(key, value)
        return Promise.resolve()
      },
    }
  }
}
