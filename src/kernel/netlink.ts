// The only module that talks netlink (design §2): RtnetlinkPort and
// WireguardGenlPort over the `netlink` package's RawNetlinkSocket. Messages
// are built and decoded by the pure encoders in ./encode/; this file owns the
// sockets: sequence numbers, one request in flight per socket, dumps,
// ACK/error handling, timeouts, aborts, and notifications.
//
// Why RawNetlinkSocket and not the package's NetlinkSocket/RtNetlinkSocket:
// - its request() cannot be cancelled (an abort would leave the pending entry
//   and keep the socket referenced), and errors are bare Error('Request rejected: EEXIST');
// - it strips NLMSG_DONE, losing the errno of a dump that fails part-way;
// - its structured attribute parsers drop unknown attributes (IFA_PROTO among
//   them) although the README promises an `__unparsed` field.

import { randomInt } from 'node:crypto'
import { Protocol, RawNetlinkSocket } from 'netlink'
import { KernelError, type CallOptions, type DumpOptions, type LinkChange, type RouteDumpOptions, type RtnetlinkPort, type RuleDumpOptions, type WireguardGenlPort } from './port.js'
import {
  RTPROT_MESHD,
  type Address,
  type Link,
  type LinkCounters,
  type ObservedAddress,
  type ObservedLink,
  type ObservedRoute,
  type ObservedRule,
  type ObservedWireguardDevice,
  type Route,
  type Rule,
  type WireguardDevice,
} from './types.js'
import { decodeAddr, encodeAddrAdd, encodeAddrDel, encodeAddrDump } from './encode/addr.js'
import { decodeFamily, encodeGetFamily } from './encode/genl.js'
import { decodeLink, decodeLinkCounters, encodeLinkAdd, encodeLinkCountersDump, encodeLinkDel, encodeLinkDump, encodeLinkGet, encodeLinkSet, peekLink } from './encode/link.js'
import type { IfIndexOf, IfNameOf } from './encode/linkinfo.js'
import {
  errnoName,
  frameMessage,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_MIN_TYPE,
  parseDonePayload,
  parseErrorPayload,
  parseMessages,
  type NlMessage,
  type NlRequest,
} from './encode/nlattr.js'
import { decodeRoute, encodeRouteDel, encodeRouteDump, encodeRouteReplace, RT_TABLE_COMPAT } from './encode/route.js'
import { decodeRule, encodeRuleAdd, encodeRuleDel, encodeRuleDump } from './encode/rule.js'
import { decodeDevice, encodeDeviceGet, encodeDeviceSet, WG_GENL_NAME } from './encode/wireguard.js'

export const DEFAULT_TIMEOUT_MS = 5000
/** A dump the kernel marks NLM_F_DUMP_INTR (objects changed under it) is retried this many times. */
const DUMP_ATTEMPTS = 3

/** What this module needs of a netlink socket: RawNetlinkSocket, or a fake in unit tests. */
export interface NetlinkSocketLike {
  send(datagram: Buffer, options: Record<string, never>, callback: (error?: { code?: string }) => void): void
  close(): void
  ref(): void
  unref(): void
  addMembership(group: number): void
  on(event: 'message', listener: (datagram: Buffer) => void): unknown
  on(event: 'truncatedMessage', listener: () => void): unknown
  on(event: 'error', listener: (error: { code?: string; message: string }) => void): unknown
}

export interface NetlinkComponents {
  /** Opens a socket of a netlink protocol (NETLINK_ROUTE, NETLINK_GENERIC) in the calling process's namespace. */
  openSocket(protocol: number, options: { recvBufferSize?: number }): NetlinkSocketLike
}

/** The package's typings mark both buffer sizes required; 0 keeps the kernel's default. */
const defaultComponents: NetlinkComponents = {
  openSocket: (protocol, options) => new RawNetlinkSocket(protocol, { recvBufferSize: options.recvBufferSize ?? 0, sendBufferSize: 0 }),
}

// ── One public call: its name, its abort signal and its deadline ─────────────

class Call {
  readonly #controller = new AbortController()
  readonly #timer: NodeJS.Timeout
  #reason: 'EABORTED' | 'ETIMEDOUT' | undefined
  readonly #onUserAbort = (): void => {
    this.#abort('EABORTED')
  }

  constructor(
    readonly op: string,
    private readonly user: AbortSignal,
    timeoutMs: number,
  ) {
    this.#timer = setTimeout(() => {
      this.#abort('ETIMEDOUT')
    }, timeoutMs)
    this.#timer.unref()
    if (user.aborted) this.#abort('EABORTED')
    else user.addEventListener('abort', this.#onUserAbort, { once: true })
  }

  #abort(reason: 'EABORTED' | 'ETIMEDOUT'): void {
    if (this.#reason) return
    this.#reason = reason
    this.#controller.abort()
  }

  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** The error to reject with once `signal` has fired. */
  abortError(): KernelError {
    return new KernelError(this.op, this.#reason ?? 'EABORTED')
  }

  throwIfAborted(): void {
    if (this.signal.aborted) throw this.abortError()
  }

  error(errno: string, detail?: string): KernelError {
    return new KernelError(this.op, errno, detail)
  }

  dispose(): void {
    clearTimeout(this.#timer)
    this.user.removeEventListener('abort', this.#onUserAbort)
  }
}

async function runCall<T>(op: string, options: CallOptions, timeoutMs: number, body: (call: Call) => Promise<T>): Promise<T> {
  const call = new Call(op, options.signal, timeoutMs)
  try {
    call.throwIfAborted()
    return await body(call)
  } catch (error) {
    if (error instanceof KernelError) throw error
    // Encoders reject malformed input (bad CIDR, key, name) with TypeError/RangeError.
    if (error instanceof TypeError || error instanceof RangeError) throw call.error('EINVAL', error.message)
    throw error
  } finally {
    call.dispose()
  }
}

// ── A request socket: one request in flight, matched by sequence number ──────

interface Exchange {
  seq: number
  call: Call
  replies: NlMessage[]
  interrupted: boolean
  settle: (error: KernelError | undefined) => void
}

class Channel {
  #socket: NetlinkSocketLike | undefined
  #seq = randomInt(1, 0x7fffffff)
  #busy = false
  readonly #waiters: (() => void)[] = []
  #inflight: Exchange | undefined
  #closed = false

  constructor(
    private readonly protocol: number,
    private readonly components: NetlinkComponents,
  ) {}

  /** Requests in flight or waiting on this socket. */
  get load(): number {
    return (this.#busy ? 1 : 0) + this.#waiters.length
  }

  close(): void {
    this.#closed = true
    this.#inflight?.settle(this.#inflight.call.error('EBADF', 'netlink port closed'))
    this.#reset()
  }

  /** Sends one request and collects its replies (all messages of a dump, or the reply before the ACK). */
  async request(call: Call, request: NlRequest): Promise<NlMessage[]> {
    const dump = (request.flags & NLM_F_DUMP) === NLM_F_DUMP
    for (let attempt = 1; ; attempt++) {
      const { replies, interrupted } = await this.#exclusive(call, () => this.#exchange(call, request, dump))
      if (!interrupted) return replies
      if (attempt >= DUMP_ATTEMPTS) throw call.error('EINTR', `dump interrupted ${attempt} times by concurrent changes`)
    }
  }

  async #exclusive<T>(call: Call, body: () => Promise<T>): Promise<T> {
    await this.#acquire(call)
    try {
      return await body()
    } finally {
      this.#release()
    }
  }

  #acquire(call: Call): Promise<void> {
    call.throwIfAborted()
    if (!this.#busy) {
      this.#busy = true
      return Promise.resolve()
    }
    return new Promise((resolve, reject) => {
      const turn = (): void => {
        call.signal.removeEventListener('abort', onAbort)
        resolve()
      }
      const onAbort = (): void => {
        const at = this.#waiters.indexOf(turn)
        if (at !== -1) this.#waiters.splice(at, 1)
        reject(call.abortError())
      }
      call.signal.addEventListener('abort', onAbort, { once: true })
      this.#waiters.push(turn)
    })
  }

  #release(): void {
    const next = this.#waiters.shift()
    if (next) next()
    else this.#busy = false
  }

  #open(): NetlinkSocketLike {
    if (this.#socket) return this.#socket
    const socket = this.components.openSocket(this.protocol, {})
    // Idle sockets must not keep the process alive; #exchange refs while a request is in flight.
    socket.unref()
    socket.on('message', (datagram) => {
      this.#receive(datagram)
    })
    socket.on('truncatedMessage', () => {
      this.#fail('EMSGSIZE', 'truncated reply')
    })
    socket.on('error', (error) => {
      this.#fail(error.code ?? 'EIO', error.message)
    })
    this.#socket = socket
    return socket
  }

  /** Drops the socket: the only way to cancel a dump the kernel is still producing. */
  #reset(): void {
    const socket = this.#socket
    this.#socket = undefined
    try {
      socket?.close()
    } catch {
      // already closed
    }
  }

  #fail(errno: string, detail: string): void {
    const inflight = this.#inflight
    if (!inflight) return
    inflight.settle(inflight.call.error(errno, detail))
    this.#reset()
  }

  #exchange(call: Call, request: NlRequest, dump: boolean): Promise<{ replies: NlMessage[]; interrupted: boolean }> {
    if (this.#closed) return Promise.reject(call.error('EBADF', 'netlink port closed'))
    call.throwIfAborted()
    const socket = this.#open()
    this.#seq = (this.#seq % 0x7fffffff) + 1
    const seq = this.#seq
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        exchange.settle(call.abortError())
        // A late reply must not reach the next request; a running dump must stop.
        this.#reset()
      }
      const exchange: Exchange = {
        seq,
        call,
        replies: [],
        interrupted: false,
        settle: (error) => {
          if (this.#inflight !== exchange) return
          this.#inflight = undefined
          call.signal.removeEventListener('abort', onAbort)
          try {
            socket.unref()
          } catch {
            // closed by #reset
          }
          if (error) reject(error)
          else resolve({ replies: exchange.replies, interrupted: exchange.interrupted })
        },
      }
      this.#inflight = exchange
      call.signal.addEventListener('abort', onAbort, { once: true })
      socket.ref()
      // Dumps end with NLMSG_DONE; everything else is asked to end with an ACK.
      const flags = NLM_F_REQUEST | request.flags | (dump ? 0 : NLM_F_ACK)
      try {
        socket.send(frameMessage({ type: request.type, flags, seq, payload: request.payload }), {}, (error) => {
          if (error) exchange.settle(call.error(error.code ?? 'EIO', 'sendmsg failed'))
        })
      } catch (error) {
        exchange.settle(call.error('EIO', error instanceof Error ? error.message : String(error)))
        this.#reset()
      }
    })
  }

  #receive(datagram: Buffer): void {
    const inflight = this.#inflight
    if (!inflight) return
    let messages: NlMessage[]
    try {
      messages = parseMessages(datagram)
    } catch (error) {
      this.#fail('EBADMSG', error instanceof Error ? error.message : String(error))
      return
    }
    for (const message of messages) {
      // Replies to abandoned requests carry older sequence numbers.
      if (message.seq !== inflight.seq) continue
      if (message.flags & NLM_F_DUMP_INTR) inflight.interrupted = true
      if (message.type === NLMSG_ERROR || message.type === NLMSG_DONE) {
        const errno = message.type === NLMSG_ERROR ? parseErrorPayload(message.payload) : parseDonePayload(message.payload)
        inflight.settle(errno === 0 ? undefined : inflight.call.error(errnoName(errno)))
        return
      }
      // Control messages (NOOP, OVERRUN) carry nothing for the caller.
      if (message.type >= NLMSG_MIN_TYPE) inflight.replies.push(message)
    }
  }
}

// ── rtnetlink ────────────────────────────────────────────────────────────────

const RTNLGRP = { LINK: 1, IPV4_IFADDR: 5, IPV4_ROUTE: 7, IPV4_RULE: 8, IPV6_IFADDR: 9, IPV6_ROUTE: 11, IPV6_RULE: 19 } as const
type WatchKind = 'link' | 'address' | 'route' | 'rule'
const WATCH_KINDS: readonly WatchKind[] = ['link', 'address', 'route', 'rule']
/** Notification message types → what changed (RTM_NEWxxx and RTM_DELxxx pairs). */
const NOTIFICATION_KINDS: Record<number, WatchKind> = { 16: 'link', 17: 'link', 20: 'address', 21: 'address', 24: 'route', 25: 'route', 32: 'rule', 33: 'rule' }

/** The multicast listener shared by every watch() of one port. */
class Watcher {
  readonly #listeners = new Set<(what: WatchKind) => void>()
  #socket: NetlinkSocketLike | undefined

  constructor(private readonly components: NetlinkComponents) {}

  subscribe(listener: (what: WatchKind) => void): () => void {
    this.#listeners.add(listener)
    this.#socket ??= this.#open()
    return () => {
      this.#listeners.delete(listener)
      if (this.#listeners.size === 0) this.close()
    }
  }

  #open(): NetlinkSocketLike {
    // A large receive buffer makes ENOBUFS (lost notifications) rare under route churn.
    const socket = this.components.openSocket(Protocol.ROUTE, { recvBufferSize: 1 << 20 })
    for (const group of Object.values(RTNLGRP)) socket.addMembership(group)
    socket.on('message', (datagram) => {
      const kinds = new Set<WatchKind>()
      try {
        for (const message of parseMessages(datagram)) {
          const kind = NOTIFICATION_KINDS[message.type]
          if (kind) kinds.add(kind)
        }
      } catch {
        for (const kind of WATCH_KINDS) kinds.add(kind)
      }
      this.#emit(kinds)
    })
    // ENOBUFS means notifications were dropped: report everything as changed so the caller re-reads.
    socket.on('error', () => {
      this.#emit(new Set(WATCH_KINDS))
    })
    return socket
  }

  #emit(kinds: Set<WatchKind>): void {
    for (const kind of kinds) for (const listener of [...this.#listeners]) listener(kind)
  }

  close(): void {
    this.#listeners.clear()
    const socket = this.#socket
    this.#socket = undefined
    socket?.close()
  }
}

function addressText(address: Address): string {
  return `${address.local}${address.peer === undefined ? '' : ` peer ${address.peer}`} dev ${address.link}`
}

function routeText(route: Route): string {
  return `${route.dst} table ${route.table}${route.metric === undefined ? '' : ` metric ${route.metric}`}`
}

function ruleText(rule: Rule): string {
  const from = rule.from === undefined ? '' : ` from ${rule.from}`
  return `priority ${rule.priority}${from} table ${rule.table}`
}

/** Names a link refers to besides its own: its master and its underlay device. */
function referencedLinks(link: Link): string[] {
  const names = link.master === undefined ? [] : [link.master]
  if ((link.kind === 'gre' || link.kind === 'gretap' || link.kind === 'vxlan') && link.dev !== undefined) names.push(link.dev)
  return names
}

class Rtnetlink implements RtnetlinkPort {
  /** Request sockets, each with one request in flight; concurrent calls spread over them (opened on first use). */
  readonly #channels: Channel[]
  readonly #channelOf = new WeakMap<Call, Channel>()
  readonly #watcher: Watcher

  constructor(
    private readonly timeoutMs: number,
    sockets: number,
    components: NetlinkComponents,
  ) {
    this.#channels = Array.from({ length: Math.max(1, sockets) }, () => new Channel(Protocol.ROUTE, components))
    this.#watcher = new Watcher(components)
  }

  /** Runs one call on the least busy socket; every request of the call goes there. */
  #run<T>(op: string, options: CallOptions, body: (call: Call) => Promise<T>): Promise<T> {
    let channel = this.#channels[0] as Channel
    for (const candidate of this.#channels) if (candidate.load < channel.load) channel = candidate
    return runCall(op, options, this.timeoutMs, (call) => {
      this.#channelOf.set(call, channel)
      return body(call)
    })
  }

  #channel(call: Call): Channel {
    const channel = this.#channelOf.get(call)
    if (channel === undefined) throw new TypeError('netlink call without a socket')
    return channel
  }

  async #dump(call: Call, request: NlRequest): Promise<Buffer[]> {
    return (await this.#channel(call).request(call, request)).map((m) => m.payload)
  }

  async #ack(call: Call, request: NlRequest): Promise<void> {
    await this.#channel(call).request(call, request)
  }

  /** index → name for decoding dumps that name links by index; from `links` when the caller has a dump of them. */
  async #ifnames(call: Call, links?: readonly ObservedLink[] | Promise<readonly ObservedLink[]>): Promise<IfNameOf> {
    const names = new Map<number, string>()
    if (links !== undefined) {
      for (const link of await links) names.set(link.index, link.name)
      return (index) => names.get(index) ?? `if${index}`
    }
    for (const payload of await this.#dump(call, encodeLinkDump())) {
      const { index, name } = peekLink(payload)
      if (name !== undefined) names.set(index, name)
    }
    return (index) => names.get(index) ?? `if${index}`
  }

  /** name → index, asking the kernel per name as `ip` does; ENODEV names the missing link. */
  async #ifindexes(call: Call, names: readonly string[]): Promise<IfIndexOf> {
    const indexes = new Map<string, number>()
    for (const name of new Set(names)) {
      let replies: NlMessage[]
      try {
        replies = await this.#channel(call).request(call, encodeLinkGet(name))
      } catch (error) {
        if (error instanceof KernelError && error.errno === 'ENODEV') throw call.error('ENODEV', `no link named ${name}`)
        throw error
      }
      const reply = replies[0]
      if (!reply) throw call.error('ENODEV', `no link named ${name}`)
      indexes.set(name, peekLink(reply.payload).index)
    }
    return (name) => {
      const index = indexes.get(name)
      if (index === undefined) throw new TypeError(`link ${name} was not resolved`)
      return index
    }
  }

  /** `ip -d link show` */
  linkList(options: CallOptions): Promise<ObservedLink[]> {
    return this.#run('linkList', options, async (call) => {
      const payloads = await this.#dump(call, encodeLinkDump())
      const names = new Map<number, string>()
      for (const payload of payloads) {
        const { index, name } = peekLink(payload)
        names.set(index, name ?? '')
      }
      const ifname: IfNameOf = (index) => names.get(index) ?? `if${index}`
      return payloads.map((p) => decodeLink(p, ifname))
    })
  }

  /** `ip -s link show` */
  linkCounters(options: CallOptions): Promise<LinkCounters[]> {
    return this.#run('linkCounters', options, async (call) => (await this.#dump(call, encodeLinkCountersDump())).flatMap((payload) => decodeLinkCounters(payload) ?? []))
  }

  /** `ip addr show` (both families) */
  addrList(options: DumpOptions): Promise<ObservedAddress[]> {
    return this.#run('addrList', options, async (call) => {
      // The dump goes out before the names are known: with a link dump under way they overlap.
      const [payloads, ifname] = await Promise.all([this.#dump(call, encodeAddrDump()), this.#ifnames(call, options.links)])
      return payloads.flatMap((p) => decodeAddr(p, ifname) ?? [])
    })
  }

  /** `ip route show table all` and `ip -6 route show table all` (or only the tables asked for) */
  routeList(options: RouteDumpOptions): Promise<ObservedRoute[]> {
    return this.#run('routeList', options, async (call) => {
      const { tables } = options
      const routes: ObservedRoute[] = []
      // One AF_UNSPEC dump for both families (one round trip instead of two); other families are dropped.
      // It goes out before the names are known: with a link dump under way they overlap.
      const [payloads, ifname] = await Promise.all([this.#dump(call, encodeRouteDump('all')), this.#ifnames(call, options.links)])
      for (const payload of payloads) {
        // rtm_table holds tables below 256; larger ones read RT_TABLE_COMPAT there and come in RTA_TABLE.
        const headerTable = payload.length > 4 ? payload.readUInt8(4) : RT_TABLE_COMPAT
        if (tables !== undefined && headerTable !== RT_TABLE_COMPAT && !tables(headerTable)) continue
        const route = decodeRoute(payload, ifname)
        if (route === undefined || (tables !== undefined && !tables(route.table))) continue
        routes.push(route)
      }
      return routes
    })
  }

  /** `ip rule show` and `ip -6 rule show` (or only the priorities asked for) */
  ruleList(options: RuleDumpOptions): Promise<ObservedRule[]> {
    return this.#run('ruleList', options, async (call) => {
      const rules: ObservedRule[] = []
      // One AF_UNSPEC dump for both families; decodeRule drops the others.
      for (const payload of await this.#dump(call, encodeRuleDump('all'))) {
        const rule = decodeRule(payload)
        if (rule === undefined || (options.priorities !== undefined && !options.priorities(rule.priority))) continue
        rules.push(rule)
      }
      return rules
    })
  }

  /** `ip link add NAME [mtu M] [up] [master B] type KIND …` */
  linkAdd(link: Link, options: CallOptions): Promise<void> {
    return this.#run(`linkAdd ${link.name} type ${link.kind}`, options, async (call) => {
      const ifindex = await this.#ifindexes(call, referencedLinks(link))
      await this.#ack(call, encodeLinkAdd(link, ifindex))
    })
  }

  /**
   * `ip link set dev NAME [mtu M] [up|down] [master B|nomaster]`. The kernel
   * applies a message's up/down before its master, and a bond refuses a slave
   * that is up (EPERM), so enslaving takes separate messages, as with `ip`:
   * down (if up), then master and MTU, then the up state asked for (else the
   * one the link had).
   */
  linkSet(name: string, change: LinkChange, options: CallOptions): Promise<void> {
    return this.#run(`linkSet ${name}`, options, async (call) => {
      const { master } = change
      if (typeof master !== 'string') {
        const ifindex = await this.#ifindexes(call, [name])
        await this.#ack(call, encodeLinkSet(ifindex(name), change, ifindex))
        return
      }
      const ifindex = await this.#ifindexes(call, [master, name])
      const index = ifindex(name)
      const [reply] = await this.#channel(call).request(call, encodeLinkGet(name))
      const wasUp = reply !== undefined && decodeLink(reply.payload, (i) => `if${i}`).up
      if (wasUp) await this.#ack(call, encodeLinkSet(index, { up: false }, ifindex))
      await this.#ack(call, encodeLinkSet(index, { ...(change.mtu === undefined ? {} : { mtu: change.mtu }), master }, ifindex))
      await this.#ack(call, encodeLinkSet(index, { up: change.up ?? wasUp }, ifindex))
    })
  }

  /** `ip link del NAME` */
  linkDel(name: string, options: CallOptions): Promise<void> {
    return this.#run(`linkDel ${name}`, options, async (call) => {
      const ifindex = await this.#ifindexes(call, [name])
      await this.#ack(call, encodeLinkDel(ifindex(name)))
    })
  }

  /** `ip addr add LOCAL [peer P] dev LINK proto meshd` */
  addrAdd(address: Address, options: CallOptions): Promise<void> {
    return this.#run(`addrAdd ${addressText(address)}`, options, async (call) => {
      const ifindex = await this.#ifindexes(call, [address.link])
      await this.#ack(call, encodeAddrAdd(address, RTPROT_MESHD, ifindex))
    })
  }

  /** `ip addr del LOCAL [peer P] dev LINK` */
  addrDel(address: Address, options: CallOptions): Promise<void> {
    return this.#run(`addrDel ${addressText(address)}`, options, async (call) => {
      const ifindex = await this.#ifindexes(call, [address.link])
      await this.#ack(call, encodeAddrDel(address, ifindex))
    })
  }

  /** `ip route replace … table T proto meshd` */
  routeReplace(route: Route, options: CallOptions): Promise<void> {
    return this.#run(`routeReplace ${routeText(route)}`, options, async (call) => {
      const devs = [...(route.nexthop ? [route.nexthop.dev] : []), ...(route.multipath ?? []).map((hop) => hop.dev)]
      const ifindex = await this.#ifindexes(call, devs)
      await this.#ack(call, encodeRouteReplace(route, RTPROT_MESHD, ifindex))
    })
  }

  /** `ip route del DST [metric M] table T proto meshd` */
  routeDel(route: Route, options: CallOptions): Promise<void> {
    return this.#run(`routeDel ${routeText(route)}`, options, (call) => this.#ack(call, encodeRouteDel(route, RTPROT_MESHD)))
  }

  /** `ip rule add priority P … lookup T … protocol meshd` */
  ruleAdd(rule: Rule, options: CallOptions): Promise<void> {
    return this.#run(`ruleAdd ${ruleText(rule)}`, options, (call) => this.#ack(call, encodeRuleAdd(rule, RTPROT_MESHD)))
  }

  /** `ip rule del priority P … lookup T … protocol meshd` */
  ruleDel(rule: Rule, options: CallOptions): Promise<void> {
    return this.#run(`ruleDel ${ruleText(rule)}`, options, (call) => this.#ack(call, encodeRuleDel(rule, RTPROT_MESHD)))
  }

  /** `ip monitor link address route rule` */
  watch(onChange: (what: WatchKind) => void): () => void {
    return this.#watcher.subscribe(onChange)
  }

  close(): void {
    this.#watcher.close()
    for (const channel of this.#channels) channel.close()
  }
}

/**
 * Opens rtnetlink in the calling process's network namespace; sockets open lazily, on first use.
 * `sockets` (default 1): how many requests may be in flight at once, one per socket; the
 * reconciler's concurrent operations then overlap their round trips instead of queueing.
 */
export function openRtnetlink(init: { timeoutMs?: number; sockets?: number } = {}, components: NetlinkComponents = defaultComponents): RtnetlinkPort {
  return new Rtnetlink(init.timeoutMs ?? DEFAULT_TIMEOUT_MS, init.sockets ?? 1, components)
}

// ── WireGuard over generic netlink ───────────────────────────────────────────

class WireguardGenl implements WireguardGenlPort {
  readonly #channel: Channel
  /** Resolved once found; a missing family is asked again next time (the module may load later). */
  #familyId: number | undefined

  constructor(
    private readonly timeoutMs: number,
    components: NetlinkComponents,
  ) {
    this.#channel = new Channel(Protocol.GENERIC, components)
  }

  async #family(call: Call): Promise<number | undefined> {
    if (this.#familyId !== undefined) return this.#familyId
    try {
      const [reply] = await this.#channel.request(call, encodeGetFamily(WG_GENL_NAME))
      if (!reply) return undefined
      this.#familyId = decodeFamily(reply.payload).id
      return this.#familyId
    } catch (error) {
      // The controller answers ENOENT for an unknown family.
      if (error instanceof KernelError && error.errno === 'ENOENT') return undefined
      throw error
    }
  }

  async #requireFamily(call: Call): Promise<number> {
    const id = await this.#family(call)
    if (id === undefined) throw call.error('EOPNOTSUPP', 'the kernel has no wireguard generic-netlink family')
    return id
  }

  /** `genl ctrl get name wireguard` */
  available(options: CallOptions): Promise<boolean> {
    return runCall('wireguard available', options, this.timeoutMs, async (call) => (await this.#family(call)) !== undefined)
  }

  /** `wg show NAME dump` */
  deviceGet(name: string, options: CallOptions): Promise<ObservedWireguardDevice> {
    return runCall(`deviceGet ${name}`, options, this.timeoutMs, async (call) => {
      const type = await this.#requireFamily(call)
      const replies = await this.#channel.request(call, { type, ...encodeDeviceGet(name) })
      const device = decodeDevice(replies.map((m) => m.payload))
      if (device.name === '') device.name = name
      return device
    })
  }

  /** `wg setconf NAME`: replaces all peers; large peer lists go out as several messages. */
  deviceSet(device: WireguardDevice, options: CallOptions): Promise<void> {
    return runCall(`deviceSet ${device.name}`, options, this.timeoutMs, async (call) => {
      const type = await this.#requireFamily(call)
      for (const payload of encodeDeviceSet(device)) {
        await this.#channel.request(call, { type, flags: 0, payload })
      }
    })
  }

  close(): void {
    this.#channel.close()
  }
}

/** Opens the generic-netlink channel to kernel WireGuard in the calling process's network namespace. */
export function openWireguardGenl(init: { timeoutMs?: number } = {}, components: NetlinkComponents = defaultComponents): WireguardGenlPort {
  return new WireguardGenl(init.timeoutMs ?? DEFAULT_TIMEOUT_MS, components)
}
