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
  const { main } = await import(join(here, '..', 'dist', 'main.js'))
  process.exitCode = await main(process.argv.slice(2))
} else {
  const node = bundledNode()
  if (node === undefined) {
    process.stderr.write(
      `meshd: needs Node.js >= ${REQUIRED_MAJOR} (this is ${process.version}); install Node ${REQUIRED_MAJOR}+ or run "npx meshd", which brings its own\n`,
    )
    process.exit(1)
  }
  const child = spawn(node, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' })
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
