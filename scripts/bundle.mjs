#!/usr/bin/env node
// Bundles what bin/meshd.js runs (dist/main.js, from `tsc`) and the link-kind
// probe it spawns into dist/bundle/, minified, with shared chunks so the CLI's
// client commands still load little. Why: Node keeps every ES module's source,
// records and loader state, and meshd loads about a thousand of them (libp2p);
// one minified bundle cut an idle agent's anonymous memory from 41.7 to
// 26.3 MiB (issue 5, docs/benchmarks.md). dist/ itself stays as tsc wrote it,
// for the tests and benches that import its modules.
//
// External: netlink (a native addon, loaded from node_modules) and
// @libp2p/mdns (imported only when mDNS is on, so it costs nothing otherwise).
import { build } from 'esbuild'
import { rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outdir = join(root, 'dist', 'bundle')
rmSync(outdir, { recursive: true, force: true })

await build({
  absWorkingDir: root,
  entryPoints: { meshd: 'dist/main.js', 'probe-kinds': 'dist/kernel/probe-kinds.js' },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  minify: true,
  legalComments: 'none',
  external: ['netlink', '@libp2p/mdns'],
  // CommonJS dependencies (systeminformation, pino's) call require() and read __dirname.
  banner: {
    js: [
      "import { createRequire as __meshdCreateRequire } from 'node:module'",
      "import { fileURLToPath as __meshdFileURLToPath } from 'node:url'",
      'const require = __meshdCreateRequire(import.meta.url)',
      'const __filename = __meshdFileURLToPath(import.meta.url)',
      "const __dirname = __filename.slice(0, __filename.lastIndexOf('/'))",
    ].join(';'),
  },
  logLevel: 'warning',
})
