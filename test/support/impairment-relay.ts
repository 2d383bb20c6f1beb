// Userspace UDP impairment relay for the test underlay (test/support/underlay.ts).
//
// This kernel has no netem, so per-direction delay, jitter and loss for UDP are
// applied here. The file is both a library (pure parsing and validation, for the
// underlay builder and unit tests) and a program: the underlay runs it inside the
// router namespace as `ip netns exec <router> node impairment-relay.ts '<json>'`
// (Node >= 23.6 strips the types; this file therefore imports only node: builtins
// and uses no enums or parameter properties).
//
// How a packet gets here and back out, transparently (source addresses preserved):
//
//   1. nftables in the router namespace redirects every forwarded UDP packet between
//      two underlay host addresses (`ip saddr @hosts ip daddr @hosts`) to one of this
//      relay's listening ports (a small range, so one client address:port can talk to
//      several destinations without conntrack tuple clashes).
//   2. For a new client address:port on a listening port, the relay reads
//      /proc/net/nf_conntrack (this namespace's table) to learn the original
//      destination: the entry whose reply tuple is (router:listenPort -> client).
//   3. To deliver to the destination D "from" the client S, the relay uses a per-flow
//      upstream socket and adds its port to the nftables map `upstream`
//      (port -> S.addr . S.port): postrouting SNATs it to S, so D sees S itself,
//      exactly as without the relay. D's answers (D -> S) match that conntrack
//      entry's reply tuple and arrive on the upstream socket.
//   4. To deliver to S "from" D, the relay answers through the listening socket S's
//      packet arrived on: conntrack's reverse redirect makes the source D again.
//   If both sides' packets were redirected (both sent first), the relay forwards
//   between the two listening sockets and needs no upstream socket.
//
// Impairment is applied per direction (host of the source address -> host of the
// destination address) just before sending: loss by a random draw per packet, delay
// plus uniform jitter in [-jitter, +jitter] (clamped at 0) by a timer per packet, so
// jitter can reorder, as netem does. Parameters apply to packets received after the
// change. An unimpaired direction is sent synchronously, with no timer.
//
// Control: JSON lines on stdin, answers as JSON lines on stdout:
//   {"id":1,"op":"impair","from":"a","to":"c","delayMs":60,"jitterMs":0,"lossPct":0}
//   {"id":2,"op":"stats"}   -> {"id":2,"ok":true,"stats":{...}}
//   {"id":3,"op":"reset"}   (clears every impairment)
//   {"id":4,"op":"age"}     (test hook: every flow counts as idle, so it is re-checked)
// On start it prints {"ready":true}. It exits when stdin closes.

import { spawn } from 'node:child_process'
import dgram from 'node:dgram'
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'

/** Per-direction impairment, as netem would take it. */
export interface Impairment {
  delayMs: number
  jitterMs: number
  lossPct: number
}

export const NO_IMPAIRMENT: Readonly<Impairment> = Object.freeze({ delayMs: 0, jitterMs: 0, lossPct: 0 })

/** Validates a partial impairment (missing fields are 0); throws a RangeError naming the bad field. */
export function validateImpairment(input: Partial<Impairment>): Impairment {
  const out: Impairment = { delayMs: input.delayMs ?? 0, jitterMs: input.jitterMs ?? 0, lossPct: input.lossPct ?? 0 }
  const limits: Record<keyof Impairment, number> = { delayMs: 60_000, jitterMs: 60_000, lossPct: 100 }
  for (const key of Object.keys(limits) as (keyof Impairment)[]) {
    const value = out[key]
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > limits[key]) {
      throw new RangeError(`impairment ${key} must be a number in [0, ${limits[key]}], got ${String(value)}`)
    }
  }
  return out
}

/** The delay one packet gets: delay plus uniform jitter in [-jitter, +jitter], never negative. `random` is in [0, 1). */
export function packetDelayMs(impairment: Impairment, random: number): number {
  if (impairment.jitterMs === 0) return impairment.delayMs
  return Math.max(0, impairment.delayMs + (random * 2 - 1) * impairment.jitterMs)
}

export interface ConntrackTuple {
  src: string
  dst: string
  sport: number
  dport: number
}

export interface ConntrackEntry {
  protocol: string
  original: ConntrackTuple
  reply: ConntrackTuple
}

/**
 * Parses one line of /proc/net/nf_conntrack, e.g.
 * `ipv4     2 udp      17 29 src=10.200.1.2 dst=10.200.2.2 sport=48197 dport=5000 [UNREPLIED] src=10.200.1.1 dst=10.200.1.2 sport=20000 dport=48197 mark=0 zone=0 use=2`.
 * Returns undefined for lines without two complete address/port tuples (ICMP, malformed).
 */
export function parseConntrackLine(line: string): ConntrackEntry | undefined {
  const fields = line.trim().split(/\s+/)
  const protocol = fields[2]
  if (protocol === undefined) return undefined
  const tuples: Partial<Record<keyof ConntrackTuple, string>>[] = []
  for (const field of fields) {
    const eq = field.indexOf('=')
    if (eq <= 0) continue
    const key = field.slice(0, eq)
    if (key !== 'src' && key !== 'dst' && key !== 'sport' && key !== 'dport') continue
    if (key === 'src') tuples.push({})
    const current = tuples.at(-1)
    if (current === undefined || current[key] !== undefined) return undefined
    current[key] = field.slice(eq + 1)
  }
  if (tuples.length !== 2) return undefined
  const complete = tuples.map((t): ConntrackTuple | undefined => {
    const sport = Number(t.sport)
    const dport = Number(t.dport)
    if (t.src === undefined || t.dst === undefined || !Number.isInteger(sport) || !Number.isInteger(dport) || t.sport === undefined || t.dport === undefined) return undefined
    return { src: t.src, dst: t.dst, sport, dport }
  })
  const [original, reply] = complete
  if (original === undefined || reply === undefined) return undefined
  return { protocol, original, reply }
}

/** The original destination of a redirected UDP flow: the entry whose reply tuple goes from `listenPort` to the client and whose destination was rewritten. */
export function findRedirectedDestination(
  table: string,
  client: { address: string; port: number },
  listenPort: number,
): { address: string; port: number } | undefined {
  for (const line of table.split('\n')) {
    if (!line.includes(`dport=${client.port}`)) continue
    const entry = parseConntrackLine(line)
    if (entry === undefined || entry.protocol !== 'udp') continue
    const { original, reply } = entry
    if (original.src === client.address && original.sport === client.port && reply.dst === client.address && reply.dport === client.port && reply.sport === listenPort && (reply.src !== original.dst || reply.sport !== original.dport)) {
      return { address: original.dst, port: original.dport }
    }
  }
  return undefined
}

/** What the underlay passes to the relay program as its one argument. */
export interface RelayConfig {
  /** Underlay host name by the address the router sees it at. */
  hosts: Record<string, string>
  /** Ports the nftables redirect sends to (all bound by the relay). */
  listenPorts: number[]
  /** nftables family, table and map the relay adds upstream SNAT elements to. */
  nftTable: string
  upstreamMap: string
}

export interface RelayStats {
  received: number
  sent: number
  dropped: number
  delayed: number
  flows: number
  upstreamSockets: number
  unknownFlows: number
  /** Idle listening handles checked against conntrack before reuse. */
  rechecks: number
}

type Endpoint = string // "addr:port"

function endpoint(address: string, port: number): Endpoint {
  return `${address}:${port}`
}

function splitEndpoint(ep: Endpoint): { address: string; port: number } {
  const colon = ep.lastIndexOf(':')
  return { address: ep.slice(0, colon), port: Number(ep.slice(colon + 1)) }
}

/** How to send to one side of a flow so the packet appears to come from the other side. */
interface Handle {
  kind: 'listen' | 'upstream'
  socket: dgram.Socket
  lastUsed: number
  /** Upstream sockets wait for their SNAT map element before the first send. */
  ready: Promise<void>
  port: number
}

interface Flow {
  handles: Map<Endpoint, Handle>
}

// A listening handle is used without a second look while its conntrack entry surely
// lives (the shortest UDP conntrack timeout is 30 s, refreshed by every packet either
// way); after that idle time the relay checks the entry is still there before using
// it. (The underlay also raises the router's UDP conntrack timeouts.)
const LISTEN_HANDLE_TTL_MS = 25_000

function readConntrack(): string {
  try {
    return readFileSync('/proc/net/nf_conntrack', 'utf8')
  } catch (error) {
    process.stderr.write(`relay: cannot read conntrack: ${(error as Error).message}\n`)
    return ''
  }
}

class Relay {
  private readonly config: RelayConfig
  private readonly impairments = new Map<string, Impairment>()
  private readonly listeners = new Map<number, dgram.Socket>()
  /** (listenPort, client) -> original destination, as learned from conntrack. */
  private readonly clients = new Map<string, { dest: Endpoint; lastUsed: number }>()
  private readonly flows = new Map<string, Flow>()
  private readonly upstreams = new Set<dgram.Socket>()
  private readonly timers = new Set<NodeJS.Timeout>()
  readonly stats: RelayStats = { received: 0, sent: 0, dropped: 0, delayed: 0, flows: 0, upstreamSockets: 0, unknownFlows: 0, rechecks: 0 }

  constructor(config: RelayConfig) {
    this.config = config
  }

  async start(): Promise<void> {
    await Promise.all(this.config.listenPorts.map(async (port) => {
      const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 })
      socket.on('message', (msg, rinfo) => { this.fromClient(port, socket, msg, rinfo.address, rinfo.port) })
      socket.on('error', (error) => { process.stderr.write(`relay listen ${port}: ${error.message}\n`) })
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject)
        socket.bind(port, '0.0.0.0', () => { socket.off('error', reject); resolve() })
      })
      this.listeners.set(port, socket)
    }))
  }

  impair(from: string, to: string, impairment: Impairment): void {
    this.impairments.set(`${from}>${to}`, impairment)
  }

  /** Clears every impairment. */
  reset(): void {
    this.impairments.clear()
  }

  /** Makes every flow look idle past the recheck time (a test hook for that path). */
  age(): void {
    for (const client of this.clients.values()) client.lastUsed = 0
    for (const flow of this.flows.values()) {
      for (const handle of flow.handles.values()) handle.lastUsed = 0
    }
  }

  close(): void {
    for (const timer of this.timers) clearTimeout(timer)
    for (const socket of [...this.listeners.values(), ...this.upstreams]) socket.close()
  }

  private flowKey(a: Endpoint, b: Endpoint): string {
    return a < b ? `${a}|${b}` : `${b}|${a}`
  }

  private flow(a: Endpoint, b: Endpoint): Flow {
    const key = this.flowKey(a, b)
    let flow = this.flows.get(key)
    if (flow === undefined) {
      flow = { handles: new Map() }
      this.flows.set(key, flow)
      this.stats.flows++
    }
    return flow
  }

  private fromClient(listenPort: number, socket: dgram.Socket, msg: Buffer, address: string, port: number): void {
    this.stats.received++
    const now = Date.now()
    const source = endpoint(address, port)
    const clientKey = `${listenPort}/${source}`
    let known = this.clients.get(clientKey)
    if (known === undefined || now - known.lastUsed > LISTEN_HANDLE_TTL_MS) {
      const dest = findRedirectedDestination(readConntrack(), { address, port }, listenPort)
      if (dest === undefined) {
        this.stats.unknownFlows++
        this.stats.dropped++
        return
      }
      known = { dest: endpoint(dest.address, dest.port), lastUsed: now }
      this.clients.set(clientKey, known)
    }
    known.lastUsed = now
    const flow = this.flow(source, known.dest)
    const previous = flow.handles.get(source)
    // The client's own redirect entry is the surest way back to it.
    if (previous === undefined || previous.kind !== 'listen' || previous.socket !== socket || now - previous.lastUsed > LISTEN_HANDLE_TTL_MS) {
      flow.handles.set(source, { kind: 'listen', socket, lastUsed: now, ready: Promise.resolve(), port: listenPort })
    } else {
      previous.lastUsed = now
    }
    this.forward(flow, source, known.dest, msg)
  }

  private fromUpstream(flow: Flow, handle: Handle, target: Endpoint, peer: Endpoint, msg: Buffer): void {
    // `target` is the side this upstream sends to; its answers go to `peer`.
    this.stats.received++
    handle.lastUsed = Date.now()
    this.forward(flow, target, peer, msg)
  }

  private forward(flow: Flow, from: Endpoint, to: Endpoint, msg: Buffer): void {
    const fromHost = this.config.hosts[splitEndpoint(from).address]
    const toHost = this.config.hosts[splitEndpoint(to).address]
    const impairment = (fromHost !== undefined && toHost !== undefined ? this.impairments.get(`${fromHost}>${toHost}`) : undefined) ?? NO_IMPAIRMENT
    if (impairment.lossPct > 0 && Math.random() * 100 < impairment.lossPct) {
      this.stats.dropped++
      return
    }
    const delay = packetDelayMs(impairment, Math.random())
    if (delay <= 0) {
      this.send(flow, from, to, msg)
      return
    }
    this.stats.delayed++
    this.after(performance.now() + delay, () => { this.send(flow, from, to, msg) })
  }

  /**
   * Runs `fn` at `due` (performance.now() time), never earlier: Node's timers count
   * from the event loop's cached millisecond clock and may fire up to ~1 ms early,
   * so a timer re-arms for what is left, and the last sub-millisecond is spun off
   * with setImmediate.
   */
  private after(due: number, fn: () => void): void {
    const remaining = due - performance.now()
    if (remaining <= 0) {
      fn()
    } else if (remaining < 1) {
      setImmediate(() => { this.after(due, fn) })
    } else {
      const timer = setTimeout(() => {
        this.timers.delete(timer)
        this.after(due, fn)
      }, remaining)
      this.timers.add(timer)
    }
  }

  private send(flow: Flow, from: Endpoint, to: Endpoint, msg: Buffer): void {
    const now = Date.now()
    let handle = flow.handles.get(to)
    if (handle !== undefined && handle.kind === 'listen' && now - handle.lastUsed > LISTEN_HANDLE_TTL_MS) {
      // Idle for a while: use it only if its redirect entry still exists. Opening an
      // upstream while it does would clash with it (same tuple) and be dropped.
      this.stats.rechecks++
      const target = splitEndpoint(to)
      const dest = findRedirectedDestination(readConntrack(), target, handle.port)
      if (dest === undefined || endpoint(dest.address, dest.port) !== from) handle = undefined
    }
    handle ??= this.openUpstream(flow, from, to)
    handle.lastUsed = now
    const { address, port } = splitEndpoint(to)
    const h = handle
    const go = (): void => {
      h.socket.send(msg, port, address, (error) => {
        if (error) this.stats.dropped++
        else this.stats.sent++
      })
    }
    // Almost always resolved already; the first packets of a new upstream wait for its SNAT element.
    if (h.kind === 'listen') go()
    else void h.ready.then(go, () => { this.stats.dropped++ })
  }

  /** A socket whose packets postrouting SNATs to `from`, so `to` sees `from` as the sender. */
  private openUpstream(flow: Flow, from: Endpoint, to: Endpoint): Handle {
    const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 })
    this.upstreams.add(socket)
    this.stats.upstreamSockets++
    const handle: Handle = { kind: 'upstream', socket, lastUsed: Date.now(), ready: Promise.resolve(), port: 0 }
    socket.on('error', (error) => { process.stderr.write(`relay upstream: ${error.message}\n`) })
    socket.on('message', (msg, rinfo) => {
      const sender = endpoint(rinfo.address, rinfo.port)
      if (sender !== to) return // only `to`, de-SNATed, can reach this socket
      this.fromUpstream(flow, handle, to, from, msg)
    })
    const source = splitEndpoint(from)
    handle.ready = new Promise<void>((resolve, reject) => {
      socket.bind(0, '0.0.0.0', () => {
        handle.port = socket.address().port
        const element = `{ ${handle.port} : ${source.address} . ${source.port} }`
        const [family, table] = this.config.nftTable.split(' ') as [string, string]
        const nft = spawn('nft', ['add', 'element', family, table, this.config.upstreamMap, element], { stdio: ['ignore', 'ignore', 'pipe'] })
        let stderr = ''
        nft.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
        nft.on('error', reject)
        nft.on('exit', (code) => {
          if (code === 0) resolve()
          else reject(new Error(`nft add element ${element}: exit ${code}: ${stderr.trim()}`))
        })
      })
    })
    handle.ready.catch((error: unknown) => { process.stderr.write(`relay: ${(error as Error).message}\n`) })
    flow.handles.set(to, handle)
    return handle
  }
}

interface ControlMessage {
  id?: unknown
  op?: unknown
  from?: unknown
  to?: unknown
  delayMs?: number
  jitterMs?: number
  lossPct?: number
}

async function main(): Promise<void> {
  const arg = process.argv[2]
  if (arg === undefined) throw new Error('usage: impairment-relay.ts <config json>')
  const relay = new Relay(JSON.parse(arg) as RelayConfig)
  await relay.start()
  const reply = (value: unknown): void => { process.stdout.write(`${JSON.stringify(value)}\n`) }
  reply({ ready: true })
  const lines = createInterface({ input: process.stdin })
  lines.on('line', (line) => {
    let message: ControlMessage = {}
    try {
      message = JSON.parse(line) as ControlMessage
      if (message.op === 'impair') {
        if (typeof message.from !== 'string' || typeof message.to !== 'string') throw new Error('impair needs from and to')
        relay.impair(message.from, message.to, validateImpairment(message))
        reply({ id: message.id, ok: true })
      } else if (message.op === 'reset') {
        relay.reset()
        reply({ id: message.id, ok: true })
      } else if (message.op === 'age') {
        relay.age()
        reply({ id: message.id, ok: true })
      } else if (message.op === 'stats') {
        reply({ id: message.id, ok: true, stats: relay.stats })
      } else {
        throw new Error(`unknown op ${JSON.stringify(message.op)}`)
      }
    } catch (error) {
      reply({ id: message.id, ok: false, error: (error as Error).message })
    }
  })
  lines.on('close', () => {
    relay.close()
    process.exit(0)
  })
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    process.stderr.write(`impairment-relay: ${(error as Error).stack ?? String(error)}\n`)
    process.exit(1)
  })
}
