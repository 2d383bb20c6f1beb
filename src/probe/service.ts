// The prober: one UDP socket per mesh link, bound to the link's local
// link-local address, so probes only travel over (and are only accepted from)
// that link. It answers echo requests, relays for peers it has links to, and
// measures direct and relayed paths (see codec.ts for the packets and
// docs/paths.md for the budget).
//
// Relayed probe A→B→C→A: A sends relay-request to B naming C; B forwards over
// its B–C link adding its dwell time; C answers over its direct link to A
// (returnLeg 'direct', the same leg as its echo replies to A) or, when A's
// direct link to C is dead, back through B (returnLeg 'relay'). A subtracts
// every dwell time, so what remains is time on the wire.
//
// Imperative shell around estimator.ts and schedule.ts (pure). Everything is
// injected (clock, timers, sockets, randomness); nothing is global.

import { createSocket } from 'node:dgram'
import { performance } from 'node:perf_hooks'
import { wireguardTransferBytes } from './budget.js'
import { decodeProbePacket, encodeProbePacket, isEncodableNodeId, type ProbePacket } from './codec.js'
import { initialEstimator, lossPct, probeTimeoutMs, recordLateReply, recordMiss, recordReply, restartSmoothing, type Estimator, type Transition } from './estimator.js'
import {
  BIND_RETRY_MS,
  DIRECT_TIMEOUT,
  ECHO_RATE,
  LATE_REPLY_GRACE_MS,
  RELAY_ACTIVE_INTERVAL_MS,
  RELAY_RATE,
  RELAY_TIMEOUT,
  directProbeDelayMs,
  jitteredDelayMs,
  relayProbeDelayMs,
  returnLegFor,
  takeToken,
  type TokenBucket,
} from './schedule.js'
import type {
  LinkStats,
  PingPath,
  PingResult,
  ProbeChangeEvent,
  ProbeLink,
  ProbeService,
  ProbeServiceDeps,
  ProbeSnapshot,
  ProbeSocket,
  ProbeSocketFactory,
  ProbeTimers,
  RelayedStats,
  ReturnLeg,
} from './types.js'

export type * from './types.js'

export const DEFAULT_PROBE_PORT = 7374
const IPV4_UDP_HEADER_BYTES = 28

/**
 * node:dgram, udp4, bound to one address and, given `peer`, connected to it: the kernel then drops datagrams
 * from anyone else, and a send skips dgram's per-packet address lookup (bench/probe-socket.bench.ts: 0.80× the
 * CPU per send). A send to any other address is refused through onError.
 */
export const dgramSocketFactory: ProbeSocketFactory = (options, signal) =>
  new Promise<ProbeSocket>((resolve, reject) => {
    if (signal.aborted) {
      reject(new Error('aborted'))
      return
    }
    const socket = createSocket({ type: 'udp4' })
    const failBind = (error: Error): void => {
      socket.close()
      reject(error)
    }
    socket.once('error', failBind)
    const ready = (): void => {
      socket.off('error', failBind)
      socket.on('error', options.onError)
      socket.on('message', (message, remote) => {
        options.onMessage(message, { address: remote.address, port: remote.port })
      })
      const peer = options.peer
      const onSent = (error: Error | null): void => {
        if (error) options.onError(error)
      }
      let closed = false
      resolve({
        send(bytes, address, port) {
          if (closed) return
          if (peer === undefined) socket.send(bytes, port, address, onSent)
          else if (address === peer.address && port === peer.port) socket.send(bytes, onSent)
          else options.onError(new Error(`probe socket is connected to ${peer.address}:${peer.port}, not ${address}:${port}`))
        },
        close() {
          if (closed) return
          closed = true
          socket.close()
        },
      })
    }
    socket.bind({ address: options.address, port: options.port, exclusive: true }, () => {
      if (options.peer === undefined) ready()
      else socket.connect(options.peer.port, options.peer.address, ready)
    })
  })

const realTimers: ProbeTimers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => {
    clearTimeout(handle as ReturnType<typeof setTimeout>)
  },
}

interface LinkEntry {
  link: ProbeLink
  socket?: ProbeSocket
  /** Aborted when the link is removed or its addresses change. */
  lifetime: AbortController
  estimator: Estimator
  /** Probe traffic on this link as WireGuard's transfer counters see it, so traffic monitors can discount it. */
  probeTxBytes: number
  probeRxBytes: number
  /** Sent + received as the link's interface counters see them: the inner IPv4/UDP packets. */
  probeInnerBytes: number
  probeTimer?: unknown
  /** linkStats' last answer and the estimator it was made from, reused while nothing it reads has changed. */
  stats?: { of: Estimator; value: LinkStats }
}

interface RelayEntry {
  destination: string
  relay: string
  returnLeg: ReturnLeg
  estimator: Estimator
  probeTimer?: unknown
  /** relayedStats' last answer and the estimator it was made from. */
  stats?: { of: Estimator; value: RelayedStats }
}

type PendingTarget = { kind: 'direct'; peerId: string } | { kind: 'relay'; destination: string; relay: string; returnLeg: ReturnLeg }

interface Pending {
  target: PendingTarget
  sentAt: number
  /** waiting: in time; lost: counted as a miss, kept to recognise a late reply; abandoned: its meaning changed, ignore. */
  state: 'waiting' | 'lost' | 'abandoned'
  timer?: unknown
  /**
   * Instead of a timer: when it is lost if still unanswered (elapsed() clock); checked by the next probe sent on the
   * same path, which comes later. A timer cleared by the reply still wakes the process when it was due (Node
   * re-arms its one libuv timer only when a timer fires), ~2 wasted wakeups a second on an idle 20-peer agent.
   */
  deadline?: number
  /** A lost probe without a timer is forgotten after this (elapsed() clock). */
  forgetAt?: number
  /** Set for `ping` probes: they report to the caller and do not feed the estimators. */
  onReply?: (rttMs: number) => void
}

export function createProbeService(deps: ProbeServiceDeps, signal: AbortSignal): ProbeService {
  const port = deps.port ?? DEFAULT_PROBE_PORT
  const now = deps.now ?? Date.now
  const elapsed = deps.monotonicNow ?? (() => performance.now())
  const timers = deps.timers ?? realTimers
  const random = deps.random ?? Math.random
  const socketFactory = deps.socketFactory ?? dgramSocketFactory
  const logger = deps.logger.child({ component: 'probe' })
  const selfId = deps.selfId

  const closing = new AbortController()
  const links = new Map<string, LinkEntry>()
  /** What each peer last said about its own forward path towards us. */
  const reportedPaths = new Map<string, string | null>()
  /** A relay id that cannot travel in a packet is reported as direct rather than breaking the reply. */
  const encodablePath = (via: string | null): string | null => (via !== null && isEncodableNodeId(via) ? via : null)
  const relays = new Map<string, Map<string, RelayEntry>>()
  const pending = new Map<number, Pending>()
  const buckets = new Map<string, TokenBucket>()
  const listeners = new Set<(event: ProbeChangeEvent) => void>()
  /** Kept apart from the links, so setActive may come before setLinks and survives a link's re-addressing. */
  const activePeers = new Set<string>()
  let nextSeq = Math.floor(random() * 0x1_0000_0000) >>> 0
  /** Relay pairs probed slowly and fast (they set each pair's interval under RELAY_PROBE_RATE), counted at most once a second. */
  let pairCounts = { idle: 0, fast: 0, at: Number.NEGATIVE_INFINITY }
  /** Links probed at the idle interval (they set each one's interval under DIRECT_IDLE_PROBE_RATE_PER_SECOND), counted likewise. */
  let idleLinks = { count: 0, at: Number.NEGATIVE_INFINITY }
  /** See ProbeService.version: bumped by every change to an estimator, a return leg or the sets of links and relays. */
  let version = 0
  const versionListeners = new Set<() => void>()
  let versionNoticeQueued = false
  const noticeVersion = (): void => {
    versionNoticeQueued = false
    for (const listener of versionListeners) {
      try {
        listener()
      } catch (error) {
        logger.error({ err: error }, 'probe version listener threw')
      }
    }
  }
  const changed = (): void => {
    version++
    if (versionNoticeQueued || versionListeners.size === 0) return
    versionNoticeQueued = true
    queueMicrotask(noticeVersion)
  }
  let snapshotCache: { version: number; snapshot: ProbeSnapshot } | undefined

  const onAbort = (): void => {
    void service.close()
  }
  signal.addEventListener('abort', onAbort, { once: true })

  function allocateSeq(): number {
    // Skip sequence numbers still in use after a wrap (it takes 2^32 probes; cheap to be exact).
    do nextSeq = (nextSeq + 1) >>> 0
    while (pending.has(nextSeq))
    return nextSeq
  }

  function allow(key: string, rate: { perSecond: number; burst: number }): boolean {
    const step = takeToken(buckets.get(key), elapsed(), rate)
    buckets.set(key, step.bucket)
    return step.allowed
  }

  function emit(event: ProbeChangeEvent): void {
    for (const listener of listeners) {
      try {
        listener(event)
      } catch (error) {
        logger.error({ err: error, event }, 'probe change listener threw')
      }
    }
  }

  function send(entry: LinkEntry, packet: ProbePacket, to: { address: string; port: number } = { address: entry.link.peer4, port }): boolean {
    if (!entry.socket) return false
    const bytes = encodeProbePacket(packet)
    entry.probeTxBytes += wireguardTransferBytes(bytes.length)
    entry.probeInnerBytes += bytes.length + IPV4_UDP_HEADER_BYTES
    entry.socket.send(bytes, to.address, to.port)
    return true
  }

  // ── direct links ──────────────────────────────────────────────────────────

  function applyDirectTransition(entry: LinkEntry, transition: Transition): void {
    if (transition === undefined) return
    const peerId = entry.link.peerId
    pairCounts.at = Number.NEGATIVE_INFINITY
    if (transition === 'dead') logger.info({ peer: peerId, lossPct: lossPct(entry.estimator) }, 'probe: link dead')
    else logger.info({ peer: peerId, rttMs: entry.estimator.srttMs }, 'probe: link alive')
    // Relayed probes to this peer change their return leg before anyone hears of it,
    // so a listener that reads a snapshot sees the relay paths' new semantics.
    const toward = relays.get(peerId)
    if (toward) {
      for (const relayEntry of toward.values()) {
        switchReturnLeg(relayEntry, returnLegFor(transition === 'alive'))
        if (transition === 'dead') sendRelayProbeNow(relayEntry)
      }
    }
    emit({ kind: transition === 'dead' ? 'link-dead' : 'link-alive', peerId })
  }

  /** Arms a probe's timeout, or, when the next probe on the same path is due no sooner than that, leaves it to that probe. */
  function awaitReply(seq: number, probe: Pending, timeoutMs: number, nextProbeInMs: number | undefined): void {
    if (nextProbeInMs !== undefined && nextProbeInMs >= timeoutMs) {
      probe.deadline = probe.sentAt + timeoutMs
      return
    }
    probe.timer = timers.setTimeout(() => {
      probeTimedOut(seq)
    }, timeoutMs)
  }

  /** Probes on `path` whose deadline has passed are lost; lost ones past their grace are forgotten. */
  function sweepDeadlines(path: (target: PendingTarget) => boolean): void {
    const at = elapsed()
    for (const [seq, probe] of pending) {
      if (probe.forgetAt !== undefined && probe.forgetAt <= at) pending.delete(seq)
      else if (probe.deadline !== undefined && probe.state === 'waiting' && probe.deadline <= at && path(probe.target)) probeTimedOut(seq)
    }
  }

  function sendDirectProbe(entry: LinkEntry, onReply?: (rttMs: number) => void, nextProbeInMs?: number): boolean {
    if (!entry.socket) return false
    const seq = allocateSeq()
    const probe: Pending = { target: { kind: 'direct', peerId: entry.link.peerId }, sentAt: elapsed(), state: 'waiting', onReply }
    pending.set(seq, probe)
    awaitReply(seq, probe, onReply ? DIRECT_TIMEOUT.maxMs : probeTimeoutMs(entry.estimator, DIRECT_TIMEOUT), onReply ? undefined : nextProbeInMs)
    send(entry, { type: 'echo-request', seq })
    return true
  }

  const directProbeDelay = (entry: LinkEntry): number => directProbeDelayMs(activePeers.has(entry.link.peerId), random(), idleLinkCount())

  function scheduleDirect(entry: LinkEntry, delayMs = directProbeDelay(entry)): void {
    if (entry.probeTimer !== undefined) timers.clearTimeout(entry.probeTimer)
    entry.probeTimer = timers.setTimeout(() => {
      entry.probeTimer = undefined
      if (entry.lifetime.signal.aborted) return
      const peerId = entry.link.peerId
      sweepDeadlines((target) => target.kind === 'direct' && target.peerId === peerId)
      const nextInMs = directProbeDelay(entry)
      sendDirectProbe(entry, undefined, nextInMs)
      scheduleDirect(entry, nextInMs)
    }, delayMs)
  }

  function stopLink(entry: LinkEntry): void {
    entry.lifetime.abort()
    if (entry.probeTimer !== undefined) timers.clearTimeout(entry.probeTimer)
    entry.probeTimer = undefined
    entry.socket?.close()
    entry.socket = undefined
    for (const [seq, probe] of pending) {
      if (probe.target.kind === 'direct' && probe.target.peerId === entry.link.peerId) dropPending(seq)
    }
  }

  async function bindLink(entry: LinkEntry): Promise<void> {
    const lifetime = entry.lifetime.signal
    let reported = false
    while (!lifetime.aborted) {
      try {
        const socket = await socketFactory(
          {
            address: entry.link.local4,
            port,
            peer: { address: entry.link.peer4, port },
            onMessage: (bytes, from, receivedAt) => {
              receive(entry, bytes, from, receivedAt ?? elapsed())
            },
            onError: (error) => {
              logger.debug({ peer: entry.link.peerId, err: error.message }, 'probe socket error')
            },
          },
          lifetime,
        )
        if (lifetime.aborted) {
          socket.close()
          return
        }
        entry.socket = socket
        logger.debug({ peer: entry.link.peerId, local: entry.link.local4 }, 'probe socket bound')
        sendDirectProbe(entry)
        scheduleDirect(entry)
        for (const toward of relays.values()) {
          const relayEntry = toward.get(entry.link.peerId)
          if (relayEntry) sendRelayProbeNow(relayEntry)
        }
        return
      } catch (error) {
        if (lifetime.aborted) return
        // The address is usually just not assigned yet (links come before addresses); say so once.
        if (!reported) logger.info({ peer: entry.link.peerId, local: entry.link.local4, err: (error as Error).message }, 'probe: cannot bind yet, retrying')
        reported = true
        await delay(BIND_RETRY_MS, lifetime)
      }
    }
  }

  function delay(ms: number, until: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (until.aborted) {
        resolve()
        return
      }
      const done = (): void => {
        until.removeEventListener('abort', done)
        timers.clearTimeout(handle)
        resolve()
      }
      const handle = timers.setTimeout(done, ms)
      until.addEventListener('abort', done, { once: true })
    })
  }

  // ── relayed paths ─────────────────────────────────────────────────────────

  function directAlive(peerId: string): boolean {
    return links.get(peerId)?.estimator.alive === true
  }

  function switchReturnLeg(relayEntry: RelayEntry, returnLeg: ReturnLeg): void {
    if (relayEntry.returnLeg === returnLeg) return
    relayEntry.returnLeg = returnLeg
    relayEntry.estimator = restartSmoothing(relayEntry.estimator)
    changed()
    // Probes in flight asked for the other leg: their answers (or silence) say nothing about this one.
    for (const probe of pending.values()) {
      const target = probe.target
      if (target.kind === 'relay' && target.destination === relayEntry.destination && target.relay === relayEntry.relay && !probe.onReply) probe.state = 'abandoned'
    }
  }

  function sendRelayProbe(relayEntry: RelayEntry, returnLeg: ReturnLeg, onReply?: (rttMs: number) => void, nextProbeInMs?: number): boolean {
    const relayLink = links.get(relayEntry.relay)
    if (!relayLink?.socket) return false
    const seq = allocateSeq()
    const probe: Pending = { target: { kind: 'relay', destination: relayEntry.destination, relay: relayEntry.relay, returnLeg }, sentAt: elapsed(), state: 'waiting', onReply }
    pending.set(seq, probe)
    awaitReply(seq, probe, onReply ? RELAY_TIMEOUT.maxMs : probeTimeoutMs(relayEntry.estimator, RELAY_TIMEOUT), onReply ? undefined : nextProbeInMs)
    send(relayLink, { type: 'relay-request', seq, returnLeg, destination: relayEntry.destination })
    return true
  }

  /** `nextInMs`: when the following probe is already known to be due (a scheduled probe), so this one needs no timer. */
  function sendRelayProbeNow(relayEntry: RelayEntry, nextInMs?: number): void {
    switchReturnLeg(relayEntry, returnLegFor(directAlive(relayEntry.destination)))
    sendRelayProbe(relayEntry, relayEntry.returnLeg, undefined, nextInMs)
    scheduleRelay(relayEntry, nextInMs)
  }

  const relayProbeDelay = (relayEntry: RelayEntry): number =>
    relayProbeDelayMs({ destinationActive: activePeers.has(relayEntry.destination), directAlive: directAlive(relayEntry.destination), inUse: deps.forwardPathTo?.(relayEntry.destination) === relayEntry.relay, pairs: relayPairCounts() }, random())

  function scheduleRelay(relayEntry: RelayEntry, delayMs = relayProbeDelay(relayEntry)): void {
    if (relayEntry.probeTimer !== undefined) timers.clearTimeout(relayEntry.probeTimer)
    relayEntry.probeTimer = timers.setTimeout(() => {
      relayEntry.probeTimer = undefined
      const { destination, relay } = relayEntry
      sweepDeadlines((target) => target.kind === 'relay' && target.destination === destination && target.relay === relay)
      sendRelayProbeNow(relayEntry, relayProbeDelay(relayEntry))
    }, delayMs)
  }

  /** Links probed at the idle interval (for the cap on them all together); recounted at most once a second. */
  function idleLinkCount(): number {
    const at = elapsed()
    if (at - idleLinks.at < 1000) return idleLinks.count
    let count = 0
    for (const peerId of links.keys()) if (!activePeers.has(peerId)) count++
    idleLinks = { count, at }
    return count
  }

  function relayPairCounts(): { idle: number; fast: number } {
    const at = elapsed()
    if (at - pairCounts.at < 1000) return pairCounts
    let idle = 0
    let fast = 0
    for (const [destination, toward] of relays) {
      if (activePeers.has(destination) || !directAlive(destination)) fast += toward.size
      else idle += toward.size
    }
    pairCounts = { idle, fast, at }
    return pairCounts
  }

  function stopRelay(relayEntry: RelayEntry): void {
    if (relayEntry.probeTimer !== undefined) timers.clearTimeout(relayEntry.probeTimer)
    relayEntry.probeTimer = undefined
    for (const [seq, probe] of pending) {
      const target = probe.target
      if (target.kind === 'relay' && target.destination === relayEntry.destination && target.relay === relayEntry.relay && !probe.onReply) dropPending(seq)
    }
  }

  // ── replies and timeouts ──────────────────────────────────────────────────

  function dropPending(seq: number): void {
    const probe = pending.get(seq)
    if (!probe) return
    if (probe.timer !== undefined) timers.clearTimeout(probe.timer)
    pending.delete(seq)
  }

  function probeTimedOut(seq: number): void {
    const probe = pending.get(seq)
    if (!probe) return
    probe.timer = undefined
    if (probe.state !== 'waiting' || probe.onReply) {
      pending.delete(seq)
      return
    }
    probe.state = 'lost'
    if (probe.deadline === undefined) {
      probe.timer = timers.setTimeout(() => {
        pending.delete(seq)
      }, LATE_REPLY_GRACE_MS)
    } else {
      probe.forgetAt = elapsed() + LATE_REPLY_GRACE_MS
    }
    countMiss(probe.target)
  }

  function countMiss(target: PendingTarget): void {
    if (target.kind === 'direct') {
      const entry = links.get(target.peerId)
      if (!entry) return
      const step = recordMiss(entry.estimator)
      entry.estimator = step.estimator
      changed()
      applyDirectTransition(entry, step.transition)
    } else {
      const relayEntry = relays.get(target.destination)?.get(target.relay)
      if (!relayEntry) return
      const step = recordMiss(relayEntry.estimator)
      relayEntry.estimator = step.estimator
      changed()
      if (step.transition) logger.info({ destination: target.destination, relay: target.relay, returnLeg: relayEntry.returnLeg, alive: step.transition === 'alive' }, 'probe: relayed path liveness changed')
      // Traffic may be going this way: the path controller moves it at once rather than with its next decision.
      if (step.transition === 'dead') emit({ kind: 'relayed-dead', peerId: target.destination, relay: target.relay })
    }
  }

  /** Matches a reply to its probe; `matches` checks that it came from where the probe's answer must come from. */
  function settle(seq: number, matches: (target: PendingTarget) => boolean, rttMs: number): void {
    const probe = pending.get(seq)
    if (!probe || !matches(probe.target)) return
    dropPending(seq)
    if (probe.onReply) {
      probe.onReply(rttMs)
      return
    }
    if (probe.state === 'abandoned') return
    const target = probe.target
    // Past a deadline nobody has checked yet: lost first, then a late reply, as if a timer had fired in time.
    if (probe.state === 'waiting' && probe.deadline !== undefined && elapsed() >= probe.deadline) {
      probe.state = 'lost'
      countMiss(target)
    }
    if (target.kind === 'direct') {
      const entry = links.get(target.peerId)
      if (!entry) return
      if (probe.state === 'lost') {
        entry.estimator = recordLateReply(entry.estimator, rttMs, now())
        changed()
        return
      }
      const step = recordReply(entry.estimator, rttMs, now())
      entry.estimator = step.estimator
      changed()
      applyDirectTransition(entry, step.transition)
    } else {
      const relayEntry = relays.get(target.destination)?.get(target.relay)
      if (!relayEntry || relayEntry.returnLeg !== target.returnLeg) return
      if (probe.state === 'lost') {
        relayEntry.estimator = recordLateReply(relayEntry.estimator, rttMs, now())
        changed()
        return
      }
      // A path that was never alive (a new candidate) getting its first answer is not news: relay candidates come and go.
      const wasAliveOnce = relayEntry.estimator.lastReplyAt !== undefined
      const step = recordReply(relayEntry.estimator, rttMs, now())
      relayEntry.estimator = step.estimator
      changed()
      if (step.transition) {
        const fields = { destination: target.destination, relay: target.relay, returnLeg: relayEntry.returnLeg, alive: true }
        if (wasAliveOnce) logger.info(fields, 'probe: relayed path liveness changed')
        else logger.debug(fields, 'probe: relayed path answered')
      }
    }
  }

  function receive(entry: LinkEntry, bytes: Uint8Array, from: { address: string; port: number }, receivedAt: number): void {
    // Only the peer's own link address is accepted on a link's socket.
    if (from.address !== entry.link.peer4 || entry.lifetime.signal.aborted) return
    entry.probeRxBytes += wireguardTransferBytes(bytes.length)
    entry.probeInnerBytes += bytes.length + IPV4_UDP_HEADER_BYTES
    const decoded = decodeProbePacket(bytes)
    if (!decoded.ok) {
      logger.debug({ peer: entry.link.peerId, reason: decoded.reason }, 'probe: dropped a malformed packet')
      return
    }
    const packet = decoded.packet
    const arrivedOn = entry.link.peerId
    const dwellUs = (): number => Math.min(10_000_000, Math.max(0, Math.round((elapsed() - receivedAt) * 1000)))
    switch (packet.type) {
      case 'echo-request':
        if (!allow(`echo:${arrivedOn}`, ECHO_RATE) || !entry.socket) return
        send(entry, { type: 'echo-reply', seq: packet.seq, responderDwellUs: dwellUs(), responderPath: encodablePath(deps.forwardPathTo?.(arrivedOn) ?? null) }, from)
        return
      case 'echo-reply':
        reportedPaths.set(arrivedOn, packet.responderPath)
        settle(packet.seq, (t) => t.kind === 'direct' && t.peerId === arrivedOn, receivedAt - pendingSentAt(packet.seq) - packet.responderDwellUs / 1000)
        return
      case 'relay-request': {
        // We are the relay: only for requesters we have a link to (the one it came on) and destinations we have a link to.
        const onward = links.get(packet.destination)
        if (packet.destination === selfId || packet.destination === arrivedOn || !onward?.socket) return
        if (!allow(`relay:${arrivedOn}`, RELAY_RATE)) return
        send(onward, { type: 'relay-forward', seq: packet.seq, returnLeg: packet.returnLeg, requester: arrivedOn, relayDwellUs: dwellUs() })
        return
      }
      case 'relay-forward': {
        // We are the destination; the relay is the peer it came from.
        if (packet.requester === selfId || packet.requester === arrivedOn) return
        // Charged to the relay it came from: the requester named inside is not a link of ours when it is
        // behind a NAT, and keying on an unverified name would let a peer grow the bucket map at will.
        if (!allow(`relayed-for:${arrivedOn}`, RELAY_RATE)) return
        if (packet.returnLeg === 'direct') {
          const back = links.get(packet.requester)
          if (!back?.socket) return
          send(back, { type: 'relay-reply', seq: packet.seq, returnLeg: 'direct', requester: packet.requester, relayDwellUs: packet.relayDwellUs, responderDwellUs: dwellUs() })
        } else {
          send(entry, { type: 'relay-reply', seq: packet.seq, returnLeg: 'relay', requester: packet.requester, relayDwellUs: packet.relayDwellUs, responderDwellUs: dwellUs() })
        }
        return
      }
      case 'relay-reply': {
        if (packet.returnLeg === 'direct') {
          // We are the requester; the destination answered over its direct link to us.
          if (packet.requester !== selfId) return
          const extraMs = (packet.relayDwellUs + packet.responderDwellUs) / 1000
          settle(packet.seq, (t) => t.kind === 'relay' && t.destination === arrivedOn && t.returnLeg === 'direct', receivedAt - pendingSentAt(packet.seq) - extraMs)
          return
        }
        // We are the relay on the way back: forward to the requester.
        const back = links.get(packet.requester)
        if (packet.requester === selfId || packet.requester === arrivedOn || !back?.socket) return
        if (!allow(`relay:${packet.requester}`, RELAY_RATE)) return
        send(back, {
          type: 'relay-return',
          seq: packet.seq,
          destination: arrivedOn,
          relayDwellUs: packet.relayDwellUs,
          responderDwellUs: packet.responderDwellUs,
          returnDwellUs: dwellUs(),
        })
        return
      }
      case 'relay-return': {
        const extraMs = (packet.relayDwellUs + packet.responderDwellUs + packet.returnDwellUs) / 1000
        settle(
          packet.seq,
          (t) => t.kind === 'relay' && t.relay === arrivedOn && t.destination === packet.destination && t.returnLeg === 'relay',
          receivedAt - pendingSentAt(packet.seq) - extraMs,
        )
        return
      }
    }
  }

  function pendingSentAt(seq: number): number {
    return pending.get(seq)?.sentAt ?? Number.NaN
  }

  // ── public API ────────────────────────────────────────────────────────────

  /**
   * The same object as last time while the estimator (replaced, never mutated) is unchanged,
   * so snapshots allocate little and the path controller can tell an unchanged destination by identity.
   */
  function linkStats(entry: LinkEntry): LinkStats {
    const e = entry.estimator
    const cached = entry.stats
    if (cached !== undefined && cached.of === e) return cached.value
    const value: LinkStats = {
      peerId: entry.link.peerId,
      alive: e.alive,
      ...(e.srttMs === undefined ? {} : { rttMs: e.srttMs }),
      ...(e.jitterMs === undefined ? {} : { jitterMs: e.jitterMs }),
      lossPct: lossPct(e),
      samples: e.outcomes.length,
      ...(e.lastReplyAt === undefined ? {} : { lastReplyAt: e.lastReplyAt }),
    }
    entry.stats = { of: e, value }
    return value
  }

  function relayedStats(relayEntry: RelayEntry): RelayedStats {
    const e = relayEntry.estimator
    // A relay path is only as alive as our link to the relay, which is probed faster.
    const alive = e.alive && directAlive(relayEntry.relay)
    const cached = relayEntry.stats
    if (cached !== undefined && cached.of === e && cached.value.alive === alive && cached.value.returnLeg === relayEntry.returnLeg) return cached.value
    const value: RelayedStats = {
      destination: relayEntry.destination,
      relay: relayEntry.relay,
      alive,
      ...(e.srttMs === undefined ? {} : { rttMs: e.srttMs }),
      ...(e.jitterMs === undefined ? {} : { jitterMs: e.jitterMs }),
      lossPct: lossPct(e),
      samples: e.outcomes.length,
      returnLeg: relayEntry.returnLeg,
    }
    relayEntry.stats = { of: e, value }
    return value
  }

  const service: ProbeService = {
    setLinks(next) {
      if (closing.signal.aborted) return
      const wanted = new Map<string, ProbeLink>()
      for (const link of next) {
        if (link.peerId === selfId) continue
        // The id travels in relay packets; one the codec cannot carry would fail later, deep in a socket callback.
        if (!isEncodableNodeId(link.peerId)) {
          logger.warn({ peer: link.peerId }, 'probe: not probing a link whose peer id is not a base58 node id')
          continue
        }
        wanted.set(link.peerId, link)
      }
      const lostAlive: string[] = []
      for (const [peerId, entry] of links) {
        const link = wanted.get(peerId)
        if (link && link.local4 === entry.link.local4 && link.peer4 === entry.link.peer4) continue
        stopLink(entry)
        links.delete(peerId)
        changed()
        if (entry.estimator.alive) lostAlive.push(peerId)
      }
      for (const [peerId, link] of wanted) {
        if (links.has(peerId)) continue
        const entry: LinkEntry = { link: { ...link }, lifetime: new AbortController(), estimator: initialEstimator, probeTxBytes: 0, probeRxBytes: 0, probeInnerBytes: 0 }
        links.set(peerId, entry)
        changed()
        void bindLink(entry)
      }
      for (const toward of relays.values()) for (const relayEntry of toward.values()) switchReturnLeg(relayEntry, returnLegFor(directAlive(relayEntry.destination)))
      // A live link that was removed or re-addressed is gone as far as routing is concerned: say so like a death.
      for (const peerId of lostAlive) {
        logger.info({ peer: peerId }, 'probe: live link removed')
        emit({ kind: 'link-dead', peerId })
      }
    },

    setRelayCandidates(candidates) {
      if (closing.signal.aborted) return
      pairCounts.at = Number.NEGATIVE_INFINITY
      for (const [destination, toward] of relays) {
        const wantedRelays = new Set(candidates.get(destination) ?? [])
        for (const [relay, relayEntry] of toward) {
          if (wantedRelays.has(relay)) continue
          stopRelay(relayEntry)
          toward.delete(relay)
          changed()
        }
        if (toward.size === 0) relays.delete(destination)
      }
      for (const [destination, relayIds] of candidates) {
        if (destination === selfId || !isEncodableNodeId(destination)) continue
        for (const relay of relayIds) {
          if (relay === selfId || relay === destination || relays.get(destination)?.has(relay)) continue
          let toward = relays.get(destination)
          if (!toward) {
            toward = new Map()
            relays.set(destination, toward)
          }
          const relayEntry: RelayEntry = { destination, relay, returnLeg: returnLegFor(directAlive(destination)), estimator: initialEstimator }
          toward.set(relay, relayEntry)
          changed()
          // Spread the first probes so a new candidate set does not go out as one burst.
          relayEntry.probeTimer = timers.setTimeout(() => {
            relayEntry.probeTimer = undefined
            sendRelayProbeNow(relayEntry)
          }, jitteredDelayMs({ min: 0, max: RELAY_ACTIVE_INTERVAL_MS.min }, random()))
        }
      }
    },

    setActive(peerId, active) {
      if (activePeers.has(peerId) === active) return
      if (active) activePeers.add(peerId)
      else activePeers.delete(peerId)
      pairCounts.at = Number.NEGATIVE_INFINITY
      idleLinks.at = Number.NEGATIVE_INFINITY
      if (!active) return
      // Going active: the next probe comes within the active interval, not after the rest of an idle one;
      // relayed probes toward this peer speed up too.
      const entry = links.get(peerId)
      if (entry?.socket) scheduleDirect(entry)
      for (const relayEntry of relays.get(peerId)?.values() ?? []) scheduleRelay(relayEntry)
    },

    reportedPath(peerId) {
      if (!links.has(peerId) || !reportedPaths.has(peerId)) return undefined
      return { via: reportedPaths.get(peerId) ?? null }
    },

    snapshot() {
      // Taken several times a second (path ticks, the monitor, status); rebuilt only when a measurement moved.
      if (snapshotCache?.version === version) return snapshotCache.snapshot
      const linkMap = new Map<string, LinkStats>()
      const relayedMap = new Map<string, Map<string, RelayedStats>>()
      for (const [peerId, entry] of links) linkMap.set(peerId, linkStats(entry))
      for (const [destination, toward] of relays) {
        const byRelay = new Map<string, RelayedStats>()
        for (const [relay, relayEntry] of toward) byRelay.set(relay, relayedStats(relayEntry))
        relayedMap.set(destination, byRelay)
      }
      const snapshot: ProbeSnapshot = { links: linkMap, relayed: relayedMap }
      snapshotCache = { version, snapshot }
      return snapshot
    },

    version: () => version,

    probeBytes() {
      const bytes = new Map<string, { tx: number; rx: number; inner: number }>()
      for (const [peerId, entry] of links) bytes.set(peerId, { tx: entry.probeTxBytes, rx: entry.probeRxBytes, inner: entry.probeInnerBytes })
      return bytes
    },

    onChange(listener) {
      listeners.add(listener)
      return () => {
        listeners.delete(listener)
      }
    },

    onVersionChange(listener) {
      versionListeners.add(listener)
      return () => {
        versionListeners.delete(listener)
      }
    },

    async ping(peerId, options) {
      const intervalMs = options.intervalMs ?? 250
      const timeoutMs = options.timeoutMs ?? 1000
      const paths: PingPath[] = []
      const senders: (() => boolean)[] = []
      const record = (path: PingPath) => (rttMs: number) => {
        path.received++
        path.rttsMs.push(rttMs)
        replies++
      }
      let replies = 0
      let sent = 0
      const direct = links.get(peerId)
      if (direct) {
        const path: PingPath = { via: null, returnLeg: 'direct', sent: 0, received: 0, rttsMs: [] }
        paths.push(path)
        senders.push(() => {
          const ok = sendDirectProbe(direct, record(path))
          if (ok) path.sent++
          return ok
        })
      }
      const returnLeg = returnLegFor(directAlive(peerId))
      for (const relay of relays.get(peerId)?.keys() ?? []) {
        const path: PingPath = { via: relay, returnLeg, sent: 0, received: 0, rttsMs: [] }
        paths.push(path)
        const shape: RelayEntry = { destination: peerId, relay, returnLeg, estimator: initialEstimator }
        senders.push(() => {
          const ok = sendRelayProbe(shape, returnLeg, record(path))
          if (ok) path.sent++
          return ok
        })
      }
      const stop = AbortSignal.any([options.signal, closing.signal])
      for (let round = 0; round < options.count && !stop.aborted; round++) {
        for (const sendOne of senders) if (sendOne()) sent++
        await delay(round === options.count - 1 ? 0 : intervalMs, stop)
      }
      // Wait for the last replies, polling cheaply; ping is interactive, not hot.
      const waitUntil = elapsed() + timeoutMs
      while (!stop.aborted && replies < sent && elapsed() < waitUntil) await delay(20, stop)
      for (const path of paths) {
        if (path.rttsMs.length === 0) continue
        path.minMs = Math.min(...path.rttsMs)
        path.maxMs = Math.max(...path.rttsMs)
        path.avgMs = path.rttsMs.reduce((sum, value) => sum + value, 0) / path.rttsMs.length
      }
      return { peerId, paths } satisfies PingResult
    },

    close() {
      if (closing.signal.aborted) return Promise.resolve()
      closing.abort()
      signal.removeEventListener('abort', onAbort)
      for (const entry of links.values()) stopLink(entry)
      links.clear()
      for (const toward of relays.values()) for (const relayEntry of toward.values()) stopRelay(relayEntry)
      relays.clear()
      changed()
      for (const seq of [...pending.keys()]) dropPending(seq)
      listeners.clear()
      return Promise.resolve()
    },
  }
  if (signal.aborted) void service.close()
  return service
}
