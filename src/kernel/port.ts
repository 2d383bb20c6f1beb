// The operations the reconciler needs from the kernel, as an interface, so the
// reconciler can be tested against a fake and the real implementation
// (./netlink.ts, the only module that imports the `netlink` package) can be
// swapped per namespace. Each method is named after the iproute2 verb it mirrors.

import type {
  Address,
  Link,
  LinkCounters,
  ObservedAddress,
  ObservedLink,
  ObservedRoute,
  ObservedRule,
  ObservedWireguardDevice,
  Route,
  Rule,
  WireguardDevice,
} from './types.js'

export interface CallOptions {
  signal: AbortSignal
}

/** Options of the dumps that name links by index. */
export interface DumpOptions extends CallOptions {
  /**
   * Links from a dump taken in the same pass (or one under way: the dumps then
   * run concurrently): names links by index without another link dump.
   */
  links?: readonly ObservedLink[] | Promise<readonly ObservedLink[]>
}

/** `routeList` options: which tables to keep. */
export interface RouteDumpOptions extends DumpOptions {
  /**
   * Keep only routes in tables for which this holds. The kernel filters route
   * dumps by table only on sockets with NETLINK_GET_STRICT_CHK, which the
   * netlink package cannot set; the port skips other tables' routes before
   * decoding them, from the table byte of the header.
   */
  tables?: (table: number) => boolean
}

/** `ruleList` options: which priorities to keep (the kernel cannot filter rule dumps). */
export interface RuleDumpOptions extends CallOptions {
  priorities?: (priority: number) => boolean
}

/** Fields of a link that can change without re-creating it. */
export interface LinkChange {
  mtu?: number
  up?: boolean
  /** A name to enslave to; null to release from any master. */
  master?: string | null
}

export interface RtnetlinkPort {
  /** `ip -d link show` */
  linkList(options: CallOptions): Promise<ObservedLink[]>
  /** `ip -s link show`: every link's byte counters, in one dump. */
  linkCounters(options: CallOptions): Promise<LinkCounters[]>
  /** `ip addr show` (both families) */
  addrList(options: DumpOptions): Promise<ObservedAddress[]>
  /** `ip route show table all` and `ip -6 route show table all` (or only the tables asked for) */
  routeList(options: RouteDumpOptions): Promise<ObservedRoute[]>
  /** `ip rule show` and `ip -6 rule show` (or only the priorities asked for) */
  ruleList(options: RuleDumpOptions): Promise<ObservedRule[]>

  /** `ip link add NAME type KIND …` (NLM_F_CREATE|NLM_F_EXCL). Not for userspace WireGuard. */
  linkAdd(link: Link, options: CallOptions): Promise<void>
  /** `ip link set NAME [mtu M] [up|down] [master B|nomaster]` */
  linkSet(name: string, change: LinkChange, options: CallOptions): Promise<void>
  /** `ip link del NAME` */
  linkDel(name: string, options: CallOptions): Promise<void>
  /** `ip addr add LOCAL [peer P] dev LINK proto meshd` (NLM_F_CREATE|NLM_F_EXCL) */
  addrAdd(address: Address, options: CallOptions): Promise<void>
  /** `ip addr del LOCAL [peer P] dev LINK` */
  addrDel(address: Address, options: CallOptions): Promise<void>
  /** `ip route replace …  proto meshd` (NLM_F_CREATE|NLM_F_REPLACE) */
  routeReplace(route: Route, options: CallOptions): Promise<void>
  /** `ip route del …` */
  routeDel(route: Route, options: CallOptions): Promise<void>
  /** `ip rule add … proto meshd` (NLM_F_CREATE|NLM_F_EXCL) */
  ruleAdd(rule: Rule, options: CallOptions): Promise<void>
  /** `ip rule del …` */
  ruleDel(rule: Rule, options: CallOptions): Promise<void>

  /** Subscribes to link/address/route/rule notifications; returns an unsubscribe function. */
  watch(onChange: (what: 'link' | 'address' | 'route' | 'rule') => void): () => void
  close(): void
}

/** Kernel WireGuard over generic netlink (family "wireguard"). */
export interface WireguardGenlPort {
  /** Whether the "wireguard" generic-netlink family resolves on this kernel. */
  available(options: CallOptions): Promise<boolean>
  /** `wg show NAME dump` */
  deviceGet(name: string, options: CallOptions): Promise<ObservedWireguardDevice>
  /** `wg setconf NAME` (replace peers); large peer lists are split across messages. */
  deviceSet(device: WireguardDevice, options: CallOptions): Promise<void>
  close(): void
}

/** A kernel refusal, typed: the errno name and the operation that failed. */
export class KernelError extends Error {
  override readonly name = 'KernelError'
  constructor(
    readonly operation: string,
    /** e.g. "EEXIST", "ENODEV", "EOPNOTSUPP"; "ETIMEDOUT" for our own timeout; "EABORTED" on abort. */
    readonly errno: string,
    detail?: string,
  ) {
    super(`${operation}: ${errno}${detail ? ` (${detail})` : ''}`)
  }
}
