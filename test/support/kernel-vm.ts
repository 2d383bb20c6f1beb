// Runs a shell script inside a Debian kernel under qemu via scripts/kernel-vm
// (design §7, kernel tier). Booting costs ~7 s under TCG emulation, so tests
// should put all their guest work into one script per boot.
import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import { join } from 'node:path'

export const kernelVmScript = join(import.meta.dirname, '..', '..', 'scripts', 'kernel-vm')

/** Statuses scripts/kernel-vm uses for itself rather than the guest command. */
export const KERNEL_VM_TIMEOUT = 124
export const KERNEL_VM_FAILED = 125

export interface KernelVmOptions {
  /** Kills the VM after this long; the status is then 124. Default 300. */
  timeoutSeconds?: number
  /** Aborting terminates scripts/kernel-vm, which kills qemu, and rejects. */
  signal?: AbortSignal
}

export interface KernelVmResult {
  /** The script's exit status, or 124 (timeout) / 125 (VM failed to report). */
  status: number
  /** The script's stdout and stderr, interleaved as the guest wrote them. */
  output: string
  /** What scripts/kernel-vm itself reported: timeout or failure reason and kernel console tail. */
  stderr: string
}

/**
 * Runs `sh -c script` as root in a fresh VM. The guest sees the host root
 * read-only (tmpfs on /tmp, /run, /var/tmp), starts in the caller's working
 * directory and has node_modules/.bin first on PATH.
 */
export async function runInKernelVm(script: string, opts: KernelVmOptions = {}): Promise<KernelVmResult> {
  const timeoutSeconds = opts.timeoutSeconds ?? 300
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds <= 0) {
    throw new RangeError(`timeoutSeconds must be a positive integer, got ${timeoutSeconds}`)
  }
  opts.signal?.throwIfAborted()

  const child = spawn(kernelVmScript, ['--timeout', String(timeoutSeconds), '--', 'sh', '-c', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // On abort Node sends SIGTERM; the script's trap kills qemu and removes its temp dir.
    ...(opts.signal ? { signal: opts.signal } : {}),
  })
  const stdout: Buffer[] = []
  const stderr: Buffer[] = []
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))

  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => {
      resolve({
        // Report death by signal the way a shell would (128 + signal number).
        status: code ?? 128 + (signal ? constants.signals[signal] : 0),
        output: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      })
    })
  })
}
