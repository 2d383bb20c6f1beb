// What a restarted agent needs to adopt its running mesh without touching
// it (issue 5 item 1), kept in the state directory as links.json (0600):
//
//   - the negotiated parameters of every link (ports, link-local pair,
//     preshared key, the peer's endpoints), so the negotiator starts with the
//     links the kernel still has instead of negotiating new ones — a fresh
//     preshared key or port would re-key or re-bind a link that is carrying
//     traffic;
//   - the members' libp2p addresses, dialled at start like a token's
//     bootstrap list: after admission the token is gone, and a restarted node
//     that dials nobody would never hear from its peers again.
//
// The file is a cache: a missing, unreadable or invalid one means "negotiate
// everything again", never a failed start. It is rewritten (atomically) when
// links or members change its content, and wiped with the rest of the state on leave.

import { createHash } from 'node:crypto'
import { join } from 'node:path'
import type { Logger } from '../logging/logger.js'
import { Secret } from '../logging/secret.js'
import { linkAddressesFor, type PairLinkLocal } from '../membership/allocation.js'
import { parseNodeId, type NodeId } from '../membership/keys.js'
import type { LinkNegotiator, LinkParams } from '../membership/link-negotiation.js'
import { PRESHARED_KEY_BYTES } from '../membership/link-messages.js'
import { differsBeyondRefresh, ENDPOINT_SOURCES, type EndpointCandidate, type PeerRecord } from '../membership/records.js'
import type { MembershipService } from '../membership/service.js'
import { parseIpv4, parseIpv6 } from '../net/ip.js'
import { LINKS_FILE, readStateFile, writeStateFile } from './state.js'

const LINKS_FILE_VERSION = 1
/** At most this many libp2p addresses are dialled at start. */
export const MAX_STORED_BOOTSTRAP = 32

export interface StoredLinks {
  links: LinkParams[]
  /** `/ip4/…/tcp/…/p2p/<id>` multiaddrs of the members last seen. */
  bootstrap: string[]
}

const EMPTY: StoredLinks = { links: [], bootstrap: [] }

// ── Codec ────────────────────────────────────────────────────────────────────

export function encodeStoredLinks(stored: StoredLinks): string {
  return (
    JSON.stringify({
      version: LINKS_FILE_VERSION,
      links: stored.links.map((link) => ({
        peer: link.peer,
        localListenPort: link.localListenPort,
        peerListenPort: link.peerListenPort,
        pair: link.pair,
        presharedKey: Buffer.from(link.presharedKey.reveal()).toString('base64'),
        peerEndpoints: link.peerEndpoints,
        localIncarnation: link.localIncarnation,
        peerIncarnation: link.peerIncarnation,
        negotiatedAt: link.negotiatedAt,
      })),
      bootstrap: stored.bootstrap,
    }) + '\n'
  )
}

const isPort = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= 0xffff
const isIp = (value: unknown): value is string => typeof value === 'string' && (parseIpv4(value) !== undefined || parseIpv6(value) !== undefined)
const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

function decodePair(value: unknown, self: NodeId, peer: NodeId): PairLinkLocal | undefined {
  if (!isRecord(value) || !isRecord(value.ipv4) || !isRecord(value.ipv6)) return undefined
  const [low, high] = self < peer ? [self, peer] : [peer, self]
  if (value.low !== low || value.high !== high) return undefined
  if (typeof value.attempt !== 'number' || !Number.isInteger(value.attempt) || value.attempt < 0) return undefined
  const { ipv4, ipv6 } = value
  if (typeof ipv4.low !== 'string' || parseIpv4(ipv4.low) === undefined || typeof ipv4.high !== 'string' || parseIpv4(ipv4.high) === undefined) return undefined
  if (typeof ipv6.low !== 'string' || parseIpv6(ipv6.low) === undefined || typeof ipv6.high !== 'string' || parseIpv6(ipv6.high) === undefined) return undefined
  return { low, high, attempt: value.attempt, ipv4: { low: ipv4.low, high: ipv4.high }, ipv6: { low: ipv6.low, high: ipv6.high } }
}

function decodeEndpoints(value: unknown): EndpointCandidate[] | undefined {
  if (!Array.isArray(value)) return undefined
  const endpoints: EndpointCandidate[] = []
  for (const item of value) {
    if (!isRecord(item) || !isIp(item.address) || !isPort(item.port)) return undefined
    const source = ENDPOINT_SOURCES.find((s) => s === item.source)
    if (source === undefined) return undefined
    endpoints.push({ address: item.address, port: item.port, source })
  }
  return endpoints
}

function decodeLink(value: unknown, self: NodeId): LinkParams | undefined {
  if (!isRecord(value)) return undefined
  const peer = typeof value.peer === 'string' ? parseNodeId(value.peer) : undefined
  if (peer === undefined || peer === self) return undefined
  if (!isPort(value.localListenPort) || !isPort(value.peerListenPort)) return undefined
  const pair = decodePair(value.pair, self, peer)
  if (pair === undefined) return undefined
  if (typeof value.presharedKey !== 'string') return undefined
  const key = new Uint8Array(Buffer.from(value.presharedKey, 'base64'))
  if (key.length !== PRESHARED_KEY_BYTES) return undefined
  const peerEndpoints = decodeEndpoints(value.peerEndpoints)
  if (peerEndpoints === undefined) return undefined
  if (typeof value.localIncarnation !== 'string' || typeof value.peerIncarnation !== 'string' || typeof value.negotiatedAt !== 'number') return undefined
  return {
    peer,
    initiator: self < peer ? self : peer,
    localListenPort: value.localListenPort,
    peerListenPort: value.peerListenPort,
    addresses: linkAddressesFor(pair, self),
    pair,
    presharedKey: new Secret(key),
    peerEndpoints,
    localIncarnation: value.localIncarnation,
    peerIncarnation: value.peerIncarnation,
    negotiatedAt: value.negotiatedAt,
  }
}

/** Decodes links.json for `self`; invalid entries are dropped one by one, an invalid file gives nothing. */
export function decodeStoredLinks(text: string, self: NodeId): StoredLinks {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return EMPTY
  }
  if (!isRecord(value) || value.version !== LINKS_FILE_VERSION) return EMPTY
  const links = Array.isArray(value.links) ? value.links.flatMap((item) => decodeLink(item, self) ?? []) : []
  const seen = new Set<NodeId>()
  const unique = links.filter((link) => !seen.has(link.peer) && seen.add(link.peer))
  const bootstrap = Array.isArray(value.bootstrap)
    ? value.bootstrap.filter((a): a is string => typeof a === 'string' && a.length < 256 && /^\/ip[46]\/[^/]+\/tcp\/\d+\/p2p\/\w+$/.test(a)).slice(0, MAX_STORED_BOOTSTRAP)
    : []
  return { links: unique, bootstrap }
}

/** The libp2p addresses to dial for these members: one per endpoint, with the member's id. */
export function bootstrapAddressesOf(records: readonly PeerRecord[]): string[] {
  return records
    .flatMap((record) => record.endpoints.map((e) => `/${e.address.includes(':') ? 'ip6' : 'ip4'}/${e.address}/tcp/${e.port}/p2p/${record.nodeId}`))
    .slice(0, MAX_STORED_BOOTSTRAP)
}

// ── File ─────────────────────────────────────────────────────────────────────

/** Reads links.json; a missing or bad file is an empty store (logged), never an error. */
export async function loadStoredLinks(stateDir: string, self: NodeId, logger?: Logger): Promise<StoredLinks> {
  try {
    const bytes = await readStateFile(join(stateDir, LINKS_FILE))
    return bytes === undefined ? EMPTY : decodeStoredLinks(bytes.toString('utf8'), self)
  } catch (error) {
    logger?.warn({ err: error instanceof Error ? error.message : 'unknown' }, 'ignoring the stored links; every link is negotiated again')
    return EMPTY
  }
}

export async function saveStoredLinks(stateDir: string, stored: StoredLinks): Promise<void> {
  await writeStateFile(join(stateDir, LINKS_FILE), encodeStoredLinks(stored))
}

/** Writes links.json's text (0600, atomically, synced); injected so tests can count the writes. */
export type WriteLinksFile = (path: string, text: string) => Promise<void>

export interface LinkStoreWriter {
  /** Writes the current links and members now (serialised with earlier writes). */
  save(): Promise<void>
  /** Stops writing; waits for a write in progress. Call before wiping the state directory. */
  close(): Promise<void>
}

/**
 * Keeps links.json in step with the negotiator and the membership: every
 * negotiated or removed link and every member change schedules one write;
 * writes never overlap and changes during one coalesce into one more. A
 * write whose text is what the file already holds is skipped: most member
 * events are record refreshes, which change neither the links nor the
 * addresses, and each write is a synced file (idle CPU, issue 5).
 */
export function startLinkStore(
  init: { stateDir: string },
  components: { negotiator: LinkNegotiator; service: MembershipService; logger: Logger; writeFile?: WriteLinksFile },
): LinkStoreWriter {
  const { negotiator, service } = components
  const writeFile = components.writeFile ?? writeStateFile
  const log = components.logger.child({ component: 'link-store' })
  const path = join(init.stateDir, LINKS_FILE)
  let closed = false
  let writing: Promise<void> | undefined
  let again = false
  /** Digest of the text last written successfully (not the text: it holds preshared keys); undefined until the first write. */
  let written: string | undefined

  const snapshot = (): StoredLinks => {
    // Links to members not (yet) seen stay: after a restart they are the ones being adopted.
    return { links: [...negotiator.links().values()], bootstrap: bootstrapAddressesOf(service.peers()) }
  }

  const save = (): Promise<void> => {
    if (closed) return Promise.resolve()
    if (writing) {
      again = true
      return writing
    }
    const run = async (): Promise<void> => {
      try {
        do {
          again = false
          const text = encodeStoredLinks(snapshot())
          const digest = createHash('sha256').update(text).digest('base64')
          if (digest === written) continue
          await writeFile(path, text).then(
            () => {
              written = digest
            },
            (error: unknown) => {
              log.warn({ err: error instanceof Error ? error.message : 'unknown' }, 'could not save the links; a restart will negotiate them again')
            },
          )
        } while (again && !closed)
      } finally {
        writing = undefined
      }
    }
    // Started after `writing` is set: a skipped write finishes without awaiting, and its finally must clear this one.
    writing = Promise.resolve().then(run)
    return writing
  }
  const trigger = (): void => {
    void save()
  }
  // A plain refresh changes no link and no address stored from the members.
  const triggerOnNews = (record: PeerRecord, previous: PeerRecord): void => {
    if (differsBeyondRefresh(record, previous)) trigger()
  }

  negotiator.events.on('link:negotiated', trigger)
  negotiator.events.on('link:removed', trigger)
  for (const event of ['member:up', 'member:down'] as const) service.events.on(event, trigger)
  service.events.on('member:updated', triggerOnNews)

  return {
    save,
    async close() {
      if (closed) return
      closed = true
      negotiator.events.off('link:negotiated', trigger)
      negotiator.events.off('link:removed', trigger)
      for (const event of ['member:up', 'member:down'] as const) service.events.off(event, trigger)
      service.events.off('member:updated', triggerOnNews)
      await writing
    },
  }
}
