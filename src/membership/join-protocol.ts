// The join protocol (/meshd/join/1.0.0): a joiner that holds a token dials a
// bootstrap member from it and presents the token; the member judges the
// invite and answers with the joiner's admission chain or a one-line refusal.
// Messages: ./join-messages.ts.
//
// The member takes the joiner's node id from the authenticated connection,
// never from the request, so an admission can only be obtained for the key
// that holds the connection.

import { setTimeout as delay } from 'node:timers/promises'
import type { Stream } from '@libp2p/interface'
import type { Logger } from '../logging/logger.js'
import type { Secret } from '../logging/secret.js'
import { JoinRefusedError, ProtocolError } from './errors.js'
import { FramedStream, type SignalOptions } from './framed-stream.js'
import { JOIN_PROTOCOL, MAX_JOIN_FRAME_BYTES, decodeJoinRequest, decodeJoinResponse, encodeJoinRequest, encodeJoinResponse } from './join-messages.js'
import type { NodeId } from './keys.js'
import type { Clock, MembershipNode } from './node.js'
import { checkAdmissionChain, createRecordStore } from './record-store.js'
import type { Admission } from './records.js'
import type { JoinToken } from './token.js'

export { JOIN_PROTOCOL }

export type AdmitDecision = { ok: true; admissions: readonly Admission[] } | { ok: false; reason: string }

/** The member's side: judges one request with `admit` and answers. Returns the decision for counting and logging. */
export async function serveJoin(stream: Stream, joiner: NodeId, admit: (tokenText: string, joiner: NodeId) => AdmitDecision, options: SignalOptions): Promise<AdmitDecision> {
  const framed = new FramedStream(stream, MAX_JOIN_FRAME_BYTES)
  const request = decodeJoinRequest(await framed.readRequired('join request', options))
  const decision: AdmitDecision = request.ok ? admit(request.value, joiner) : { ok: false, reason: `malformed join request: ${request.detail}` }
  const response = decision.ok ? { kind: 'admitted' as const, admissions: [...decision.admissions] } : { kind: 'refused' as const, reason: decision.reason }
  await framed.write(encodeJoinResponse(response), options)
  await framed.close(options)
  return decision
}

export interface RequestAdmissionInit {
  /** The parsed token (the node was built for its network). */
  token: JoinToken
  /** The token as pasted: the member judges it again. */
  tokenText: Secret<string>
  /** Per bootstrap address; default 10 s. */
  attemptTimeoutMs?: number
  /**
   * A round of the bootstrap addresses that failed only because members were
   * slow or shed the connection (a timeout, a reset) is tried again, after a
   * pause that grows from 1 s to 8 s, until this long after the first attempt.
   * A refusal or an unreachable address ends the join at once. Default 60 s.
   */
  retryForMs?: number
  /**
   * When every bootstrap address failed: how long to wait for hosts that
   * discovery (mDNS) connects, and ask each of them. Default 0: no waiting.
   */
  discoveryWaitMs?: number
}

export interface RequestAdmissionComponents {
  node: MembershipNode
  logger: Logger
  clock: Clock
}

/**
 * The joiner's side: tries the token's bootstrap addresses in order until a
 * member admits this node. Returns a chain that is checked to lead from the
 * founder to this node. Throws JoinRefusedError with one line per address
 * when none does.
 */
export async function requestAdmission(init: RequestAdmissionInit, components: RequestAdmissionComponents, options: SignalOptions): Promise<Admission[]> {
  const { node, clock } = components
  const log = components.logger.child({ component: 'join' })
  /** The latest failure per member asked, in the order first asked: one line each in the error. */
  const reasons = new Map<string, string>()
  /** One member asked; its admission chain is checked to lead from the founder to this node. Refused: the reason is kept and `transient` says whether asking again may help. */
  const attempt = async (who: string, ask: (signal: AbortSignal) => Promise<Admission[]>): Promise<Admission[] | { transient: boolean }> => {
    options.signal.throwIfAborted()
    const timeout = AbortSignal.timeout(init.attemptTimeoutMs ?? 10_000)
    try {
      const admissions = await ask(AbortSignal.any([options.signal, timeout]))
      const problem = checkAdmissionChain(createRecordStore(init.token.network), node.nodeId, admissions, clock.now())
      if (problem !== undefined) throw new ProtocolError('bad-admission', `the member's admission does not hold: ${problem}`)
      return admissions
    } catch (error) {
      options.signal.throwIfAborted()
      const message = error instanceof Error ? error.message : 'failed'
      const reason = `${who}: ${message}`
      log.debug({ member: who, reason }, 'join attempt failed')
      reasons.set(who, reason)
      // A busy member: too slow to answer (our deadline or libp2p's dial timeout), or shedding inbound connections over its rate limit.
      const timedOut = timeout.aborted || (error instanceof Error && error.name === 'TimeoutError') || /aborted due to timeout/.test(message)
      return { transient: timedOut || /ECONNRESET/.test(message) }
    }
  }
  const giveUpAt = clock.now() + (init.retryForMs ?? 60_000)
  for (let round = 1, pauseMs = RETRY_FIRST_PAUSE_MS; ; round++, pauseMs = Math.min(pauseMs * 2, RETRY_MAX_PAUSE_MS)) {
    let transient = false
    for (const address of init.token.bootstrap) {
      const result = await attempt(address, (signal) => askMember(address, init.tokenText, node, { signal }))
      if (Array.isArray(result)) {
        log.info({ bootstrap: address, depth: result.length, round }, 'admitted to the network')
        return result
      }
      transient ||= result.transient
    }
    if (!transient || clock.now() + pauseMs > giveUpAt) break
    log.info({ round, retryInMs: pauseMs }, 'no bootstrap member answered in time; asking again')
    await delay(pauseMs, undefined, { signal: options.signal }).catch(() => {
      options.signal.throwIfAborted()
    })
  }
  // Hosts found by discovery: the token's addresses may be stale or unreachable from here while a member sits on this LAN.
  const asked = new Set<NodeId>()
  const deadline = clock.now() + (init.discoveryWaitMs ?? 0)
  while (clock.now() < deadline) {
    const member = node.connectedPeers().find((peer) => !asked.has(peer))
    if (member === undefined) {
      // Node's abortable timer; an abort surfaces as the caller's own reason, like every other step here.
      await delay(DISCOVERY_POLL_MS, undefined, { signal: options.signal }).catch(() => {
        options.signal.throwIfAborted()
      })
      continue
    }
    asked.add(member)
    const admissions = await attempt(`${member} (found by discovery)`, (signal) => askConnected(member, init.tokenText, node, { signal }))
    if (!Array.isArray(admissions)) continue
    log.info({ member, depth: admissions.length }, 'admitted to the network by a host found by discovery')
    return admissions
  }
  throw new JoinRefusedError([...reasons.values()])
}

const DISCOVERY_POLL_MS = 200
const RETRY_FIRST_PAUSE_MS = 1_000
const RETRY_MAX_PAUSE_MS = 8_000

async function askMember(address: string, tokenText: Secret<string>, node: MembershipNode, options: SignalOptions): Promise<Admission[]> {
  return askConnected(await node.dial(address, options), tokenText, node, options)
}

async function askConnected(member: NodeId, tokenText: Secret<string>, node: MembershipNode, options: SignalOptions): Promise<Admission[]> {
  const { stream } = await node.openStream(member, JOIN_PROTOCOL, options)
  const framed = new FramedStream(stream, MAX_JOIN_FRAME_BYTES)
  await framed.write(encodeJoinRequest(tokenText.reveal()), options)
  await framed.close(options)
  const response = decodeJoinResponse(await framed.readRequired('join response', options))
  if (!response.ok) throw new ProtocolError('malformed', `malformed join response: ${response.detail}`)
  if (response.value.kind === 'refused') throw new ProtocolError('refused', `refused: ${response.value.reason}`)
  return response.value.admissions
}
