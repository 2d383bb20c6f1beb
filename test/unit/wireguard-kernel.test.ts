import { describe, expect, it } from 'vitest'
import { Secret } from '../../src/logging/secret.js'
import { KernelError, type CallOptions, type WireguardGenlPort } from '../../src/kernel/port.js'
import type { ObservedWireguardDevice, WireguardDevice } from '../../src/kernel/types.js'
import { createKernelBackend } from '../../src/kernel/wireguard/kernel.js'

const KEY = 'dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo='
const PEER = 'hSulEuR3g5gRcwHooVXCHHQLbh75QIf7Fb55A8jlFlo='

/** A fake genl port holding devices in memory and recording every call. */
function fakePort(devices: Record<string, ObservedWireguardDevice>) {
  const calls: string[] = []
  const signals: AbortSignal[] = []
  const port: WireguardGenlPort = {
    available: () => Promise.resolve(true),
    deviceGet(name: string, options: CallOptions) {
      calls.push(`get ${name}`)
      signals.push(options.signal)
      const device = devices[name]
      return device === undefined ? Promise.reject(new KernelError('wireguard get', 'ENODEV', name)) : Promise.resolve(device)
    },
    deviceSet(device: WireguardDevice, options: CallOptions) {
      calls.push(`set ${device.name}`)
      signals.push(options.signal)
      devices[device.name] = { ...device, peers: device.peers.map((p) => ({ ...p })) }
      return Promise.resolve()
    },
    close() {
      calls.push('close')
    },
  }
  return { port, calls, signals }
}

const device: WireguardDevice = {
  name: 'md-k',
  privateKey: new Secret(KEY),
  listenPort: 51820,
  peers: [{ publicKey: PEER, allowedIps: ['0.0.0.0/0', '::/0'], endpoint: { address: '192.0.2.2', port: 51820 } }],
}

describe('kernel WireGuard backend', () => {
  const options = { signal: new AbortController().signal }

  it('leaves interface lifecycle to the reconciler: ensure, remove and list touch nothing', async () => {
    const { port, calls } = fakePort({})
    const backend = createKernelBackend({ genl: port })
    expect(backend.kind).toBe('kernel')
    await backend.ensureInterface('md-k', options)
    await backend.removeInterface('md-k', options)
    expect(await backend.listInterfaces(options)).toEqual([])
    expect(calls).toEqual([])
  })

  it('gets through the port, passing the signal on', async () => {
    const observed: ObservedWireguardDevice = { name: 'md-k', listenPort: 1, peers: [] }
    const { port, calls, signals } = fakePort({ 'md-k': observed })
    const backend = createKernelBackend({ genl: port })
    expect(await backend.get('md-k', options)).toBe(observed)
    expect(calls).toEqual(['get md-k'])
    expect(signals).toEqual([options.signal])
  })

  it('sets when the device differs, and not again when it matches', async () => {
    const { port, calls } = fakePort({ 'md-k': { name: 'md-k', listenPort: 0, peers: [] } })
    const backend = createKernelBackend({ genl: port })
    await backend.set(device, options)
    await backend.set(device, options)
    expect(calls).toEqual(['get md-k', 'set md-k', 'get md-k'])
  })

  it('passes kernel errors through unchanged', async () => {
    const backend = createKernelBackend({ genl: fakePort({}).port })
    await expect(backend.set(device, options)).rejects.toMatchObject({ name: 'KernelError', errno: 'ENODEV' })
  })

  it('does not close the port it borrows', async () => {
    const { port, calls } = fakePort({})
    await createKernelBackend({ genl: port }).close()
    expect(calls).toEqual([])
  })
})
