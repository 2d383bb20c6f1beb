// The install plan: pure. From what to install and what the host has now, the
// ordered steps that bring the host to "meshd installed under the prefix, on
// PATH, its unit installed, enabled and (re)started". Steps whose result is
// already there are left out, so installing twice changes nothing the second
// time except restarting the service. The executor (execute.ts) runs the
// steps and knows how to undo each one.

import { dirname, join } from 'node:path'
import { bundledNodePath, onHost, unitPath, type InstallLayout } from './layout.js'
import type { CopyEntry } from './package.js'

/** What the host has now, as inspect() reads it. */
export interface InstalledState {
  /** 'is-source': this meshd runs from the prefix itself (a reinstall from the installed copy). */
  readonly prefix: 'absent' | 'present' | 'is-source'
  readonly binLink: { readonly kind: 'absent' } | { readonly kind: 'symlink'; readonly target: string } | { readonly kind: 'other' }
  /** The installed unit's text, undefined when absent. */
  readonly unitText: string | undefined
  readonly enabled: boolean
  readonly active: boolean
}

export interface InstallInput {
  readonly layout: InstallLayout
  readonly entries: readonly CopyEntry[]
  readonly unitText: string
  readonly current: InstalledState
  /** Makes the staging and backup names unique to this run. */
  readonly runId: string
  /** Enable and (re)start the service; false installs the files only (default true). */
  readonly start?: boolean
}

/** Paths in steps are host paths (under layout.root); link targets are what the running system resolves. */
export type InstallStep =
  | { readonly kind: 'stage-package'; readonly stage: string; readonly entries: readonly CopyEntry[]; readonly node: string }
  | { readonly kind: 'swap-package'; readonly stage: string; readonly prefix: string; readonly backup: string | undefined }
  | { readonly kind: 'link-bin'; readonly path: string; readonly target: string; readonly previous: string | undefined }
  | { readonly kind: 'write-unit'; readonly path: string; readonly text: string; readonly previous: string | undefined }
  | { readonly kind: 'daemon-reload' }
  | { readonly kind: 'enable'; readonly unit: string }
  | { readonly kind: 'restart'; readonly unit: string; readonly wasActive: boolean }

export type InstallPlan = { readonly ok: true; readonly steps: readonly InstallStep[] } | { readonly ok: false; readonly reason: string }

export function planInstall(input: InstallInput): InstallPlan {
  const { layout, current } = input
  const prefix = onHost(layout, layout.prefix)
  const steps: InstallStep[] = []

  if (current.binLink.kind === 'other') {
    return { ok: false, reason: `${layout.binLink} exists and is not a symlink; move it away and run again` }
  }
  if (current.prefix !== 'is-source') {
    if (!input.entries.some((entry) => entry.to === 'package.json')) return { ok: false, reason: 'nothing to install: the package has no package.json' }
    const stage = join(dirname(prefix), `.meshd.new-${input.runId}`)
    steps.push({ kind: 'stage-package', stage, entries: input.entries, node: bundledNodePath(stage) })
    steps.push({ kind: 'swap-package', stage, prefix, backup: current.prefix === 'present' ? join(dirname(prefix), `.meshd.old-${input.runId}`) : undefined })
  }

  const target = join(layout.prefix, 'bin', 'meshd.js')
  if (!(current.binLink.kind === 'symlink' && current.binLink.target === target)) {
    steps.push({ kind: 'link-bin', path: onHost(layout, layout.binLink), target, previous: current.binLink.kind === 'symlink' ? current.binLink.target : undefined })
  }
  if (current.unitText !== input.unitText) {
    steps.push({ kind: 'write-unit', path: onHost(layout, unitPath(layout)), text: input.unitText, previous: current.unitText })
  }
  steps.push({ kind: 'daemon-reload' })
  if (input.start === false) return { ok: true, steps }
  if (!current.enabled) steps.push({ kind: 'enable', unit: layout.unitName })
  // restart, not start: a running agent of an older install picks up the new package and state.
  steps.push({ kind: 'restart', unit: layout.unitName, wasActive: current.active })
  return { ok: true, steps }
}

/** One line per step, as the installer prints it (wg-quick style: every change is shown). */
export function describeStep(step: InstallStep, layout: InstallLayout): string {
  switch (step.kind) {
    case 'stage-package':
      return `copy meshd and its production dependencies (${step.entries.length} entries) to ${layout.prefix}`
    case 'swap-package':
      return step.backup === undefined ? `install ${layout.prefix}` : `replace ${layout.prefix}`
    case 'link-bin':
      return `ln -sf ${step.target} ${layout.binLink}`
    case 'write-unit':
      return `${step.previous === undefined ? 'install' : 'update'} ${unitPath(layout)}`
    case 'daemon-reload':
      return 'systemctl daemon-reload'
    case 'enable':
      return `systemctl enable ${step.unit}`
    case 'restart':
      return `systemctl ${step.wasActive ? 'restart' : 'start'} ${step.unit}`
  }
}
