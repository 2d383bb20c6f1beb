import { spawnSync } from 'node:child_process'
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { main } from '../../src/cli/main.js'

function sink(): { stream: Writable; text: () => string } {
  let text = ''
  return {
    stream: new Writable({
      write(chunk: Buffer, _e, done) {
        text += chunk.toString('utf8')
        done()
      },
    }),
    text: () => text,
  }
}

describe('cli', () => {
  it('prints the version', async () => {
    const out = sink()
    const err = sink()
    expect(await main(['version'], { stdout: out.stream, stderr: err.stream })).toBe(0)
    expect(out.text()).toMatch(/^meshd \d+\.\d+\.\d+ \(node v\d+/)
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
