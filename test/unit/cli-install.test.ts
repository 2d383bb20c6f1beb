// `meshd init` / `meshd join` without --foreground (install the service) and
// with it (the state a failed join wrote is removed again).

import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { defaultCommandDeps, installCommand, joinCommand, type CommandDeps } from '../../src/agent/commands.js'
import type { Agent } from '../../src/agent/agent.js'
import { IDENTITY_FILE_NAME } from '../../src/membership/identity.js'
import { NETWORK_FILE, PENDING_TOKEN_FILE, saveNetwork, WIREGUARD_KEY_FILE } from '../../src/agent/state.js'
import { parseCommandLine } from '../../src/cli/args.js'
import { hasNetAdmin, type LocalCommandContext } from '../../src/cli/main.js'
import type { JoinStatus } from '../../src/install/wait.js'
import { nodeInstallFs, nodePackageReader } from '../../src/install/system.js'
import { createToken } from '../../src/membership/token.js'
import { countingRandom, labNetwork, seededSigner } from './membership-fixtures.js'
import { fakeSystemctl, sandbox, snapshot, type Sandbox } from './install-fixtures.js'
import { sink } from '../support/sink.js'

const TOKEN = createToken({ network: labNetwork(), issuer: seededSigner(1), bootstrap: ['/ip4/192.0.2.1/tcp/7373'], now: Date.now(), random: countingRandom(9) }).reveal()

const cleanup: string[] = []
afterEach(() => {
  for (const dir of cleanup.splice(0)) rmSync(dir, { recursive: true, force: true })
})
function box(options?: Parameters<typeof sandbox>[0]): Sandbox {
  const b = sandbox(options)
  cleanup.push(b.base)
  return b
}


function context(argv: string[], env: Record<string, string>): { context: LocalCommandContext; out: () => string; err: () => string } {
  const out = sink()
  const err = sink()
  const { global } = parseCommandLine(argv, env)
  return { context: { global, io: { stdout: out.stream, stderr: err.stream, env }, signal: AbortSignal.timeout(8000) }, out: out.text, err: err.text }
}

/** Fake time: sleep advances the clock, so deadlines pass without waiting. */
function deps(b: Sandbox, systemctl: ReturnType<typeof fakeSystemctl>, status: () => JoinStatus | undefined): CommandDeps {
  let clock = 0
  return {
    ...defaultCommandDeps(),
    fs: nodeInstallFs,
    reader: nodePackageReader,
    systemctl: systemctl.systemctl,
    sourceRoot: b.source,
    agentStatus: () => Promise.resolve(status()),
    now: () => clock,
    sleep: (ms) => {
      clock += ms
      return Promise.resolve()
    },
    joinTimeoutMs: 30_000,
    peerTimeoutMs: 10_000,
    pollMs: 500,
  }
}

describe('meshd join without --foreground, through the real CLI', () => {
  const run = (args: string[], root: string) =>
    spawnSync(process.execPath, ['bin/meshd.js', ...args], { encoding: 'utf8', env: { ...process.env, MESHD_INSTALL_ROOT: root, MESHD_LOG_LEVEL: 'silent' } })

  it('on a host without systemd says how to run in the foreground, exits 1 and changes nothing', () => {
    const root = mkdtempSync(join(tmpdir(), 'meshd-root-'))
    cleanup.push(root)
    const result = run(['join', TOKEN], root)
    if (!hasNetAdmin()) {
      expect(result.stderr).toMatch(/needs root/)
      return
    }
    expect(result.status).toBe(1)
    expect(result.stdout).toBe('')
    expect(result.stderr).toMatch(/^meshd: this host does not run systemd \(no \/run\/systemd\/system\), .*: meshd join <token> --foreground\n$/)
    expect(result.stderr.trim().split('\n')).toHaveLength(1)
    expect(result.stderr).not.toContain(TOKEN.slice(10, 40))
    expect(snapshot(root)).toEqual(['/ 700'])
  })

  it('refuses a bad token in one line with exit 2 before looking at systemd', () => {
    const root = mkdtempSync(join(tmpdir(), 'meshd-root-'))
    cleanup.push(root)
    const result = run(['join', 'meshd1.not-a-token'], root)
    if (!hasNetAdmin()) return
    expect(result.status).toBe(2)
    expect(result.stderr.trim().split('\n')).toHaveLength(1)
    expect(snapshot(root)).toEqual(['/ 700'])
  })
})

describe('meshd join installing the service (fake systemctl, real files under a temporary root)', () => {
  it('writes the token for the agent, installs and starts the service, and reports the peers reached', async () => {
    const b = box()
    const systemctl = fakeSystemctl()
    const c = context(['join', TOKEN], { MESHD_INSTALL_ROOT: b.root })
    let polls = 0
    const status = (): JoinStatus | undefined => {
      if (!systemctl.state.active) return undefined
      polls += 1
      return polls < 3 ? undefined : { self: { addresses: ['10.73.0.9', 'fd00::9'], network: { name: 'lab' } }, peers: [{ state: 'up' }] }
    }
    expect(await joinCommand({ token: TOKEN, foreground: false }, c.context, deps(b, systemctl, status))).toBe(0)
    expect(c.out()).toBe('joined network lab; this host is 10.73.0.9; reached 1 of 1 peer(s); meshd.service is enabled and running\n')
    expect(c.err()).not.toContain(TOKEN.slice(10, 40))
    const stateDir = join(b.root, 'var/lib/meshd')
    expect(statSync(stateDir).mode & 0o777).toBe(0o700)
    expect(statSync(join(stateDir, PENDING_TOKEN_FILE)).mode & 0o777).toBe(0o600)
    expect(readFileSync(join(stateDir, PENDING_TOKEN_FILE), 'utf8').trim()).toBe(TOKEN)
    expect(existsSync(join(stateDir, NETWORK_FILE))).toBe(true)
    expect(existsSync(join(b.root, 'etc/systemd/system/meshd.service'))).toBe(true)
    expect(systemctl.state).toMatchObject({ enabled: true, active: true })
  })

  it('when the agent exits before joining, removes the service, the install and the state again', async () => {
    const b = box()
    const before = snapshot(b.root)
    const systemctl = fakeSystemctl()
    systemctl.onRestart = () => {
      systemctl.state.subState = 'auto-restart'
    }
    const c = context(['join', TOKEN], { MESHD_INSTALL_ROOT: b.root })
    expect(await joinCommand({ token: TOKEN, foreground: false }, c.context, deps(b, systemctl, () => undefined))).toBe(1)
    expect(c.err()).toMatch(/meshd: the agent exited before joining \(see "journalctl -u meshd"\); nothing of this run is kept \(the previous install, if any, is back\)\n$/)
    expect(snapshot(b.root)).toEqual(before)
    expect(systemctl.state).toMatchObject({ enabled: false, active: false })
  })

  it('when the agent does not join in time, leaves nothing behind either', async () => {
    const b = box()
    const before = snapshot(b.root)
    const systemctl = fakeSystemctl()
    const c = context(['join', TOKEN], { MESHD_INSTALL_ROOT: b.root })
    expect(await joinCommand({ token: TOKEN, foreground: false }, c.context, deps(b, systemctl, () => undefined))).toBe(1)
    expect(c.err()).toMatch(/did not join within 30 s/)
    expect(snapshot(b.root)).toEqual(before)
  })

  it('when systemctl cannot run at all, says so in one line and changes nothing', async () => {
    const b = box()
    const before = snapshot(b.root)
    const c = context(['join', TOKEN], { MESHD_INSTALL_ROOT: b.root })
    const d = { ...deps(b, fakeSystemctl(), () => undefined), systemctl: () => Promise.reject(new Error('cannot run systemctl: spawn systemctl ENOENT')) }
    expect(await joinCommand({ token: TOKEN, foreground: false }, c.context, d)).toBe(1)
    expect(c.err()).toBe('meshd: cannot run systemctl: spawn systemctl ENOENT; nothing of this run is kept (the previous install, if any, is back)\n')
    expect(snapshot(b.root)).toEqual(before)
  })

  it('needs --foreground for --state-dir, and changes nothing', async () => {
    const b = box()
    const before = snapshot(b.root)
    const c = context(['join', TOKEN, '--state-dir', join(b.base, 'state')], { MESHD_INSTALL_ROOT: b.root })
    expect(await joinCommand({ token: TOKEN, foreground: false }, c.context, deps(b, fakeSystemctl(), () => undefined))).toBe(2)
    expect(c.err()).toBe('meshd: --state-dir, --socket and --listen need --foreground; the service always uses /var/lib/meshd and /run/meshd/meshd.sock\n')
    expect(snapshot(b.root)).toEqual(before)
    expect(existsSync(join(b.base, 'state'))).toBe(false)
  })

  it('needs --foreground for --mdns, says how the service gets it, and changes nothing', async () => {
    const b = box()
    const before = snapshot(b.root)
    const c = context(['join', TOKEN, '--mdns'], { MESHD_INSTALL_ROOT: b.root })
    expect(await joinCommand({ token: TOKEN, foreground: false }, c.context, deps(b, fakeSystemctl(), () => undefined))).toBe(2)
    expect(c.err()).toBe('meshd: --mdns (MESHD_MDNS) needs --foreground; for the service, set Environment=MESHD_MDNS=1 in a drop-in (README, "mDNS")\n')
    expect(snapshot(b.root)).toEqual(before)
  })
})

describe('meshd install (install or upgrade without joining)', () => {
  it('on a host that is not a member installs the files only', async () => {
    const b = box()
    const systemctl = fakeSystemctl()
    const c = context(['install'], { MESHD_INSTALL_ROOT: b.root })
    expect(await installCommand(c.context, deps(b, systemctl, () => undefined))).toBe(0)
    expect(c.out()).toBe('meshd is installed in /usr/local/lib/meshd with meshd.service; run "meshd init" or "meshd join <token>" to start it\n')
    expect(systemctl.calls).toEqual(['is-enabled meshd.service', 'is-active meshd.service', 'daemon-reload'])
    expect(existsSync(join(b.root, 'usr/local/lib/meshd/bin/meshd.js'))).toBe(true)
    expect(existsSync(join(b.root, 'var/lib/meshd'))).toBe(false)
  })

  it('on a member restarts the service on the new files, and puts the old ones back when the agent does not come back', async () => {
    const b = box()
    const systemctl = fakeSystemctl()
    await saveNetwork(join(b.root, 'var/lib/meshd'), labNetwork())
    const up = (): JoinStatus | undefined => (systemctl.state.active ? { self: { addresses: ['10.73.0.9'], network: { name: 'lab' } }, peers: [] } : undefined)
    const first = context(['install'], { MESHD_INSTALL_ROOT: b.root })
    expect(await installCommand(first.context, deps(b, systemctl, up))).toBe(0)
    expect(first.out()).toBe('meshd is installed in /usr/local/lib/meshd; this host is 10.73.0.9 in network lab; meshd.service is enabled and running\n')

    const installed = snapshot(b.root)
    systemctl.onRestart = () => {
      systemctl.state.subState = 'auto-restart'
    }
    const again = context(['install'], { MESHD_INSTALL_ROOT: b.root })
    expect(await installCommand(again.context, deps(b, systemctl, () => undefined))).toBe(1)
    expect(again.err()).toMatch(/the agent exited before joining .*; nothing of this run is kept/)
    expect(snapshot(b.root)).toEqual(installed)
  })
})

describe('meshd join --foreground is transactional', () => {
  function fakeAgent(start: () => Promise<void>): CommandDeps['createAgent'] {
    return () => {
      const agent: Agent = { start, stop: () => Promise.resolve(), stopped: Promise.resolve(), overlay: () => ({ ipv4: '10.73.0.9', ipv6: 'fd00::9' }), nodeId: () => undefined }
      return agent
    }
  }

  it('a join that fails (no member reachable) leaves no network, token, keys or directory behind', async () => {
    const base = mkdtempSync(join(tmpdir(), 'meshd-fg-'))
    cleanup.push(base)
    const stateDir = join(base, 'state')
    const c = context(['join', TOKEN, '--foreground', '--state-dir', stateDir], {})
    const d = { ...defaultCommandDeps(), createAgent: fakeAgent(() => Promise.reject(new Error('no member admitted this host: /ip4/192.0.2.1/tcp/7373: timed out'))) }
    expect(await joinCommand({ token: TOKEN, foreground: true }, c.context, d)).toBe(1)
    expect(c.err()).toBe('meshd: the agent failed: no member admitted this host: /ip4/192.0.2.1/tcp/7373: timed out\n')
    expect(existsSync(stateDir)).toBe(false)
  })

  it('removes only what the failed join created: an identity that was there stays', async () => {
    const base = mkdtempSync(join(tmpdir(), 'meshd-fg-'))
    cleanup.push(base)
    const stateDir = join(base, 'state')
    const { loadIdentity } = await import('../../src/agent/state.js')
    await loadIdentity(stateDir)
    const identity = readFileSync(join(stateDir, IDENTITY_FILE_NAME))
    const c = context(['join', TOKEN, '--foreground', '--state-dir', stateDir], {})
    const d = { ...defaultCommandDeps(), createAgent: fakeAgent(() => Promise.reject(new Error('refused'))) }
    expect(await joinCommand({ token: TOKEN, foreground: true }, c.context, d)).toBe(1)
    expect(snapshot(stateDir).map((line) => line.split(' ')[0])).toEqual(['/', `/${IDENTITY_FILE_NAME}`])
    expect(readFileSync(join(stateDir, IDENTITY_FILE_NAME))).toEqual(identity)
  })

  it('a join that succeeds keeps its state', async () => {
    const base = mkdtempSync(join(tmpdir(), 'meshd-fg-'))
    cleanup.push(base)
    const stateDir = join(base, 'state')
    mkdirSync(stateDir, { mode: 0o700 })
    const c = context(['join', TOKEN, '--foreground', '--state-dir', stateDir], {})
    const d = { ...defaultCommandDeps(), createAgent: fakeAgent(() => Promise.resolve()) }
    expect(await joinCommand({ token: TOKEN, foreground: true }, c.context, d)).toBe(0)
    expect(c.out()).toBe('joined network lab; this host is 10.73.0.9\n')
    for (const name of [IDENTITY_FILE_NAME, WIREGUARD_KEY_FILE, NETWORK_FILE, PENDING_TOKEN_FILE]) expect(existsSync(join(stateDir, name)), name).toBe(true)
  })
})
