import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { parseCommandLine } from '../../src/cli/args.js'
import { HELP, hasNetAdmin, main } from '../../src/cli/main.js'
import { sink } from '../support/sink.js'


describe('cli', () => {
  it('prints the version', async () => {
    const out = sink()
    const err = sink()
    expect(await main(['version'], { stdout: out.stream, stderr: err.stream })).toBe(0)
    expect(out.text()).toMatch(/^meshd \d+\.\d+\.\d+ \(node v\d+/)
  })

  it('refuses a bad MESHD_LOG_LEVEL with one line and exit 2 before running anything', async () => {
    const out = sink()
    const err = sink()
    expect(await main(['agent'], { stdout: out.stream, stderr: err.stream, env: { MESHD_LOG_LEVEL: 'loud' } })).toBe(2)
    expect(err.text()).toBe('meshd: MESHD_LOG_LEVEL "loud" is not one of fatal, error, warn, info, debug, trace, silent\n')
    expect(out.text()).toBe('')
  })

  it('turns mDNS on with --mdns or MESHD_MDNS=1, and refuses any other MESHD_MDNS with one line and exit 2', async () => {
    expect(parseCommandLine(['agent'], {}).global.mdns).toBe(false)
    expect(parseCommandLine(['agent', '--mdns'], {}).global.mdns).toBe(true)
    expect(parseCommandLine(['agent'], { MESHD_MDNS: '1' }).global.mdns).toBe(true)
    expect(parseCommandLine(['agent'], { MESHD_MDNS: 'true' }).global.mdns).toBe(true)
    expect(parseCommandLine(['agent'], { MESHD_MDNS: '0' }).global.mdns).toBe(false)
    expect(parseCommandLine(['agent'], { MESHD_MDNS: '' }).global.mdns).toBe(false)
    const out = sink()
    const err = sink()
    expect(await main(['agent'], { stdout: out.stream, stderr: err.stream, env: { MESHD_MDNS: 'yes' } })).toBe(2)
    expect(err.text()).toBe('meshd: MESHD_MDNS must be 1 or 0 (true or false), not "yes"\n')
    expect(out.text()).toBe('')
  })

  it('refuses an unknown command with one line and exit 2', async () => {
    const out = sink()
    const err = sink()
    expect(await main(['frobnicate'], { stdout: out.stream, stderr: err.stream })).toBe(2)
    expect(err.text().trim().split('\n')).toHaveLength(1)
  })

  it('on an old Node without a bundled one, says which version it needs and exits 1', () => {
    // Fake an old Node by running the entry point under a version override.
    const run = spawnSync(process.execPath, ['--import', 'data:text/javascript,Object.defineProperty(process.versions,"node",{value:"20.20.2"})', 'bin/meshd.js', 'version'], {
      env: { ...process.env, MESHD_NO_REEXEC: '1' },
      encoding: 'utf8',
    })
    expect(run.status).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr.trim().split('\n')).toHaveLength(1)
    expect(run.stderr).toMatch(/needs Node\.js >= 22/)
  })
})

describe('entry point on the host Node', () => {
  it('re-runs itself under a Node >= 22 when started by an older one', () => {
    // /usr/bin/node is the distribution's Node (20 on Debian 12); npm scripts hide it behind node_modules/.bin.
    const run = spawnSync('/usr/bin/env', ['-i', 'PATH=/usr/local/bin:/usr/bin:/bin', 'node', 'bin/meshd.js', 'version'], { encoding: 'utf8' })
    expect(run.stderr).toBe('')
    expect(run.status).toBe(0)
    expect(run.stdout).toMatch(/^meshd \d+\.\d+\.\d+ \(node v(2[2-9]|[3-9]\d)\./)
  })
})

describe('argument handling', () => {
  it.each([
    [['status', '--bogus'], 2, 'meshd: status: unknown option --bogus'],
    [['token', 'create', '--ttl', '5x'], 2, 'meshd: "5x" is not a duration like 90s, 30m, 24h or 7d'],
    [['token', 'create', '--uses', '0'], 2, 'meshd: --uses must be a whole number from 1'],
    [['evict'], 2, 'meshd: usage: meshd evict <node> [--reason TEXT]'],
    [['join'], 2, 'meshd: usage: meshd join <token> [--foreground]'],
    [['ping'], 2, 'meshd: usage: meshd ping <peer> [--count 5]'],
    [['ping', 'beta', '--count', '0'], 2, 'meshd: --count must be a whole number from 1'],
    [['ping', 'beta', '--count', '101'], 2, 'meshd: --count: at most 100'],
  ])('%j exits %i with one line', async (argv, code, message) => {
    const out = sink()
    const err = sink()
    // Run as if root so the usage check, not the capability check, answers.
    expect(await main(argv, { stdout: out.stream, stderr: err.stream, env: {} })).toBe(hasNetAdmin() ? code : 1)
    if (hasNetAdmin()) expect(err.text()).toBe(message + '\n')
  })

  it('prints help with an example for every command', async () => {
    for (const command of Object.keys(HELP)) {
      const out = sink()
      expect(await main([command, '--help'], { stdout: out.stream, stderr: sink().stream })).toBe(0)
      expect(out.text()).toMatch(/^usage: meshd /)
      expect(out.text()).toMatch(/\nexample:\n {2}meshd /)
    }
  })

  it('reads CAP_NET_ADMIN from the effective capability set', () => {
    expect(hasNetAdmin('Name:\tx\nCapEff:\t000001ffffffffff\n')).toBe(true)
    expect(hasNetAdmin('CapEff:\t0000000000001000\n')).toBe(true)
    expect(hasNetAdmin('CapEff:\t0000000000000000\n')).toBe(false)
  })

  it('tells a non-root user which capability is missing', () => {
    const run = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, 'bin/meshd.js', 'status'], { encoding: 'utf8' })
    expect(run.status).toBe(1)
    expect(run.stderr).toBe('meshd: "status" needs root (CAP_NET_ADMIN); run it with sudo\n')
  })
})
