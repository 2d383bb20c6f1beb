#!/usr/bin/env node
// Entry point. Plain JavaScript that starts on any Node from 14 up, because
// `npx meshd` runs under the host's own Node (20 on Debian 12), while meshd
// itself (libp2p 3) needs Node >= 22. On an older Node we re-run ourselves
// under the Node 24 binary that the `node` npm dependency installs; failing
// that we print one line and exit 1.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const REQUIRED_MAJOR = 22
const major = Number(process.versions.node.split('.')[0])
const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)

// V8 heap flag for the long-running agent (idle RSS target, issue 5): a 1 MiB
// semi-space instead of Node 24's default of up to 16 MiB (the young generation
// is otherwise most of the agent's anonymous memory). Measured on an idle agent
// with 3 peers: RSS 133 -> 103.5 MiB, CPU unchanged. And no optimising JIT
// tiers (Maglev, TurboFan): the idle agent's hot code is small, its crypto is
// native (node:crypto) or WebAssembly, and the compilers' code and output cost
// ~6 MiB at 3 peers and ~18 MiB at 20; idle CPU and join time were unchanged
// (docs/benchmarks.md, 2026-12-02). And --optimize-for-size: ~10 MiB less at 20
// peers (85 against 94-99 MiB); it cost CPU only while the agent did more
// per-tick work than it now does (docs/benchmarks.md, 2026-12-04). Only for the agent (`agent`,
// `init/join --foreground`); the unit's ExecStart passes them itself, so there
// is no extra exec under systemd.
const AGENT_NODE_FLAGS = ['--max-semi-space-size=1', '--no-opt', '--no-maglev', '--optimize-for-size']
// And at most two glibc malloc arenas instead of one per thread that ever
// allocated (V8's and libuv's workers): about 2.5 MiB less RSS on an idle agent
// with 3 peers, CPU unchanged (issue 5). Read by glibc at start, so it has to
// be in the environment of the exec; an operator's own value is kept. The unit
// sets it too (systemd/meshd.service).
const AGENT_ENV = { MALLOC_ARENA_MAX: '2' }
const runsAgent = args[0] === 'agent' || ((args[0] === 'init' || args[0] === 'join') && args.includes('--foreground'))
const hasAgentFlags = () => process.execArgv.some((flag) => flag.startsWith('--max-semi-space-size'))
const hasAgentEnv = () => Object.keys(AGENT_ENV).every((name) => process.env[name] !== undefined)
const agentEnv = () => ({ ...AGENT_ENV, ...process.env })

function bundledNode() {
  if (process.env.MESHD_NO_REEXEC === '1') return undefined
  try {
    const pkg = createRequire(import.meta.url).resolve('node/package.json')
    const bin = join(dirname(pkg), 'bin', 'node')
    return existsSync(bin) ? bin : undefined
  } catch {
    return undefined
  }
}

if (major >= REQUIRED_MAJOR) {
  // Same process (same pid, so systemd and the tests see no change), new heap
  // settings; before anything heavy is loaded. process.execve: Node >= 22.15.
  if (runsAgent && !(hasAgentFlags() && hasAgentEnv()) && process.env.MESHD_NO_AGENT_FLAGS !== '1' && typeof process.execve === 'function') {
    const flags = hasAgentFlags() ? [] : AGENT_NODE_FLAGS
    process.execve(process.execPath, [process.execPath, ...process.execArgv, ...flags, fileURLToPath(import.meta.url), ...args], agentEnv())
  }
  // The minified bundle (npm run build makes it; ~15 MiB less resident memory than tsc's thousand-odd modules), else tsc's
  // output; MESHD_UNBUNDLED=1 asks for the latter (readable stack traces and CPU profiles, and the bundle bench's baseline).
  const bundle = join(here, '..', 'dist', 'bundle', 'meshd.js')
  const useBundle = process.env.MESHD_UNBUNDLED !== '1' && existsSync(bundle)
  const { main } = await import(useBundle ? bundle : join(here, '..', 'dist', 'main.js'))
  process.exitCode = await main(args)
} else {
  const node = bundledNode()
  if (node === undefined) {
    process.stderr.write(
      `meshd: needs Node.js >= ${REQUIRED_MAJOR} (this is ${process.version}); install Node ${REQUIRED_MAJOR}+ or run "npx meshd", which brings its own\n`,
    )
    process.exit(1)
  }
  const child = spawn(node, [...(runsAgent ? AGENT_NODE_FLAGS : []), fileURLToPath(import.meta.url), ...args], { stdio: 'inherit', env: runsAgent ? agentEnv() : process.env })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal))
  child.on('error', (err) => {
    process.stderr.write(`meshd: cannot start ${node}: ${err.message}\n`)
    process.exit(1)
  })
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal)
    else process.exit(code ?? 1)
  })
}
