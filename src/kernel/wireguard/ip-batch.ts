// One `ip -force -batch -` process for many link commands, for the userspace
// backend: tun devices cannot be created over rtnetlink (only with the
// TUNSETIFF/TUNSETPERSIST ioctls on /dev/net/tun, which Node cannot issue), so
// the persistent tuns wireguard-go attaches to are made by iproute2, all of a
// pass's in one process. Nothing else in meshd runs `ip`.

import { spawn } from 'node:child_process'
import { access, constants as fsConstants } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { KernelError } from '../port.js'

export interface IpBatchOptions {
  signal: AbortSignal
  /** The ip binary; looked up on PATH when it has no slash. */
  ipPath: string
  /** Deadline for the whole batch. */
  timeoutMs: number
}

/** iproute2's messages (strerror texts and its own) → errno names, for KernelError. */
const MESSAGES: readonly [RegExp, string][] = [
  [/Cannot find device|No such device/, 'ENODEV'],
  [/Device or resource busy/, 'EBUSY'],
  [/File exists/, 'EEXIST'],
  [/Operation not permitted/, 'EPERM'],
  [/Permission denied/, 'EACCES'],
  [/No such file or directory/, 'ENOENT'],
  [/Invalid argument/, 'EINVAL'],
  [/Too many open files/, 'EMFILE'],
  [/No buffer space available/, 'ENOBUFS'],
]

export function errnoOfMessage(message: string): string {
  return MESSAGES.find(([pattern]) => pattern.test(message))?.[1] ?? 'EIO'
}

/** Whether `ip` can be run: an executable found as given or on PATH. */
export async function ipAvailable(ipPath: string): Promise<boolean> {
  const candidates = ipPath.includes('/') ? [ipPath] : (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter).filter(Boolean).map((dir) => join(dir, ipPath))
  for (const candidate of candidates) {
    try {
      await access(candidate, fsConstants.X_OK)
      return true
    } catch {
      // not here
    }
  }
  return false
}

/**
 * Runs `lines` (ip commands without the leading `ip`) in one `ip -force
 * -batch -`, which goes on past a failed line. Resolves with the failed lines:
 * index in `lines` → what ip printed for it. Rejects (KernelError `operation`)
 * when ip cannot run or does not finish: ENOENT when it is not installed.
 */
export function ipBatch(operation: string, lines: readonly string[], options: IpBatchOptions): Promise<Map<number, string>> {
  if (lines.length === 0) return Promise.resolve(new Map<number, string>())
  if (options.signal.aborted) return Promise.reject(new KernelError(operation, 'EABORTED'))
  for (const line of lines) if (line.includes('\n')) return Promise.reject(new KernelError(operation, 'EINVAL', 'a batch line holds a newline'))
  return new Promise((resolve, reject) => {
    const deadline = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs)])
    const child = spawn(options.ipPath, ['-force', '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } })
    let stderr = ''
    let settled = false
    const finish = (error: KernelError | undefined, failures?: Map<number, string>): void => {
      if (settled) return
      settled = true
      deadline.removeEventListener('abort', onAbort)
      if (error !== undefined) reject(error)
      else resolve(failures ?? new Map<number, string>())
    }
    const onAbort = (): void => {
      child.kill('SIGKILL')
      finish(new KernelError(operation, options.signal.aborted ? 'EABORTED' : 'ETIMEDOUT', `${options.ipPath} -batch`))
    }
    deadline.addEventListener('abort', onAbort, { once: true })
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 1024 * 1024) stderr += chunk
    })
    child.on('error', (error: NodeJS.ErrnoException) => {
      const missing = error.code === 'ENOENT'
      finish(new KernelError(operation, error.code ?? 'EIO', missing ? `${options.ipPath} not found: the userspace WireGuard backend needs iproute2 to create tun devices` : `cannot run ${options.ipPath}: ${error.message}`))
    })
    // ip exits at once on a closed stdin; an EPIPE here shows in its exit status or spawn error.
    child.stdin.on('error', () => undefined)
    child.on('close', (code, signal) => {
      const failures = parseFailures(stderr, lines.length)
      // Exit status 1 with every failure named by line is the -force outcome; anything else is ip itself failing.
      if (signal !== null || (code !== 0 && failures.size === 0)) {
        finish(new KernelError(operation, 'EIO', `${options.ipPath} -batch exited ${signal ?? `code ${code}`}: ${stderr.trim().slice(0, 500)}`))
        return
      }
      finish(undefined, failures)
    })
    child.stdin.end(lines.join('\n') + '\n')
  })
}

/** `ip -force -batch` prints a failed command's own messages, then "Command failed -:LINE" (1-based). */
export function parseFailures(stderr: string, count: number): Map<number, string> {
  const failures = new Map<number, string>()
  let pending: string[] = []
  for (const line of stderr.split('\n')) {
    const match = /^Command failed -:(\d+)\s*$/.exec(line)
    if (match === null) {
      if (line.trim() !== '') pending.push(line.trim())
      continue
    }
    const index = Number(match[1]) - 1
    if (index >= 0 && index < count) failures.set(index, pending.join('; ') || 'failed')
    pending = []
  }
  return failures
}
