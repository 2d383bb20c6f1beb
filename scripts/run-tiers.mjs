#!/usr/bin/env node
// Runs the named test tiers in order. Before each tier it checks what the tier
// needs (root, tools, a kernel image); a missing prerequisite FAILS the run
// unless MESHD_TEST_ALLOW_SKIP=1, so CI can never pass with a tier unexecuted.
// A tier that runs zero tests, or skips any, also fails.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const allowSkip = process.env.MESHD_TEST_ALLOW_SKIP === '1'
const tiers = process.argv.slice(2)
const known = ['unit', 'netns', 'e2e', 'kernel']
for (const t of tiers) {
  if (!known.includes(t)) {
    console.error(`run-tiers: unknown tier "${t}" (known: ${known.join(', ')})`)
    process.exit(2)
  }
}

const onPath = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0

function needRootAndTools(tools) {
  const missing = []
  if (!isRoot()) missing.push('root (CAP_NET_ADMIN; run with sudo)')
  for (const t of tools) if (!onPath(t)) missing.push(`${t} (apt-get install ${debPackage[t] ?? t})`)
  return missing
}

const debPackage = {
  ip: 'iproute2', wg: 'wireguard-tools', 'wireguard-go': 'wireguard-go', nft: 'nftables',
  ping: 'iputils-ping', strace: 'strace', 'qemu-system-x86_64': 'qemu-system-x86', busybox: 'busybox-static',
}

function kernelImage() {
  // Debian's generic amd64 kernel; the cloud flavour lacks 9p and cannot mount the host root.
  if (!existsSync('/boot')) return undefined
  const images = readdirSync('/boot').filter((f) => /^vmlinuz-.*-amd64$/.test(f) && !f.includes('cloud')).sort()
  const image = images.at(-1)
  if (!image) return undefined
  const version = image.slice('vmlinuz-'.length)
  return existsSync(`/lib/modules/${version}`) ? version : undefined
}

const prerequisites = {
  unit: () => [],
  netns: () => needRootAndTools(['ip', 'wg', 'wireguard-go', 'ping', 'strace', 'nft']),
  e2e: () => needRootAndTools(['ip', 'wg', 'wireguard-go', 'ping', 'nft']),
  kernel: () => {
    const missing = needRootAndTools(['qemu-system-x86_64', 'busybox', 'cpio'])
    if (existsSync('/bin/busybox') && !/static/i.test(spawnSync('file', ['-L', '/bin/busybox']).stdout?.toString() ?? 'static')) {
      missing.push('a static busybox (apt-get install busybox-static)')
    }
    if (!kernelImage()) missing.push('a Debian kernel with modules (apt-get install linux-image-amd64)')
    return missing
  },
}

const vitest = join(import.meta.dirname, '..', 'node_modules', '.bin', 'vitest')
const results = []
for (const tier of tiers) {
  const missing = prerequisites[tier]()
  if (missing.length > 0) {
    const line = `tier ${tier} cannot run: missing ${missing.join(', ')}`
    if (allowSkip) {
      console.error(`SKIPPED ${line} (MESHD_TEST_ALLOW_SKIP=1)`)
      results.push({ tier, status: 'skipped', passed: 0, failed: 0, skipped: 0 })
      continue
    }
    console.error(`FAIL ${line}`)
    results.push({ tier, status: 'missing', passed: 0, failed: 1, skipped: 0 })
    continue
  }
  console.log(`\n=== tier ${tier} ===`)
  const dir = mkdtempSync(join(tmpdir(), 'meshd-tier-'))
  const report = join(dir, 'report.json')
  const run = spawnSync(vitest, ['run', '--project', tier, '--reporter=default', '--reporter=json', `--outputFile.json=${report}`], {
    stdio: 'inherit',
    env: process.env,
  })
  let passed = 0, failed = 0, skipped = 0
  if (existsSync(report)) {
    const r = JSON.parse(readFileSync(report, 'utf8'))
    passed = r.numPassedTests
    failed = r.numFailedTests + (r.numRuntimeErrorTestSuites ?? 0)
    skipped = r.numPendingTests + r.numTodoTests
  }
  rmSync(dir, { recursive: true, force: true })
  let status = run.status === 0 ? 'ok' : 'failed'
  if (status === 'ok' && passed === 0) { console.error(`FAIL tier ${tier} ran no test`); status = 'empty'; failed += 1 }
  if (status === 'ok' && skipped > 0 && !allowSkip) { console.error(`FAIL tier ${tier} skipped ${skipped} test(s)`); status = 'skipped-tests'; failed += 1 }
  if (run.status !== 0 && failed === 0) failed = 1
  results.push({ tier, status, passed, failed, skipped })
}

console.log('\n=== summary ===')
for (const r of results) console.log(`${r.tier.padEnd(7)} ${r.status.padEnd(14)} passed=${r.passed} failed=${r.failed} skipped=${r.skipped}`)
const total = results.reduce((a, r) => ({ passed: a.passed + r.passed, failed: a.failed + r.failed, skipped: a.skipped + r.skipped }), { passed: 0, failed: 0, skipped: 0 })
const ok = results.every((r) => r.status === 'ok' || (allowSkip && r.status === 'skipped'))
console.log(`tests: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`)
process.exit(ok ? 0 : 1)
