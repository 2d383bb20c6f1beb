// Validation of a DesiredState before any kernel change: a state that cannot be
// valid is refused whole, with every problem named (object + reason).

import { networkOf, parseCidr } from './ip.js'
import { routeKey } from './plan.js'
import {
  BOND_MODES,
  LINK_KINDS,
  LINK_PREFIX,
  MAX_IFNAME_BYTES,
  isOwnedRulePriority,
  isOwnedTable,
  type DesiredState,
  type Link,
  type LinkKind,
  type NextHop,
  type Route,
} from './types.js'

export interface ValidationProblem {
  /** e.g. "link md-w1", "route 10.0.0.0/24 table 7300" */
  object: string
  reason: string
}

export class InvalidDesiredState extends Error {
  override readonly name = 'InvalidDesiredState'
  constructor(readonly problems: ValidationProblem[]) {
    super(`invalid desired state: ${problems.map((p) => `${p.object}: ${p.reason}`).join('; ')}`)
  }
}

export interface ValidationContext {
  /** Link kinds this kernel (and backend) can create; see ./capabilities.ts. */
  supportedKinds: ReadonlySet<LinkKind>
}

const IFNAME_PATTERN = /^[A-Za-z0-9_.-]+$/

/** The kernel's rules for an interface name: 1–15 bytes, no '/', ':', or whitespace, not "." or "..". */
export function interfaceNameProblem(name: string): string | undefined {
  const bytes = Buffer.byteLength(name)
  if (bytes === 0) return 'empty interface name'
  if (bytes > MAX_IFNAME_BYTES) return `interface name is ${bytes} bytes, the kernel allows ${MAX_IFNAME_BYTES}`
  if (!IFNAME_PATTERN.test(name) || name === '.' || name === '..') return 'interface name may hold only letters, digits, "_", "." and "-"'
  return undefined
}

/** A WireGuard key: base64 of exactly 32 bytes (44 characters with one '='). */
export function isWireguardKey(text: string): boolean {
  return /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(text)
}

function inRange(value: number | undefined, min: number, max: number): boolean {
  return value === undefined || (Number.isInteger(value) && value >= min && value <= max)
}

export function validateDesiredState(state: DesiredState, context: ValidationContext): ValidationProblem[] {
  const problems: ValidationProblem[] = []
  const problem = (object: string, reason: string): void => {
    problems.push({ object, reason })
  }

  // Links.
  const linkByName = new Map<string, Link>()
  for (const link of state.links) {
    const object = `link ${link.name}`
    const nameProblem = interfaceNameProblem(link.name)
    if (nameProblem) problem(object, nameProblem)
    else if (!link.name.startsWith(LINK_PREFIX)) problem(object, `meshd link names must start with "${LINK_PREFIX}" so that meshd can recognise them`)
    if (linkByName.has(link.name)) problem(object, 'declared twice')
    linkByName.set(link.name, link)
    if (!(LINK_KINDS as readonly string[]).includes(link.kind)) problem(object, `unknown link kind "${link.kind}"`)
    else if (!context.supportedKinds.has(link.kind)) problem(object, `link kind "${link.kind}" is not available on this kernel`)
    if (!inRange(link.mtu, 68, 65535)) problem(object, `mtu ${link.mtu} is outside 68..65535`)
    switch (link.kind) {
      case 'gre':
      case 'gretap': {
        const local = parseCidr(link.local)
        const remote = parseCidr(link.remote)
        if (!local || link.local.includes('/')) problem(object, `local "${link.local}" is not an IP address`)
        if (!remote || link.remote.includes('/')) problem(object, `remote "${link.remote}" is not an IP address`)
        if (local && remote && local.family !== remote.family) problem(object, 'local and remote are of different IP families')
        if (!inRange(link.ttl, 0, 255)) problem(object, `ttl ${link.ttl} is outside 0..255`)
        if (!inRange(link.key, 0, 0xffffffff)) problem(object, `key ${link.key} is not a 32-bit value`)
        break
      }
      case 'vxlan':
        if (!inRange(link.vni, 0, 0xffffff)) problem(object, `vni ${link.vni} is outside 0..16777215`)
        if (!inRange(link.port, 1, 65535)) problem(object, `port ${link.port} is outside 1..65535`)
        if (link.local !== undefined && (!parseCidr(link.local) || link.local.includes('/'))) problem(object, `local "${link.local}" is not an IP address`)
        break
      case 'bond':
        if (!BOND_MODES.includes(link.mode)) problem(object, `unknown bond mode "${link.mode}"`)
        if (!inRange(link.miimonMs, 0, 60_000) || !inRange(link.arpIntervalMs, 0, 60_000)) problem(object, 'monitoring interval outside 0..60000 ms')
        for (const target of link.arpTargets ?? []) if (parseCidr(target)?.family !== 4 || target.includes('/')) problem(object, `arp target "${target}" is not an IPv4 address`)
        break
      default:
        break
    }
  }
  for (const link of state.links) {
    if (link.master === undefined) continue
    const master = linkByName.get(link.master)
    if (!master) problem(`link ${link.name}`, `master "${link.master}" is not a desired link`)
    else if (master.kind !== 'bond' && master.kind !== 'bridge') problem(`link ${link.name}`, `master "${link.master}" is a ${master.kind}, not a bond or bridge`)
  }

  // Addresses: on a desired link, or on lo (the overlay-address fallback when dummy is missing).
  const addressKeys = new Set<string>()
  for (const address of state.addresses) {
    const object = `address ${address.local} on ${address.link}`
    if (!linkByName.has(address.link) && address.link !== 'lo') problem(object, `link "${address.link}" is not a desired link`)
    const local = parseCidr(address.local)
    if (!local || !address.local.includes('/')) problem(object, 'local must be an address with prefix length, e.g. 169.254.1.1/32')
    if (address.peer !== undefined) {
      const peer = parseCidr(address.peer)
      if (!peer || !address.peer.includes('/')) problem(object, 'peer must be an address with prefix length')
      else if (local && peer.family !== local.family) problem(object, 'local and peer are of different IP families')
    }
    const key = `${address.link}|${local?.address ?? address.local}`
    if (addressKeys.has(key)) problem(object, 'declared twice')
    addressKeys.add(key)
  }

  // Routes.
  const routeKeys = new Set<string>()
  for (const route of state.routes) {
    const object = `route ${route.dst} table ${route.table}`
    const dst = parseCidr(route.dst)
    if (!dst || !route.dst.includes('/')) {
      problem(object, 'destination must be a prefix, e.g. 10.1.0.0/16')
      continue
    }
    if (networkOf(route.dst) !== `${dst.address}/${dst.prefixLength}`) problem(object, `destination has host bits set (did you mean ${networkOf(route.dst)}?)`)
    if (!isOwnedTable(route.table)) problem(object, `table ${route.table} is not one of meshd's tables`)
    if (!inRange(route.metric, 0, 0xffffffff)) problem(object, `metric ${route.metric} is not a 32-bit value`)
    const key = routeKey(route)
    if (routeKeys.has(key)) problem(object, 'the same prefix and metric appear twice in this table')
    routeKeys.add(key)
    problems.push(...nexthopProblems(route, dst.family, object))
  }

  // Rules.
  for (const rule of state.rules) {
    const object = `rule priority ${rule.priority}`
    if (!isOwnedRulePriority(rule.priority)) problem(object, 'priority is outside meshd\'s rule range')
    if (!inRange(rule.table, 1, 0xffffffff)) problem(object, `table ${rule.table} is not valid`)
    for (const [label, cidr] of [['from', rule.from], ['to', rule.to]] as const) {
      if (cidr === undefined) continue
      const parsed = parseCidr(cidr)
      if (!parsed) problem(object, `${label} "${cidr}" is not a prefix`)
      else if (parsed.family !== rule.family) problem(object, `${label} "${cidr}" is not IPv${rule.family}`)
    }
    for (const name of [rule.iif, rule.oif]) if (name !== undefined && interfaceNameProblem(name)) problem(object, `bad interface name "${name}"`)
    if (rule.fwmark && (!inRange(rule.fwmark.value, 0, 0xffffffff) || !inRange(rule.fwmark.mask, 0, 0xffffffff))) problem(object, 'fwmark is not a 32-bit value')
    if (!inRange(rule.suppressPrefixLength, 0, 128)) problem(object, 'suppress_prefixlength is outside 0..128')
  }

  // WireGuard devices.
  for (const device of state.wireguard) {
    const object = `wireguard ${device.name}`
    if (linkByName.get(device.name)?.kind !== 'wireguard') problem(object, 'no desired wireguard link of that name')
    if (!isWireguardKey(device.privateKey.reveal())) problem(object, 'private key is not a base64 WireGuard key') // never print the key
    if (!inRange(device.listenPort, 1, 65535)) problem(object, `listen port ${device.listenPort} is outside 1..65535`)
    if (!inRange(device.fwmark, 0, 0xffffffff)) problem(object, 'fwmark is not a 32-bit value')
    const seen = new Set<string>()
    for (const peer of device.peers) {
      const peerObject = `${object} peer ${peer.publicKey.slice(0, 8)}…`
      if (!isWireguardKey(peer.publicKey)) problem(peerObject, 'public key is not a base64 WireGuard key')
      if (seen.has(peer.publicKey)) problem(peerObject, 'declared twice')
      seen.add(peer.publicKey)
      if (peer.presharedKey !== undefined && !isWireguardKey(peer.presharedKey.reveal())) problem(peerObject, 'preshared key is not a base64 WireGuard key')
      if (peer.endpoint && (!parseCidr(peer.endpoint.address) || peer.endpoint.address.includes('/') || !inRange(peer.endpoint.port, 1, 65535))) problem(peerObject, 'endpoint is not an address and port')
      for (const allowed of peer.allowedIps) if (!parseCidr(allowed) || !allowed.includes('/')) problem(peerObject, `allowed IP "${allowed}" is not a prefix`)
      if (!inRange(peer.persistentKeepaliveSeconds, 0, 65535)) problem(peerObject, 'keepalive is outside 0..65535 s')
    }
  }

  // Sysctls: only the networking keys meshd relies on.
  for (const sysctl of state.sysctls) {
    if (!/^net\.ipv[46]\.(ip_forward|conf\.[A-Za-z0-9_.-]+\.[a-z_]+)$/.test(sysctl.key)) problem(`sysctl ${sysctl.key}`, 'not a networking sysctl meshd manages')
    if (!/^[0-9]+$/.test(sysctl.value)) problem(`sysctl ${sysctl.key}`, 'value must be a number')
  }
  return problems
}

function nexthopProblems(route: Route, family: 4 | 6, object: string): ValidationProblem[] {
  const problems: ValidationProblem[] = []
  const type = route.type ?? 'unicast'
  const hops: NextHop[] = route.multipath ?? (route.nexthop ? [route.nexthop] : [])
  if (type === 'unicast' && hops.length === 0) problems.push({ object, reason: 'a unicast route needs a next hop' })
  if (type !== 'unicast' && hops.length > 0) problems.push({ object, reason: `a ${type} route takes no next hop` })
  if (route.nexthop && route.multipath) problems.push({ object, reason: 'give either nexthop or multipath, not both' })
  for (const hop of hops) {
    const nameProblem = interfaceNameProblem(hop.dev)
    if (nameProblem) problems.push({ object, reason: `next-hop device: ${nameProblem}` })
    if (hop.via !== undefined) {
      const via = parseCidr(hop.via)
      if (!via || hop.via.includes('/')) problems.push({ object, reason: `gateway "${hop.via}" is not an address` })
      else if (via.family !== family && !(family === 4 && via.family === 6)) problems.push({ object, reason: `gateway "${hop.via}" is not IPv${family}` })
    }
    if (!inRange(hop.weight, 1, 256)) problems.push({ object, reason: `weight ${hop.weight} is outside 1..256` })
  }
  return problems
}
