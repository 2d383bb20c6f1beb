// The imperative shell of the installer: reads what the host has (inspect),
// runs a plan's steps through injected filesystem and systemctl operations,
// and undoes them. A run is a transaction: if a step fails, every step that
// already ran is undone in reverse order and the error names the step; after
// a successful run the caller still holds rollback() (the join may fail
// after the service started) and commit() (drops the old package's backup).

import { dirname } from 'node:path'
import { onHost, unitPath, type InstallLayout } from './layout.js'
import { describeStep, type InstallStep, type InstalledState } from './plan.js'
import type { CopyEntry } from './package.js'

export interface InstallFs {
  /** 'dir', 'file', 'symlink' or undefined when absent (lstat: a symlink is not followed). */
  kind(path: string): Promise<'dir' | 'file' | 'symlink' | 'other' | undefined>
  readlink(path: string): Promise<string>
  realpath(path: string): Promise<string | undefined>
  readText(path: string): Promise<string | undefined>
  /** Copies one entry into `dir` (recursively, keeping modes and symlinks; a dependency's node_modules is left out). */
  copyEntry(entry: CopyEntry, dir: string, signal: AbortSignal): Promise<void>
  /** mkdir -p; returns the first directory it created, undefined when all existed. */
  mkdirp(path: string): Promise<string | undefined>
  rename(from: string, to: string): Promise<void>
  /** rm -rf; no error when absent. */
  remove(path: string): Promise<void>
  /** Creates or atomically replaces a symlink. */
  symlink(target: string, path: string): Promise<void>
  /** Creates or atomically replaces a file. */
  writeText(path: string, text: string, mode: number): Promise<void>
}

export interface SystemctlResult {
  code: number
  stdout: string
  stderr: string
}

export type Systemctl = (args: readonly string[], options: { signal: AbortSignal }) => Promise<SystemctlResult>

export class InstallError extends Error {
  override readonly name = 'InstallError'
}

export const UNIT_FILE_MODE = 0o644

/** What the host has now, for planInstall. */
export async function inspect(layout: InstallLayout, sourceRoot: string, deps: { fs: InstallFs; systemctl: Systemctl }, options: { signal: AbortSignal }): Promise<InstalledState> {
  const { fs, systemctl } = deps
  const prefix = onHost(layout, layout.prefix)
  let prefixState: InstalledState['prefix'] = 'absent'
  if ((await fs.kind(prefix)) !== undefined) {
    const [a, b] = await Promise.all([fs.realpath(prefix), fs.realpath(sourceRoot)])
    prefixState = a !== undefined && a === b ? 'is-source' : 'present'
  }
  const linkPath = onHost(layout, layout.binLink)
  const linkKind = await fs.kind(linkPath)
  const binLink: InstalledState['binLink'] = linkKind === undefined ? { kind: 'absent' } : linkKind === 'symlink' ? { kind: 'symlink', target: await fs.readlink(linkPath) } : { kind: 'other' }
  const unitText = await fs.readText(onHost(layout, unitPath(layout)))
  const enabled = (await systemctl(['is-enabled', '--quiet', layout.unitName], options)).code === 0
  const active = (await systemctl(['is-active', '--quiet', layout.unitName], options)).code === 0
  return { prefix: prefixState, binLink, unitText, enabled, active }
}

export interface InstallTransaction {
  /** Keep the install: removes the previous package's backup (safe twice). */
  commit(): Promise<void>
  /** Undo every step of this run, newest first (safe twice; no-op after commit). */
  rollback(): Promise<void>
}

export interface ExecuteComponents {
  fs: InstallFs
  systemctl: Systemctl
  /** Called with one line before each step runs. */
  report?: (line: string) => void
}

async function systemctlOrThrow(systemctl: Systemctl, args: readonly string[], signal: AbortSignal): Promise<void> {
  const result = await systemctl(args, { signal })
  if (result.code !== 0) {
    const detail = (result.stderr.trim().split('\n')[0] ?? '').trim()
    throw new InstallError(`systemctl ${args.join(' ')} failed (exit ${result.code})${detail === '' ? '' : `: ${detail}`}`)
  }
}

/** Runs the steps in order; on a failure undoes what ran and throws an InstallError naming the step. */
export async function executeInstall(steps: readonly InstallStep[], layout: InstallLayout, components: ExecuteComponents, options: { signal: AbortSignal }): Promise<InstallTransaction> {
  const { fs, systemctl } = components
  const undo: (() => Promise<void>)[] = []
  const cleanups: (() => Promise<void>)[] = []
  let unitChanged = false
  let restartAfterRollback: string | undefined
  let finished = false

  const rollback = async (): Promise<void> => {
    if (finished) return
    finished = true
    // Undo must run to the end even when the run's signal is aborted (Ctrl-C).
    const errors: string[] = []
    for (const step of undo.reverse()) {
      try {
        await step()
      } catch (error) {
        errors.push(error instanceof Error ? error.message : String(error))
      }
    }
    const signal = AbortSignal.timeout(60_000)
    if (unitChanged) await systemctl(['daemon-reload'], { signal }).catch(() => undefined)
    if (restartAfterRollback !== undefined) await systemctl(['restart', restartAfterRollback], { signal }).catch(() => undefined)
    if (errors.length > 0) throw new InstallError(`undoing the install failed: ${errors.join('; ')}`)
  }

  /** mkdir -p whose undo removes the directories it created. */
  const ensureDir = async (path: string): Promise<void> => {
    const created = await fs.mkdirp(path)
    if (created !== undefined) undo.push(() => fs.remove(created))
  }

  const run = async (step: InstallStep): Promise<void> => {
    const { signal } = options
    switch (step.kind) {
      case 'stage-package': {
        await ensureDir(dirname(step.stage))
        undo.push(() => fs.remove(step.stage))
        await fs.remove(step.stage)
        await fs.mkdirp(step.stage)
        for (const entry of step.entries) await fs.copyEntry(entry, step.stage, signal)
        if ((await fs.kind(step.node)) !== 'file') throw new InstallError(`the bundled Node.js (${step.node.slice(step.stage.length + 1)}) is missing from the package; reinstall it without --ignore-scripts`)
        return
      }
      case 'swap-package': {
        await ensureDir(dirname(step.prefix))
        if (step.backup !== undefined) {
          await fs.rename(step.prefix, step.backup)
          const backup = step.backup
          undo.push(() => fs.rename(backup, step.prefix))
          cleanups.push(() => fs.remove(backup))
        }
        await fs.rename(step.stage, step.prefix)
        undo.push(() => fs.remove(step.prefix))
        return
      }
      case 'link-bin': {
        await ensureDir(dirname(step.path))
        await fs.symlink(step.target, step.path)
        const previous = step.previous
        undo.push(() => (previous === undefined ? fs.remove(step.path) : fs.symlink(previous, step.path)))
        return
      }
      case 'write-unit': {
        await ensureDir(dirname(step.path))
        await fs.writeText(step.path, step.text, UNIT_FILE_MODE)
        unitChanged = true
        const previous = step.previous
        undo.push(() => (previous === undefined ? fs.remove(step.path) : fs.writeText(step.path, previous, UNIT_FILE_MODE)))
        return
      }
      case 'daemon-reload':
        await systemctlOrThrow(systemctl, ['daemon-reload'], signal)
        return
      case 'enable':
        undo.push(() => systemctlOrThrow(systemctl, ['disable', step.unit], AbortSignal.timeout(60_000)))
        await systemctlOrThrow(systemctl, ['enable', step.unit], signal)
        return
      case 'restart':
        if (step.wasActive) restartAfterRollback = step.unit
        else undo.push(() => systemctlOrThrow(systemctl, ['stop', step.unit], AbortSignal.timeout(60_000)))
        await systemctlOrThrow(systemctl, ['restart', step.unit], signal)
        return
    }
  }

  for (const step of steps) {
    components.report?.(describeStep(step, layout))
    try {
      options.signal.throwIfAborted()
      await run(step)
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      try {
        await rollback()
      } catch (undoError) {
        throw new InstallError(`${describeStep(step, layout)}: ${message}; ${undoError instanceof Error ? undoError.message : String(undoError)}`)
      }
      throw new InstallError(`${describeStep(step, layout)}: ${message}; nothing was changed`)
    }
  }

  return {
    async commit() {
      if (finished) return
      finished = true
      for (const cleanup of cleanups) await cleanup().catch(() => undefined)
    },
    rollback,
  }
}
