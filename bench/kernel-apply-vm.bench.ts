import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { runInKernelVm } from '../test/support/kernel-vm.js'
import { recordBenchmark } from './record.js'
import { desiredState, ipCommands, mesh, type Mesh } from './support/kernel-mesh.js'

// The kernel layer's cold apply with kernel WireGuard (issue 3, item 9, second
// figure): the same N-peer state as bench/kernel-apply.bench.ts, inside
// Debian's kernel under qemu (scripts/kernel-vm), where WireGuard is the
// kernel module and no wireguard-go process wakes on every change. Baselines
// in the same guest: the state made by ip/wg commands (one process each), and
// by wg per link plus one `ip -batch`.
//
// qemu runs under TCG (no KVM here), so every absolute figure is several
// times slower than on hardware; the ratios compare like with like.
//
// Opt-in (N=100 with 3 reps takes about 9 minutes under emulation, most of it
// the ip/wg baseline's ~600 process starts per rep):
// MESHD_BENCH_KERNEL_VM=1, with MESHD_BENCH_PEERS (default 100) and
// MESHD_BENCH_REPS (default 3).

const ENABLED = process.env.MESHD_BENCH_KERNEL_VM === '1'
const PEERS = Number((process.env.MESHD_BENCH_PEERS ?? '100').split(',').at(-1))
const REPS = Number(process.env.MESHD_BENCH_REPS ?? 3)
const DRIVER = 'dist/kernel/reconcile-driver.js'
const MARK = '@@kernel-apply-vm@@'

/** The state as ip/wg commands for kernel WireGuard: per link add, wg set, then the same ip commands as the netns bench. */
function kernelScript(m: Mesh, keyFile: string, batchFile?: string): { script: string; batch: string } {
  const { perLink, rest } = ipCommands(m)
  const lines = ['set -e']
  const batch: string[] = []
  m.peers.forEach((p) => {
    if (batchFile === undefined) lines.push(`ip link add ${p.link} type wireguard`)
    else batch.push(`link add ${p.link} type wireguard`)
  })
  if (batchFile !== undefined) {
    // Links first in one ip -batch, then wg per link, then every other ip command in a second one.
    lines.push(`ip -batch ${batchFile}.links`)
  }
  m.peers.forEach((p, i) => {
    lines.push(`wg set ${p.link} private-key ${keyFile} listen-port ${p.listenPort} peer ${p.publicKey} allowed-ips 0.0.0.0/0,::/0 endpoint ${p.endpoint}`)
    for (const command of perLink[i] ?? []) {
      if (batchFile === undefined) lines.push(`ip ${command}`)
    }
  })
  if (batchFile === undefined) lines.push(...rest.map((c) => `ip ${c}`))
  else lines.push(`ip -batch ${batchFile}`)
  const others = batchFile === undefined ? [] : [...m.peers.flatMap((_, i) => perLink[i] ?? []), ...rest]
  return { script: lines.join('\n') + '\n', batch: batch.join('\n') + '\n' + '\u0000' + others.join('\n') + '\n' }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2
}

const fmt = (ms: number): string => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1))

it.skipIf(!ENABLED)(`kernel cold apply with kernel WireGuard in the VM: ${PEERS} peers, reconciler vs ip/wg commands`, async () => {
  // The guest sees the host root read-only, /tmp is its own: inputs live under bench/out.
  const dir = join('bench', 'out', `vm-${randomBytes(4).toString('hex')}`)
  mkdirSync(dir, { recursive: true })
  try {
    const m = mesh(PEERS, 'k')
    writeFileSync(join(dir, 'desired.json'), JSON.stringify(desiredState(m)))
    writeFileSync(join(dir, 'key'), m.nodeKey.privateKey + '\n', { mode: 0o600 })
    const plain = kernelScript(m, join(dir, 'key'))
    const batched = kernelScript(m, join(dir, 'key'), join(dir, 'batch'))
    const [linksBatch = '', restBatch = ''] = batched.batch.split('\u0000')
    writeFileSync(join(dir, 'commands.sh'), plain.script)
    writeFileSync(join(dir, 'batch.sh'), batched.script)
    writeFileSync(join(dir, 'batch.links'), linksBatch)
    writeFileSync(join(dir, 'batch'), restBatch)

    // Times in microseconds from the guest's clock; the driver reports its own apply time.
    const guest = `
set -e
modprobe -a wireguard
us() { echo $(( $(date +%s%N) / 1000 )); }
fresh() { ip netns add "$1"; ip -n "$1" link set lo up; }
count() { echo "$(ip -n "$1" route show table 7300 | wc -l) $(ip -n "$1" -6 route show table 7300 | wc -l) $(wg show all dump 2>/dev/null | wc -l)"; }
for rep in $(seq 1 ${REPS}); do
  fresh r$rep
  up=$(ip netns exec r$rep node ${DRIVER} apply --backend kernel < ${dir}/desired.json | tail -n 1)
  echo "${MARK} reconciler $rep $up"
  echo "${MARK} reconciler-count $rep $(ip netns exec r$rep sh -c 'echo $(ip route show table 7300 | wc -l) $(ip -6 route show table 7300 | wc -l) $(wg show all dump | wc -l)')"
  down=$(echo '{}' | ip netns exec r$rep node ${DRIVER} apply --backend kernel | tail -n 1)
  echo "${MARK} teardown $rep $down"
  ip netns del r$rep
  fresh c$rep
  s=$(us); ip netns exec c$rep sh ${dir}/commands.sh; e=$(us)
  echo "${MARK} commands $rep $((e - s))"
  echo "${MARK} commands-count $rep $(ip netns exec c$rep sh -c 'echo $(ip route show table 7300 | wc -l) $(ip -6 route show table 7300 | wc -l) $(wg show all dump | wc -l)')"
  ip netns del c$rep
  fresh b$rep
  s=$(us); ip netns exec b$rep sh ${dir}/batch.sh; e=$(us)
  echo "${MARK} batch $rep $((e - s))"
  echo "${MARK} batch-count $rep $(ip netns exec b$rep sh -c 'echo $(ip route show table 7300 | wc -l) $(ip -6 route show table 7300 | wc -l) $(wg show all dump | wc -l)')"
  ip netns del b$rep
done
echo "${MARK} cores $(nproc)"
`
    const result = await runInKernelVm(guest, { timeoutSeconds: 900 })
    const lines = result.output.split('\n').filter((l) => l.startsWith(MARK)).map((l) => l.slice(MARK.length + 1))
    if (result.status !== 0) throw new Error(`guest exited ${result.status}: ${result.output.slice(-3000)} ${result.stderr.slice(-2000)}`)
    const field = (kind: string): string[] => lines.filter((l) => l.startsWith(`${kind} `)).map((l) => l.split(' ').slice(2).join(' '))
    const reconciler = field('reconciler').map((j) => (JSON.parse(j) as { ms: number; failures: unknown[] }))
    for (const r of reconciler) expect(r.failures).toEqual([])
    const teardown = field('teardown').map((j) => (JSON.parse(j) as { ms: number }).ms)
    // Every variant must have built the whole state: N IPv4 and N IPv6 routes, and per link a device line and a peer line.
    for (const kind of ['reconciler-count', 'commands-count', 'batch-count']) for (const c of field(kind)) expect(c).toBe(`${PEERS} ${PEERS} ${2 * PEERS}`)
    const rec = median(reconciler.map((r) => r.ms))
    const cmd = median(field('commands').map((us) => Number(us) / 1000))
    const bat = median(field('batch').map((us) => Number(us) / 1000))
    const cores = lines.find((l) => l.startsWith('cores '))?.split(' ')[1] ?? '?'
    const detail =
      `Debian 6.1 kernel under qemu TCG (${cores} vCPU, emulated), kernel WireGuard, driver on the host's node_modules Node, N=${PEERS}: ` +
      `reconciler apply ${fmt(rec)} ms, ip/wg commands ${fmt(cmd)} ms (${(cmd / rec).toFixed(2)}x), ip -batch + wg per link ${fmt(bat)} ms (${(bat / rec).toFixed(2)}x), ` +
      `teardown apply(empty) ${fmt(median(teardown))} ms (medians of ${REPS}); absolute times are emulated, compare ratios`
    recordBenchmark({
      name: `kernel-apply-cold-vm-${PEERS}`,
      figure: rec <= cmd ? `${(cmd / rec).toFixed(2)}x faster than ip/wg commands (baseline ÷ reconciler)` : `${(rec / cmd).toFixed(2)}x slower than ip/wg commands (reconciler ÷ baseline)`,
      detail,
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  // Three reps at N = 100 take about 9 minutes under emulation; the ip/wg baseline alone spawns ~600 processes per rep.
}, 1_800_000)
