// One interface over the two ways meshd can run WireGuard: the kernel module
// (configured over generic netlink, ./kernel.ts) and wireguard-go (a process
// per interface, configured over its UAPI socket, ./userspace.ts). Also the
// pure pieces both share: the choice between them and the "does the device
// already match" comparison.

import { canonicalIp, ipFamily, networkOf, parseCidr } from '../ip.js'
import type { Endpoint, ObservedWireguardDevice, ObservedWireguardPeer, WireguardDevice, WireguardPeer } from '../types.js'

export interface WireguardBackend {
  readonly kind: 'kernel' | 'userspace'
  /** Make sure interface `name` exists (kernel: created by the reconciler via linkAdd kind wireguard, so a no-op here; userspace: start or adopt a wireguard-go process). */
  ensureInterface(name: string, options: { signal: AbortSignal }): Promise<void>
  /** Remove the interface and anything backing it (userspace: stop the process, remove the socket, delete the tun link). */
  removeInterface(name: string, options: { signal: AbortSignal }): Promise<void>
  /**
   * Removes several interfaces at once (userspace: one process-table scan, every
   * process signalled, one wait for all of them); resolves with each failure by
   * name. Optional: without it the caller removes them one by one.
   */
  removeInterfaces?(names: readonly string[], options: { signal: AbortSignal }): Promise<Map<string, Error>>
  /**
   * Userspace: creates persistent tun devices named `names` in one go, for the
   * processes ensureInterface starts later to attach to; resolves with each
   * failure by name. Absent on the kernel backend (links come from linkAdd).
   */
  createInterfaces?(names: readonly string[], options: { signal: AbortSignal }): Promise<Map<string, Error>>
  /** Whether createInterfaces can run here (userspace: iproute2's ip is installed). */
  canCreateInterfaces?(): Promise<boolean>
  /** Names of interfaces this backend currently runs (userspace: sockets in the UAPI dir with LINK_PREFIX). */
  listInterfaces(options: { signal: AbortSignal }): Promise<string[]>
  get(name: string, options: { signal: AbortSignal }): Promise<ObservedWireguardDevice>
  /**
   * Replace the whole configuration (private key, port, fwmark, peers — replace_peers semantics).
   * Both backends leave a device that already matches untouched, so an idempotent
   * reconcile pass never drops a WireGuard session.
   */
  set(device: WireguardDevice, options: { signal: AbortSignal }): Promise<void>
  close(): Promise<void>
}

export type BackendKind = WireguardBackend['kind']
/** The `wireguard.backend` configuration value. */
export type BackendOverride = BackendKind | 'auto'

/** Which backend to build, and why (for status output); `error` when the configured one cannot run. */
export type BackendChoice = { kind: BackendKind; reason: string } | { kind: 'error'; reason: string }

/** Picks the backend: the override when it can run, else the kernel when its genl family exists, else userspace. */
export function chooseBackend(input: { kernelAvailable: boolean; override?: BackendOverride }): BackendChoice {
  const override = input.override ?? 'auto'
  if (override === 'userspace') return { kind: 'userspace', reason: 'configured: userspace (wireguard-go)' }
  if (override === 'kernel') {
    return input.kernelAvailable
      ? { kind: 'kernel', reason: 'configured: kernel' }
      : { kind: 'error', reason: 'configured backend "kernel" is unavailable: the "wireguard" generic-netlink family does not resolve (module not loaded?)' }
  }
  return input.kernelAvailable
    ? { kind: 'kernel', reason: 'auto: the kernel has the "wireguard" generic-netlink family' }
    : { kind: 'userspace', reason: 'auto: the kernel lacks the "wireguard" generic-netlink family; using wireguard-go' }
}

const ZERO_KEY = Buffer.alloc(32)

/** Key bytes of a base64 key; undefined means "no key" (absent or all-zero, as both backends report an unset preshared key). */
function keyBytes(key: string | undefined): Buffer | string | undefined {
  if (key === undefined) return undefined
  const bytes = Buffer.from(key, 'base64')
  // An invalid key compares by its text, so two equal invalid strings still match.
  if (bytes.length !== 32) return key
  return bytes.equals(ZERO_KEY) ? undefined : bytes
}

/** Whether two base64 keys hold the same 32 bytes (absent ≡ all-zero). */
export function sameKey(a: string | undefined, b: string | undefined): boolean {
  const [x, y] = [keyBytes(a), keyBytes(b)]
  if (x === undefined || y === undefined) return x === y
  if (typeof x === 'string' || typeof y === 'string') return x === y
  return x.equals(y)
}

// Both backends report canonical, host-bit-masked text ("10.0.0.0/24" for a configured
// "10.0.0.1/24", "fd00::1" for "fd00:0::1"); a plain string compare would see a
// difference on every reconcile pass.

/** An allowed IP as the kernel and wireguard-go report it: canonical, host bits cleared. */
function canonicalPrefix(text: string): string {
  return parseCidr(text) === undefined ? text : networkOf(text)
}

/** An endpoint as comparable text; an IPv6 zone ("%eth0") is kept verbatim. */
function canonicalEndpoint(endpoint: Endpoint): string {
  const [address = '', zone] = endpoint.address.split('%')
  const canonical = ipFamily(address) === undefined ? address : canonicalIp(address)
  return `${canonical}${zone === undefined ? '' : `%${zone}`}:${endpoint.port}`
}

/** Whether a peer's configuration differs; handshake time and counters are not configuration. */
export function peerDiffers(desired: WireguardPeer, observed: ObservedWireguardPeer): boolean {
  if (!sameKey(desired.presharedKey?.reveal(), observed.presharedKey?.reveal())) return true
  if ((desired.persistentKeepaliveSeconds ?? 0) !== (observed.persistentKeepaliveSeconds ?? 0)) return true
  // No desired endpoint means "learn it from the peer": whatever WireGuard learned is fine.
  if (desired.endpoint !== undefined && (observed.endpoint === undefined || canonicalEndpoint(desired.endpoint) !== canonicalEndpoint(observed.endpoint))) return true
  const want = new Set(desired.allowedIps.map(canonicalPrefix))
  const have = new Set(observed.allowedIps.map(canonicalPrefix))
  return want.size !== have.size || [...want].some((cidr) => !have.has(cidr))
}

/** Finds the observed peer with the same public key (compared by value). */
export function findPeer<P extends { publicKey: string }>(peers: readonly P[], publicKey: string): P | undefined {
  return peers.find((peer) => sameKey(peer.publicKey, publicKey))
}

/** Whether the device needs a `set` to match `desired`: keys by value, port, fwmark, peers as sets. */
export function wireguardDeviceDiffers(desired: WireguardDevice, observed: ObservedWireguardDevice): boolean {
  if (!sameKey(desired.privateKey.reveal(), observed.privateKey?.reveal())) return true
  // Port 0 asks for a random port; any port the device picked satisfies it.
  if (desired.listenPort !== 0 && desired.listenPort !== observed.listenPort) return true
  if ((desired.fwmark ?? 0) !== (observed.fwmark ?? 0)) return true
  if (desired.peers.length !== observed.peers.length) return true
  return desired.peers.some((peer) => {
    const match = findPeer(observed.peers, peer.publicKey)
    return match === undefined || peerDiffers(peer, match)
  })
}
