// The pure heart of the reconciler: (observed kernel state, desired state) →
// the list of operations that makes the kernel match, touching only objects
// meshd owns (design §3). No I/O here; tests pin the exact operations.

import { canonicalCidr, canonicalIp, parseCidr } from './ip.js'
import type { LinkChange } from './port.js'
import { effectiveMetric, effectiveRouteScope } from './route-defaults.js'
import { wireguardDeviceDiffers } from './wireguard/backend.js'
import {
  RTPROT_MESHD,
  isOwnedLinkName,
  isOwnedRulePriority,
  isOwnedTable,
  type Address,
  type DesiredState,
  type Link,
  type NextHop,
  type ObservedLink,
  type ObservedState,
  type Route,
  type Rule,
  type WireguardDevice,
} from './types.js'

export type Operation =
  | { op: 'linkAdd'; link: Link }
  | { op: 'linkSet'; name: string; change: LinkChange }
  | { op: 'linkDel'; name: string }
  /** Userspace WireGuard: create the (persistent) tun a wireguard-go process will attach to. */
  | { op: 'tunAdd'; name: string }
  /** Start (userspace) WireGuard for a link; kernel WireGuard links come from linkAdd. */
  | { op: 'wgEnsure'; name: string }
  | { op: 'wgSet'; device: WireguardDevice }
  | { op: 'sysctlSet'; key: string; value: string }
  | { op: 'addrAdd'; address: Address }
  | { op: 'addrDel'; address: Address }
  | { op: 'routeReplace'; route: Route }
  | { op: 'routeDel'; route: Route }
  | { op: 'ruleAdd'; rule: Rule }
  | { op: 'ruleDel'; rule: Rule }

export interface PlanOptions {
  /** How this host runs WireGuard: kernel links report kind "wireguard", wireguard-go ones "tun". */
  wireguardBackend: 'kernel' | 'userspace'
  /**
   * Userspace backend: new wireguard-go links are brought up in waves of this
   * many (default 12), each wave started, configured, addressed and up before
   * the next starts. Every running wireguard-go wakes on every link and address
   * notification in the namespace, so a link set up while k processes run costs
   * k wake-ups: waves cost about N²/2 of them, all-links-first N².
   */
  wireguardWave?: number
  /**
   * Userspace backend: 'persistent' (default) creates new links as persistent
   * tun devices and does all their kernel work (MTU, up, addresses, routes,
   * rules) before any new wireguard-go runs, then starts the processes (each
   * attaches to its tun) and configures them; 'wireguard-go' lets each process
   * create its own tun, in waves (the fallback when iproute2 is missing).
   */
  userspaceTuns?: 'persistent' | 'wireguard-go'
}

/**
 * The MTU wireguard-go 0.0.20220316 sets on its tun as it opens it (DefaultMTU,
 * not configurable). A persistent tun is set to it before the process starts,
 * so that attaching changes nothing; another wanted MTU is set after the start.
 */
export const WIREGUARD_GO_MTU = 1420

// ── Ownership ────────────────────────────────────────────────────────────────

export function ownsLink(link: ObservedLink): boolean {
  return isOwnedLinkName(link.name)
}
/** meshd stamps IFA_PROTO on every address it adds; the kernel's own (IPv6 link-local autoconf) carry another. */
export function ownsAddress(address: { protocol?: number }): boolean {
  return address.protocol === RTPROT_MESHD
}
export function ownsRoute(route: { table: number; protocol: number }): boolean {
  return isOwnedTable(route.table) && route.protocol === RTPROT_MESHD
}
export function ownsRule(rule: { priority: number; protocol: number }): boolean {
  return isOwnedRulePriority(rule.priority) && rule.protocol === RTPROT_MESHD
}

// ── Canonical keys: what makes two objects "the same one" ────────────────────

export function addressKey(a: Address): string {
  return `${a.link}|${canonicalCidr(a.local)}|${a.peer === undefined ? '' : canonicalCidr(a.peer)}`
}

/** The kernel identifies a route by family, table, destination, metric (and tos, which meshd never sets). */
export function routeKey(r: Route): string {
  const dst = parseCidr(r.dst)
  return `${dst?.family ?? '?'}|${r.table}|${canonicalCidr(r.dst)}|${effectiveMetric(r)}`
}

function nexthopText(n: NextHop): string {
  return `${n.via === undefined ? '' : canonicalIp(n.via)}@${n.dev}${n.onlink === true ? '/onlink' : ''}*${n.weight ?? 1}`
}

/** Everything about a route that routeReplace sets, in one comparable string. */
export function routeContent(r: Route): string {
  const hops = r.multipath ? r.multipath.map(nexthopText).sort().join(',') : r.nexthop ? nexthopText(r.nexthop) : ''
  return [routeKey(r), r.type ?? 'unicast', effectiveRouteScope(r), r.src === undefined ? '' : canonicalIp(r.src), hops].join('|')
}

function routeDevices(r: Route): string[] {
  return (r.multipath ?? (r.nexthop ? [r.nexthop] : [])).map((n) => n.dev)
}

/** A rule is identified by its whole content. */
export function ruleKey(r: Rule): string {
  return [
    r.family,
    r.priority,
    r.table,
    r.from === undefined ? '' : canonicalCidr(r.from),
    r.to === undefined ? '' : canonicalCidr(r.to),
    r.iif ?? '',
    r.oif ?? '',
    r.fwmark ? `${r.fwmark.value}/${r.fwmark.mask}` : '',
    r.suppressPrefixLength ?? '',
  ].join('|')
}

// ── Links ────────────────────────────────────────────────────────────────────

function observedKindFor(link: Link, options: PlanOptions): string {
  return link.kind === 'wireguard' && options.wireguardBackend === 'userspace' ? 'tun' : link.kind
}

/** Kind-specific attributes that cannot change in place; a difference means re-create. */
function immutableAttributes(link: Link): Record<string, unknown> {
  switch (link.kind) {
    case 'gre':
    case 'gretap':
      return { local: link.local, remote: link.remote, ttl: link.ttl, key: link.key, dev: link.dev }
    case 'vxlan':
      return { vni: link.vni, port: link.port, local: link.local, dev: link.dev, learning: link.learning }
    case 'bond':
      return { mode: link.mode, miimonMs: link.miimonMs, arpIntervalMs: link.arpIntervalMs }
    default:
      return {}
  }
}

function needsRecreate(link: Link, observed: ObservedLink, options: PlanOptions): boolean {
  if (observed.kind !== observedKindFor(link, options)) return true
  // Compare only what the kernel dump decoded; an attribute it does not report cannot be judged.
  const info = observed.info ?? {}
  for (const [key, wanted] of Object.entries(immutableAttributes(link))) {
    if (wanted === undefined || !(key in info)) continue
    const have = info[key]
    const same = typeof wanted === 'string' && typeof have === 'string' && parseCidr(wanted) ? canonicalIp(wanted) === canonicalIp(have) : wanted === have
    if (!same) return true
  }
  return false
}

/**
 * What linkAdd creates: the kind and its attributes, down, without MTU or master;
 * the linkSet that follows sets those. Creating a link up and enslaved in one
 * message fails for bond slaves: the kernel enslaves after bringing the link up,
 * and a bond refuses a slave that is up (EPERM).
 */
function bareLink(link: Link): Link {
  const bare = { ...link, up: false }
  delete bare.mtu
  delete bare.master
  return bare
}

/** Masters (bonds, bridges) first so that slaves can be enslaved as they are created. */
function linkCreationRank(link: Link): number {
  return link.kind === 'bond' || link.kind === 'bridge' ? 0 : 1
}

// ── The plan ─────────────────────────────────────────────────────────────────

/**
 * Operations that turn `observed` into `desired`, in apply order: links (new
 * WireGuard ones, then the rest, masters first), WireGuard configuration,
 * sysctls, addresses, new WireGuard links' MTU and up, routes, rules — all
 * additions and changes — then deletions in reverse (rules, routes, addresses,
 * links). On wireguard-go with persistent tuns, new links' tuns come first,
 * and their processes start only after the rules, followed by their
 * configuration and any MTU other than wireguard-go's. Objects meshd does not
 * own are never touched. `desired` must have passed validateDesiredState.
 */
export function planOperations(observed: ObservedState, desired: DesiredState, options: PlanOptions): Operation[] {
  const adds: Operation[] = []
  const deletes: Operation[] = []

  // Links.
  const observedLinks = new Map(observed.links.map((l) => [l.name, l]))
  const desiredLinkNames = new Set(desired.links.map((l) => l.name))
  const recreated = new Set<string>()
  const linksToDelete = new Set(observed.links.filter((l) => ownsLink(l) && !desiredLinkNames.has(l.name)).map((l) => l.name))
  const sortedLinks = [...desired.links].sort((a, b) => linkCreationRank(a) - linkCreationRank(b))
  // New WireGuard links are made first, together (other links may sit on them), and
  // come up only once configured and addressed, as wg-quick does (add, setconf,
  // addresses, mtu + up): up without a listen port, wireguard-go binds a random one
  // that can take the port a later link is configured with; and a down wireguard-go
  // device does not yet wake on every route change in the namespace.
  //
  // On wireguard-go with persistent tuns, the kernel work is done before any new
  // process runs: every running wireguard-go wakes on every link and address
  // notification in the namespace (and, once up, every IPv4 route one), so a
  // change made while none of them runs costs no wake-ups. New links are
  // created as tuns, set to wireguard-go's MTU and up, addressed and routed
  // (an admin-up tun without carrier takes routes, flagged linkdown); then the
  // processes start, attach to their tun and come up at once, and are
  // configured (see `starts` below).
  const userspace = options.wireguardBackend === 'userspace'
  const persistentTuns = userspace && (options.userspaceTuns ?? 'persistent') === 'persistent'
  const wireguardRecreates: Operation[] = []
  const wireguardCreates: Operation[] = []
  const afterAddresses: Operation[] = []
  /** wireguard-go starts, their configuration and MTU, after every other addition (persistent tuns). */
  const starts: Operation[] = []
  const afterStarts: Operation[] = []
  /** Links whose wireguard-go is (re)started: their device is empty whatever the cache says. */
  const started = new Set<string>()
  for (const link of sortedLinks) {
    const have = observedLinks.get(link.name)
    const isWireguard = link.kind === 'wireguard'
    if (have && needsRecreate(link, have, options)) {
      ;(isWireguard ? wireguardRecreates : adds).push({ op: 'linkDel', name: link.name })
      recreated.add(link.name)
    }
    if (!have || recreated.has(link.name)) {
      if (isWireguard && persistentTuns) {
        wireguardCreates.push({ op: 'tunAdd', name: link.name })
        starts.push({ op: 'wgEnsure', name: link.name })
        started.add(link.name)
        afterAddresses.push({ op: 'linkSet', name: link.name, change: { mtu: WIREGUARD_GO_MTU, ...(link.up ? { up: true } : {}) } })
        if (link.mtu !== undefined && link.mtu !== WIREGUARD_GO_MTU) afterStarts.push({ op: 'linkSet', name: link.name, change: { mtu: link.mtu } })
        continue
      }
      if (isWireguard && userspace) wireguardCreates.push({ op: 'wgEnsure', name: link.name })
      else (isWireguard ? wireguardCreates : adds).push({ op: 'linkAdd', link: bareLink(link) })
      // A new link starts down, without master or MTU; set what is wanted in one step.
      const change: LinkChange = {}
      if (link.mtu !== undefined) change.mtu = link.mtu
      if (link.master !== undefined) change.master = link.master
      if (link.up) change.up = true
      if (Object.keys(change).length > 0) (isWireguard ? afterAddresses : adds).push({ op: 'linkSet', name: link.name, change })
      continue
    }
    // A persistent tun whose wireguard-go exited (it has no carrier): start one again, which
    // attaches to it, resets its MTU to wireguard-go's and comes up with an empty configuration.
    const restart = isWireguard && userspace && have.carrier === false
    const change: LinkChange = {}
    if (link.mtu !== undefined && have.mtu !== link.mtu && !(restart && link.mtu !== WIREGUARD_GO_MTU)) change.mtu = link.mtu
    if ((have.master ?? null) !== (link.master ?? null)) change.master = link.master ?? null
    if (have.up !== link.up) change.up = link.up
    if (Object.keys(change).length > 0) adds.push({ op: 'linkSet', name: link.name, change })
    if (restart) {
      starts.push({ op: 'wgEnsure', name: link.name })
      started.add(link.name)
      if (link.mtu !== undefined && link.mtu !== WIREGUARD_GO_MTU) afterStarts.push({ op: 'linkSet', name: link.name, change: { mtu: link.mtu } })
    }
  }
  adds.unshift(...wireguardRecreates, ...wireguardCreates)

  // WireGuard device configuration; a freshly (re)created or restarted device is always
  // configured, right after its start when the start comes last.
  const observedDevices = new Map(observed.wireguard.map((d) => [d.name, d]))
  const configureStarted: Operation[] = []
  for (const device of desired.wireguard) {
    const fresh = !observedLinks.has(device.name) || recreated.has(device.name) || started.has(device.name)
    const have = observedDevices.get(device.name)
    if (fresh || !have || wireguardDeviceDiffers(device, have)) (started.has(device.name) ? configureStarted : adds).push({ op: 'wgSet', device })
  }

  // Sysctls: set what differs; meshd does not restore old values (forwarding stays on after teardown).
  const observedSysctls = new Map(observed.sysctls.map((s) => [s.key, s.value]))
  for (const sysctl of desired.sysctls) {
    if (observedSysctls.get(sysctl.key) !== sysctl.value) adds.push({ op: 'sysctlSet', key: sysctl.key, value: sysctl.value })
  }

  // Addresses. Those on deleted or re-created links go with their link.
  const ownedAddresses = observed.addresses.filter((a) => ownsAddress(a) && !linksToDelete.has(a.link))
  const haveAddresses = new Set(ownedAddresses.filter((a) => !recreated.has(a.link)).map(addressKey))
  const wantAddresses = new Set(desired.addresses.map(addressKey))
  for (const address of desired.addresses) {
    if (!haveAddresses.has(addressKey(address))) adds.push({ op: 'addrAdd', address })
  }
  adds.push(...afterAddresses)
  for (const address of ownedAddresses) {
    if (!wantAddresses.has(addressKey(address)) && !recreated.has(address.link)) deletes.push({ op: 'addrDel', address: stripAddress(address) })
  }

  // Routes: replace what is missing or different; delete owned routes no longer wanted.
  const ownedRoutes = observed.routes.filter(ownsRoute)
  // Routes through a re-created link vanished with it.
  const haveRouteContent = new Set(ownedRoutes.filter((r) => !routeDevices(r).some((d) => recreated.has(d))).map(routeContent))
  const wantRouteKeys = new Set(desired.routes.map(routeKey))
  for (const route of desired.routes) {
    if (!haveRouteContent.has(routeContent(route))) adds.push({ op: 'routeReplace', route })
  }
  const routeDeletes: Operation[] = []
  for (const route of ownedRoutes) {
    // Like addresses, a route whose every device is being deleted goes with its links (the kernel
    // flushes it); on wireguard-go each delete would also wake every process still running.
    const devices = routeDevices(route)
    if (devices.length > 0 && devices.every((d) => linksToDelete.has(d))) continue
    if (!wantRouteKeys.has(routeKey(route))) routeDeletes.push({ op: 'routeDel', route: stripRoute(route) })
  }

  // Rules.
  const ownedRules = observed.rules.filter(ownsRule)
  const haveRules = new Set(ownedRules.map(ruleKey))
  const wantRules = new Set(desired.rules.map(ruleKey))
  for (const rule of desired.rules) {
    if (!haveRules.has(ruleKey(rule))) adds.push({ op: 'ruleAdd', rule })
  }
  const ruleDeletes: Operation[] = []
  for (const rule of ownedRules) {
    if (!wantRules.has(ruleKey(rule))) ruleDeletes.push({ op: 'ruleDel', rule: stripRule(rule) })
  }

  // The processes start once everything else is added, then are configured, then get their MTU.
  adds.push(...starts, ...configureStarted, ...afterStarts)

  const linkDeletes: Operation[] = [...linksToDelete].sort().map((name) => ({ op: 'linkDel', name }))
  const operations = [...adds, ...ruleDeletes, ...routeDeletes, ...deletes, ...linkDeletes]
  return userspace && !persistentTuns ? inWaves(operations, options.wireguardWave ?? 12) : operations
}

/**
 * Regroups new wireguard-go links into waves: per wave, start, configure,
 * address and bring up those links, then add the routes through them (each
 * step together), in place of the first start. A route joins the wave of the
 * last of its devices; one with a preferred source stays where it was, after
 * every address. Everything else keeps its order; each link's own steps keep
 * theirs (up after configuration and addresses, routes after up).
 */
function inWaves(operations: Operation[], size: number): Operation[] {
  const started = operations.flatMap((o) => (o.op === 'wgEnsure' ? [o.name] : []))
  if (started.length === 0) return operations
  const first = operations.findIndex((o) => o.op === 'wgEnsure')
  const waveOf = new Map(started.map((name, i) => [name, Math.floor(i / Math.max(1, size))]))
  const steps: Record<string, number> = { wgEnsure: 0, wgSet: 1, addrAdd: 2, linkSet: 3, routeReplace: 4 }
  const waveLink = (o: Operation): string | undefined => {
    if (o.op === 'wgEnsure' || o.op === 'linkSet') return o.name
    if (o.op === 'wgSet') return o.device.name
    if (o.op === 'addrAdd') return o.address.link
    if (o.op === 'routeReplace' && o.route.src === undefined) {
      // The device of the latest wave, when every device is a new wireguard-go link.
      const devices = routeDevices(o.route)
      if (devices.length === 0 || devices.some((d) => !waveOf.has(d))) return undefined
      return devices.reduce((a, b) => ((waveOf.get(a) ?? 0) >= (waveOf.get(b) ?? 0) ? a : b))
    }
    return undefined
  }
  const waves: Operation[][][] = []
  const rest: Operation[] = []
  operations.forEach((o, i) => {
    const link = waveLink(o)
    const wave = link === undefined ? undefined : waveOf.get(link)
    const step = steps[o.op]
    if (wave === undefined || step === undefined) {
      if (i !== first) rest.push(o)
      return
    }
    const stepsOfWave = (waves[wave] ??= [[], [], [], [], []])
    stepsOfWave[step]?.push(o)
  })
  const regrouped = waves.flatMap((wave) => wave.flat())
  // `rest` lost the first start; the waves go where it was, after what preceded it.
  const before = operations.slice(0, first).filter((o) => waveLink(o) === undefined || waveOf.get(waveLink(o) ?? '') === undefined)
  return [...before, ...regrouped, ...rest.slice(before.length)]
}

// Observed objects carry kernel-only fields; operations carry the desired shape.
function stripAddress(a: Address): Address {
  return a.peer === undefined ? { link: a.link, local: a.local } : { link: a.link, local: a.local, peer: a.peer }
}
function stripRoute(r: Route & { family?: unknown; protocol?: unknown }): Route {
  const { family: _family, protocol: _protocol, ...route } = r
  return route
}
function stripRule(r: Rule & { protocol?: unknown }): Rule {
  const { protocol: _protocol, ...rule } = r
  return rule
}

/** One line per operation, as `ip` would say it; for logs and `--dry-run`. Never prints keys. */
export function describeOperation(operation: Operation): string {
  switch (operation.op) {
    case 'linkAdd':
      return `ip link add ${operation.link.name} type ${operation.link.kind}`
    case 'linkSet': {
      const c = operation.change
      const parts = [
        c.mtu === undefined ? '' : `mtu ${c.mtu}`,
        c.master === undefined ? '' : c.master === null ? 'nomaster' : `master ${c.master}`,
        c.up === undefined ? '' : c.up ? 'up' : 'down',
      ].filter(Boolean)
      return `ip link set ${operation.name} ${parts.join(' ')}`
    }
    case 'linkDel':
      return `ip link del ${operation.name}`
    case 'tunAdd':
      return `ip tuntap add dev ${operation.name} mode tun`
    case 'wgEnsure':
      return `wireguard-go ${operation.name}`
    case 'wgSet':
      return `wg setconf ${operation.device.name} (${operation.device.peers.length} peers, port ${operation.device.listenPort})`
    case 'sysctlSet':
      return `sysctl -w ${operation.key}=${operation.value}`
    case 'addrAdd':
    case 'addrDel': {
      const a = operation.address
      return `ip addr ${operation.op === 'addrAdd' ? 'add' : 'del'} ${a.local}${a.peer ? ` peer ${a.peer}` : ''} dev ${a.link}`
    }
    case 'routeReplace':
    case 'routeDel': {
      const r = operation.route
      const hop = r.nexthop ? `${r.nexthop.via ? ` via ${r.nexthop.via}` : ''} dev ${r.nexthop.dev}${r.nexthop.onlink ? ' onlink' : ''}` : ''
      const multi = r.multipath ? r.multipath.map((n) => ` nexthop${n.via ? ` via ${n.via}` : ''} dev ${n.dev} weight ${n.weight ?? 1}`).join('') : ''
      return `ip route ${operation.op === 'routeReplace' ? 'replace' : 'del'} ${r.type && r.type !== 'unicast' ? `${r.type} ` : ''}${r.dst}${hop}${multi}${r.src ? ` src ${r.src}` : ''} table ${r.table}${r.metric ? ` metric ${r.metric}` : ''}`
    }
    case 'ruleAdd':
    case 'ruleDel': {
      const r = operation.rule
      const sel = [
        r.from ? `from ${r.from}` : '',
        r.to ? `to ${r.to}` : '',
        r.iif ? `iif ${r.iif}` : '',
        r.oif ? `oif ${r.oif}` : '',
        r.fwmark ? `fwmark ${r.fwmark.value}/${r.fwmark.mask}` : '',
      ].filter(Boolean)
      const suppress = r.suppressPrefixLength === undefined ? '' : ` suppress_prefixlength ${r.suppressPrefixLength}`
      return `ip -${r.family} rule ${operation.op === 'ruleAdd' ? 'add' : 'del'} priority ${r.priority} ${sel.join(' ')}${sel.length ? ' ' : ''}lookup ${r.table}${suppress}`
    }
  }
}
