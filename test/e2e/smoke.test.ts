import { spawnSync } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Netns } from '../support/netns.js'
import { pollUntil } from '../support/poll.js'

// Two hosts on a simulated underlay (a bridge in its own namespace), each
// running the built meshd CLI. Agents join this file as they are built.
describe('e2e tier smoke', () => {
  const underlay = new Netns('mt-ul')
  const hosts = [new Netns('mt-h1'), new Netns('mt-h2')]

  beforeAll(() => {
    underlay.ip('link', 'add', 'br0', 'type', 'bridge')
    underlay.ip('link', 'set', 'br0', 'up')
    hosts.forEach((host, i) => {
      underlay.ip('link', 'add', `p${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.name)
      underlay.ip('link', 'set', `p${i}`, 'master', 'br0', 'up')
      host.ip('addr', 'add', `192.0.2.${i + 1}/24`, 'dev', 'eth0')
      host.ip('link', 'set', 'eth0', 'up')
    })
  })
  afterAll(() => {
    for (const ns of [...hosts, underlay]) ns.delete()
  })

  it('hosts reach each other over the underlay', async () => {
    await pollUntil(() => (hosts[0]?.execStatus('ping', ['-c1', '-W1', '192.0.2.2']) === 0 ? true : undefined), {
      deadlineMs: 10_000,
      what: 'ping h1 -> h2 over the underlay',
    })
  })

  it('runs the built meshd CLI inside each host namespace', () => {
    for (const host of hosts) {
      const result = spawnSync('ip', ['netns', 'exec', host.name, process.execPath, 'bin/meshd.js', 'version'], { encoding: 'utf8' })
      expect(result.status).toBe(0)
      expect(result.stdout).toMatch(/^meshd \d+\.\d+\.\d+/)
    }
  })
})
