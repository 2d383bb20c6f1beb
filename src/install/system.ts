// The real filesystem and systemctl behind the installer's injected interfaces.

import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { cp, lstat, mkdir, readFile, readlink, realpath, rename, rm, symlink, unlink } from 'node:fs/promises'
import { basename, dirname, join, sep } from 'node:path'
import { writeFileAtomically } from '../agent/state.js'
import type { InstallFs, Systemctl } from './execute.js'
import type { PackageReader } from './package.js'

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code
  return code === 'ENOENT' || code === 'ENOTDIR'
}

function temporaryBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
}

export const nodeInstallFs: InstallFs = {
  async kind(path) {
    try {
      const stats = await lstat(path)
      return stats.isSymbolicLink() ? 'symlink' : stats.isDirectory() ? 'dir' : stats.isFile() ? 'file' : 'other'
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
  },
  readlink: (path) => readlink(path),
  async realpath(path) {
    try {
      return await realpath(path)
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
  },
  async readText(path) {
    try {
      return await readFile(path, 'utf8')
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
  },
  async copyEntry(entry, dir, signal) {
    signal.throwIfAborted()
    const to = join(dir, entry.to)
    await mkdir(dirname(to), { recursive: true })
    const ownNodeModules = join(entry.from, 'node_modules')
    await cp(entry.from, to, {
      recursive: true,
      verbatimSymlinks: true,
      preserveTimestamps: true,
      errorOnExist: true,
      force: false,
      filter: (source) => {
        signal.throwIfAborted()
        return !entry.skipNodeModules || (source !== ownNodeModules && !source.startsWith(ownNodeModules + sep))
      },
    })
  },
  mkdirp: (path) => mkdir(path, { recursive: true, mode: 0o755 }),
  rename: (from, to) => rename(from, to),
  remove: (path) => rm(path, { recursive: true, force: true }),
  async symlink(target, path) {
    const temporary = temporaryBeside(path)
    await symlink(target, temporary)
    try {
      await rename(temporary, path)
    } catch (error) {
      await unlink(temporary).catch(() => undefined)
      throw error
    }
  },
  async writeText(path, text, mode) {
    await writeFileAtomically(path, text, mode)
  },
}

export const nodePackageReader: PackageReader = {
  async readJson(path) {
    let text
    try {
      text = await readFile(path, 'utf8')
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
    return JSON.parse(text) as unknown
  },
  realpath: (path) => nodeInstallFs.realpath(path),
}

/** Runs /usr/bin/systemctl (or `command`); never throws for a non-zero exit, only when it cannot run. */
export function createSystemctl(command = 'systemctl'): Systemctl {
  return (args, options) =>
    new Promise((resolve, reject) => {
      execFile(command, [...args], { signal: options.signal, encoding: 'utf8', timeout: 120_000 }, (error, stdout, stderr) => {
        const code = error === null ? 0 : (error as { code?: unknown }).code
        if (typeof code === 'number') resolve({ code, stdout, stderr })
        else reject(new Error(`cannot run ${command}: ${error?.message ?? 'unknown error'}`))
      })
    })
}
