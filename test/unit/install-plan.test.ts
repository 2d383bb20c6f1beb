import { describe, expect, it } from 'vitest'
import { DEFAULT_LAYOUT } from '../../src/install/layout.js'
import { describeStep, planInstall, type InstalledState, type InstallStep } from '../../src/install/plan.js'

const entries = [
  { from: '/src/meshd/package.json', to: 'package.json', skipNodeModules: false },
  { from: '/src/meshd/bin', to: 'bin', skipNodeModules: true },
  { from: '/src/node_modules/node', to: 'node_modules/node', skipNodeModules: true },
]
const UNIT = '[Service]\nExecStart=/usr/local/lib/meshd/node_modules/node/bin/node /usr/local/lib/meshd/bin/meshd.js agent\n'
const fresh: InstalledState = { prefix: 'absent', binLink: { kind: 'absent' }, unitText: undefined, enabled: false, active: false }
const installed: InstalledState = { prefix: 'present', binLink: { kind: 'symlink', target: '/usr/local/lib/meshd/bin/meshd.js' }, unitText: UNIT, enabled: true, active: false }

function plan(current: InstalledState, layout = DEFAULT_LAYOUT): readonly InstallStep[] {
  const result = planInstall({ layout, entries, unitText: UNIT, current, runId: 'r1' })
  if (!result.ok) throw new Error(result.reason)
  return result.steps
}

describe('install plan', () => {
  it('installs everything on a fresh host, in order', () => {
    expect(plan(fresh)).toEqual([
      { kind: 'stage-package', stage: '/usr/local/lib/.meshd.new-r1', entries, node: '/usr/local/lib/.meshd.new-r1/node_modules/node/bin/node' },
      { kind: 'swap-package', stage: '/usr/local/lib/.meshd.new-r1', prefix: '/usr/local/lib/meshd', backup: undefined },
      { kind: 'link-bin', path: '/usr/local/bin/meshd', target: '/usr/local/lib/meshd/bin/meshd.js', previous: undefined },
      { kind: 'write-unit', path: '/etc/systemd/system/meshd.service', text: UNIT, previous: undefined },
      { kind: 'daemon-reload' },
      { kind: 'enable', unit: 'meshd.service' },
      { kind: 'restart', unit: 'meshd.service', wasActive: false },
    ])
  })

  it('over an existing install replaces the package (keeping a backup) and leaves identical link and unit alone', () => {
    expect(plan(installed).map((s) => s.kind)).toEqual(['stage-package', 'swap-package', 'daemon-reload', 'restart'])
    expect(plan(installed)[1]).toEqual({ kind: 'swap-package', stage: '/usr/local/lib/.meshd.new-r1', prefix: '/usr/local/lib/meshd', backup: '/usr/local/lib/.meshd.old-r1' })
  })

  it('run from the installed copy, only reloads and restarts', () => {
    expect(plan({ ...installed, prefix: 'is-source', active: true })).toEqual([
      { kind: 'daemon-reload' },
      { kind: 'restart', unit: 'meshd.service', wasActive: true },
    ])
  })

  it('replaces an older unit and a symlink to another meshd, remembering both for undo', () => {
    const steps = plan({ ...installed, prefix: 'is-source', unitText: 'old', binLink: { kind: 'symlink', target: '../lib/node_modules/meshd/bin/meshd.js' } })
    expect(steps).toContainEqual({ kind: 'link-bin', path: '/usr/local/bin/meshd', target: '/usr/local/lib/meshd/bin/meshd.js', previous: '../lib/node_modules/meshd/bin/meshd.js' })
    expect(steps).toContainEqual({ kind: 'write-unit', path: '/etc/systemd/system/meshd.service', text: UNIT, previous: 'old' })
  })

  it('with start: false installs the files only', () => {
    const result = planInstall({ layout: DEFAULT_LAYOUT, entries, unitText: UNIT, current: fresh, runId: 'r1', start: false })
    expect(result.ok && result.steps.map((s) => s.kind)).toEqual(['stage-package', 'swap-package', 'link-bin', 'write-unit', 'daemon-reload'])
  })

  it('refuses to replace a /usr/local/bin/meshd that is not a symlink', () => {
    expect(planInstall({ layout: DEFAULT_LAYOUT, entries, unitText: UNIT, current: { ...fresh, binLink: { kind: 'other' } }, runId: 'r1' })).toEqual({
      ok: false,
      reason: '/usr/local/bin/meshd exists and is not a symlink; move it away and run again',
    })
  })

  it('puts host paths under the root but keeps link targets as the system sees them', () => {
    const steps = plan(fresh, { ...DEFAULT_LAYOUT, root: '/tmp/root' })
    expect(steps[1]).toMatchObject({ prefix: '/tmp/root/usr/local/lib/meshd' })
    expect(steps[2]).toEqual({ kind: 'link-bin', path: '/tmp/root/usr/local/bin/meshd', target: '/usr/local/lib/meshd/bin/meshd.js', previous: undefined })
    expect(steps[3]).toMatchObject({ path: '/tmp/root/etc/systemd/system/meshd.service' })
  })

  it('describes every step in one line naming system paths', () => {
    expect(plan(fresh).map((step) => describeStep(step, DEFAULT_LAYOUT))).toEqual([
      'copy meshd and its production dependencies (3 entries) to /usr/local/lib/meshd',
      'install /usr/local/lib/meshd',
      'ln -sf /usr/local/lib/meshd/bin/meshd.js /usr/local/bin/meshd',
      'install /etc/systemd/system/meshd.service',
      'systemctl daemon-reload',
      'systemctl enable meshd.service',
      'systemctl start meshd.service',
    ])
  })
})
