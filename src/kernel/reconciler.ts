// The imperative shell around ./plan.ts: read a fresh dump of the kernel, plan,
// execute every operation (a failure does not stop the others), report all
// failures together. `apply(EMPTY_STATE)` is the teardown.

import type { Logger } from 'pino'
import { describeOperation, ownsLink, planOperations, type Operation } from './plan.js'
import { KernelError, type RtnetlinkPort } from './port.js'
import type { SysctlPort } from './sysctl.js'
import { InvalidDesiredState, validateDesiredState } from './validate.js'
import type { WireguardBackend } from './wireguard/backend.js'
import type { DesiredState, LinkKind, ObservedState, ObservedWireguardDevice } from './types.js'

export interface ReconcilerComponents {
  rtnl: RtnetlinkPort
  wireguard: WireguardBackend
  sysctl: SysctlPort
  logger: Logger
}

export interface ReconcilerInit {
  /** Link kinds this kernel can create (./capabilities.ts). */
  supportedKinds: ReadonlySet<LinkKind>
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
  apply(desired: DesiredState, options: { signal: AbortSignal }): Promise<ApplyResult>
  /** The kernel as meshd sees it (all objects, not only meshd's). */
  observe(desired: DesiredState, options: { signal: AbortSignal }): Promise<ObservedState>
}

// A delete that finds nothing to delete has reached the state it wanted.
const ALREADY_GONE = new Set(['ENOENT', 'ESRCH', 'ENODEV', 'EADDRNOTAVAIL'])

export function createReconciler(init: ReconcilerInit, components: ReconcilerComponents): Reconciler {
  const { rtnl, wireguard, sysctl, logger } = components

  async function observe(desired: DesiredState, { signal }: { signal: AbortSignal }): Promise<ObservedState> {
    const [links, addresses, routes, rules] = await Promise.all([
      rtnl.linkList({ signal }),
      rtnl.addrList({ signal }),
      rtnl.routeList({ signal }),
      rtnl.ruleList({ signal }),
    ])
    const wireguardKind = wireguard.kind === 'kernel' ? 'wireguard' : 'tun'
    const devices: ObservedWireguardDevice[] = []
    for (const link of links) {
      if (!ownsLink(link) || link.kind !== wireguardKind) continue
      try {
        devices.push(await wireguard.get(link.name, { signal }))
      } catch (error) {
        // An unreadable device is re-configured by the plan (it compares against nothing).
        logger.debug({ link: link.name, err: error }, 'cannot read wireguard device')
      }
    }
    const sysctls = []
    for (const { key } of desired.sysctls) {
      const value = await sysctl.read(key)
      if (value !== undefined) sysctls.push({ key, value })
    }
    return { links, addresses, routes, rules, wireguard: devices, sysctls }
  }

  async function execute(operation: Operation, signal: AbortSignal): Promise<void> {
    const options = { signal }
    switch (operation.op) {
      case 'linkAdd':
        return rtnl.linkAdd(operation.link, options)
      case 'linkSet':
        return rtnl.linkSet(operation.name, operation.change, options)
      case 'linkDel':
        // wireguard-go owns its tun device; stopping it removes the link and the socket.
        if ((await wireguard.listInterfaces(options)).includes(operation.name)) return wireguard.removeInterface(operation.name, options)
        return rtnl.linkDel(operation.name, options)
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
  function apply(desired: DesiredState, options: { signal: AbortSignal }): Promise<ApplyResult> {
    const pass = queue.then(() => applyOnce(desired, options))
    queue = pass.catch(() => undefined)
    return pass
  }

  async function applyOnce(desired: DesiredState, { signal }: { signal: AbortSignal }): Promise<ApplyResult> {
    const problems = validateDesiredState(desired, { supportedKinds: init.supportedKinds })
    if (problems.length > 0) throw new InvalidDesiredState(problems)

    const observed = await observe(desired, { signal })
    const planned = planOperations(observed, desired, { wireguardBackend: wireguard.kind })
    const applied: Operation[] = []
    const failures: OperationFailure[] = []
    for (const operation of planned) {
      signal.throwIfAborted()
      const description = describeOperation(operation)
      try {
        await execute(operation, signal)
        applied.push(operation)
        logger.info({ change: description }, 'kernel change')
      } catch (error) {
        const isDelete = operation.op.endsWith('Del')
        if (isDelete && error instanceof KernelError && ALREADY_GONE.has(error.errno)) {
          applied.push(operation)
          continue
        }
        const failure = { operation, description, error: error instanceof Error ? error : new Error(String(error)) }
        failures.push(failure)
        logger.warn({ change: description, err: failure.error.message }, 'kernel change failed')
      }
    }

    // wireguard-go processes whose interface is no longer wanted (their link may already be gone).
    const wanted = new Set(desired.wireguard.map((d) => d.name))
    for (const name of await wireguard.listInterfaces({ signal })) {
      if (wanted.has(name)) continue
      try {
        await wireguard.removeInterface(name, { signal })
      } catch (error) {
        const operation: Operation = { op: 'linkDel', name }
        failures.push({ operation, description: describeOperation(operation), error: error instanceof Error ? error : new Error(String(error)) })
      }
    }
    return { planned, applied, failures }
  }

  return { apply, observe }
}
