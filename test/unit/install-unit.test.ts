// systemd/meshd.service: what issue 5 item 4 requires of it, and `systemd-analyze verify`
// (systemd is installed by scripts/bootstrap; a missing systemd-analyze fails this test).

import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { bundledNodePath, DEFAULT_LAYOUT } from '../../src/install/layout.js'
import { REAL_UNIT } from './install-fixtures.js'

/** Directive lines of one section, comments kept apart: [key, value, the comment lines just above]. */
function directives(text: string, section: string): { key: string; value: string; comment: string }[] {
  const result: { key: string; value: string; comment: string }[] = []
  let current = ''
  let comment: string[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line.startsWith('[')) {
      current = line
      comment = []
    } else if (line.startsWith('#')) comment.push(line)
    else if (line.includes('=') && current === `[${section}]`) {
      const eq = line.indexOf('=')
      result.push({ key: line.slice(0, eq), value: line.slice(eq + 1), comment: comment.join('\n') })
      comment = []
    } else if (line === '') comment = []
  }
  return result
}

const service = directives(REAL_UNIT, 'Service')
const value = (key: string): string | undefined => service.find((d) => d.key === key)?.value

describe('systemd/meshd.service', () => {
  it('runs the agent with the bundled Node from where the installer puts meshd', () => {
    // With the agent's V8 heap flags (bin/meshd.js AGENT_NODE_FLAGS), so that it need not exec itself again to add them.
    expect(value('ExecStart')).toBe(`${bundledNodePath(DEFAULT_LAYOUT.prefix)} --max-semi-space-size=1 --no-opt --no-maglev --optimize-for-size ${DEFAULT_LAYOUT.prefix}/bin/meshd.js agent`)
    expect(readFileSync('bin/meshd.js', 'utf8')).toContain("const AGENT_NODE_FLAGS = ['--max-semi-space-size=1', '--no-opt', '--no-maglev', '--optimize-for-size']")
    // And the agent's environment, which bin/meshd.js would otherwise exec itself again to add.
    expect(value('Environment')).toBe('MALLOC_ARENA_MAX=2')
    expect(readFileSync('bin/meshd.js', 'utf8')).toContain("const AGENT_ENV = { MALLOC_ARENA_MAX: '2' }")
  })

  it('restarts on failure, keeps wireguard-go across restarts, and has its state and runtime directories', () => {
    expect(value('Restart')).toBe('on-failure')
    expect(value('KillMode')).toBe('process')
    expect(service.find((d) => d.key === 'KillMode')?.comment).toMatch(/wireguard-go/)
    expect(value('StateDirectory')).toBe('meshd')
    expect(value('StateDirectoryMode')).toBe('0700')
    expect(value('RuntimeDirectory')).toBe('meshd')
    // The unit's directories are the layout the installer and the CLI use.
    expect(`/var/lib/${value('StateDirectory') ?? ''}`).toBe(DEFAULT_LAYOUT.stateDir)
    expect(`/run/${value('RuntimeDirectory') ?? ''}/meshd.sock`).toBe(DEFAULT_LAYOUT.socketPath)
  })

  it('is hardened, and explains every capability it keeps', () => {
    expect(value('ProtectSystem')).toBe('strict')
    expect(value('ProtectHome')).toBe('yes')
    expect(value('NoNewPrivileges')).toBe('yes')
    const capabilities = (value('CapabilityBoundingSet') ?? '').split(/\s+/)
    expect(capabilities).toEqual(expect.arrayContaining(['CAP_NET_ADMIN', 'CAP_NET_RAW']))
    const comment = service.find((d) => d.key === 'CapabilityBoundingSet')?.comment ?? ''
    for (const capability of capabilities) expect(comment, `no comment for ${capability}`).toContain(`${capability}:`)
  })

  it('documents its stop policy', () => {
    expect(REAL_UNIT).toMatch(/^# Stop policy: /m)
    expect(REAL_UNIT).toMatch(/meshd down/)
  })

  it('passes systemd-analyze verify (with ExecStart pointing at files that exist here)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-unit-'))
    try {
      const execStart = `${process.execPath} ${resolve('bin/meshd.js')} agent`
      const text = REAL_UNIT.replace(/^ExecStart=.*$/m, `ExecStart=${execStart}`)
      expect(text).toContain(execStart)
      const path = join(dir, 'meshd.service')
      writeFileSync(path, text)
      const run = spawnSync('systemd-analyze', ['verify', '--man=no', path], { encoding: 'utf8' })
      expect(run.error, 'systemd-analyze is missing: run scripts/bootstrap (Debian package systemd)').toBeUndefined()
      // verify exits 0 on warnings such as unknown keys or bad values; any output is a finding.
      expect(run.stderr + run.stdout).toBe('')
      expect(run.status).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('the verify check notices a broken unit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-unit-'))
    try {
      const path = join(dir, 'meshd.service')
      writeFileSync(path, REAL_UNIT.replace(/^ExecStart=.*$/m, `ExecStart=${process.execPath} agent`).replace('KillMode=process', 'KillMode=proces'))
      const run = spawnSync('systemd-analyze', ['verify', '--man=no', path], { encoding: 'utf8' })
      expect(run.stderr).toMatch(/kill mode/i)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
