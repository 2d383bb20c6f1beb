// Wires the kernel layer together for one network namespace (the calling
// process's): netlink ports, the WireGuard backend this host supports,
// capabilities, and the reconciler. The agent and the drivers call this.

import type { Logger } from 'pino'
import { detectCapabilities, findWireguardGo, probeKindsInScratchNamespace, type Capabilities, type WireguardPreference } from './capabilities.js'
import { registerIproute2Names } from './iproute2-names.js'
import { createLinkCounterReader, type LinkCounterReader } from './link-counters.js'
import { openRtnetlink, openWireguardGenl } from './netlink.js'
import type { RtnetlinkPort } from './port.js'
import { createReconciler, type Reconciler } from './reconciler.js'
import { createProcSysctl } from './sysctl.js'
import type { WireguardBackend } from './wireguard/backend.js'
import { createKernelBackend } from './wireguard/kernel.js'
import { createUserspaceBackend } from './wireguard/userspace.js'

export interface KernelLayer {
  capabilities: Capabilities
  reconciler: Reconciler
  rtnl: RtnetlinkPort
  /** Every link's byte counters (the link monitor's poll). */
  linkCounters: LinkCounterReader
  wireguard: WireguardBackend
  close(): Promise<void>
}

export class NoWireguardError extends Error {
  override readonly name = 'NoWireguardError'
}

export async function openKernelLayer(init: { wireguard: WireguardPreference; timeoutMs?: number }, components: { logger: Logger }, signal: AbortSignal): Promise<KernelLayer> {
  const timeoutMs = init.timeoutMs ?? 5000
  // Several request sockets: the reconciler runs independent operations concurrently.
  const rtnl = openRtnetlink({ timeoutMs, sockets: 8 })
  const genl = openWireguardGenl({ timeoutMs })
  const capabilities = await detectCapabilities(
    {
      creatableKinds: (s) => probeKindsInScratchNamespace(s),
      kernelWireguard: (s) => genl.available({ signal: s }),
      wireguardGo: async () => (await findWireguardGo()) !== undefined,
    },
    init.wireguard,
    signal,
  )
  if (capabilities.wireguard.backend === 'none') {
    rtnl.close()
    genl.close()
    throw new NoWireguardError(capabilities.wireguard.reason)
  }
  // So that `ip route` prints "proto meshd"; /etc may be read-only (systemd ProtectSystem), which is fine.
  await registerIproute2Names().catch((error: unknown) => {
    components.logger.debug({ err: error instanceof Error ? error.message : String(error) }, 'cannot register iproute2 names')
  })
  const wireguard = capabilities.wireguard.backend === 'kernel' ? createKernelBackend({ genl }) : createUserspaceBackend({ logger: components.logger })
  const reconciler = createReconciler({ supportedKinds: capabilities.linkKinds }, { rtnl, wireguard, sysctl: createProcSysctl(), logger: components.logger })
  const linkCounters = createLinkCounterReader({ rtnl })
  return {
    capabilities,
    reconciler,
    rtnl,
    linkCounters,
    wireguard,
    async close() {
      linkCounters.close()
      await wireguard.close()
      rtnl.close()
      genl.close()
    },
  }
}
