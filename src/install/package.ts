// What to copy to the install prefix: the package's own files (package.json
// and what its "files" lists: bin/, dist/, systemd/, README.md) and its
// production dependencies, found the way Node resolves them (node_modules of
// the requiring package, then of each parent directory). The dependencies
// keep their relative nesting, so the copy resolves exactly as the source did
// — whether the source is a checkout (dependencies under ./node_modules) or
// the npx cache (meshd itself under <cache>/node_modules/meshd, its
// dependencies hoisted beside it). devDependencies are never copied.

import { dirname, isAbsolute, join, relative, sep } from 'node:path'
import { packageRoot } from '../version.js'

/** One file or directory to copy; `to` is relative to the install prefix. */
export interface CopyEntry {
  readonly from: string
  readonly to: string
  /** A dependency's own node_modules is left out: its dependencies are entries of their own. */
  readonly skipNodeModules: boolean
}

export interface PackageReader {
  /** Parsed JSON, or undefined when the file does not exist. */
  readJson(path: string): Promise<unknown>
  /** The canonical path, or undefined when it does not exist. */
  realpath(path: string): Promise<string | undefined>
}

export class PackageError extends Error {
  override readonly name = 'PackageError'
}

/** The directory holding meshd's package.json (src/, dist/ or the bundle in dist/bundle/ are below it). */
export function thisPackageRoot(): string {
  return packageRoot()
}

interface Manifest {
  name?: unknown
  files?: unknown
  dependencies?: unknown
  optionalDependencies?: unknown
  peerDependencies?: unknown
}

function names(value: unknown): string[] {
  return typeof value === 'object' && value !== null ? Object.keys(value) : []
}

function isInside(parent: string, path: string): boolean {
  const rel = relative(parent, path)
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)
}

/** The node_modules directory the package itself sits in (the npx cache's), if any. */
function enclosingNodeModules(packageRoot: string): string | undefined {
  let dir = dirname(packageRoot)
  for (;;) {
    if (dir.split(sep).pop() === 'node_modules') return dir
    const parent = dirname(dir)
    if (parent === dir) return undefined
    dir = parent
  }
}

/** Lists what to copy for the package at `root` (with its production dependency closure). */
export async function collectPackage(root: string, reader: PackageReader): Promise<CopyEntry[]> {
  const packageRoot = await reader.realpath(root)
  if (packageRoot === undefined) throw new PackageError(`${root} does not exist`)
  const manifest = (await reader.readJson(join(packageRoot, 'package.json'))) as Manifest | undefined
  if (typeof manifest !== 'object' || manifest === null) throw new PackageError(`${packageRoot} has no package.json`)

  const entries: CopyEntry[] = [{ from: join(packageRoot, 'package.json'), to: 'package.json', skipNodeModules: false }]
  const files = Array.isArray(manifest.files) ? manifest.files.filter((f): f is string => typeof f === 'string') : ['bin', 'dist', 'systemd']
  for (const file of files) {
    const name = file.replace(/\/+$/, '')
    if (name === '' || name.includes('*') || name.startsWith('..') || isAbsolute(name)) continue
    if ((await reader.realpath(join(packageRoot, name))) !== undefined) entries.push({ from: join(packageRoot, name), to: name, skipNodeModules: true })
  }

  const hoisted = enclosingNodeModules(packageRoot)
  const destinations = new Map<string, string>()
  const destinationOf = (dir: string): string => {
    if (isInside(packageRoot, dir)) return relative(packageRoot, dir)
    if (hoisted !== undefined && isInside(hoisted, dir)) return join('node_modules', relative(hoisted, dir))
    throw new PackageError(`dependency ${dir} lies outside ${packageRoot} and its node_modules; install meshd with npm or npx`)
  }

  const resolve = async (name: string, from: string): Promise<string | undefined> => {
    let dir = from
    for (;;) {
      const candidate = join(dir, 'node_modules', name)
      if ((await reader.readJson(join(candidate, 'package.json'))) !== undefined) return reader.realpath(candidate)
      const parent = dirname(dir)
      if (parent === dir) return undefined
      dir = parent
    }
  }

  const visited = new Set<string>()
  const queue: { dir: string; manifest: Manifest; what: string }[] = [{ dir: packageRoot, manifest, what: typeof manifest.name === 'string' ? manifest.name : packageRoot }]
  for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
    const required = names(item.manifest.dependencies)
    const optional = new Set([...names(item.manifest.optionalDependencies), ...names(item.manifest.peerDependencies)])
    for (const name of [...required, ...optional]) {
      const dir = await resolve(name, item.dir)
      if (dir === undefined) {
        if (optional.has(name) && !required.includes(name)) continue
        throw new PackageError(`dependency ${name} of ${item.what} is not installed; run "npm ci --omit=dev" in ${packageRoot}`)
      }
      if (visited.has(dir)) continue
      visited.add(dir)
      const to = destinationOf(dir)
      const other = destinations.get(to)
      if (other !== undefined) throw new PackageError(`two copies of a dependency would both go to ${to} (${other} and ${dir})`)
      destinations.set(to, dir)
      entries.push({ from: dir, to, skipNodeModules: true })
      const depManifest = (await reader.readJson(join(dir, 'package.json'))) as Manifest | undefined
      queue.push({ dir, manifest: depManifest ?? {}, what: name })
    }
  }
  return entries
}
