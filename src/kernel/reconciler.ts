// The imperative shell around ./plan.ts: read a fresh dump of the kernel, plan,
// execute every operation (a failure does not stop the others), report all
// failures together. `apply(EMPTY_STATE)` is the teardown.
//
// Speed (issue 3, item 9):
// - one link dump per pass, shared by the address and route dumps; routes and
//   rules are decoded only in meshd's tables and priority range;
// - a WireGuard device is read back (UAPI or genl) only when its desired
//   configuration changed since the last pass that applied it, when its link
//   is a different one (ifindex), after an error, or on a full resync: neither
//   backend notifies a configuration change, so a device changed out-of-band
//   is found by the periodic full resync (`fullResyncIntervalMs`) or by
//   `apply(…, { resync: true })` / `invalidate()`;
// - consecutive operations of one kind that do not depend on each other run
//   concurrently (bounded), wireguard-go processes are started and stopped in
//   parallel.

import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import { describeOperation, ownsLink, planOperations, type Operation } from './plan.js'
import { KernelError, type RtnetlinkPort } from './port.js'
import type { SysctlPort } from './sysctl.js'
import { InvalidDesiredState, validateDesiredState } from './validate.js'
import type { WireguardBackend } from './wireguard/backend.js'
import { isOwnedRulePriority, isOwnedTable, type DesiredState, type LinkKind, type ObservedLink, type ObservedState, type ObservedWireguardDevice, type WireguardDevice } from './types.js'

export interface ReconcilerComponents {
  rtnl: RtnetlinkPort
  wireguard: WireguardBackend
  sysctl: SysctlPort
  logger: Logger
}

export interface ReconcilerInit {
  /** Link kinds this kernel can create (./capabilities.ts). */
  supportedKinds: ReadonlySet<LinkKind>
  /**
   * A pass reads every WireGuard device back at least this often (default 30 s;
   * 0: every pass). Between full passes a device whose desired configuration
   * and link are unchanged since it was last applied is not read.
   */
  fullResyncIntervalMs?: number
  /** Operations of one kind run at most this many at a time (default 12). */
  concurrency?: number
  /** Injected for tests. */
  now?: () => number
}

export interface ApplyOptions {
  signal: AbortSignal
  /** Read every WireGuard device back this pass, whatever the cache says. */
  resync?: boolean
}

export interface OperationFailure {
  operation: Operation
  /** "ip"-style description of the operation; safe to log (no keys). */
  description: string
  error: KernelError | Error
}

export interface ApplyResult {
  /** Everything the plan held, in order. */
  planned: Operation[]
  /** Those that succeeded. */
  applied: Operation[]
  failures: OperationFailure[]
}

export interface Reconciler {
  /** Makes the kernel match `desired`. Throws InvalidDesiredState before touching anything when `desired` cannot be valid. */
  apply(desired: DesiredState, options: ApplyOptions): Promise<ApplyResult>
  /** The kernel as meshd sees it (links and addresses all, routes and rules in meshd's ranges; every WireGuard device read). */
  observe(desired: DesiredState, options: { signal: AbortSignal }): Promise<ObservedState>
  /** Forgets what was applied to these WireGuard devices (all when omitted): the next pass reads them back. */
  invalidate(names?: readonly string[]): void
}

// A delete that finds nothing to delete has reached the state it wanted.
const ALREADY_GONE = new Set(['ENOENT', 'ESRCH', 'ENODEV', 'EADDRNOTAVAIL'])

export function createReconciler(init: ReconcilerInit, components: ReconcilerComponents): Reconciler {
  const { rtnl, wireguard, sysctl, logger } = components

  const fullResyncIntervalMs = init.fullResyncIntervalMs ?? 30_000
  const concurrency = Math.max(1, init.concurrency ?? 12)
  const now = init.now ?? Date.now
  /** WireGuard devices as last applied: link index (once seen in a dump) and a digest of the configuration. */
  const lastApplied = new Map<string, { index: number | undefined; digest: string }>()
  let lastFullRead = -Infinity

  /**
   * A fresh dump of the kernel. WireGuard devices are read back unless `trusted`
   * says the desired configuration is already on that link; a trusted device is
   * reported as configured (the planner then leaves it alone).
   */
  async function observeWith(
    desired: DesiredState,
    signal: AbortSignal,
    trusted: (link: ObservedLink, device: WireguardDevice) => boolean,
    readUnwanted: boolean,
  ): Promise<ObservedState> {
    // Four dumps at once, on separate sockets; addresses and routes are named from the one link dump.
    const linkDump = rtnl.linkList({ signal })
    const [links, addresses, routes, rules] = await Promise.all([
      linkDump,
      rtnl.addrList({ signal, links: linkDump }),
      rtnl.routeList({ signal, links: linkDump, tables: isOwnedTable }),
      rtnl.ruleList({ signal, priorities: isOwnedRulePriority }),
    ])
    const wireguardKind = wireguard.kind === 'kernel' ? 'wireguard' : 'tun'
    const wanted = new Map(desired.wireguard.map((d) => [d.name, d]))
    const owned = links.filter((link) => ownsLink(link) && link.kind === wireguardKind)
    const devices: ObservedWireguardDevice[] = []
    const toRead: ObservedLink[] = []
    for (const link of owned) {
      const device = wanted.get(link.name)
      if (device !== undefined && trusted(link, device)) devices.push(asObserved(device))
      // The plan deletes an unwanted device's link without looking at its configuration.
      else if (device !== undefined || readUnwanted) toRead.push(link)
    }
    await forEachLimited(toRead, concurrency, async (link) => {
      try {
        devices.push(await wireguard.get(link.name, { signal }))
      } catch (error) {
        // An unreadable device is re-configured by the plan (it compares against nothing).
        lastApplied.delete(link.name)
        logger.debug({ link: link.name, err: error }, 'cannot read wireguard device')
      }
    })
    const sysctls = []
    for (const { key } of desired.sysctls) {
      const value = await sysctl.read(key)
      if (value !== undefined) sysctls.push({ key, value })
    }
    return { links, addresses, routes, rules, wireguard: devices, sysctls }
  }

  function observe(desired: DesiredState, { signal }: { signal: AbortSignal }): Promise<ObservedState> {
    return observeWith(desired, signal, () => false, true)
  }

  /** Interfaces wireguard-go runs, read at most once per pass (deletes and the final sweep share it). */
  function interfaceList(signal: AbortSignal): () => Promise<Set<string>> {
    let list: Promise<Set<string>> | undefined
    return () => (list ??= wireguard.listInterfaces({ signal }).then((names) => new Set(names)))
  }

  /** Stops the backend's interfaces `names`, in one go when the backend can; returns each failure. */
  async function removeInterfaces(names: readonly string[], signal: AbortSignal): Promise<Map<string, Error>> {
    if (names.length === 0) return new Map()
    if (wireguard.removeInterfaces) return wireguard.removeInterfaces(names, { signal })
    const failures = new Map<string, Error>()
    await forEachLimited(names, concurrency, async (name) => {
      try {
        await wireguard.removeInterface(name, { signal })
      } catch (error) {
        failures.set(name, error instanceof Error ? error : new Error(String(error)))
      }
    })
    return failures
  }

  /** Creates the tuns of new wireguard-go links, all in one go; returns each failure. */
  async function createInterfaces(names: readonly string[], signal: AbortSignal): Promise<Map<string, Error>> {
    if (wireguard.createInterfaces === undefined) throw new KernelError('tuntap add', 'EOPNOTSUPP', `the ${wireguard.kind} backend does not create tun devices`)
    return wireguard.createInterfaces(names, { signal })
  }

  /** How new wireguard-go links are made, decided once: persistent tuns when iproute2 is there, else wireguard-go's own. */
  let userspaceTuns: Promise<'persistent' | 'wireguard-go'> | undefined
  function tunMode(): Promise<'persistent' | 'wireguard-go'> {
    return (userspaceTuns ??= (async () => {
      if (wireguard.kind !== 'userspace' || wireguard.createInterfaces === undefined) return 'wireguard-go'
      if (await (wireguard.canCreateInterfaces?.() ?? Promise.resolve(true))) return 'persistent'
      logger.warn('iproute2 (ip) not found: wireguard-go creates its own tun devices, and new links come up in waves (slower)')
      return 'wireguard-go'
    })())
  }

  /** Executes one operation; wireguard-go links are deleted by runBatch, which stops their processes together. */
  async function execute(operation: Operation, signal: AbortSignal): Promise<void> {
    const options = { signal }
    switch (operation.op) {
      case 'linkAdd':
        return rtnl.linkAdd(operation.link, options)
      case 'linkSet':
        return rtnl.linkSet(operation.name, operation.change, options)
      case 'linkDel':
        return rtnl.linkDel(operation.name, options)
      case 'tunAdd': {
        const failure = (await createInterfaces([operation.name], signal)).get(operation.name)
        if (failure !== undefined) throw failure
        return
      }
      case 'wgEnsure':
        return wireguard.ensureInterface(operation.name, options)
      case 'wgSet':
        return wireguard.set(operation.device, options)
      case 'sysctlSet':
        return sysctl.write(operation.key, operation.value)
      case 'addrAdd':
        return rtnl.addrAdd(operation.address, options)
      case 'addrDel':
        return rtnl.addrDel(operation.address, options)
      case 'routeReplace':
        return rtnl.routeReplace(operation.route, options)
      case 'routeDel':
        return rtnl.routeDel(operation.route, options)
      case 'ruleAdd':
        return rtnl.ruleAdd(operation.rule, options)
      case 'ruleDel':
        return rtnl.ruleDel(operation.rule, options)
    }
  }

  // One pass at a time: drift repair and an explicit apply planning against the
  // same dump would both add the same objects (EEXIST).
  let queue: Promise<unknown> = Promise.resolve()
  function apply(desired: DesiredState, options: ApplyOptions): Promise<ApplyResult> {
    const pass = queue.then(() => applyOnce(desired, options))
    queue = pass.catch(() => undefined)
    return pass
  }

  async function applyOnce(desired: DesiredState, { signal, resync = false }: ApplyOptions): Promise<ApplyResult> {
    const problems = validateDesiredState(desired, { supportedKinds: init.supportedKinds })
    if (problems.length > 0) throw new InvalidDesiredState(problems)

    const full = resync || now() - lastFullRead >= fullResyncIntervalMs
    const digests = new Map(desired.wireguard.map((d) => [d.name, deviceDigest(d)]))
    const observed = await observeWith(desired, signal, (link, device) => {
      if (full) return false
      const entry = lastApplied.get(device.name)
      return entry !== undefined && entry.index === link.index && entry.digest === digests.get(device.name)
    }, false)
    if (full) lastFullRead = now()
    const planned = planOperations(observed, desired, { wireguardBackend: wireguard.kind, userspaceTuns: await tunMode() })
    const outcomes = new Map<number, Error | undefined>()
    const interfaces = interfaceList(signal)
    const settle = (operation: Operation, index: number, error: Error | undefined): void => {
      const isDelete = operation.op.endsWith('Del')
      const gone = isDelete && error instanceof KernelError && ALREADY_GONE.has(error.errno)
      outcomes.set(index, gone ? undefined : error)
      if (error === undefined) logger.info({ change: describeOperation(operation) }, 'kernel change')
      else if (!gone) logger.warn({ change: describeOperation(operation), err: error.message }, 'kernel change failed')
    }

    for (const batch of batches(planned)) {
      signal.throwIfAborted()
      const running = batch.some(({ operation }) => operation.op === 'linkDel') ? await interfaces() : new Set<string>()
      // wireguard-go owns its tun device; stopping the process removes the link and the socket.
      const stops = batch.filter(({ operation }) => operation.op === 'linkDel' && running.has(operation.name))
      const rest = batch.filter((entry) => !stops.includes(entry))
      const stopFailures = await removeInterfaces(stops.map(({ operation }) => operationLink(operation) ?? ''), signal)
      for (const { operation, index } of stops) settle(operation, index, stopFailures.get(operationLink(operation) ?? ''))
      if (batch[0]?.operation.op === 'tunAdd') {
        // One ip process for all of them.
        let created: Map<string, Error>
        try {
          created = await createInterfaces(batch.map(({ operation }) => operationLink(operation) ?? ''), signal)
        } catch (error) {
          const failure = error instanceof Error ? error : new Error(String(error))
          created = new Map(batch.map(({ operation }) => [operationLink(operation) ?? '', failure]))
        }
        for (const { operation, index } of batch) settle(operation, index, created.get(operationLink(operation) ?? ''))
        continue
      }
      // Every wireguard-go process reads the namespace's link notifications, and exits when its
      // socket overflows (ENOBUFS): link changes go one at a time on that backend.
      const floods = wireguard.kind === 'userspace' && batch[0]?.operation.op === 'linkSet'
      // A wireguard-go that came up before its configuration holds a random port until its own
      // set, which can be the one another device of the batch wants: a set refused for that is
      // tried again, once, after every other set of the batch has run (and freed those ports).
      const portsTaken: { operation: Operation; index: number }[] = []
      const run = async ({ operation, index }: { operation: Operation; index: number }, retry: boolean): Promise<void> => {
        try {
          await execute(operation, signal)
          settle(operation, index, undefined)
        } catch (error) {
          if (!retry && wireguard.kind === 'userspace' && operation.op === 'wgSet' && error instanceof KernelError && error.errno === 'EADDRINUSE') portsTaken.push({ operation, index })
          else settle(operation, index, error instanceof Error ? error : new Error(String(error)))
        }
      }
      await forEachLimited(rest, floods ? 1 : concurrency, (entry) => run(entry, false))
      for (const entry of portsTaken) {
        logger.debug({ change: describeOperation(entry.operation) }, 'listen port taken; setting it again after the others')
        await run(entry, true)
      }
    }

    const done: Operation[] = []
    const failures: OperationFailure[] = []
    planned.forEach((operation, index) => {
      const error = outcomes.get(index)
      if (error === undefined) done.push(operation)
      else failures.push({ operation, description: describeOperation(operation), error })
    })

    // wireguard-go processes whose interface is no longer wanted (their link may already be gone).
    // A safety net: swept on full passes, teardowns, and passes that started, stopped or failed something.
    const sweep = full || desired.wireguard.length === 0 || failures.length > 0 || planned.some((o) => o.op === 'linkDel' || o.op === 'wgEnsure')
    const wanted = new Set(desired.wireguard.map((d) => d.name))
    const stale = sweep ? [...(await interfaceList(signal)())].filter((name) => !wanted.has(name)).sort() : []
    for (const [name, error] of await removeInterfaces(stale, signal)) {
      const operation: Operation = { op: 'linkDel', name }
      failures.push({ operation, description: describeOperation(operation), error })
    }

    remember(desired, observed, planned, failures, digests)
    return { planned, applied: done, failures }
  }

  /**
   * Records what this pass left configured. A device the pass read (or trusted)
   * and did not need to touch keeps its link index; one the pass (re)configured
   * is known by digest only, and the next pass reads it once to learn its index.
   * Anything touched by a failed operation is forgotten.
   */
  function remember(desired: DesiredState, observed: ObservedState, planned: Operation[], failures: OperationFailure[], digests: Map<string, string>): void {
    const failed = new Set(failures.map((f) => operationLink(f.operation)).filter((n): n is string => n !== undefined))
    const touched = new Set(planned.map(operationLink).filter((n): n is string => n !== undefined))
    const indexes = new Map(observed.links.map((l) => [l.name, l.index]))
    const wanted = new Set(desired.wireguard.map((d) => d.name))
    for (const name of lastApplied.keys()) if (!wanted.has(name)) lastApplied.delete(name)
    for (const device of desired.wireguard) {
      const digest = digests.get(device.name)
      if (failed.has(device.name) || digest === undefined) {
        lastApplied.delete(device.name)
        continue
      }
      const index = touched.has(device.name) && planned.some((o) => isRecreation(o, device.name)) ? undefined : indexes.get(device.name)
      lastApplied.set(device.name, { index, digest })
    }
  }

  function invalidate(names?: readonly string[]): void {
    if (names === undefined) lastApplied.clear()
    else for (const name of names) lastApplied.delete(name)
  }

  return { apply, observe, invalidate }
}

/** The link an operation is about, for WireGuard devices: their link's operations and their configuration. */
function operationLink(operation: Operation): string | undefined {
  switch (operation.op) {
    case 'linkAdd':
      return operation.link.name
    case 'linkSet':
    case 'linkDel':
    case 'tunAdd':
    case 'wgEnsure':
      return operation.name
    case 'wgSet':
      return operation.device.name
    default:
      return undefined
  }
}

/** Whether the operation creates (or re-creates) link `name`: its index is not the observed one. */
function isRecreation(operation: Operation, name: string): boolean {
  return ((operation.op === 'wgEnsure' || operation.op === 'tunAdd') && operation.name === name) || (operation.op === 'linkAdd' && operation.link.name === name) || (operation.op === 'linkDel' && operation.name === name)
}

/**
 * A digest of a device's whole configuration, keys included, so that any change
 * to it is seen; only the digest is kept, never the keys.
 */
function deviceDigest(device: WireguardDevice): string {
  const peers = [...device.peers]
    .map((p) => ({
      publicKey: p.publicKey,
      presharedKey: p.presharedKey?.reveal() ?? '',
      endpoint: p.endpoint === undefined ? '' : `${p.endpoint.address}:${p.endpoint.port}`,
      allowedIps: [...p.allowedIps].sort(),
      keepalive: p.persistentKeepaliveSeconds ?? 0,
    }))
    .sort((a, b) => (a.publicKey < b.publicKey ? -1 : a.publicKey > b.publicKey ? 1 : 0))
  const text = JSON.stringify({ privateKey: device.privateKey.reveal(), listenPort: device.listenPort, fwmark: device.fwmark ?? 0, peers })
  return createHash('sha256').update(text).digest('base64')
}

/** A desired device as the backend would report it once configured: what the planner compares against. */
function asObserved(device: WireguardDevice): ObservedWireguardDevice {
  return {
    name: device.name,
    privateKey: device.privateKey,
    listenPort: device.listenPort,
    ...(device.fwmark === undefined ? {} : { fwmark: device.fwmark }),
    peers: device.peers.map((p) => ({ ...p })),
  }
}

/**
 * Consecutive operations that may run together: of one kind, and independent.
 * Links other than WireGuard are created and enslaved one by one (masters
 * first, as the plan orders them).
 */
function batchKey(operation: Operation): string | undefined {
  switch (operation.op) {
    case 'linkAdd':
      return operation.link.kind === 'wireguard' ? 'linkAdd wireguard' : undefined
    case 'linkSet':
      return operation.change.master === undefined ? 'linkSet' : undefined
    default:
      return operation.op
  }
}

function batches(planned: readonly Operation[]): { operation: Operation; index: number }[][] {
  const result: { operation: Operation; index: number }[][] = []
  let key: string | undefined
  planned.forEach((operation, index) => {
    const next = batchKey(operation)
    const last = result.at(-1)
    if (last !== undefined && next !== undefined && next === key) last.push({ operation, index })
    else result.push([{ operation, index }])
    key = next
  })
  return result
}

/** Runs `run` over `items`, at most `limit` at a time. */
async function forEachLimited<T>(items: readonly T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T
      await run(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}
