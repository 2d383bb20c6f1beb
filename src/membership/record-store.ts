// What a member believes about the membership, as immutable state plus pure
// functions that take it and a signed object and return the next state and a
// decision. The libp2p node feeds it gossip; the agent reads members from it.
//
// A record is accepted only if it decodes (strictly), its signature verifies
// against the key in its node id, it is for this network, its node is not
// evicted, it carries a valid admission chain rooted at the founder, it has
// not expired, and its sequence number is newer than what is held. Every
// rejection has a reason code for counters and a detail for debug logs.

import { BoundedMap } from '../net/bounded-map.js'
import { ipv4CidrContains, ipv4CidrSize, ipv6CidrContains, parseIpv4, parseIpv4Cidr, parseIpv6, parseIpv6Cidr } from '../net/ip.js'
import type { NodeId, Signer } from './keys.js'
import type { NetworkAnchor } from './network.js'
import {
  MAX_ADMISSION_DEPTH,
  decodeRecord,
  signAdmission,
  verifyAdmissionSignature,
  type Admission,
  type Eviction,
  type Leave,
  type PeerRecord,
} from './records.js'
import type { InviteId, JoinToken } from './token.js'

export type RejectReason = 'malformed' | 'bad-signature' | 'no-admission' | 'replayed' | 'expired' | 'evicted' | 'wrong-network'
export const REJECT_REASONS: readonly RejectReason[] = ['malformed', 'bad-signature', 'no-admission', 'replayed', 'expired', 'evicted', 'wrong-network']

export interface RecordStoreOptions {
  /** Records claiming to live longer than this (plus skew) are refused; also how long a leave is remembered. */
  maxRecordLifetimeMs: number
  /** Tolerated clock difference between members for times in the future. */
  maxClockSkewMs: number
}

export const DEFAULT_RECORD_STORE_OPTIONS: RecordStoreOptions = {
  maxRecordLifetimeMs: 60 * 60 * 1000,
  maxClockSkewMs: 5 * 60 * 1000,
}

export interface RecordStoreState {
  readonly network: NetworkAnchor
  readonly options: RecordStoreOptions
  /** Current members' latest records. */
  readonly peers: ReadonlyMap<NodeId, PeerRecord>
  /** Nodes that left: their leave's sequence (older records are replays) and when to forget it. */
  readonly departed: ReadonlyMap<NodeId, { readonly seq: number; readonly until: number }>
  /** Every eviction accepted, keyed "evicted evictor"; kept for good and re-gossiped to late joiners. */
  readonly evictionLog: ReadonlyMap<string, Eviction>
  /** Effective evictions (evicted → time), derived from evictionLog independently of arrival order. */
  readonly evicted: ReadonlyMap<NodeId, number>
  /** Joiners seen admitted per invite: the best-effort use count. */
  readonly inviteUses: ReadonlyMap<InviteId, ReadonlySet<NodeId>>
  /** Admissions whose signature verified, shared by every state derived from this store. */
  readonly verifiedAdmissions: VerifiedAdmissions
}

/**
 * A bounded memo of admission signatures that verified, keyed by the exact
 * signed bytes (signature included), so any altered admission misses and is
 * verified afresh. Every record repeats its whole founder→node chain, and an
 * Ed25519 verify per link per record dominated membership CPU. Only the
 * signature is memoised: network, expiry, eviction and chain order are
 * checked on every record.
 */
export class VerifiedAdmissions {
  readonly #verified: BoundedMap<string, true>
  #verifications = 0

  constructor(capacity = 4096) {
    this.#verified = new BoundedMap(capacity)
  }

  /** Signature checks actually computed (not served from the memo). */
  get verifications(): number {
    return this.#verifications
  }

  verify(admission: Admission): boolean {
    const key = Buffer.from(admission.bytes.buffer, admission.bytes.byteOffset, admission.bytes.byteLength).toString('base64')
    if (this.#verified.has(key)) return true
    this.#verifications += 1
    if (!verifyAdmissionSignature(admission)) return false
    this.#verified.set(key, true)
    return true
  }
}

export type StoreChange = 'added' | 'updated' | 'removed' | 'unchanged'

export type Outcome =
  | { readonly accepted: true; readonly kind: 'peer' | 'leave' | 'eviction'; readonly nodeId: NodeId; readonly change: StoreChange; readonly removed: readonly NodeId[] }
  | { readonly accepted: false; readonly reason: RejectReason; readonly detail: string }

export interface StoreStep {
  readonly state: RecordStoreState
  readonly outcome: Outcome
}

export function createRecordStore(network: NetworkAnchor, options: Partial<RecordStoreOptions> = {}): RecordStoreState {
  return {
    network,
    options: { ...DEFAULT_RECORD_STORE_OPTIONS, ...options },
    peers: new Map(),
    departed: new Map(),
    evictionLog: new Map(),
    evicted: new Map(),
    inviteUses: new Map(),
    verifiedAdmissions: new VerifiedAdmissions(),
  }
}

/** Members in node-id order. */
export function members(state: RecordStoreState): PeerRecord[] {
  return [...state.peers.values()].sort((a, b) => compareIds(a.nodeId, b.nodeId))
}

export function isEvicted(state: RecordStoreState, nodeId: NodeId): boolean {
  return state.evicted.has(nodeId)
}

/** Judges one signed object from the wire. Never throws; a rejection leaves the state unchanged. */
export function acceptRecord(state: RecordStoreState, bytes: Uint8Array, now: number): StoreStep {
  const decoded = decodeRecord(bytes)
  if (!decoded.ok) return reject(state, decoded.reason, decoded.detail)
  const record = decoded.value
  if (record.networkId !== state.network.id) return reject(state, 'wrong-network', `record for network ${record.networkId}`)
  switch (record.kind) {
    case 'peer':
      return acceptPeerRecord(state, record, now)
    case 'leave':
      return acceptLeave(state, record, now)
    case 'eviction':
      return acceptEviction(state, record, now)
  }
}

/** Drops records that expired (silent nodes) and leave tombstones past their time. */
export function sweepExpired(state: RecordStoreState, now: number): { state: RecordStoreState; removed: NodeId[] } {
  const removed = [...state.peers.values()].filter((record) => record.expiresAt <= now).map((record) => record.nodeId)
  const staleDepartures = [...state.departed].filter(([, tombstone]) => tombstone.until <= now)
  if (removed.length === 0 && staleDepartures.length === 0) return { state, removed }
  const peers = new Map(state.peers)
  for (const nodeId of removed) peers.delete(nodeId)
  const departed = new Map(state.departed)
  for (const [nodeId] of staleDepartures) departed.delete(nodeId)
  return { state: { ...state, peers, departed }, removed: removed.sort(compareIds) }
}

// ── Peer records, leaves, evictions ──────────────────────────────────────────

function acceptPeerRecord(state: RecordStoreState, record: PeerRecord, now: number): StoreStep {
  if (state.evicted.has(record.nodeId)) return reject(state, 'evicted', `${record.nodeId} is evicted`)
  const admissionProblem = checkAdmissionChain(state, record.nodeId, record.admissions, now)
  if (admissionProblem !== undefined) return reject(state, 'no-admission', admissionProblem)
  if (record.expiresAt <= now) return reject(state, 'expired', `record of ${record.nodeId} expired`)
  if (record.expiresAt > now + state.options.maxRecordLifetimeMs + state.options.maxClockSkewMs) {
    return reject(state, 'malformed', 'record expiry is too far in the future')
  }
  const addressProblem = checkOverlayAddresses(state.network, record)
  if (addressProblem !== undefined) return reject(state, 'malformed', addressProblem)
  const newest = newestSequence(state, record.nodeId)
  if (newest !== undefined && record.seq <= newest) return reject(state, 'replayed', `sequence ${record.seq} is not newer than ${newest}`)

  const held = state.peers.has(record.nodeId)
  const peers = new Map(state.peers).set(record.nodeId, record)
  const departed = withoutKey(state.departed, record.nodeId)
  const next = { ...state, peers, departed, inviteUses: countInviteUses(state.inviteUses, record.admissions) }
  return accept(next, 'peer', record.nodeId, held ? 'updated' : 'added', [])
}

function acceptLeave(state: RecordStoreState, leave: Leave, now: number): StoreStep {
  if (state.evicted.has(leave.nodeId)) return reject(state, 'evicted', `${leave.nodeId} is evicted`)
  const admissionProblem = checkAdmissionChain(state, leave.nodeId, leave.admissions, now)
  if (admissionProblem !== undefined) return reject(state, 'no-admission', admissionProblem)
  const newest = newestSequence(state, leave.nodeId)
  if (newest !== undefined && leave.seq <= newest) return reject(state, 'replayed', `leave sequence ${leave.seq} is not newer than ${newest}`)

  const removed = state.peers.has(leave.nodeId) ? [leave.nodeId] : []
  const peers = withoutKey(state.peers, leave.nodeId)
  const departed = new Map(state.departed).set(leave.nodeId, { seq: leave.seq, until: now + state.options.maxRecordLifetimeMs + state.options.maxClockSkewMs })
  return accept({ ...state, peers, departed }, 'leave', leave.nodeId, removed.length > 0 ? 'removed' : 'unchanged', removed)
}

function acceptEviction(state: RecordStoreState, eviction: Eviction, now: number): StoreStep {
  if (eviction.at > now + state.options.maxClockSkewMs) return reject(state, 'malformed', 'eviction time is in the future')
  const evictorOut = state.evicted.get(eviction.evictor)
  if (evictorOut !== undefined && evictorOut <= eviction.at) return reject(state, 'evicted', `evictor ${eviction.evictor} was evicted first`)
  const admissionProblem = checkAdmissionChain(state, eviction.evictor, eviction.admissions, now)
  if (admissionProblem !== undefined) return reject(state, 'no-admission', `evictor: ${admissionProblem}`)
  const key = `${eviction.evicted} ${eviction.evictor}`
  const known = state.evictionLog.get(key)
  if (known !== undefined && known.at <= eviction.at) return reject(state, 'replayed', 'eviction already known')

  const evictionLog = new Map(state.evictionLog).set(key, eviction)
  const evicted = effectiveEvictions(evictionLog)
  // An eviction also voids admissions its target signed afterwards, so re-judge every held chain.
  const interim: RecordStoreState = { ...state, evictionLog, evicted }
  const removed = [...state.peers.values()]
    .filter((record) => evicted.has(record.nodeId) || chainVoidedByEviction(interim, record.admissions))
    .map((record) => record.nodeId)
    .sort(compareIds)
  const peers = new Map(state.peers)
  const departed = new Map(state.departed)
  for (const nodeId of removed) peers.delete(nodeId)
  for (const nodeId of evicted.keys()) departed.delete(nodeId)
  const next = { ...interim, peers, departed }
  return accept(next, 'eviction', eviction.evicted, removed.length > 0 ? 'removed' : 'unchanged', removed)
}

/**
 * The evicted set as a function of the evictions alone, not of their arrival
 * order: apply them oldest first, skipping any issued by a node already
 * evicted at that time. Two members evicting each other: the earlier wins
 * everywhere. Ties break by evictor, then evicted id.
 */
export function effectiveEvictions(log: ReadonlyMap<string, Eviction>): Map<NodeId, number> {
  const ordered = [...log.values()].sort((a, b) => a.at - b.at || compareIds(a.evictor, b.evictor) || compareIds(a.evicted, b.evicted))
  const evicted = new Map<NodeId, number>()
  for (const eviction of ordered) {
    const evictorOut = evicted.get(eviction.evictor)
    if (evictorOut !== undefined && evictorOut <= eviction.at) continue
    if (!evicted.has(eviction.evicted)) evicted.set(eviction.evicted, eviction.at)
  }
  return evicted
}

// ── Admission ────────────────────────────────────────────────────────────────

/**
 * Undefined when `chain` proves `subject` admitted: the founder needs no
 * chain; anyone else needs founder→…→subject, every link for this network,
 * correctly signed, unexpired, and not signed by a node after its eviction.
 */
export function checkAdmissionChain(state: RecordStoreState, subject: NodeId, chain: readonly Admission[], now: number): string | undefined {
  if (subject === state.network.founder) return chain.length === 0 ? undefined : 'the founder carries no admissions'
  if (chain.length === 0) return `${subject} carries no admission`
  let expectedAdmitter: NodeId = state.network.founder
  for (const [index, admission] of chain.entries()) {
    const link = `admission ${index + 1} of ${chain.length}`
    if (admission.networkId !== state.network.id) return `${link} is for another network`
    if (admission.admitter !== expectedAdmitter) return `${link} is signed by ${admission.admitter}, expected ${expectedAdmitter}`
    if (admission.expiresAt !== null && admission.expiresAt <= now) return `${link} expired`
    const admitterOut = state.evicted.get(admission.admitter)
    if (admitterOut !== undefined && admission.issuedAt >= admitterOut) return `${link} was signed by ${admission.admitter} after its eviction`
    if (!state.verifiedAdmissions.verify(admission)) return `${link} has a bad signature`
    expectedAdmitter = admission.joiner
  }
  return expectedAdmitter === subject ? undefined : `the admission chain ends at ${expectedAdmitter}, not ${subject}`
}

function chainVoidedByEviction(state: RecordStoreState, chain: readonly Admission[]): boolean {
  return chain.some((admission) => {
    const admitterOut = state.evicted.get(admission.admitter)
    return admitterOut !== undefined && admission.issuedAt >= admitterOut
  })
}

export interface AdmitJoinerInit {
  /** The invite the joiner presented, already parsed (parseToken with expectedNetworkId). */
  token: JoinToken
  /** The joiner's node id, from the authenticated libp2p connection, never from the joiner's say-so. */
  joiner: NodeId
  admitter: Signer
  /** The admitter's own chain (empty for the founder). */
  admitterChain: readonly Admission[]
  now: number
  /** Omitted: the admission does not expire (records still do). */
  expiresAt?: number
}

export type AdmitResult = { ok: true; state: RecordStoreState; admissions: Admission[] } | { ok: false; reason: string }

/**
 * A member's decision on a joiner's invite. On success returns the joiner's
 * chain (the admitter's chain plus a new admission) and a state counting the
 * use. Use counts are only as good as this member's view: two members that
 * have not yet seen each other's admissions can both admit on a last use.
 */
export function admitJoiner(state: RecordStoreState, init: AdmitJoinerInit): AdmitResult {
  const { token, joiner, now } = init
  if (token.network.id !== state.network.id) return { ok: false, reason: 'invite is for another network' }
  if (token.expiresAt <= now) return { ok: false, reason: 'invite expired' }
  if (state.evicted.has(joiner)) return { ok: false, reason: 'joiner is evicted' }
  if (state.evicted.has(token.issuer)) return { ok: false, reason: 'invite issuer is evicted' }
  if (token.issuer !== state.network.founder && !state.peers.has(token.issuer) && token.issuer !== init.admitter.nodeId) {
    return { ok: false, reason: 'invite issuer is not a known member' }
  }
  const ownChainProblem = checkAdmissionChain(state, init.admitter.nodeId, init.admitterChain, now)
  if (ownChainProblem !== undefined) return { ok: false, reason: `this member cannot admit: ${ownChainProblem}` }
  if (init.admitterChain.length >= MAX_ADMISSION_DEPTH) return { ok: false, reason: 'admission chain would be too deep; ask a member closer to the founder' }
  const used = state.inviteUses.get(token.inviteId) ?? new Set<NodeId>()
  if (!used.has(joiner) && used.size >= token.maxUses) return { ok: false, reason: `invite already used ${used.size} of ${token.maxUses} times` }

  const admission = signAdmission(init.admitter, {
    networkId: state.network.id,
    joiner,
    inviteId: token.inviteId,
    issuedAt: now,
    expiresAt: init.expiresAt ?? null,
  })
  const admissions = [...init.admitterChain, admission]
  return { ok: true, state: { ...state, inviteUses: countInviteUses(state.inviteUses, [admission]) }, admissions }
}

// ── Helpers ──────────────────────────────────────────────────────────────────

function checkOverlayAddresses(network: NetworkAnchor, record: PeerRecord): string | undefined {
  const cidr = parseIpv4Cidr(network.ipv4Cidr)
  const ula = parseIpv6Cidr(network.ipv6Ula)
  const ipv4 = parseIpv4(record.overlayIpv4)
  const ipv6 = parseIpv6(record.overlayIpv6)
  if (cidr === undefined || ula === undefined || ipv4 === undefined || ipv6 === undefined) return 'unreadable overlay address'
  const last = cidr.base + ipv4CidrSize(cidr) - 1
  if (!ipv4CidrContains(cidr, ipv4) || ipv4 === cidr.base || ipv4 === last) return `overlay ${record.overlayIpv4} is not a host address in ${network.ipv4Cidr}`
  if (!ipv6CidrContains(ula, ipv6)) return `overlay ${record.overlayIpv6} is outside ${network.ipv6Ula}`
  return undefined
}

function newestSequence(state: RecordStoreState, nodeId: NodeId): number | undefined {
  const held = state.peers.get(nodeId)?.seq
  const left = state.departed.get(nodeId)?.seq
  if (held === undefined) return left
  return left === undefined ? held : Math.max(held, left)
}

function countInviteUses(uses: ReadonlyMap<InviteId, ReadonlySet<NodeId>>, chain: readonly Admission[]): ReadonlyMap<InviteId, ReadonlySet<NodeId>> {
  const fresh = chain.filter((admission) => !(uses.get(admission.inviteId)?.has(admission.joiner) ?? false))
  if (fresh.length === 0) return uses
  const next = new Map(uses)
  for (const admission of fresh) next.set(admission.inviteId, new Set(next.get(admission.inviteId)).add(admission.joiner))
  return next
}

function withoutKey<K, V>(map: ReadonlyMap<K, V>, key: K): ReadonlyMap<K, V> {
  if (!map.has(key)) return map
  const next = new Map(map)
  next.delete(key)
  return next
}

function accept(state: RecordStoreState, kind: 'peer' | 'leave' | 'eviction', nodeId: NodeId, change: StoreChange, removed: readonly NodeId[]): StoreStep {
  return { state, outcome: { accepted: true, kind, nodeId, change, removed } }
}

function reject(state: RecordStoreState, reason: RejectReason, detail: string): StoreStep {
  return { state, outcome: { accepted: false, reason, detail } }
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
