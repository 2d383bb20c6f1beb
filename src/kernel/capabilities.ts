// What this host can do, found out without changing the host: each link kind
// is tried in a scratch network namespace that dies with the probe process,
// and kernel WireGuard by looking up its generic-netlink family. Fallbacks
// are explicit values that status reports, never silent.

import { spawn } from 'node:child_process'
import { access, constants } from 'node:fs/promises'
import { LINK_KINDS, type LinkKind } from './types.js'
import { chooseBackend } from './wireguard/backend.js'

export interface Capabilities {
  /** Link kinds the reconciler may ask for (wireguard: through either backend). */
  linkKinds: Set<LinkKind>
  wireguard: { backend: 'kernel' | 'userspace'; reason: string } | { backend: 'none'; reason: string }
  /** Where the overlay address lives: a dummy link, or lo when dummy is missing. */
  overlayDevice: 'dummy' | 'lo'
  /** Features switched off, each with why; shown in `meshd status`. */
  fallbacks: { feature: string; reason: string }[]
}

export interface CapabilityProbes {
  /** Kinds the kernel accepted in a scratch namespace. */
  creatableKinds(signal: AbortSignal): Promise<Set<string>>
  kernelWireguard(signal: AbortSignal): Promise<boolean>
  wireguardGo(): Promise<boolean>
}

export type WireguardPreference = 'auto' | 'kernel' | 'userspace'

/** Pure: turns probe results and the configured preference into Capabilities. */
export function decideCapabilities(
  probed: { creatable: Set<string>; kernelWireguard: boolean; wireguardGo: boolean },
  preference: WireguardPreference,
): Capabilities {
  const linkKinds = new Set<LinkKind>(LINK_KINDS.filter((k) => k !== 'wireguard' && probed.creatable.has(k)))
  const fallbacks: Capabilities['fallbacks'] = []

  const kernelAvailable = probed.kernelWireguard || probed.creatable.has('wireguard')
  const choice = chooseBackend({ kernelAvailable, override: preference })
  let wireguard: Capabilities['wireguard']
  if (choice.kind === 'error') wireguard = { backend: 'none', reason: choice.reason }
  else if (choice.kind === 'userspace' && !probed.wireguardGo) wireguard = { backend: 'none', reason: `${choice.reason}, but wireguard-go is not installed (apt-get install wireguard-go)` }
  else wireguard = { backend: choice.kind, reason: choice.reason }
  if (wireguard.backend === 'userspace' && preference === 'auto') fallbacks.push({ feature: 'kernel WireGuard', reason: 'module missing; wireguard-go in use (slower)' })
  if (wireguard.backend !== 'none') linkKinds.add('wireguard')

  const overlayDevice = linkKinds.has('dummy') ? 'dummy' : 'lo'
  if (overlayDevice === 'lo') fallbacks.push({ feature: 'dummy', reason: 'module missing; overlay address is on lo' })
  if (!linkKinds.has('gretap') || !linkKinds.has('bond')) {
    const missing = (['gretap', 'bond'] as const).filter((k) => !linkKinds.has(k))
    fallbacks.push({ feature: 'bonded tunnels', reason: `unavailable: no ${missing.join(' or ')} support` })
  }
  if (!linkKinds.has('vxlan')) fallbacks.push({ feature: 'L2 segment', reason: 'unavailable: no vxlan support' })
  return { linkKinds, wireguard, overlayDevice, fallbacks }
}

export async function detectCapabilities(probes: CapabilityProbes, preference: WireguardPreference, signal: AbortSignal): Promise<Capabilities> {
  const [creatable, kernelWireguard, wireguardGo] = await Promise.all([
    probes.creatableKinds(signal),
    probes.kernelWireguard(signal),
    probes.wireguardGo(),
  ])
  return decideCapabilities({ creatable, kernelWireguard, wireguardGo }, preference)
}

/**
 * Runs dist/kernel/probe-kinds.js under `unshare --net`: the links it creates
 * live in a namespace that disappears when the probe exits.
 */
export function probeKindsInScratchNamespace(signal: AbortSignal, nodePath = process.execPath): Promise<Set<string>> {
  const script = new URL('./probe-kinds.js', import.meta.url).pathname
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', ['--net', nodePath, script], { stdio: ['ignore', 'pipe', 'pipe'], signal })
    let out = ''
    let err = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')))
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')))
    child.on('error', reject)
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new Error(`link-kind probe failed (exit ${code}): ${err.trim().split('\n').at(-1) ?? ''}`))
        return
      }
      try {
        const kinds: unknown = JSON.parse(out)
        if (!Array.isArray(kinds) || !kinds.every((k) => typeof k === 'string')) throw new Error('probe printed no kind list')
        resolve(new Set(kinds))
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)))
      }
    })
  })
}

/** Whether an executable wireguard-go is on PATH (or at the given path). */
export async function findWireguardGo(path = process.env.PATH ?? ''): Promise<string | undefined> {
  for (const dir of path.split(':').filter(Boolean)) {
    const candidate = `${dir}/wireguard-go`
    try {
      await access(candidate, constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return undefined
}
