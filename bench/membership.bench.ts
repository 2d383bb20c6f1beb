import { it } from 'vitest'
import type { NodeId } from '../src/membership/keys.js'
import { DEFAULT_RECORD_LIFETIME_MS } from '../src/membership/service.js'
import { pollUntil } from '../test/support/poll.js'
import { joinWithToken, sameView, startFounder, stopMember, tokenFrom, type Member, type MemberOptions } from '../test/e2e/membership-cluster.js'
import { recordBenchmark } from './record.js'

// Membership gossip at scale, all nodes in this one process on loopback TCP.
// Figures per size, each as a ratio against a 2-node baseline measured in
// the same run:
//   - propagation: from one node re-publishing its record until every other
//     node has accepted it (median of several origins);
//   - gossip load per node at the production refresh rate (one record per
//     node per 200 s): gossipsub RPC bytes sent while idle (heartbeats),
//     plus the bytes of one round in which every node refreshes once,
//     spread over the refresh interval.
// Every node shares one event loop here, so each hop also waits for every
// other node's validation work: the times are an upper bound for the same
// number of separate hosts.

const REFRESH_MS = DEFAULT_RECORD_LIFETIME_MS / 3
const IDLE_WINDOW_MS = 10_000
const SAMPLES = 5
/** Each joiner also dials this many random earlier members, so the graph is not just the join tree. */
const EXTRA_DIALS = 3
/** Tokens come from the first few members, keeping admission chains short (at most 8 links are allowed). */
const ISSUERS = 4
const SIZES = (process.env.MESHD_BENCH_SIZES ?? '10,50').split(',').map(Number)

// Production record lifetime and refresh: no refresh fires during a run, the benchmark triggers them.
const options: MemberOptions = { links: false, node: { maxConnections: 1_000 } }

interface Cluster {
  members: Member[]
  setupMs: number
}

function pick<T>(list: readonly T[]): T {
  const item = list[Math.floor(Math.random() * list.length)]
  if (item === undefined) throw new Error('empty list')
  return item
}

async function buildCluster(size: number): Promise<Cluster> {
  const start = performance.now()
  const members: Member[] = [await startFounder('n0', options)]
  for (let i = 1; i < size; i++) {
    const member = await joinWithToken(`n${i}`, tokenFrom(pick(members.slice(0, ISSUERS))), options)
    const others = members.filter((other) => other !== member)
    for (let d = 0; d < Math.min(EXTRA_DIALS, others.length); d++) {
      await member.node.dial(pick(others).node.listenAddresses()[0] ?? '', { signal: AbortSignal.timeout(10_000) }).catch(() => undefined)
    }
    members.push(member)
  }
  const ids = members.map((member) => member.identity.nodeId)
  await pollUntil(() => (sameView(members, ids) ? true : undefined), { deadlineMs: 120_000, intervalMs: 200, what: `${size} members converged` })
  return { members, setupMs: performance.now() - start }
}

/** Milliseconds from `origin` re-publishing its record until every other member accepted it. */
async function propagationMs(members: readonly Member[], origin: Member): Promise<number> {
  const others = members.filter((member) => member !== origin)
  const before = origin.service.ownRecord()?.seq ?? 0
  const seenAt = new Map<NodeId, number>()
  const listeners = others.map((member) => {
    const listener = (record: { nodeId: NodeId; seq: number }): void => {
      if (record.nodeId === origin.identity.nodeId && record.seq > before && !seenAt.has(member.identity.nodeId)) seenAt.set(member.identity.nodeId, performance.now())
    }
    member.service.events.on('member:updated', listener)
    return { member, listener }
  })
  const start = performance.now()
  try {
    await origin.service.refresh({ signal: AbortSignal.timeout(10_000) })
    await pollUntil(() => (seenAt.size === others.length ? true : undefined), { deadlineMs: 60_000, intervalMs: 5, what: 'update seen by every member' })
  } finally {
    for (const { member, listener } of listeners) member.service.events.off('member:updated', listener)
  }
  return Math.max(...seenAt.values()) - start
}

async function medianPropagationMs(members: readonly Member[]): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < SAMPLES; i++) times.push(await propagationMs(members, pick(members)))
  times.sort((a, b) => a - b)
  return times[Math.floor(times.length / 2)] ?? Number.NaN
}

function gossipBytesSent(members: readonly Member[]): number {
  return members.reduce((sum, member) => sum + member.node.gossipTraffic().sentBytes, 0)
}

/** Per node: bytes/s sent while nothing changes, and bytes sent for one round in which every node refreshes once. */
async function gossipLoad(members: readonly Member[]): Promise<{ idlePerSecond: number; perRound: number }> {
  // Gossip of earlier messages (IHAVE) runs for a few heartbeats after them; start idle once it has.
  await new Promise((resolve) => setTimeout(resolve, 6_000))
  const idleStart = gossipBytesSent(members)
  const started = performance.now()
  await new Promise((resolve) => setTimeout(resolve, IDLE_WINDOW_MS))
  const idlePerSecond = (gossipBytesSent(members) - idleStart) / members.length / ((performance.now() - started) / 1000)

  const roundStart = gossipBytesSent(members)
  const published = new Map<NodeId, number>()
  for (const member of members) published.set(member.identity.nodeId, (await member.service.refresh({ signal: AbortSignal.timeout(10_000) })).seq)
  const allSeen = (): boolean => members.every((member) => [...published].every(([nodeId, seq]) => (member.service.member(nodeId)?.seq ?? 0) >= seq))
  await pollUntil(() => (allSeen() ? true : undefined), { deadlineMs: 120_000, intervalMs: 20, what: 'every refresh seen everywhere' })
  // Let the last forwards and IHAVE/IDONTWANT control messages of the round go out.
  await new Promise((resolve) => setTimeout(resolve, 3_000))
  const perRound = (gossipBytesSent(members) - roundStart) / members.length - idlePerSecond * 3
  return { idlePerSecond, perRound }
}

interface Measurement {
  propagation: number
  idlePerSecond: number
  perRound: number
  /** Bytes/s per node at one refresh per node per REFRESH_MS. */
  steady: number
  setupMs: number
}

async function measure(size: number): Promise<Measurement> {
  const cluster = await buildCluster(size)
  try {
    const propagation = await medianPropagationMs(cluster.members)
    const { idlePerSecond, perRound } = await gossipLoad(cluster.members)
    return { propagation, idlePerSecond, perRound, steady: idlePerSecond + perRound / (REFRESH_MS / 1000), setupMs: cluster.setupMs }
  } finally {
    for (const member of cluster.members) await stopMember(member).catch(() => undefined)
  }
}

function loadDetail(result: Measurement): string {
  return `${result.steady.toFixed(1)} B/s per node (idle ${result.idlePerSecond.toFixed(1)} B/s + ${(result.perRound / 1024).toFixed(1)} KiB per refresh round / ${REFRESH_MS / 1000} s)`
}

it('membership: propagation time and gossip load vs a 2-node baseline', async () => {
  const baseline = await measure(2)
  recordBenchmark({
    name: 'membership-baseline-2',
    figure: '1.00x',
    detail: `2 nodes: one gossip hop ${baseline.propagation.toFixed(1)} ms (median of ${SAMPLES}); gossip ${loadDetail(baseline)}`,
  })
  for (const size of SIZES) {
    const result = await measure(size)
    recordBenchmark({
      name: `membership-propagation-${size}`,
      figure: `${(result.propagation / baseline.propagation).toFixed(2)}x`,
      detail: `${size} nodes in one process: change seen by all ${result.propagation.toFixed(1)} ms (median of ${SAMPLES}) vs 2-node hop ${baseline.propagation.toFixed(1)} ms; setup ${(result.setupMs / 1000).toFixed(1)} s`,
    })
    recordBenchmark({
      name: `membership-gossip-load-${size}`,
      figure: `${(result.steady / baseline.steady).toFixed(2)}x`,
      detail: `${size} nodes: ${loadDetail(result)} vs 2 nodes: ${baseline.steady.toFixed(1)} B/s`,
    })
  }
})
