import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'vitest'
import { Netns } from '../test/support/netns.js'
import { pollUntil } from '../test/support/poll.js'
import { recordBenchmark } from './record.js'

// Resident memory of an idle founder (no peers) run from the esbuild bundle
// (dist/bundle/, what bin/meshd.js runs) against the same agent run from tsc's
// modules (MESHD_UNBUNDLED=1), alternating in one run so the machine's state
// cancels out. The difference is what Node holds per ES module (source text,
// module records, loader state); the bundle also drops comments and long names.

const NODE = join(process.cwd(), 'node_modules', '.bin', 'node')
const QUIET_MS = 15_000

interface Reading {
  rssKiB: number
  anonKiB: number
}

async function idleFounder(unbundled: boolean): Promise<Reading> {
  const ns = new Netns('mbr')
  const dir = mkdtempSync(join(tmpdir(), 'meshd-bundle-rss-'))
  try {
    ns.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1')
    ns.ip('addr', 'add', '10.251.0.1/24', 'dev', 'eth0')
    ns.ip('link', 'set', 'eth0', 'up')
    const child = spawn('ip', ['netns', 'exec', ns.name, NODE, 'bin/meshd.js', 'init', '--name', 'rss', '--cidr', '10.98.0.0/16', '--foreground', '--state-dir', join(dir, 'state'), '--socket', join(dir, 'sock'), '--listen', '/ip4/10.251.0.1/tcp/7373'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MESHD_LOG_LEVEL: 'warn', ...(unbundled ? { MESHD_UNBUNDLED: '1' } : {}) },
    })
    let log = ''
    child.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()))
    try {
      // The agent itself is a child of `ip netns exec` (same pid after its re-exec with the agent's V8 flags).
      const pid = await pollUntil(
        () => {
          if (child.exitCode !== null) throw new Error(`agent exited ${child.exitCode}: ${log.slice(-500)}`)
          const out = ns.exec('ss', ['-ltnpH', 'sport = :7373'])
          return /pid=(\d+)/.exec(out)?.[1]
        },
        { deadlineMs: 30_000, intervalMs: 200, what: 'the founder listening' },
      )
      // A quiet period of wall-clock time is the measurement itself, not a wait for a condition.
      await new Promise((resolve) => setTimeout(resolve, QUIET_MS))
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN)
      return { rssKiB: field('VmRSS'), anonKiB: field('RssAnon') }
    } finally {
      child.kill('SIGTERM')
      await new Promise((resolve) => child.once('close', resolve))
    }
  } finally {
    ns.delete()
    rmSync(dir, { recursive: true, force: true })
  }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN
const mib = (kib: number): string => (kib / 1024).toFixed(1)

it('idle founder RSS: esbuild bundle vs tsc modules', async () => {
  const bundled: Reading[] = []
  const modules: Reading[] = []
  for (let round = 0; round < 3; round++) {
    modules.push(await idleFounder(true))
    bundled.push(await idleFounder(false))
  }
  const rss = { bundled: median(bundled.map((r) => r.rssKiB)), modules: median(modules.map((r) => r.rssKiB)) }
  const anon = { bundled: median(bundled.map((r) => r.anonKiB)), modules: median(modules.map((r) => r.anonKiB)) }
  recordBenchmark({
    name: 'bundle-rss',
    figure: `${(rss.bundled / rss.modules).toFixed(3)}x RSS`,
    detail: `idle founder, no peers, after ${QUIET_MS / 1000} s, median of 3 each: bundle ${mib(rss.bundled)} MiB (anonymous ${mib(anon.bundled)}), tsc modules ${mib(rss.modules)} MiB (anonymous ${mib(anon.modules)}); anonymous ${(anon.bundled / anon.modules).toFixed(3)}x`,
  })
}, 300_000)
