import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { afterAll, expect, it } from 'vitest'
import { AgentLab, createToken, startAgent, status, waitForAgent, wireguardGoPids, type AgentHost, type StatusJson } from '../test/support/agents.js'
import { pollUntil } from '../test/support/poll.js'
import { recordBenchmark } from './record.js'

// The agent's idle cost with 20 *live* peers (issue 5, item 8): a real mesh
// of MESHD_BENCH_MESH hosts (default 11; 21 for the 20 peers, which
// does not converge on a 2-core machine, see docs/benchmarks.md) in namespaces on a bridge underlay,
// every one a real agent (bin/meshd.js, wireguard-go), so every link
// handshakes, every peer answers probes and relays relayed probes, and gossip
// carries 21 members' records. Once every host shows every peer `up`, and
// after a quiet spell, the CPU (utime+stime from /proc/<pid>/stat) and RSS of
// every agent over one 10 s window. Baseline, same window: a bare Node process
// (the same binary) idling on a timer.
//
// Each host runs one wireguard-go per peer: 21 hosts make 420 processes, each
// holding an inotify instance, so the run raises fs.inotify.max_user_instances
// (machine-wide; 128 by default) for its duration and puts it back after.

const HOSTS = Number(process.env.MESHD_BENCH_MESH ?? 11)
const IDLE_WINDOW_MS = 10_000
const SETTLE_MS = 15_000
const JOIN_BATCH = 2
const INOTIFY_LIMIT = '/proc/sys/fs/inotify/max_user_instances'
const node = process.execPath

const originalInotifyLimit = readFileSync(INOTIFY_LIMIT, 'utf8').trim()
const needed = HOSTS * (HOSTS - 1) + 256
if (Number(originalInotifyLimit) < needed) writeFileSync(INOTIFY_LIMIT, String(needed))
const lab = new AgentLab(HOSTS, 'mm')
const children: ChildProcess[] = []

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM')
  await lab.destroy()
  writeFileSync(INOTIFY_LIMIT, originalInotifyLimit)
})

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

function cpuTicks(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}
function rssMiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(match?.[1] ?? Number.NaN) / 1024
}
const quantile = (values: readonly number[], q: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
}

function pidOf(host: AgentHost): number {
  const pid = host.agent?.pid
  if (pid === undefined) throw new Error(`${host.name} has no agent`)
  return pid
}

const allUp = (view: StatusJson | undefined): boolean => view !== undefined && view.peers.length === HOSTS - 1 && view.peers.every((p) => p.state === 'up')

it(`agent: idle RSS and CPU in a real ${HOSTS}-host mesh (${HOSTS - 1} live peers each) vs a bare node`, async () => {
  const [founder, ...joiners] = lab.hosts
  if (!founder) throw new Error('no hosts')
  startAgent(founder, ['init', '--name', 'benchmesh', '--cidr', '10.78.0.0/16'])
  await waitForAgent(founder, 60_000)
  const token = createToken(founder, joiners.length, '30m')
  const started = performance.now()
  // A few at a time, each batch meshed with the founder before the next: 21 agents and their
  // wireguard-go processes share 2 cores here, and a stampede of joins only measures the stampede.
  for (let i = 0; i < joiners.length; i += JOIN_BATCH) {
    const batch = joiners.slice(i, i + JOIN_BATCH)
    for (const host of batch) startAgent(host, ['join', token])
    await Promise.all(batch.map((host) => waitForAgent(host, 180_000)))
    const members = i + batch.length
    await pollUntil(
      () => {
        const view = status(founder)
        return view !== undefined && view.peers.filter((p) => p.state === 'up').length >= members ? true : undefined
      },
      { deadlineMs: 300_000, intervalMs: 2_000, what: `the founder has ${members} peers up` },
    )
    console.log(`agent-mesh bench: ${members}/${joiners.length} joined and up at the founder (${((performance.now() - started) / 1000).toFixed(0)} s)`)
  }
  // Few status polls: each is a Node process, and 21 of them are a second of CPU.
  const pending = new Set(lab.hosts)
  await pollUntil(
    () => {
      for (const host of [...pending]) if (allUp(status(host))) pending.delete(host)
      return pending.size === 0 ? true : undefined
    },
    { deadlineMs: 540_000, intervalMs: 5_000, what: `every host shows ${HOSTS - 1} peers up` },
  )
  const meshedS = (performance.now() - started) / 1000
  console.log(`agent-mesh bench: full mesh after ${meshedS.toFixed(0)} s; settling`)
  await delay(SETTLE_MS)

  const base = spawn(node, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
  children.push(base)
  await delay(1000)
  const pids = [...lab.hosts.map(pidOf), base.pid ?? 0]
  const before = pids.map(cpuTicks)
  const windowStart = performance.now()
  await delay(IDLE_WINDOW_MS)
  const seconds = (performance.now() - windowStart) / 1000
  const cpuPct = pids.map((pid, i) => ((cpuTicks(pid) - (before[i] ?? 0)) / TICKS_PER_SECOND / seconds) * 100)
  const rss = pids.map(rssMiB)
  base.kill('SIGTERM')
  // Still a full mesh at the end of the window: the figure is for live peers.
  const stillUp = lab.hosts.filter((host) => allUp(status(host))).length

  const agentCpu = cpuPct.slice(0, HOSTS)
  const agentRss = rss.slice(0, HOSTS)
  const bareCpu = cpuPct[HOSTS] ?? Number.NaN
  const bareRss = rss[HOSTS] ?? Number.NaN
  const wgoPids = wireguardGoPids(founder)
  const wgoRss = wgoPids.reduce((sum, pid) => sum + rssMiB(pid), 0)
  const median = { cpu: quantile(agentCpu, 0.5), rss: quantile(agentRss, 0.5) }
  const max = { cpu: Math.max(...agentCpu), rss: Math.max(...agentRss) }
  const mb = (mib: number): string => `${((mib * 2 ** 20) / 1e6).toFixed(1)} MB`
  const detail =
    `${HOSTS} real agents, each with ${HOSTS - 1} live peers (full mesh after ${meshedS.toFixed(0)} s, ${stillUp}/${HOSTS} hosts still all-up after the window); ` +
    `over ${IDLE_WINDOW_MS / 1000} s after ${SETTLE_MS / 1000} s quiet: agent CPU median ${median.cpu.toFixed(2)} %, max ${max.cpu.toFixed(2)} %, founder ${agentCpu[0]?.toFixed(2)} %; ` +
    `agent RSS median ${median.rss.toFixed(1)} MiB (${mb(median.rss)}), max ${max.rss.toFixed(1)} MiB (${mb(max.rss)}); ` +
    `bare node ${bareRss.toFixed(1)} MiB, ${bareCpu.toFixed(2)} %; founder's ${wgoPids.length} wireguard-go processes ${wgoRss.toFixed(1)} MiB together; ` +
    `load avg ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`
  recordBenchmark({ name: `agent-idle-rss-${HOSTS - 1}-live`, figure: `${(median.rss / bareRss).toFixed(2)}x a bare node (median agent)`, detail: `${detail}; target ≤ 100 MB` })
  recordBenchmark({ name: `agent-idle-cpu-${HOSTS - 1}-live`, figure: `${median.cpu.toFixed(2)} % of a core, median agent (bare node ${bareCpu.toFixed(2)} %)`, detail: `${detail}; target < 1 %` })
  // MESHD_BENCH_KEEP_S: leave the mesh up that long after the figures, to look at it (bench/support/cpu-profile.mjs).
  const keepS = Number(process.env.MESHD_BENCH_KEEP_S ?? 0)
  if (keepS > 0) {
    console.log(`agent-mesh bench: keeping the mesh up for ${keepS} s (state under ${lab.root})`)
    await delay(keepS * 1000)
  }
  expect(stillUp).toBe(HOSTS)
})
