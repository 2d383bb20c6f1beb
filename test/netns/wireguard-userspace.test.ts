// The userspace WireGuard backend against the real wireguard-go, in two
// namespaces joined by a veth pair. The backend runs inside a namespace through
// dist/kernel/wireguard/driver.js (a namespace is per process); `wg show` and
// `ip` are the independent oracles.

import { spawnSync } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DriverCommand } from '../../src/kernel/wireguard/driver.js'
import { Netns, run } from '../support/netns.js'
import { pollUntil } from '../support/poll.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const NODE = `${root}node_modules/.bin/node`
const DRIVER = `${root}dist/kernel/wireguard/driver.js`
const UAPI_DIR = '/var/run/wireguard'

/** A WireGuard key pair in base64, from node:crypto (wg pubkey must agree). */
function keyPair(): { privateKey: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519')
  const b64 = (jwkField: string | undefined): string => Buffer.from(jwkField ?? '', 'base64url').toString('base64')
  return { privateKey: b64(privateKey.export({ format: 'jwk' }).d), publicKey: b64(publicKey.export({ format: 'jwk' }).x) }
}

interface DriverOutcome {
  results: unknown[]
  error?: { name: string; errno?: string; message: string }
}

/** Runs driver commands inside `ns` in a fresh node process. */
function drive(ns: Netns, commands: DriverCommand[]): DriverOutcome {
  const result = spawnSync('ip', ['netns', 'exec', ns.name, NODE, DRIVER], { input: JSON.stringify(commands), encoding: 'utf8' })
  if (result.stdout.trim() === '') throw new Error(`driver printed nothing (exit ${result.status}): ${result.stderr}`)
  return JSON.parse(result.stdout) as DriverOutcome
}

/** Like drive, but throws on a failed command. */
function driveOk(ns: Netns, commands: DriverCommand[]): unknown[] {
  const outcome = drive(ns, commands)
  if (outcome.error !== undefined) throw new Error(`driver failed: ${outcome.error.message}`)
  return outcome.results
}

/** Pids of the wireguard-go processes running for interface `name` in `ns`. */
function wireguardGoPids(ns: Netns, name: string): number[] {
  const pids = run('ip', ['netns', 'pids', ns.name]).split('\n').filter(Boolean).map(Number)
  return pids.filter((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
      return argv[0]?.endsWith('wireguard-go') === true && argv.includes(name)
    } catch {
      return false
    }
  })
}

/** The single wireguard-go pid of `name`, failing when there is none or more than one. */
function onePid(ns: Netns, name: string): number {
  const pids = wireguardGoPids(ns, name)
  expect(pids).toHaveLength(1)
  return pids[0] ?? -1
}

interface DumpPeer {
  presharedKey: string
  endpoint: string
  allowedIps: string
  latestHandshake: number
  rx: number
  tx: number
  keepalive: string
}

/** `wg show NAME dump`, parsed: the device line and one entry per peer keyed by public key. */
function wgDump(ns: Netns, name: string): { privateKey: string; publicKey: string; listenPort: string; fwmark: string; peers: Map<string, DumpPeer> } {
  const [device = '', ...peerLines] = ns.exec('wg', ['show', name, 'dump']).trim().split('\n')
  const [privateKey = '', publicKey = '', listenPort = '', fwmark = ''] = device.split('\t')
  const peers = new Map<string, DumpPeer>()
  for (const line of peerLines) {
    const [key = '', presharedKey = '', endpoint = '', allowedIps = '', handshake, rx, tx, keepalive = ''] = line.split('\t')
    peers.set(key, { presharedKey, endpoint, allowedIps, latestHandshake: Number(handshake), rx: Number(rx), tx: Number(tx), keepalive })
  }
  return { privateKey, publicKey, listenPort, fwmark, peers }
}

/** The configuration columns of a dump, without handshake time and counters, peers sorted (wireguard-go lists them in Go map order). */
function dumpConfig(dump: ReturnType<typeof wgDump>): unknown {
  return {
    ...dump,
    peers: [...dump.peers].sort(([x], [y]) => x.localeCompare(y)).map(([key, p]) => [key, p.presharedKey, p.endpoint, p.allowedIps, p.keepalive]),
  }
}

function linkExists(ns: Netns, name: string): boolean {
  return spawnSync('ip', ['-n', ns.name, 'link', 'show', 'dev', name], { stdio: 'ignore' }).status === 0
}

describe('userspace WireGuard backend (wireguard-go)', () => {
  const a = new Netns('mt-wga')
  const b = new Netns('mt-wgb')
  const suffix = randomBytes(3).toString('hex')
  const nameA = `md-a${suffix}`
  const nameB = `md-b${suffix}`
  const nameC = `md-c${suffix}`
  const keyA = keyPair()
  const keyB = keyPair()
  const deadPeer = keyPair()
  const psk = randomBytes(32).toString('base64')

  // A → B over IPv6, B → A over IPv6 too (mixed families would make WireGuard roam to
  // the other family and report an endpoint other than the configured one). The second
  // peer of A, with an IPv4 endpoint, never gets traffic, so no packet is ever sent to it.
  const deviceA = {
    name: nameA,
    privateKey: keyA.privateKey,
    listenPort: 51820,
    fwmark: 0x1234,
    peers: [
      { publicKey: keyB.publicKey, presharedKey: psk, endpoint: { address: 'fd00:77::2', port: 51821 }, allowedIps: ['0.0.0.0/0', '::/0'], persistentKeepaliveSeconds: 25 },
      { publicKey: deadPeer.publicKey, endpoint: { address: '192.0.2.99', port: 51999 }, allowedIps: ['10.9.0.0/16'] },
    ],
  }
  const deviceB = {
    name: nameB,
    privateKey: keyB.privateKey,
    listenPort: 51821,
    peers: [{ publicKey: keyA.publicKey, presharedKey: psk, endpoint: { address: 'fd00:77::1', port: 51820 }, allowedIps: ['0.0.0.0/0', '::/0'] }],
  }

  const ping = async (): Promise<void> => {
    await pollUntil(() => (a.execStatus('ping', ['-c1', '-W1', '169.254.20.2']) === 0 ? true : undefined), { deadlineMs: 15_000, what: 'a ping through the tunnel' })
  }

  beforeAll(async () => {
    if (!existsSync(DRIVER)) throw new Error(`${DRIVER} is missing: run npm run build first`)
    a.ip('link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb', 'netns', b.name)
    a.ip('addr', 'add', 'fd00:77::1/64', 'dev', 'va', 'nodad')
    a.ip('addr', 'add', '192.0.2.1/24', 'dev', 'va')
    b.ip('addr', 'add', 'fd00:77::2/64', 'dev', 'vb', 'nodad')
    b.ip('addr', 'add', '192.0.2.2/24', 'dev', 'vb')
    a.ip('link', 'set', 'va', 'up')
    b.ip('link', 'set', 'vb', 'up')
    // A first handshake lost to a not-yet-ready underlay is retried only after 5 s (REKEY_TIMEOUT).
    await pollUntil(() => (a.execStatus('ping', ['-c1', '-W1', 'fd00:77::2']) === 0 ? true : undefined), { deadlineMs: 10_000, what: 'the underlay' })
  })

  afterAll(() => {
    a.delete()
    b.delete()
    // SIGKILLed processes leave sockets behind, and the directory is shared by every namespace.
    for (const name of [nameA, nameB, nameC]) rmSync(`${UAPI_DIR}/${name}.sock`, { force: true })
  })

  it('starts wireguard-go in each namespace, configures it, and a ping crosses the tunnel', async () => {
    // B first: A's keepalive sends a handshake at once, and one that finds no listener is retried only after 5 s.
    driveOk(b, [{ op: 'ensure', name: nameB }, { op: 'set', device: deviceB }])
    driveOk(a, [{ op: 'ensure', name: nameA }, { op: 'set', device: deviceA }])
    a.ip('addr', 'add', '169.254.20.1/32', 'peer', '169.254.20.2/32', 'dev', nameA)
    b.ip('addr', 'add', '169.254.20.2/32', 'peer', '169.254.20.1/32', 'dev', nameB)
    a.ip('link', 'set', nameA, 'up')
    b.ip('link', 'set', nameB, 'up')
    await ping()
    // The process is the backend's foreground child, in a session of its own.
    const pid = onePid(a, nameA)
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toEqual(['wireguard-go', '-f', nameA, ''])
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const [, , pgrp, session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    expect(Number(pgrp)).toBe(pid)
    expect(Number(session)).toBe(pid)
  })

  it('leaves exactly the configuration it set, as `wg show dump` reports it', () => {
    const dumpA = wgDump(a, nameA)
    expect(dumpA.privateKey).toBe(keyA.privateKey)
    expect(dumpA.publicKey).toBe(keyA.publicKey)
    expect(dumpA.listenPort).toBe('51820')
    expect(dumpA.fwmark).toBe('0x1234')
    expect([...dumpA.peers.keys()].sort()).toEqual([keyB.publicKey, deadPeer.publicKey].sort())
    expect(dumpA.peers.get(keyB.publicKey)).toMatchObject({ presharedKey: psk, endpoint: '[fd00:77::2]:51821', allowedIps: '0.0.0.0/0,::/0', keepalive: '25' })
    expect(dumpA.peers.get(deadPeer.publicKey)).toMatchObject({ presharedKey: '(none)', endpoint: '192.0.2.99:51999', allowedIps: '10.9.0.0/16', keepalive: 'off', tx: 0 })
    const dumpB = wgDump(b, nameB)
    expect(dumpB).toMatchObject({ privateKey: keyB.privateKey, listenPort: '51821', fwmark: 'off' })
    expect(dumpB.peers.get(keyA.publicKey)).toMatchObject({ presharedKey: psk, endpoint: '[fd00:77::1]:51820', keepalive: 'off' })
    expect(dumpB.peers.get(keyA.publicKey)?.latestHandshake).toBeGreaterThan(0)
  })

  it('gets back the configuration it set', () => {
    const [check, device] = driveOk(a, [{ op: 'check', device: deviceA }, { op: 'get', name: nameA }]) as [{ differs: boolean }, Record<string, unknown>]
    expect(check.differs).toBe(false)
    expect(device).toMatchObject({ name: nameA, publicKey: keyA.publicKey, privateKey: '[redacted]', listenPort: 51820, fwmark: 0x1234 })
    const [checkB] = driveOk(b, [{ op: 'check', device: deviceB }]) as [{ differs: boolean }]
    expect(checkB.differs).toBe(false)
    // The output of a get never carries a key.
    const text = JSON.stringify(device)
    for (const secret of [keyA.privateKey, psk]) expect(text).not.toContain(secret)
  })

  it('changes nothing visible when the same configuration is set again', async () => {
    await ping()
    const pid = onePid(a, nameA)
    const before = wgDump(a, nameA)
    driveOk(a, [{ op: 'set', device: deviceA }])
    const after = wgDump(a, nameA)
    expect(dumpConfig(after)).toEqual(dumpConfig(before))
    // Same session: the handshake is not redone and the counters are not reset.
    const [peerBefore, peerAfter] = [before.peers.get(keyB.publicKey), after.peers.get(keyB.publicKey)]
    expect(peerAfter?.latestHandshake).toBe(peerBefore?.latestHandshake)
    expect(peerAfter?.rx).toBeGreaterThanOrEqual(peerBefore?.rx ?? Infinity)
    expect(peerAfter?.tx).toBeGreaterThanOrEqual(peerBefore?.tx ?? Infinity)
    expect(onePid(a, nameA)).toBe(pid)
  })

  it('adopts the running process from a new agent process: same pid, get works, list sees it', () => {
    const pid = onePid(a, nameA)
    const [, device, list] = driveOk(a, [{ op: 'ensure', name: nameA }, { op: 'get', name: nameA }, { op: 'list' }]) as [null, { publicKey: string }, string[]]
    expect(device.publicKey).toBe(keyA.publicKey)
    expect(onePid(a, nameA)).toBe(pid)
    // B's socket sits in the same directory but belongs to the other namespace.
    expect(list).toEqual([nameA])
  })

  it("never adopts or stops another namespace's interface", () => {
    const pid = onePid(a, nameA)
    expect(drive(b, [{ op: 'ensure', name: nameA }]).error).toMatchObject({ errno: 'EEXIST' })
    driveOk(b, [{ op: 'remove', name: nameA }])
    expect(onePid(a, nameA)).toBe(pid)
    expect(existsSync(`${UAPI_DIR}/${nameA}.sock`)).toBe(true)
  })

  it('replaces a killed process whose socket went stale', async () => {
    const old = onePid(b, nameB)
    process.kill(old, 'SIGKILL')
    await pollUntil(() => (wireguardGoPids(b, nameB).length === 0 ? true : undefined), { deadlineMs: 5_000, what: 'wireguard-go to die' })
    expect(existsSync(`${UAPI_DIR}/${nameB}.sock`)).toBe(true)
    expect(driveOk(b, [{ op: 'list' }])).toEqual([[]])
    driveOk(b, [{ op: 'ensure', name: nameB }, { op: 'set', device: deviceB }])
    expect(onePid(b, nameB)).not.toBe(old)
    b.ip('addr', 'add', '169.254.20.2/32', 'peer', '169.254.20.1/32', 'dev', nameB)
    b.ip('link', 'set', nameB, 'up')
    await ping()
  })

  it('removes an adopted interface: no process, no socket, no link', async () => {
    driveOk(a, [{ op: 'remove', name: nameA }])
    await pollUntil(() => (wireguardGoPids(a, nameA).length === 0 ? true : undefined), { deadlineMs: 5_000, what: 'wireguard-go to exit' })
    expect(existsSync(`${UAPI_DIR}/${nameA}.sock`)).toBe(false)
    expect(linkExists(a, nameA)).toBe(false)
    expect(drive(a, [{ op: 'get', name: nameA }]).error).toMatchObject({ errno: 'ENODEV' })
    // Removing again is a no-op.
    driveOk(a, [{ op: 'remove', name: nameA }])
  })

  it('attaches to a persistent tun made beforehand, survives its SIGKILL, is restarted on it, and removal deletes it', async () => {
    const name = `md-p${suffix}`
    const link = (): { ifindex: number; mtu: number; flags: string[]; linkinfo?: { info_data?: Record<string, unknown> } } | undefined =>
      b.ipJson<{ ifindex: number; mtu: number; flags: string[]; linkinfo?: { info_data?: Record<string, unknown> } }[]>('-d', 'link', 'show').find((l) => (l as unknown as { ifname: string }).ifname === name)
    try {
      driveOk(b, [{ op: 'create', name }])
      const made = link()
      // ip's default is no packet information; wireguard-go's open sets its own flags.
      expect(made?.linkinfo?.info_data).toMatchObject({ type: 'tun', persist: true, pi: false })
      expect(made?.mtu).toBe(1500)
      // Up before any process: routes through it are accepted (linkdown).
      b.ip('link', 'set', name, 'mtu', '1420', 'up')
      b.ip('route', 'add', '10.77.0.0/24', 'dev', name)
      expect(b.ip('route', 'show', '10.77.0.0/24')).toMatch(/linkdown/)
      driveOk(b, [{ op: 'ensure', name }])
      const attached = link()
      expect(attached?.ifindex).toBe(made?.ifindex)
      expect(attached?.linkinfo?.info_data).toMatchObject({ persist: true, pi: true })
      expect(attached?.flags).toEqual(expect.arrayContaining(['UP', 'LOWER_UP']))
      expect(b.ip('route', 'show', '10.77.0.0/24')).not.toMatch(/linkdown/)
      // Already up, it bound a random port before any listen_port was set.
      const [device] = driveOk(b, [{ op: 'get', name }]) as [{ listenPort: number }]
      expect(device.listenPort).toBeGreaterThan(0)
      const [pid] = wireguardGoPids(b, name)
      process.kill(pid ?? 0, 'SIGKILL')
      await pollUntil(() => (link()?.flags.includes('NO-CARRIER') ? true : undefined), { deadlineMs: 5_000, what: 'the tun to lose its carrier' })
      driveOk(b, [{ op: 'ensure', name }])
      expect(link()?.ifindex).toBe(made?.ifindex)
      expect(wireguardGoPids(b, name)).not.toEqual([pid])
      driveOk(b, [{ op: 'remove', name }])
      expect(wireguardGoPids(b, name)).toEqual([])
      expect(existsSync(`${UAPI_DIR}/${name}.sock`)).toBe(false)
      expect(linkExists(b, name)).toBe(false)
      // A tun whose process is gone is removed too.
      driveOk(b, [{ op: 'create', name }, { op: 'remove', name }])
      expect(linkExists(b, name)).toBe(false)
    } finally {
      rmSync(`${UAPI_DIR}/${name}.sock`, { force: true })
    }
  })

  it('removes an interface it started itself and reaps the process (no zombie)', () => {
    const [, , zombies, list] = driveOk(b, [{ op: 'ensure', name: nameC }, { op: 'remove', name: nameC }, { op: 'zombies' }, { op: 'list' }])
    expect(zombies).toBe(0)
    expect(list).toEqual([nameB])
    expect(wireguardGoPids(b, nameC)).toEqual([])
    expect(existsSync(`${UAPI_DIR}/${nameC}.sock`)).toBe(false)
    expect(linkExists(b, nameC)).toBe(false)
  })
})
