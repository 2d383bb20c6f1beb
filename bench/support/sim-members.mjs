// Simulated members for bench/agent.bench.ts: N membership nodes (libp2p,
// admission, signed records, link negotiation — no kernel, no WireGuard) in
// one process, run with `ip netns exec <ns> node bench/support/sim-members.mjs`
// so they sit on the benchmark's underlay next to the real agents. Plain
// JavaScript over dist/ (run `npm run build` first) because it runs outside
// vitest.
//
// argv: <listen-ip> <count> <token>   (one token with at least <count> uses)
// stdout: "ready <count>" once every member is admitted and started; runs
// until SIGTERM, then stops every member and exits 0.

import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { generateWireguardPrivateKey } from '../../dist/agent/state.js'
import { publicKeyFromPrivate } from '../../dist/kernel/wireguard/uapi.js'
import { createLogger } from '../../dist/logging/logger.js'
import { Secret } from '../../dist/logging/secret.js'
import { identityFromSeed } from '../../dist/membership/identity.js'
import { requestAdmission } from '../../dist/membership/join-protocol.js'
import { createLinkNegotiator } from '../../dist/membership/link-negotiation.js'
import { createMembershipNode } from '../../dist/membership/node.js'
import { createMembershipService } from '../../dist/membership/service.js'
import { parseToken } from '../../dist/membership/token.js'

const [listenIp, countText, tokenText] = process.argv.slice(2)
const count = Number(countText)
if (!listenIp || !Number.isInteger(count) || count < 1 || !tokenText) {
  process.stderr.write('usage: sim-members.mjs <listen-ip> <count> <token>\n')
  process.exit(2)
}

const logger = process.env.MESHD_TEST_LOG
  ? createLogger({ level: process.env.MESHD_TEST_LOG, destination: process.stderr, pretty: false })
  : createLogger({ level: 'silent', destination: new Writable({ write: (_c, _e, done) => done() }) })
const clock = { now: () => Date.now() }
const random = (size) => new Uint8Array(randomBytes(size))
const signal = () => globalThis.AbortSignal.timeout(60_000)
const interfaces = () => Promise.resolve([{ interfaceName: 'eth0', address: listenIp, internal: false }])

const parsed = parseToken(tokenText, { now: clock.now() })
if (!parsed.ok) {
  process.stderr.write(`bad token: ${parsed.reason}\n`)
  process.exit(2)
}

// All members dial from one address, and the founder's libp2p refuses more than a few new inbound
// connections per second from one host (inboundConnectionThreshold): a refused admission dial is tried
// again once that second is over rather than failing the run.
const ADMISSION_ATTEMPTS = 10
async function admit(node) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await requestAdmission({ token: parsed.token, tokenText: new Secret(tokenText) }, { node, logger, clock }, { signal: signal() })
    } catch (error) {
      if (attempt >= ADMISSION_ATTEMPTS || !String(error?.message).includes('ECONNRESET')) throw error
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
  }
}

const members = []
async function startOne(i) {
  const identity = await identityFromSeed(new Uint8Array(randomBytes(32)))
  const network = parsed.token.network
  const node = createMembershipNode({ listen: [`/ip4/${listenIp}/tcp/0`], relay: { server: false } }, { identity, network, logger, clock })
  await node.start({ signal: signal() })
  const admissions = await admit(node)
  const wireguardPublicKey = publicKeyFromPrivate(generateWireguardPrivateKey().reveal())
  const service = createMembershipService(
    { hostname: `sim${i}`, wireguardPublicKey, capabilities: { linkKinds: ['wireguard'], wireguardBackend: 'userspace' }, admissions },
    { node, identity, network, logger, clock, interfaceAddresses: interfaces },
  )
  const links = createLinkNegotiator({}, { node, service, identity, logger, clock, random })
  links.start()
  await service.start({ signal: signal() })
  members.push({ node, service, links })
}

// One at a time: admission is the founder's work, and the order keeps the run reproducible.
for (let i = 0; i < count; i++) await startOne(i)
process.stdout.write(`ready ${members.length}\n`)

const stop = async () => {
  for (const { node, service, links } of members) {
    links.stop()
    await service.stop({ signal: signal() }).catch(() => undefined)
    await node.stop({ signal: signal() }).catch(() => undefined)
  }
  process.exit(0)
}
process.once('SIGTERM', () => void stop())
process.once('SIGINT', () => void stop())
setInterval(() => undefined, 60_000)
