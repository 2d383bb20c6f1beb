// The kernel backend: a thin adapter over the injected generic-netlink port.
// A kernel WireGuard interface is an ordinary link, so its lifecycle belongs
// to the reconciler (`linkAdd` kind wireguard, `linkDel`, `linkList`), which
// already handles every other link kind. This backend only moves
// configuration, and leaves interface creation, removal and listing alone.

import type { WireguardGenlPort } from '../port.js'
import { wireguardDeviceDiffers, type WireguardBackend } from './backend.js'

export interface KernelBackendInit {
  /** Owned by the caller, who closes it; this backend only borrows it. */
  genl: WireguardGenlPort
}

/** Creates the kernel backend over `genl`. */
export function createKernelBackend(init: KernelBackendInit): WireguardBackend {
  const { genl } = init
  return {
    kind: 'kernel',
    /** No-op: the reconciler creates the link with linkAdd (kind wireguard). */
    ensureInterface: () => Promise.resolve(),
    /** No-op: the reconciler deletes the link with linkDel, which also drops its configuration. */
    removeInterface: () => Promise.resolve(),
    /** Always empty: kernel interfaces are links, found by the reconciler's linkList (kind 'wireguard'). */
    listInterfaces: () => Promise.resolve([]),
    get: (name, options) => genl.deviceGet(name, options),
    async set(device, options) {
      // The port sets with replace-peers, which drops every session; skip it when nothing changed.
      const observed = await genl.deviceGet(device.name, options)
      if (wireguardDeviceDiffers(device, observed)) await genl.deviceSet(device, options)
    },
    close: () => Promise.resolve(),
  }
}
