// Simulated members for bench/agent.bench.ts: N membership nodes (libp2p,
// admission, signed records, link negotiation) in one process, run with
// `ip netns exec <ns> node bench/support/sim-members.mjs` so they sit on the
// benchmark's underlay next to the real agents. Plain JavaScript over dist/
// (run `npm run build` first) because it runs outside vitest.
//
// argv: <listen-ip> <count> <token> [--wireguard]   (one token with at least <count> uses)
// stdin: optional lines `add <count> <token>`: admits and starts that many more members in this process;
// `stats`: prints one line `stats {json}`: this process's event-loop delay since the last `stats` (ms) and,
// with --wireguard, the member–member pairs on lo (and skipped) and per member its live links and how many the prober holds alive, with their median RTT.
// stdout: "ready <total>" once every member asked for so far is admitted and started; runs until SIGTERM,
// then stops every member (and, with --wireguard, removes every interface and wireguard-go it made) and
// exits 0 after printing "stopped".
//
// Without --wireguard the members negotiate links but build nothing: their links never handshake.
//
// With --wireguard (MESHD_SIM_WIREGUARD=1 does the same) each member is a live peer:
//
// - Its links to members outside this process (the real agents) are built for real, through meshd's own
//   planner (dist/agent/agent.js peerLinksFrom, dist/planner/mesh.js planMesh) and kernel layer
//   (dist/kernel/open.js, wireguard 'userspace'): an md-… wireguard-go link with the member's key, the
//   negotiated listen port, the agent as peer (key from its record, preshared key, endpoint), the
//   link-local pair as point-to-point addresses, up. All members share this process's namespace, so
//   one reconciler applies the union of their links (a reconciler owns every md-… object in its
//   namespace, so one per member would remove the others'); names come from meshd's per-pair
//   allocation (distinct for distinct members); listen ports cannot collide because each member
//   negotiates from its own slice of 51820–52819 (PORTS_PER_MEMBER each); the agent keeps the
//   link-locals of its own links distinct.
// - Its links to the other simulated members carry no WireGuard: both ends' IPv4 link-local
//   addresses go on lo, so probes between them (and relayed probes through them) are delivered
//   inside the namespace. Two pairs chosen independently may share an address; a pair whose
//   addresses clash with a link to an agent or an earlier pair (in a fixed order) is left out
//   (counted on stderr as "skipped").
// - Each member runs meshd's own prober (dist/probe/service.js) and path controller
//   (dist/paths/controller.js) over its live links, so it answers echo requests, relays, and probes
//   the agent directly and through relays as a real peer would; its record gossips its link RTTs.

import { randomBytes } from 'node:crypto'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { Writable } from 'node:stream'
import { peerLinksFrom } from '../../dist/agent/agent.js'
import { generateWireguardPrivateKey } from '../../dist/agent/state.js'
import { openKernelLayer } from '../../dist/kernel/open.js'
import { EMPTY_STATE } from '../../dist/kernel/types.js'
import { publicKeyFromPrivate } from '../../dist/kernel/wireguard/uapi.js'
import { createLogger } from '../../dist/logging/logger.js'
import { Secret } from '../../dist/logging/secret.js'
import { DEFAULT_LISTEN_PORT_RANGE } from '../../dist/membership/allocation.js'
import { identityFromSeed } from '../../dist/membership/identity.js'
import { requestAdmission } from '../../dist/membership/join-protocol.js'
import { createLinkNegotiator } from '../../dist/membership/link-negotiation.js'
import { createMembershipNode } from '../../dist/membership/node.js'
import { createMembershipService } from '../../dist/membership/service.js'
import { parseToken } from '../../dist/membership/token.js'
import { createPathController } from '../../dist/paths/controller.js'
import { planMesh } from '../../dist/planner/mesh.js'
import { createProbeService } from '../../dist/probe/service.js'

const args = process.argv.slice(2)
const live = args.includes('--wireguard') || process.env.MESHD_SIM_WIREGUARD === '1'
const [listenIp, countText, tokenText] = args.filter((arg) => arg !== '--wireguard')
const count = Number(countText)
if (!listenIp || !Number.isInteger(count) || count < 1 || !tokenText) {
  process.stderr.write('usage: sim-members.mjs <listen-ip> <count> <token> [--wireguard]\n')
  process.exit(2)
}

/** Each member's slice of the listen-port range: room for this many links, so at most 25 live members. */
const PORTS_PER_MEMBER = 40
const MAX_LIVE_MEMBERS = Math.floor((DEFAULT_LISTEN_PORT_RANGE.last - DEFAULT_LISTEN_PORT_RANGE.first + 1) / PORTS_PER_MEMBER)

const logger = process.env.MESHD_TEST_LOG
  ? createLogger({ level: process.env.MESHD_TEST_LOG, destination: process.stderr, pretty: false })
  : createLogger({ level: 'silent', destination: new Writable({ write: (_c, _e, done) => done() }) })
const clock = { now: () => Date.now() }
const random = (size) => new Uint8Array(randomBytes(size))
const signal = () => globalThis.AbortSignal.timeout(60_000)
const interfaces = () => Promise.resolve([{ interfaceName: 'eth0', address: listenIp, internal: false }])
const lifetime = new globalThis.AbortController()

function parse(text) {
  const parsed = parseToken(text, { now: clock.now() })
  if (!parsed.ok) throw new Error(`bad token: ${parsed.reason}`)
  return parsed.token
}

// All members dial from one address, and the founder's libp2p refuses more than a few new inbound
// connections per second from one host (inboundConnectionThreshold): a refused admission dial is tried
// again once that second is over rather than failing the run.
const ADMISSION_ATTEMPTS = 10
async function admit(node, token, text) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await requestAdmission({ token, tokenText: new Secret(text) }, { node, logger, clock }, { signal: signal() })
    } catch (error) {
      if (attempt >= ADMISSION_ATTEMPTS || !String(error?.message).includes('ECONNRESET')) throw error
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
  }
}

const members = []
const simulated = new Set()
let kernel

async function startOne(token, text) {
  const index = members.length
  const identity = await identityFromSeed(new Uint8Array(randomBytes(32)))
  const network = token.network
  const node = createMembershipNode({ listen: [`/ip4/${listenIp}/tcp/0`], relay: { server: false } }, { identity, network, logger, clock })
  await node.start({ signal: signal() })
  const admissions = await admit(node, token, text)
  const privateKey = generateWireguardPrivateKey()
  const wireguardPublicKey = publicKeyFromPrivate(privateKey.reveal())
  const member = { index, id: identity.nodeId, node, network, privateKey }
  simulated.add(member.id)
  if (live) {
    member.probes = createProbeService({ selfId: member.id, logger, forwardPathTo: (peer) => member.paths?.via(peer) ?? null }, lifetime.signal)
    member.paths = createPathController(
      {},
      {
        probes: member.probes,
        logger,
        now: clock.now,
        // Nothing to route: a simulated member only measures and answers.
        onPathsChanged: () => undefined,
        reportedRttMs: (relay, destination) => member.service?.member(relay)?.linkRtts.find((l) => l.peer === destination)?.rttMs,
      },
    )
    member.paths.start(lifetime.signal)
  }
  const service = createMembershipService(
    { hostname: `sim${index}`, wireguardPublicKey, capabilities: { linkKinds: ['wireguard'], wireguardBackend: 'userspace' }, admissions },
    {
      node,
      identity,
      network,
      logger,
      clock,
      interfaceAddresses: interfaces,
      ...(live
        ? {
            linkRtts: () =>
              [...member.probes.snapshot().links.values()].flatMap((stats) => (stats.alive && stats.rttMs !== undefined ? [{ peer: stats.peerId, rttMs: stats.rttMs }] : [])),
          }
        : {}),
    },
  )
  member.service = service
  const first = DEFAULT_LISTEN_PORT_RANGE.first + index * PORTS_PER_MEMBER
  const links = createLinkNegotiator(live ? { portRange: { first, last: first + PORTS_PER_MEMBER - 1 } } : {}, { node, service, identity, logger, clock, random })
  member.links = links
  if (live) {
    links.events.on('link:negotiated', trigger)
    links.events.on('link:removed', trigger)
    for (const event of ['member:up', 'member:updated', 'member:down']) service.events.on(event, trigger)
  }
  links.start()
  await service.start({ signal: signal() })
  members.push(member)
}

// ── Live links (--wireguard) ─────────────────────────────────────────────────

const hostOf = (cidr) => cidr.slice(0, cidr.indexOf('/') < 0 ? cidr.length : cidr.indexOf('/'))
let lastSkipped = -1
/** Member–member pairs on lo, and left out for an address clash, at the last pass. */
let pairCounts = { onLo: 0, skipped: 0 }

/** The union of every member's links to the agents (meshd's planner), plus lo addresses for member–member pairs. */
function desired() {
  const state = { links: [], addresses: [], routes: [], rules: [], wireguard: [], sysctls: [] }
  const sysctls = new Map()
  const used = new Set()
  const probeLinks = new Map(members.map((m) => [m.id, []]))
  for (const member of members) {
    const own = member.service.ownRecord()
    if (own === undefined) continue
    const external = new Map([...member.links.links()].filter(([peer]) => !simulated.has(peer)))
    const peerLinks = peerLinksFrom(member.id, external, {
      publicKeyOf: (peer) => member.service.member(peer)?.wireguardPublicKey,
      recordAddressesOf: (peer) => member.service.member(peer)?.endpoints.map((e) => e.address) ?? [],
    })
    const plan = planMesh({
      self: { nodeId: member.id, overlay4: own.overlayIpv4, overlay6: own.overlayIpv6, overlayDevice: 'lo' },
      privateKey: member.privateKey,
      networkCidr4: member.network.ipv4Cidr,
      networkCidr6: member.network.ipv6Ula,
      // No routes: a simulated member carries no overlay traffic, it only keeps its links up and probes.
      members: [],
      links: peerLinks,
      paths: new Map(),
    })
    state.links.push(...plan.links)
    state.addresses.push(...plan.addresses.filter((a) => a.link !== 'lo'))
    state.wireguard.push(...plan.wireguard)
    for (const s of plan.sysctls) sysctls.set(s.key, s)
    for (const link of peerLinks) {
      used.add(link.local4).add(link.peer4)
      probeLinks.get(member.id)?.push({ peerId: link.peerId, local4: link.local4, peer4: link.peer4 })
    }
  }
  // Member–member pairs, in a fixed order, each only once both ends have committed the same pair.
  let skipped = 0
  const byId = new Map(members.map((m) => [m.id, m]))
  const pairs = []
  for (const member of members) {
    for (const [peer, params] of member.links.links()) {
      if (!simulated.has(peer) || member.id > peer) continue
      const other = byId.get(peer)?.links.links().get(member.id)
      if (other === undefined || other.pair.attempt !== params.pair.attempt || other.pair.ipv4.low !== params.pair.ipv4.low) continue
      pairs.push({ a: member.id, b: peer, local: hostOf(params.addresses.local4), remote: hostOf(params.addresses.peer4) })
    }
  }
  pairs.sort((x, y) => (x.a + x.b).localeCompare(y.a + y.b))
  for (const pair of pairs) {
    if (used.has(pair.local) || used.has(pair.remote)) {
      skipped++
      continue
    }
    used.add(pair.local).add(pair.remote)
    state.addresses.push({ link: 'lo', local: `${pair.local}/32` }, { link: 'lo', local: `${pair.remote}/32` })
    probeLinks.get(pair.a)?.push({ peerId: pair.b, local4: pair.local, peer4: pair.remote })
    probeLinks.get(pair.b)?.push({ peerId: pair.a, local4: pair.remote, peer4: pair.local })
  }
  pairCounts = { onLo: pairs.length - skipped, skipped }
  if (skipped !== lastSkipped) {
    lastSkipped = skipped
    process.stderr.write(`sim-members: ${pairs.length - skipped} member-member pairs on lo, skipped ${skipped} (address clash)\n`)
  }
  state.sysctls = [...sysctls.values()]
  return { state, probeLinks }
}

let running
let again = false
function trigger() {
  if (!live || kernel === undefined || lifetime.signal.aborted) return
  if (running) {
    again = true
    return
  }
  running = (async () => {
    try {
      do {
        again = false
        const { state, probeLinks } = desired()
        const result = await kernel.reconciler.apply(state, { signal: lifetime.signal }).catch((error) => ({ applied: [], failures: [{ description: 'apply', error }] }))
        for (const failure of result.failures) process.stderr.write(`sim-members: kernel change failed: ${failure.description}: ${failure.error?.message}\n`)
        for (const member of members) {
          const links = probeLinks.get(member.id) ?? []
          member.paths.setTopology(links, [...new Set([...member.service.peers().map((r) => r.nodeId)])])
        }
      } while (again && !lifetime.signal.aborted)
    } finally {
      running = undefined
    }
  })()
}

// ── Main ─────────────────────────────────────────────────────────────────────

async function add(n, text) {
  const token = parse(text)
  if (live && members.length + n > MAX_LIVE_MEMBERS) throw new Error(`at most ${MAX_LIVE_MEMBERS} live members in one process`)
  // One at a time: admission is the founder's work, and the order keeps the run reproducible.
  for (let i = 0; i < n; i++) await startOne(token, text)
  trigger()
  process.stdout.write(`ready ${members.length}\n`)
}

try {
  if (live) kernel = await openKernelLayer({ wireguard: 'userspace' }, { logger }, signal())
  await add(count, tokenText)
} catch (error) {
  process.stderr.write(`sim-members: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
}

const loopDelay = monitorEventLoopDelay({ resolution: 10 })
loopDelay.enable()
function stats() {
  const ms = (ns) => Math.round(ns / 1e4) / 100
  const loop = { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) }
  loopDelay.reset()
  const perMember = members.map((m) => {
    if (!m.probes) return { name: `sim${m.index}` }
    const links = [...m.probes.snapshot().links.values()]
    const rtts = links.flatMap((l) => (l.rttMs === undefined ? [] : [l.rttMs])).sort((a, b) => a - b)
    return { name: `sim${m.index}`, links: links.length, alive: links.filter((l) => l.alive).length, medianRttMs: rtts[Math.floor(rtts.length / 2)] ?? null }
  })
  process.stdout.write(`stats ${JSON.stringify({ eventLoopMs: loop, pairs: pairCounts, members: perMember })}\n`)
}

let queue = Promise.resolve()
createInterface({ input: process.stdin }).on('line', (line) => {
  const [op, n, text] = line.trim().split(/\s+/)
  if (op === 'stats') stats()
  if (op !== 'add') return
  queue = queue
    .then(() => add(Number(n), text ?? ''))
    .catch((error) => {
      process.stderr.write(`sim-members: add failed: ${error instanceof Error ? error.message : String(error)}\n`)
      process.exit(1)
    })
})

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  lifetime.abort()
  for (const { node, service, links, probes } of members) {
    links.stop()
    await probes?.close()
    await service.stop({ signal: signal() }).catch(() => undefined)
    await node.stop({ signal: signal() }).catch(() => undefined)
  }
  if (kernel !== undefined) {
    await running?.catch(() => undefined)
    // Removes every md-… link (stopping its wireguard-go) and the lo addresses.
    const result = await kernel.reconciler.apply(EMPTY_STATE, { signal: signal() }).catch((error) => ({ failures: [{ description: 'teardown', error }] }))
    for (const failure of result.failures) process.stderr.write(`sim-members: teardown failed: ${failure.description}: ${failure.error?.message}\n`)
    await kernel.close().catch(() => undefined)
  }
  process.stdout.write('stopped\n')
  process.exit(0)
}
process.once('SIGTERM', () => void stop())
process.once('SIGINT', () => void stop())
setInterval(() => undefined, 60_000)
