import { describe, expect, it } from 'vitest'
import { createLogger } from '../../src/logging/logger.js'
import { createReconciler } from '../../src/kernel/reconciler.js'
import { LINK_KINDS } from '../../src/kernel/types.js'
import type { WireguardBackend } from '../../src/kernel/wireguard/backend.js'
import { FakeKernel } from '../support/fake-kernel.js'
import { onePeerMesh, TEST_PEER_KEY } from '../support/kernel-fixtures.js'

// The reconciler reads a WireGuard device back only when its desired
// configuration or its link changed since it was applied, or on a full
// resync. These tests pin both halves: the read is skipped when nothing
// changed, and a real drift the cache cannot see (WireGuard changes made
// out-of-band notify nothing) is still repaired by a full resync.

const OTHER_PEER_KEY = 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw='
const signal = new AbortController().signal

function setup(init: { fullResyncIntervalMs?: number } = {}) {
  const kernel = new FakeKernel()
  const backend = kernel.wireguardBackend()
  const reads: string[] = []
  const wireguard: WireguardBackend = {
    ...backend,
    get: (name, options) => {
      reads.push(name)
      return backend.get(name, options)
    },
  }
  let clock = 1_000_000
  const reconciler = createReconciler(
    { supportedKinds: new Set(LINK_KINDS), fullResyncIntervalMs: init.fullResyncIntervalMs ?? 30_000, now: () => clock },
    { rtnl: kernel, wireguard, sysctl: kernel.sysctlPort(), logger: createLogger({ level: 'silent', pretty: false }) },
  )
  return {
    kernel,
    reconciler,
    reads,
    advance: (ms: number) => {
      clock += ms
    },
  }
}

/** Someone runs `wg set md-w-b peer <other> …` and removes meshd's peer, behind meshd's back. */
function changePeerOutOfBand(kernel: FakeKernel): void {
  const device = kernel.devices.get('md-w-b')
  if (!device) throw new Error('no device')
  kernel.devices.set('md-w-b', { ...device, peers: [{ publicKey: OTHER_PEER_KEY, allowedIps: ['10.0.0.0/8'] }] })
}

const peersOf = (kernel: FakeKernel): string[] => kernel.devices.get('md-w-b')?.peers.map((p) => p.publicKey) ?? []

describe('reconciler WireGuard read-back cache', () => {
  it('reads a device once after configuring it, then not again while nothing changes', async () => {
    const { reconciler, reads } = setup()
    await reconciler.apply(onePeerMesh(), { signal })
    // Created by the first pass: its link index is learned by reading it once.
    reads.length = 0
    expect((await reconciler.apply(onePeerMesh(), { signal })).planned).toEqual([])
    expect(reads).toEqual(['md-w-b'])
    reads.length = 0
    expect((await reconciler.apply(onePeerMesh(), { signal })).planned).toEqual([])
    expect(reads).toEqual([])
  })

  it('reads and re-configures a device whose desired configuration changed', async () => {
    const { reconciler, kernel, reads } = setup()
    await reconciler.apply(onePeerMesh(), { signal })
    await reconciler.apply(onePeerMesh(), { signal })
    reads.length = 0
    const next = onePeerMesh()
    const device = next.wireguard[0]
    if (!device) throw new Error('fixture has no device')
    device.listenPort = 51900
    const result = await reconciler.apply(next, { signal })
    expect(reads).toEqual(['md-w-b'])
    expect(result.planned.map((o) => o.op)).toEqual(['wgSet'])
    expect(kernel.devices.get('md-w-b')?.listenPort).toBe(51900)
  })

  it('does not see an out-of-band peer change between full resyncs, and repairs it on `resync`', async () => {
    const { reconciler, kernel } = setup()
    await reconciler.apply(onePeerMesh(), { signal })
    await reconciler.apply(onePeerMesh(), { signal })
    changePeerOutOfBand(kernel)
    // The cost of the cache, stated: an ordinary pass trusts what it applied.
    expect((await reconciler.apply(onePeerMesh(), { signal })).planned).toEqual([])
    const repaired = await reconciler.apply(onePeerMesh(), { signal, resync: true })
    expect(repaired.planned.map((o) => o.op)).toEqual(['wgSet'])
    expect(repaired.failures).toEqual([])
    expect(peersOf(kernel)).toEqual([TEST_PEER_KEY])
  })

  it('repairs an out-of-band peer change at the periodic full resync', async () => {
    const { reconciler, kernel, advance } = setup({ fullResyncIntervalMs: 30_000 })
    await reconciler.apply(onePeerMesh(), { signal })
    await reconciler.apply(onePeerMesh(), { signal })
    changePeerOutOfBand(kernel)
    advance(29_000)
    expect((await reconciler.apply(onePeerMesh(), { signal })).planned).toEqual([])
    advance(2_000)
    expect((await reconciler.apply(onePeerMesh(), { signal })).planned.map((o) => o.op)).toEqual(['wgSet'])
    expect(peersOf(kernel)).toEqual([TEST_PEER_KEY])
  })

  it('reads every pass with fullResyncIntervalMs 0', async () => {
    const { reconciler, kernel } = setup({ fullResyncIntervalMs: 0 })
    await reconciler.apply(onePeerMesh(), { signal })
    await reconciler.apply(onePeerMesh(), { signal })
    changePeerOutOfBand(kernel)
    expect((await reconciler.apply(onePeerMesh(), { signal })).planned.map((o) => o.op)).toEqual(['wgSet'])
  })

  it('repairs a device after invalidate()', async () => {
    const { reconciler, kernel } = setup()
    await reconciler.apply(onePeerMesh(), { signal })
    await reconciler.apply(onePeerMesh(), { signal })
    changePeerOutOfBand(kernel)
    reconciler.invalidate(['md-w-b'])
    expect((await reconciler.apply(onePeerMesh(), { signal })).planned.map((o) => o.op)).toEqual(['wgSet'])
    expect(peersOf(kernel)).toEqual([TEST_PEER_KEY])
  })

  it('does not trust a link that was re-created behind its back (new index, unconfigured device)', async () => {
    const { reconciler, kernel } = setup()
    await reconciler.apply(onePeerMesh(), { signal })
    await reconciler.apply(onePeerMesh(), { signal })
    // Someone deletes the link and makes a bare one of the same name: same kind, new index, no peers.
    const old = kernel.links.get('md-w-b')
    if (!old) throw new Error('no link')
    kernel.links.set('md-w-b', { ...old, index: old.index + 100 })
    kernel.devices.set('md-w-b', { name: 'md-w-b', listenPort: 0, peers: [] })
    const repaired = await reconciler.apply(onePeerMesh(), { signal })
    expect(repaired.planned.map((o) => o.op)).toEqual(['wgSet'])
    expect(peersOf(kernel)).toEqual([TEST_PEER_KEY])
  })

  it('forgets a device whose configuration failed, and reads it again next pass', async () => {
    const { reconciler, kernel, reads } = setup()
    await reconciler.apply(onePeerMesh(), { signal })
    await reconciler.apply(onePeerMesh(), { signal })
    const next = onePeerMesh()
    const device = next.wireguard[0]
    if (!device) throw new Error('fixture has no device')
    device.listenPort = 51900
    kernel.failNext = { wgSet: 'EADDRINUSE' }
    expect((await reconciler.apply(next, { signal })).failures.map((f) => f.operation.op)).toEqual(['wgSet'])
    reads.length = 0
    const retry = await reconciler.apply(next, { signal })
    expect(reads).toEqual(['md-w-b'])
    expect(retry.planned.map((o) => o.op)).toEqual(['wgSet'])
    expect(retry.failures).toEqual([])
  })
})
