import { describe, expect, it } from 'vitest'
import { createLinkMonitor, observe, ACTIVE_BYTES_PER_SECOND, ACTIVE_INNER_BYTES_PER_SECOND, DEVICE_REFRESH_MS } from '../../src/agent/link-monitor.js'
import { chooseEndpoint, endpointChangeDue, ENDPOINT_TRY_MS } from '../../src/planner/endpoint.js'
import type { ObservedWireguardDevice } from '../../src/kernel/types.js'

const a = { address: '192.0.2.1', port: 51820 }
const b = { address: '198.51.100.1', port: 51820 }

describe('chooseEndpoint', () => {
  it('leaves the endpoint to WireGuard while the handshake is fresh (a NAT mapping is kept)', () => {
    expect(chooseEndpoint([a, b], true, { index: 1, since: 0 }, 100)).toEqual({})
  })

  it('tries the candidates in turn without a fresh handshake', () => {
    const first = chooseEndpoint([a, b], false, undefined, 1_000)
    expect(first).toEqual({ endpoint: a, attempt: { index: 0, since: 1_000 } })
    expect(chooseEndpoint([a, b], false, first.attempt, 1_000 + ENDPOINT_TRY_MS - 1).endpoint).toEqual(a)
    const second = chooseEndpoint([a, b], false, first.attempt, 1_000 + ENDPOINT_TRY_MS)
    expect(second).toEqual({ endpoint: b, attempt: { index: 1, since: 1_000 + ENDPOINT_TRY_MS } })
    expect(chooseEndpoint([a, b], false, second.attempt, 1_000 + 2 * ENDPOINT_TRY_MS).endpoint).toEqual(a)
  })

  it('calls for a pass only when the next try would be a different endpoint', () => {
    const attempt = chooseEndpoint([a, b], false, undefined, 1_000).attempt ?? { index: 0, since: 1_000 }
    expect(endpointChangeDue(attempt, 2, 1_000 + ENDPOINT_TRY_MS - 1)).toBe(false)
    expect(endpointChangeDue(attempt, 2, 1_000 + ENDPOINT_TRY_MS)).toBe(true)
    // One candidate: the rotation comes back to it, so there is nothing to apply.
    const only = chooseEndpoint([a], false, undefined, 1_000).attempt ?? { index: 0, since: 1_000 }
    expect(chooseEndpoint([a], false, only, 1_000 + ENDPOINT_TRY_MS).endpoint).toEqual(a)
    expect(endpointChangeDue(only, 1, 1_000 + 10 * ENDPOINT_TRY_MS)).toBe(false)
  })

  it('restarts when the candidate list shrank, and sets nothing without candidates', () => {
    expect(chooseEndpoint([a], false, { index: 3, since: 0 }, 10)).toEqual({ endpoint: a, attempt: { index: 0, since: 10 } })
    expect(chooseEndpoint([], false, undefined, 10)).toEqual({})
  })
})

const device = (peer: { lastHandshakeMs?: number; rxBytes: number; txBytes: number }): ObservedWireguardDevice => ({
  name: 'md-x',
  listenPort: 51820,
  peers: [{ publicKey: 'PK', allowedIps: [], ...peer }],
})

describe('link monitor', () => {
  it("calls a link active only above keepalive traffic", () => {
    const first = observe(undefined, device({ rxBytes: 0, txBytes: 0 }), 'PK', 0)
    expect(first?.active).toBe(false)
    const quiet = observe(first, device({ rxBytes: 32, txBytes: 32 }), 'PK', 1_000)
    expect(quiet?.active).toBe(false)
    const busy = observe(quiet, device({ rxBytes: 32 + ACTIVE_BYTES_PER_SECOND, txBytes: 100 }), 'PK', 2_000)
    expect(busy?.active).toBe(true)
    expect(observe(busy, device({ rxBytes: 0, txBytes: 0 }), 'other', 3_000)).toBeUndefined()
  })

  it("does not count meshd's own probes as traffic", () => {
    const first = observe(undefined, device({ rxBytes: 0, txBytes: 0 }), 'PK', 0, 0)
    const probesOnly = observe(first, device({ rxBytes: 4 * ACTIVE_BYTES_PER_SECOND, txBytes: 0 }), 'PK', 1_000, 4 * ACTIVE_BYTES_PER_SECOND)
    expect(probesOnly?.active).toBe(false)
    const withTraffic = observe(probesOnly, device({ rxBytes: 8 * ACTIVE_BYTES_PER_SECOND, txBytes: 0 }), 'PK', 2_000, 5 * ACTIVE_BYTES_PER_SECOND)
    expect(withTraffic?.active).toBe(true)
  })

  it('reports handshake freshness and activity flips', async () => {
    let now = 0
    let handshake: number | undefined = undefined as number | undefined
    let bytes = 0
    const monitor = createLinkMonitor({ readDevice: () => Promise.resolve(device({ ...(handshake === undefined ? {} : { lastHandshakeMs: handshake }), rxBytes: bytes, txBytes: 0 })), now: () => now, freshMs: 180_000 })
    monitor.setLinks([{ peerId: 'p', ifname: 'md-x', peerPublicKey: 'PK' }])
    const signal = new AbortController().signal
    expect(await monitor.poll({ signal })).toEqual({ freshness: [], activity: [] })
    now = 1_000
    handshake = 900
    bytes = 10 * ACTIVE_BYTES_PER_SECOND
    expect(await monitor.poll({ signal })).toEqual({ freshness: ['p'], activity: ['p'] })
    now = 200_000
    expect(await monitor.poll({ signal })).toEqual({ freshness: ['p'], activity: ['p'] })
    monitor.setLinks([])
    expect(monitor.get('p')).toBeUndefined()
  })

  it('with interface counters, reads an idle device only when due, and judges activity from the counters less probes', async () => {
    let now = 0
    const reads: string[] = []
    const inner = { bytes: 0, probes: 0 }
    const monitor = createLinkMonitor({
      readDevice: (ifname) => {
        reads.push(ifname)
        return Promise.resolve(device({ lastHandshakeMs: 0, rxBytes: 0, txBytes: 0 }))
      },
      readCounters: () => Promise.resolve(new Map([['md-x', { rxBytes: inner.bytes, txBytes: 0 }]])),
      probeInnerBytes: () => new Map([['p', inner.probes]]),
      now: () => now,
      freshMs: 180_000,
    })
    monitor.setLinks([{ peerId: 'p', ifname: 'md-x', peerPublicKey: 'PK' }])
    const signal = new AbortController().signal
    await monitor.poll({ signal })
    expect(reads).toEqual(['md-x'])
    // Idle, fresh: the counters say nothing moved (beyond probes), so the device is left alone.
    for (now = 3_000; now < DEVICE_REFRESH_MS; now += 3_000) {
      inner.bytes += 300
      inner.probes += 300
      expect(await monitor.poll({ signal })).toEqual({ freshness: [], activity: [] })
    }
    expect(reads).toHaveLength(1)
    // …until DEVICE_REFRESH_MS since the last read.
    now = DEVICE_REFRESH_MS
    await monitor.poll({ signal })
    expect(reads).toHaveLength(2)
    // Traffic that is not probes: active at once, and the device is read.
    now += 3_000
    inner.bytes += 3 * 2 * ACTIVE_INNER_BYTES_PER_SECOND
    expect(await monitor.poll({ signal })).toEqual({ freshness: [], activity: ['p'] })
    expect(monitor.get('p')?.active).toBe(true)
    expect(reads).toHaveLength(3)
    // Quiet again: inactive, and read once more on the way down.
    now += 3_000
    expect(await monitor.poll({ signal })).toEqual({ freshness: [], activity: ['p'] })
    expect(reads).toHaveLength(4)
    now += 3_000
    await monitor.poll({ signal })
    expect(reads).toHaveLength(4)
    // A handshake close to going stale is read every poll, so the flip is seen.
    now = 178_000
    expect(await monitor.poll({ signal })).toEqual({ freshness: [], activity: [] })
    expect(reads).toHaveLength(5)
    now = 181_000
    expect(await monitor.poll({ signal })).toEqual({ freshness: ['p'], activity: [] })
    expect(reads).toHaveLength(6)
  })
})
