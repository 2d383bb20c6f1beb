// Decodes a desired state from JSON (a file, a test driver's stdin) into typed
// values. Shapes are checked here; meanings (name lengths, prefixes, ranges)
// are checked by ./validate.ts, which every apply runs.

import { Secret } from '../logging/secret.js'
import type { Address, DesiredState, Endpoint, Link, NextHop, Route, Rule, Sysctl, WireguardDevice, WireguardPeer } from './types.js'

export class DecodeError extends Error {
  override readonly name = 'DecodeError'
}

type Json = Record<string, unknown>

function object(value: unknown, at: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new DecodeError(`${at}: expected an object`)
  return value as Json
}
function array(value: unknown, at: string): unknown[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new DecodeError(`${at}: expected an array`)
  return value
}
function string(value: unknown, at: string): string {
  if (typeof value !== 'string') throw new DecodeError(`${at}: expected a string`)
  return value
}
function number(value: unknown, at: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new DecodeError(`${at}: expected a number`)
  return value
}
function boolean(value: unknown, at: string): boolean {
  if (typeof value !== 'boolean') throw new DecodeError(`${at}: expected true or false`)
  return value
}
function optional<T>(value: unknown, at: string, decode: (v: unknown, at: string) => T): T | undefined {
  return value === undefined ? undefined : decode(value, at)
}
/** Copies only the keys whose value is defined, so optional fields stay absent. */
function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}

function decodeLink(value: unknown, at: string): Link {
  const o = object(value, at)
  const common = defined({
    name: string(o.name, `${at}.name`),
    up: o.up === undefined ? true : boolean(o.up, `${at}.up`),
    mtu: optional(o.mtu, `${at}.mtu`, number),
    master: optional(o.master, `${at}.master`, string),
  })
  const kind = string(o.kind, `${at}.kind`)
  switch (kind) {
    case 'wireguard':
    case 'dummy':
    case 'bridge':
      return { ...common, kind }
    case 'gre':
    case 'gretap':
      return defined({
        ...common,
        kind,
        local: string(o.local, `${at}.local`),
        remote: string(o.remote, `${at}.remote`),
        ttl: optional(o.ttl, `${at}.ttl`, number),
        key: optional(o.key, `${at}.key`, number),
        dev: optional(o.dev, `${at}.dev`, string),
      })
    case 'bond':
      return defined({
        ...common,
        kind,
        mode: string(o.mode, `${at}.mode`) as Extract<Link, { kind: 'bond' }>['mode'],
        miimonMs: optional(o.miimonMs, `${at}.miimonMs`, number),
        arpIntervalMs: optional(o.arpIntervalMs, `${at}.arpIntervalMs`, number),
        arpTargets: o.arpTargets === undefined ? undefined : array(o.arpTargets, `${at}.arpTargets`).map((t, i) => string(t, `${at}.arpTargets[${i}]`)),
      })
    case 'vxlan':
      return defined({
        ...common,
        kind,
        vni: number(o.vni, `${at}.vni`),
        port: number(o.port, `${at}.port`),
        local: optional(o.local, `${at}.local`, string),
        dev: optional(o.dev, `${at}.dev`, string),
        learning: o.learning === undefined ? false : boolean(o.learning, `${at}.learning`),
      })
    default:
      throw new DecodeError(`${at}.kind: unknown link kind "${kind}"`)
  }
}

function decodeNexthop(value: unknown, at: string): NextHop {
  const o = object(value, at)
  return defined({
    dev: string(o.dev, `${at}.dev`),
    via: optional(o.via, `${at}.via`, string),
    onlink: optional(o.onlink, `${at}.onlink`, boolean),
    weight: optional(o.weight, `${at}.weight`, number),
  })
}

function decodeRoute(value: unknown, at: string): Route {
  const o = object(value, at)
  const type = optional(o.type, `${at}.type`, string)
  if (type !== undefined && !['unicast', 'blackhole', 'unreachable', 'throw'].includes(type)) throw new DecodeError(`${at}.type: unknown route type "${type}"`)
  const scope = optional(o.scope, `${at}.scope`, string)
  if (scope !== undefined && !['global', 'link', 'host'].includes(scope)) throw new DecodeError(`${at}.scope: unknown scope "${scope}"`)
  return defined({
    table: number(o.table, `${at}.table`),
    dst: string(o.dst, `${at}.dst`),
    type: type as Route['type'],
    scope: scope as Route['scope'],
    metric: optional(o.metric, `${at}.metric`, number),
    src: optional(o.src, `${at}.src`, string),
    nexthop: optional(o.nexthop, `${at}.nexthop`, decodeNexthop),
    multipath: o.multipath === undefined ? undefined : array(o.multipath, `${at}.multipath`).map((n, i) => decodeNexthop(n, `${at}.multipath[${i}]`)),
  })
}

function decodeRule(value: unknown, at: string): Rule {
  const o = object(value, at)
  const family = number(o.family, `${at}.family`)
  if (family !== 4 && family !== 6) throw new DecodeError(`${at}.family: expected 4 or 6`)
  const fwmark = o.fwmark === undefined ? undefined : object(o.fwmark, `${at}.fwmark`)
  return defined({
    family,
    priority: number(o.priority, `${at}.priority`),
    table: number(o.table, `${at}.table`),
    from: optional(o.from, `${at}.from`, string),
    to: optional(o.to, `${at}.to`, string),
    iif: optional(o.iif, `${at}.iif`, string),
    oif: optional(o.oif, `${at}.oif`, string),
    fwmark: fwmark && { value: number(fwmark.value, `${at}.fwmark.value`), mask: number(fwmark.mask ?? 0xffffffff, `${at}.fwmark.mask`) },
    suppressPrefixLength: optional(o.suppressPrefixLength, `${at}.suppressPrefixLength`, number),
  })
}

function decodeEndpoint(value: unknown, at: string): Endpoint {
  const o = object(value, at)
  return { address: string(o.address, `${at}.address`), port: number(o.port, `${at}.port`) }
}

function decodePeer(value: unknown, at: string): WireguardPeer {
  const o = object(value, at)
  return defined({
    publicKey: string(o.publicKey, `${at}.publicKey`),
    presharedKey: o.presharedKey === undefined ? undefined : new Secret(string(o.presharedKey, `${at}.presharedKey`)),
    endpoint: optional(o.endpoint, `${at}.endpoint`, decodeEndpoint),
    allowedIps: array(o.allowedIps, `${at}.allowedIps`).map((a, i) => string(a, `${at}.allowedIps[${i}]`)),
    persistentKeepaliveSeconds: optional(o.persistentKeepaliveSeconds, `${at}.persistentKeepaliveSeconds`, number),
  })
}

function decodeDevice(value: unknown, at: string): WireguardDevice {
  const o = object(value, at)
  return defined({
    name: string(o.name, `${at}.name`),
    privateKey: new Secret(string(o.privateKey, `${at}.privateKey`)),
    listenPort: number(o.listenPort, `${at}.listenPort`),
    fwmark: optional(o.fwmark, `${at}.fwmark`, number),
    peers: array(o.peers, `${at}.peers`).map((p, i) => decodePeer(p, `${at}.peers[${i}]`)),
  })
}

function decodeAddress(value: unknown, at: string): Address {
  const o = object(value, at)
  return defined({ link: string(o.link, `${at}.link`), local: string(o.local, `${at}.local`), peer: optional(o.peer, `${at}.peer`, string) })
}

function decodeSysctl(value: unknown, at: string): Sysctl {
  const o = object(value, at)
  return { key: string(o.key, `${at}.key`), value: String(typeof o.value === 'number' ? o.value : string(o.value, `${at}.value`)) }
}

/** JSON value → DesiredState; throws DecodeError naming the first bad field (never echoing a key). */
export function decodeDesiredState(value: unknown): DesiredState {
  const o = object(value, 'state')
  return {
    links: array(o.links, 'links').map((l, i) => decodeLink(l, `links[${i}]`)),
    addresses: array(o.addresses, 'addresses').map((a, i) => decodeAddress(a, `addresses[${i}]`)),
    routes: array(o.routes, 'routes').map((r, i) => decodeRoute(r, `routes[${i}]`)),
    rules: array(o.rules, 'rules').map((r, i) => decodeRule(r, `rules[${i}]`)),
    wireguard: array(o.wireguard, 'wireguard').map((d, i) => decodeDevice(d, `wireguard[${i}]`)),
    sysctls: array(o.sysctls, 'sysctls').map((s, i) => decodeSysctl(s, `sysctls[${i}]`)),
  }
}
