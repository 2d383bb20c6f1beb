import { it } from 'vitest'
import type { NodeId } from '../src/membership/keys.js'
import { pollUntil } from '../test/support/poll.js'
import { joinWithToken, sameView, startFounder, stopMember, tokenFrom, type Member, type MemberOptions } from '../test/e2e/membership-cluster.js'
import { recordBenchmark } from './record.js'

// Membership gossip at scale, all nodes in this one process on loopback TCP.
// Two figures per size, each as a ratio against a 2-node baseline measured in
// the same run:
//   - propagation: from one node re-publishing its record until every other
//     node has accepted it (median of several origins);
//   - gossip load: gossipsub RPC bytes sent per node per second while every
//     node refreshes its record every REFRESH_MS.
// Every node shares one event loop here, so each hop also waits for every
// other node's validation work: the times are an upper bound for the same
// number of separate hosts.

const REFRESH_MS = 5_000
const LOAD_WINDOW_MS = 15_000
const SAMPLES = 5
/** Each joiner also dials this many random earlier members, so the graph is not just the join tree. */
const EXTRA_DIALS = 3
const SIZES = (process.env.MESHD_BENCH_SIZES ?? '10,50').split(',').map(Number)

const options: MemberOptions = {
  links: false,
  service: { recordLifetimeMs: 12 * REFRESH_MS, refreshIntervalMs: REFRESH_MS, sweepIntervalMs: 1_000 },
  node: { maxConnections: 1_000 },
}

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
    const member = await joinWithToken(`n${i}`, tokenFrom(pick(members)), options)
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

/** Gossipsub bytes sent per node per second over a window with periodic refreshes running. */
async function gossipBytesPerNodePerSecond(members: readonly Member[]): Promise<number> {
  const sent = (): number => members.reduce((sum, member) => sum + member.node.gossipTraffic().sentBytes, 0)
  const before = sent()
  const start = performance.now()
  await new Promise((resolve) => setTimeout(resolve, LOAD_WINDOW_MS))
  return (sent() - before) / members.length / ((performance.now() - start) / 1000)
}

async function measure(size: number): Promise<{ propagation: number; load: number; setupMs: number }> {
  const cluster = await buildCluster(size)
  try {
    const propagation = await medianPropagationMs(cluster.members)
    const load = await gossipBytesPerNodePerSecond(cluster.members)
    return { propagation, load, setupMs: cluster.setupMs }
  } finally {
    for (const member of cluster.members) await stopMember(member).catch(() => undefined)
  }
}

it('membership: propagation time and gossip load vs a 2-node baseline', async () => {
  const baseline = await measure(2)
  recordBenchmark({
    name: 'membership-baseline-2',
    figure: '1.00x',
    detail: `2 nodes: one gossip hop ${baseline.propagation.toFixed(1)} ms (median of ${SAMPLES}); ${baseline.load.toFixed(0)} B/s gossip per node at one refresh per ${REFRESH_MS / 1000} s`,
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
      figure: `${(result.load / baseline.load).toFixed(2)}x`,
      detail: `${size} nodes: ${result.load.toFixed(0)} B/s gossip sent per node vs ${baseline.load.toFixed(0)} B/s at 2 nodes, one refresh per node per ${REFRESH_MS / 1000} s (production refreshes every 200 s: about ${((result.load * REFRESH_MS) / 200_000).toFixed(0)} B/s)`,
    })
  }
})
