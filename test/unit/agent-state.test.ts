import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { publicKeyFromPrivate } from '../../src/kernel/wireguard/uapi.js'
import { identityFromSeed } from '../../src/membership/identity.js'
import { createNetwork } from '../../src/membership/network.js'
import { peerState } from '../../src/agent/agent.js'
import { Secret } from '../../src/logging/secret.js'
import {
  beginStateChange,
  decodeNetwork,
  encodeNetwork,
  generateWireguardPrivateKey,
  loadAdmissions,
  loadNetwork,
  loadOrCreateWireguardKey,
  loadPendingToken,
  NETWORK_FILE,
  saveAdmissions,
  saveNetwork,
  savePendingToken,
  StateError,
  WIREGUARD_KEY_FILE,
  wipeState,
} from '../../src/agent/state.js'

const dirs: string[] = []
function stateDir(): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'meshd-state-')), 'state')
  dirs.push(dir)
  return dir
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(join(dir, '..'), { recursive: true, force: true })
})

async function network() {
  const founder = await identityFromSeed(new Uint8Array(32).fill(3))
  const result = createNetwork({ name: 'lab', founder: founder.nodeId, cidr: '10.73.0.0/16', existingRoutes: [], random: (n) => new Uint8Array(randomBytes(n)) })
  if (!result.ok) throw new Error(result.reason)
  return result.value
}

describe('agent state directory', () => {
  it('creates a WireGuard key 0600 in a 0700 directory and loads the same key again', async () => {
    const dir = stateDir()
    const first = await loadOrCreateWireguardKey(dir)
    expect(statSync(dir).mode & 0o777).toBe(0o700)
    expect(statSync(join(dir, WIREGUARD_KEY_FILE)).mode & 0o777).toBe(0o600)
    const again = await loadOrCreateWireguardKey(dir)
    expect(again.privateKey.reveal()).toBe(first.privateKey.reveal())
    expect(again.publicKey).toBe(publicKeyFromPrivate(first.privateKey.reveal()))
    expect(String(first.privateKey)).toBe('[redacted]')
  })

  it('generates 32-byte base64 Curve25519 keys', () => {
    const key = generateWireguardPrivateKey().reveal()
    expect(Buffer.from(key, 'base64')).toHaveLength(32)
    expect(publicKeyFromPrivate(key)).toMatch(/^[A-Za-z0-9+/]{43}=$/)
  })

  it('round-trips the network and refuses a tampered or loose file', async () => {
    const dir = stateDir()
    const net = await network()
    await saveNetwork(dir, net)
    const loaded = await loadNetwork(dir)
    expect(loaded?.id).toBe(net.id)
    expect(Buffer.from(loaded?.secret.reveal() ?? [])).toEqual(Buffer.from(net.secret.reveal()))
    const tampered = encodeNetwork(net).replace('"lab"', '"lab2"')
    expect(() => decodeNetwork(tampered, 'x')).toThrow(StateError)
    expect(() => decodeNetwork('{', 'x')).toThrow(/network file x is invalid \(not JSON\)/)
    chmodSync(join(dir, NETWORK_FILE), 0o644)
    await expect(loadNetwork(dir)).rejects.toThrow(/chmod 600/)
  })

  it('keeps the admission chain (empty for the founder) and tells a pending join apart', async () => {
    const dir = stateDir()
    await saveNetwork(dir, await network())
    expect(await loadAdmissions(dir)).toBeUndefined()
    await saveAdmissions(dir, [])
    expect(await loadAdmissions(dir)).toEqual([])
    writeFileSync(join(dir, 'admissions.json'), '["AAAA"]', { mode: 0o600 })
    await expect(loadAdmissions(dir)).rejects.toThrow(/entry 0/)
    await wipeState(dir)
    expect(await loadNetwork(dir)).toBeUndefined()
  })

  it('rolls back exactly what a failed join wrote: new files and directories go, earlier ones stay', async () => {
    const dir = stateDir()
    const keys = await loadOrCreateWireguardKey(dir)
    const tx = await beginStateChange(dir)
    await saveNetwork(dir, await network())
    await savePendingToken(dir, new Secret('meshd1.token'))
    await tx.rollback()
    expect(await loadNetwork(dir)).toBeUndefined()
    expect(await loadPendingToken(dir)).toBeUndefined()
    expect((await loadOrCreateWireguardKey(dir)).publicKey).toBe(keys.publicKey)

    const nested = join(stateDir(), 'a', 'b')
    const fresh = await beginStateChange(nested)
    await saveNetwork(nested, await network())
    await fresh.rollback()
    expect(existsSync(join(nested, '..', '..'))).toBe(false)
  })

  it('keeps everything after commit', async () => {
    const dir = stateDir()
    const tx = await beginStateChange(dir)
    await saveNetwork(dir, await network())
    tx.commit()
    await tx.rollback()
    expect(await loadNetwork(dir)).toBeDefined()
  })

  it('derives peer state from the handshake age', () => {
    const now = 1_000_000_000
    expect(peerState(false, undefined, now)).toBe('down')
    expect(peerState(true, undefined, now)).toBe('connecting')
    expect(peerState(true, now - 10_000, now)).toBe('up')
    expect(peerState(true, now - 4 * 60_000, now)).toBe('connecting')
  })
})
