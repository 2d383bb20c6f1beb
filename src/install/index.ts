// Installing meshd as a systemd service: what `meshd init` and `meshd join`
// do without --foreground. Pure plan (plan.ts) + executor (execute.ts) over
// injected filesystem and systemctl (system.ts has the real ones).

import { join } from 'node:path'
import { executeInstall, inspect, InstallError, type InstallFs, type InstallTransaction, type Systemctl } from './execute.js'
import { onHost, type InstallLayout } from './layout.js'
import { collectPackage, PackageError, type PackageReader } from './package.js'
import { planInstall } from './plan.js'
import { parseServiceState, type ServiceState } from './wait.js'

export { InstallError } from './execute.js'
export type { InstallFs, InstallTransaction, Systemctl } from './execute.js'
export { DEFAULT_LAYOUT, layoutFromEnv, onHost, type InstallLayout } from './layout.js'
export { thisPackageRoot, type PackageReader } from './package.js'
export { createSystemctl, nodeInstallFs, nodePackageReader } from './system.js'
export { parseServiceState, waitForJoin, type JoinStatus, type ServiceState, type WaitResult } from './wait.js'

export interface InstallComponents {
  fs: InstallFs
  reader: PackageReader
  systemctl: Systemctl
  /** The meshd package this process runs from (copied to the prefix). */
  sourceRoot: string
  report?: (line: string) => void
}

/** Whether systemd is the running init, as sd_booted(3) decides: /run/systemd/system exists. */
export async function systemdRunning(layout: InstallLayout, fs: InstallFs): Promise<boolean> {
  return (await fs.kind(onHost(layout, layout.systemdRunDir))) === 'dir'
}

/**
 * Installs the package, the `meshd` symlink and the unit, reloads systemd,
 * enables and (re)starts the service (unless `start` is false). Throws InstallError after undoing
 * everything on a failure; otherwise returns the transaction to commit once
 * the agent has joined, or to roll back if it does not.
 */
export async function installService(layout: InstallLayout, components: InstallComponents, options: { signal: AbortSignal; runId: string; start?: boolean }): Promise<InstallTransaction> {
  let entries
  try {
    entries = await collectPackage(components.sourceRoot, components.reader)
  } catch (error) {
    if (error instanceof PackageError) throw new InstallError(`cannot install meshd: ${error.message}`)
    throw error
  }
  const unitText = await components.fs.readText(join(components.sourceRoot, 'systemd', layout.unitName))
  if (unitText === undefined) throw new InstallError(`cannot install meshd: ${join(components.sourceRoot, 'systemd', layout.unitName)} is missing from the package`)
  const current = await inspect(layout, components.sourceRoot, components, options)
  const plan = planInstall({ layout, entries, unitText, current, runId: options.runId, start: options.start ?? true })
  if (!plan.ok) throw new InstallError(`cannot install meshd: ${plan.reason}`)
  return executeInstall(plan.steps, layout, components, options)
}

/** NRestarts and the unit's state, from `systemctl show`. */
export async function serviceState(layout: InstallLayout, systemctl: Systemctl, signal: AbortSignal): Promise<ServiceState> {
  const result = await systemctl(['show', '-p', 'ActiveState', '-p', 'SubState', '-p', 'NRestarts', layout.unitName], { signal })
  return parseServiceState(result.stdout)
}
