import { mkdtempSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { EventEmitter } from 'node:events'
import { Writable } from 'node:stream'
import { bootstrapAddressesOf, decodeStoredLinks, encodeStoredLinks, loadStoredLinks, saveStoredLinks, startLinkStore } from '../../src/agent/link-store.js'
import { LINKS_FILE, wipeState } from '../../src/agent/state.js'
import { createLogger } from '../../src/logging/logger.js'
import { Secret } from '../../src/logging/secret.js'
import { chooseLinkLocal, linkAddressesFor } from '../../src/membership/allocation.js'
import { identityFromSeed } from '../../src/membership/identity.js'
import type { NodeId } from '../../src/membership/keys.js'
import type { LinkNegotiator, LinkParams } from '../../src/membership/link-negotiation.js'
import type { PeerRecord } from '../../src/membership/records.js'
import type { MembershipService } from '../../src/membership/service.js'

const seed = (n: number): Uint8Array => new Uint8Array(32).fill(n)
const self = (await identityFromSeed(seed(1))).nodeId
const peer = (await identityFromSeed(seed(2))).nodeId
const other = (await identityFromSeed(seed(3))).nodeId

function link(to: NodeId): LinkParams {
  const pair = chooseLinkLocal({ a: self, b: to, inUseByA: new Set(), inUseByB: new Set() })
  if (pair === undefined) throw new Error('no pair')
  return {
    peer: to,
    initiator: self < to ? self : to,
    localListenPort: 51900,
    peerListenPort: 52001,
    addresses: linkAddressesFor(pair, self),
    pair,
    presharedKey: new Secret(new Uint8Array(32).fill(9)),
    peerEndpoints: [{ address: '192.0.2.2', port: 52001, source: 'interface' }],
    localIncarnation: 'aa',
    peerIncarnation: 'bb',
    negotiatedAt: 1_700_000_000_000,
  }
}

const plain = (l: LinkParams): unknown => ({ ...l, presharedKey: Buffer.from(l.presharedKey.reveal()).toString('hex') })

describe('link store codec', () => {
  it('round-trips links (key included) and bootstrap addresses', () => {
    const stored = { links: [link(peer), link(other)], bootstrap: [`/ip4/192.0.2.2/tcp/7373/p2p/${peer}`] }
    const decoded = decodeStoredLinks(encodeStoredLinks(stored), self)
    expect(decoded.links.map(plain)).toEqual(stored.links.map(plain))
    expect(decoded.bootstrap).toEqual(stored.bootstrap)
  })

  it('drops entries that are invalid, not this node\'s, or duplicated, and keeps the rest', () => {
    const good = JSON.parse(encodeStoredLinks({ links: [link(peer)], bootstrap: [] })) as { links: Record<string, unknown>[] }
    const entry = good.links[0] ?? {}
    const text = JSON.stringify({
      version: 1,
      links: [
        entry,
        entry,
        { ...entry, peer: 'not-a-node' },
        { ...entry, presharedKey: Buffer.alloc(16).toString('base64') },
        { ...entry, localListenPort: 70_000 },
        { ...entry, peerEndpoints: [{ address: 'nowhere', port: 1, source: 'interface' }] },
        { ...entry, pair: { ...(entry.pair as object), low: other } },
      ],
      bootstrap: ['/ip4/192.0.2.2/tcp/7373/p2p/x', 'garbage', 42],
    })
    const decoded = decodeStoredLinks(text, self)
    expect(decoded.links.map((l) => l.peer)).toEqual([peer])
    expect(decoded.bootstrap).toEqual(['/ip4/192.0.2.2/tcp/7373/p2p/x'])
    // Another node reading the file finds none of it is its own.
    expect(decodeStoredLinks(encodeStoredLinks({ links: [link(peer)], bootstrap: [] }), other).links).toEqual([])
  })

  it('reads a bad file as empty', () => {
    expect(decodeStoredLinks('{', self)).toEqual({ links: [], bootstrap: [] })
    expect(decodeStoredLinks('{"version":2,"links":[]}', self)).toEqual({ links: [], bootstrap: [] })
  })

  it('dials one address per member endpoint, with the member id', () => {
    const record = { nodeId: peer, endpoints: [{ address: '192.0.2.2', port: 7373, source: 'interface' }, { address: '2001:db8::2', port: 7373, source: 'interface' }] } as unknown as PeerRecord
    expect(bootstrapAddressesOf([record])).toEqual([`/ip4/192.0.2.2/tcp/7373/p2p/${peer}`, `/ip6/2001:db8::2/tcp/7373/p2p/${peer}`])
  })
})

describe('link store file', () => {
  let dir: string | undefined
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it('is written 0600 and wiped with the state', async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-links-'))
    await saveStoredLinks(dir, { links: [link(peer)], bootstrap: [] })
    expect(statSync(join(dir, LINKS_FILE)).mode & 0o777).toBe(0o600)
    expect((await loadStoredLinks(dir, self)).links.map((l) => l.peer)).toEqual([peer])
    await wipeState(dir)
    expect((await loadStoredLinks(dir, self)).links).toEqual([])
  })

  it('ignores a file readable by others instead of failing the start', async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-links-'))
    writeFileSync(join(dir, LINKS_FILE), encodeStoredLinks({ links: [link(peer)], bootstrap: [] }))
    chmodSync(join(dir, LINKS_FILE), 0o644)
    expect(await loadStoredLinks(dir, self)).toEqual({ links: [], bootstrap: [] })
  })
})

const silentLogger = () => createLogger({ pretty: false, destination: new Writable({ write: (_c, _e, done) => { done() } }) })

/** A whole record for the events (the store only compares them); its endpoints are replaced per event. */
const fullRecord = {
  kind: 'peer',
  nodeId: other,
  hostname: 'other',
  overlayIpv4: '10.0.0.2',
  overlayIpv6: 'fd00::2',
  wireguardPublicKey: 'key',
  capabilities: { linkKinds: ['wireguard'], wireguardBackend: 'userspace' },
  routes: [],
  admissions: [],
  linkRtts: [],
} as unknown as PeerRecord

describe('link store writer', () => {
  const world = () => {
    const links = new Map<NodeId, LinkParams>()
    let peers: Partial<PeerRecord>[] = []
    const negotiatorEvents = new EventEmitter()
    const serviceEvents = new EventEmitter()
    const negotiator = { events: negotiatorEvents, links: () => links } as unknown as LinkNegotiator
    let snapshots = 0
    const service = {
      events: serviceEvents,
      peers: () => {
        snapshots++
        return peers
      },
    } as unknown as MembershipService
    const writes: string[] = []
    const store = startLinkStore(
      { stateDir: '/nonexistent' },
      {
        negotiator,
        service,
        logger: silentLogger(),
        writeFile: (_path, text) => {
          writes.push(text)
          return Promise.resolve()
        },
      },
    )
    return {
      links,
      setPeers: (next: Partial<PeerRecord>[]) => (peers = next),
      /** 'member:updated' for a record whose endpoints went from `before` to `after` (a plain refresh when equal). */
      emitMember: (after = peers[0]?.endpoints ?? [], before = after) => {
        const record = (endpoints: PeerRecord['endpoints']) => ({ ...fullRecord, endpoints })
        serviceEvents.emit('member:updated', record(after), record(before))
      },
      snapshots: () => snapshots,
      emitLink: () => negotiatorEvents.emit('link:negotiated'),
      writes,
      store,
    }
  }

  it('writes when links or member addresses change, and skips a write that would not change the file', async () => {
    const w = world()
    w.links.set(peer, link(peer))
    w.emitLink()
    await w.store.save()
    expect(w.writes).toHaveLength(1)
    // A record refresh: same links, same addresses; not even looked at.
    const looked = w.snapshots()
    for (let i = 0; i < 5; i++) w.emitMember()
    await Promise.resolve()
    expect(w.snapshots()).toBe(looked)
    await w.store.save()
    expect(w.writes).toHaveLength(1)
    w.setPeers([{ nodeId: other, endpoints: [{ address: '192.0.2.3', port: 4001, source: 'interface' }] }])
    w.emitMember([{ address: '192.0.2.3', port: 4001, source: 'interface' }], [])
    await Promise.resolve()
    expect(w.snapshots()).toBeGreaterThan(looked)
    await w.store.save()
    expect(w.writes).toHaveLength(2)
    expect(decodeStoredLinks(w.writes[1] ?? '', self).bootstrap).toEqual([`/ip4/192.0.2.3/tcp/4001/p2p/${other}`])
    w.links.delete(peer)
    w.emitLink()
    await w.store.save()
    expect(w.writes).toHaveLength(3)
    await w.store.close()
  })

  it('writes again after a failed write, even with nothing changed', async () => {
    const links = new Map<NodeId, LinkParams>([[peer, link(peer)]])
    const negotiator = { events: new EventEmitter(), links: () => links } as unknown as LinkNegotiator
    const service = { events: new EventEmitter(), peers: () => [] } as unknown as MembershipService
    let attempts = 0
    const store = startLinkStore(
      { stateDir: '/nonexistent' },
      {
        negotiator,
        service,
        logger: silentLogger(),
        writeFile: () => {
          attempts++
          return attempts === 1 ? Promise.reject(new Error('ENOSPC')) : Promise.resolve()
        },
      },
    )
    await store.save()
    await store.save()
    await store.save()
    expect(attempts).toBe(2)
    await store.close()
  })
})
