// The desired-state model: everything meshd may put in the kernel, as plain
// data. The planner (src/planner) produces a DesiredState; the reconciler
// (./reconciler.ts) makes the kernel match it. Nothing here has side effects.

import type { Secret } from '../logging/secret.js'

// ── Ownership ────────────────────────────────────────────────────────────────
// meshd recognises its kernel objects without saved state (design §3):

/** Every link meshd creates has a name starting with this prefix. */
export const LINK_PREFIX = 'md-'
/** IFNAMSIZ − 1: the longest interface name the kernel accepts. */
export const MAX_IFNAME_BYTES = 15
/** Route protocol number stamped on every meshd route, rule and address (`proto meshd`). */
export const RTPROT_MESHD = 73
/** meshd's routing tables: [first, last]. Tables above 255 travel in RTA_TABLE. */
export const TABLE_RANGE = { first: 7300, last: 7399 } as const
/** The table that holds a route per mesh member. */
export const TABLE_OVERLAY = 7300
/** Policy-rule priorities meshd may use: [first, last], allocated with gaps of RULE_PRIORITY_STEP. */
export const RULE_PRIORITY_RANGE = { first: 7300, last: 7399 } as const
export const RULE_PRIORITY_STEP = 5

export function isOwnedLinkName(name: string): boolean {
  return name.startsWith(LINK_PREFIX)
}
export function isOwnedTable(table: number): boolean {
  return table >= TABLE_RANGE.first && table <= TABLE_RANGE.last
}
export function isOwnedRulePriority(priority: number): boolean {
  return priority >= RULE_PRIORITY_RANGE.first && priority <= RULE_PRIORITY_RANGE.last
}

// ── Basic values ─────────────────────────────────────────────────────────────

export type Family = 4 | 6

/** An address with prefix length, e.g. "169.254.1.2/32" or "fd00::1/128". Validated by ./validate.ts. */
export type Cidr = string
/** A bare IP address, e.g. "10.0.0.1" or "fe80::1". */
export type IpAddress = string

// ── Links ────────────────────────────────────────────────────────────────────

export type LinkKind = 'wireguard' | 'dummy' | 'gre' | 'gretap' | 'bond' | 'vxlan' | 'bridge'
export const LINK_KINDS: readonly LinkKind[] = ['wireguard', 'dummy', 'gre', 'gretap', 'bond', 'vxlan', 'bridge']

interface LinkCommon {
  name: string
  /** Omitted: leave the kernel's choice alone. */
  mtu?: number
  up: boolean
  /** Name of the bond or bridge this link is enslaved to. */
  master?: string
}

/** Device configuration (keys, peers) is separate: see WireguardDevice. */
export interface WireguardLink extends LinkCommon {
  kind: 'wireguard'
}
export interface DummyLink extends LinkCommon {
  kind: 'dummy'
}
/** `ip link add NAME type gre|gretap local L remote R [ttl T] [key K] [dev D]` */
export interface GreLink extends LinkCommon {
  kind: 'gre' | 'gretap'
  local: IpAddress
  remote: IpAddress
  ttl?: number
  key?: number
  /** Underlay device to bind the tunnel to. */
  dev?: string
}
export type BondMode = 'balance-rr' | 'active-backup' | 'balance-xor' | 'broadcast' | '802.3ad' | 'balance-tlb' | 'balance-alb'
export const BOND_MODES: readonly BondMode[] = ['balance-rr', 'active-backup', 'balance-xor', 'broadcast', '802.3ad', 'balance-tlb', 'balance-alb']
/** `ip link add NAME type bond mode M [miimon MS] [arp_interval MS arp_ip_target A,B]`; slaves name it as `master`. */
export interface BondLink extends LinkCommon {
  kind: 'bond'
  mode: BondMode
  miimonMs?: number
  arpIntervalMs?: number
  arpTargets?: IpAddress[]
}
/** `ip link add NAME type vxlan id VNI dstport PORT [local L] [dev D] nolearning` */
export interface VxlanLink extends LinkCommon {
  kind: 'vxlan'
  vni: number
  port: number
  local?: IpAddress
  dev?: string
  learning: boolean
}
export interface BridgeLink extends LinkCommon {
  kind: 'bridge'
}

export type Link = WireguardLink | DummyLink | GreLink | BondLink | VxlanLink | BridgeLink

// ── Addresses ────────────────────────────────────────────────────────────────

/** `ip addr add LOCAL [peer PEER] dev LINK proto meshd`; point-to-point when `peer` is set. */
export interface Address {
  link: string
  /** With prefix length: "169.254.7.1/32". */
  local: Cidr
  /** The far end of a point-to-point link: "169.254.7.2/32". */
  peer?: Cidr
}

// ── Routes ───────────────────────────────────────────────────────────────────

export type RouteType = 'unicast' | 'blackhole' | 'unreachable' | 'throw'
export type RouteScope = 'global' | 'link' | 'host'

export interface NextHop {
  /** Gateway; omitted for a device route. */
  via?: IpAddress
  dev: string
  /** `onlink`: the gateway is reachable on dev even without a covering prefix (link-local /32 peers). */
  onlink?: boolean
  /** Multipath weight, 1..256. */
  weight?: number
}

/**
 * `ip route replace DST [via V dev D onlink | nexthop … ] table T proto meshd [metric M] [scope S] [src SRC]`.
 * Identity in the kernel (and here): family, table, dst, metric.
 */
export interface Route {
  table: number
  dst: Cidr
  type?: RouteType
  scope?: RouteScope
  metric?: number
  src?: IpAddress
  /** Exactly one of a single next hop or `multipath` for unicast routes. */
  nexthop?: NextHop
  multipath?: NextHop[]
}

// ── Rules ────────────────────────────────────────────────────────────────────

/**
 * `ip rule add priority P [from F] [to T] [iif I] [oif O] [fwmark M/MASK] lookup TABLE [suppress_prefixlength N] proto meshd`.
 * A rule has no identity but its whole content; two rules may share a priority.
 */
export interface Rule {
  family: Family
  priority: number
  table: number
  from?: Cidr
  to?: Cidr
  iif?: string
  oif?: string
  fwmark?: { value: number; mask: number }
  suppressPrefixLength?: number
}

// ── WireGuard ────────────────────────────────────────────────────────────────

export interface Endpoint {
  address: IpAddress
  port: number
}

export interface WireguardPeer {
  /** Base64 Curve25519 public key (44 characters). */
  publicKey: string
  presharedKey?: Secret<string>
  endpoint?: Endpoint
  allowedIps: Cidr[]
  persistentKeepaliveSeconds?: number
}

/** The configuration of one WireGuard interface, as `wg setconf` would take it. */
export interface WireguardDevice {
  name: string
  /** Base64 Curve25519 private key. */
  privateKey: Secret<string>
  listenPort: number
  fwmark?: number
  peers: WireguardPeer[]
}

// ── Sysctls ──────────────────────────────────────────────────────────────────

/** A /proc/sys value, e.g. { key: 'net.ipv4.conf.md-w1.rp_filter', value: '2' }. */
export interface Sysctl {
  key: string
  value: string
}

// ── The whole ────────────────────────────────────────────────────────────────

export interface DesiredState {
  links: Link[]
  addresses: Address[]
  routes: Route[]
  rules: Rule[]
  wireguard: WireguardDevice[]
  sysctls: Sysctl[]
}

export const EMPTY_STATE: DesiredState = { links: [], addresses: [], routes: [], rules: [], wireguard: [], sysctls: [] }

// ── What the kernel reports ──────────────────────────────────────────────────
// Dumps are normalised into the same shapes, plus what only the kernel knows.

export interface ObservedLink {
  name: string
  index: number
  /** IFLA_INFO_KIND as the kernel reports it; wireguard-go links report 'tun'. */
  kind: string | undefined
  mtu: number
  up: boolean
  /**
   * IFLA_CARRIER. A tun has carrier while a process holds it open: a persistent
   * tun whose wireguard-go exited reports false. Undefined when not reported.
   */
  carrier?: boolean
  master?: string
  /** Kind-specific attributes decoded where meshd needs to compare them (gre local/remote, vxlan id…). */
  info?: Record<string, unknown>
}

/** A link's byte counters as the kernel keeps them (`ip -s link`); for a WireGuard link, inner packets only. */
export interface LinkCounters {
  name: string
  rxBytes: number
  txBytes: number
}

export interface ObservedAddress extends Address {
  family: Family
  /** IFA_PROTO; RTPROT_MESHD for meshd's own addresses on links it does not own (e.g. lo). */
  protocol?: number
}

export interface ObservedRoute extends Route {
  family: Family
  protocol: number
  /**
   * The kernel's route type when it is none of RouteType ('local', 'broadcast',
   * 'multicast', 'prohibit', …); `type` is then undefined. Dumps always set one of the two.
   */
  otherType?: string
}

export interface ObservedRule extends Rule {
  protocol: number
  /** The rule's action when it is not 'lookup' (goto, nop, blackhole, unreachable, prohibit): `table` then means nothing. */
  action?: string
  /** `ip rule add not …`: the selectors are inverted. */
  invert?: boolean
}

export interface ObservedWireguardPeer {
  publicKey: string
  /** Present when one is set; never logged. */
  presharedKey?: Secret<string>
  endpoint?: Endpoint
  allowedIps: Cidr[]
  persistentKeepaliveSeconds?: number
  lastHandshakeMs?: number
  rxBytes?: number
  txBytes?: number
}

export interface ObservedWireguardDevice {
  name: string
  publicKey?: string
  privateKey?: Secret<string>
  listenPort: number
  fwmark?: number
  peers: ObservedWireguardPeer[]
}

export interface ObservedState {
  links: ObservedLink[]
  addresses: ObservedAddress[]
  routes: ObservedRoute[]
  rules: ObservedRule[]
  wireguard: ObservedWireguardDevice[]
  sysctls: Sysctl[]
}
