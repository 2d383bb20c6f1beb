// One membership node (libp2p: TCP, pnet, Noise, yamux, identify, circuit
// relay, DCUtR) in its own process, so a test can put it in a network
// namespace. Built from dist/ (npm run build). Every process given the same
// network seed builds the same network, so they share the pnet key.
//
//   node membership-peer.mjs '{"seed":1,"networkSeed":7,"listen":["/ip4/11.0.0.1/tcp/7373"],"bootstrap":[],"relay":{"server":true}}'
//
// stdout, one JSON object per line: {"event":"started","id","addresses"}, then
// {"event":"connections","peer","remoteAddresses"} whenever the set of
// connections to a watched peer changes. stdin, one command per line:
//   open <node id>   open a stream on /meshd-test/hello/1 (reply: {"event":"opened","remoteAddress","reply"})
//   watch <node id>  report connections to that peer as they change

import { createInterface } from 'node:readline'
import { Writable } from 'node:stream'
import { createLogger } from '../../dist/logging/logger.js'
import { identityFromSeed } from '../../dist/membership/identity.js'
import { createNetwork } from '../../dist/membership/network.js'
import { createMembershipNode } from '../../dist/membership/node.js'
import { FramedStream } from '../../dist/membership/framed-stream.js'

const HELLO = '/meshd-test/hello/1'
const options = JSON.parse(process.argv[2] ?? '{}')
const seeded = (value) => {
  const seed = new Uint8Array(32)
  new DataView(seed.buffer).setUint32(0, value)
  seed[31] = 0x77
  return seed
}
const founder = await identityFromSeed(seeded(1))
const identity = await identityFromSeed(seeded(options.seed))
let counter = 0
const network = createNetwork({
  name: 'dcutr',
  founder: founder.nodeId,
  existingRoutes: [],
  // Deterministic bytes from the seed: every process derives the same secret.
  random: (size) => Uint8Array.from({ length: size }, () => (options.networkSeed * 31 + counter++ * 17) & 0xff),
})
if (!network.ok) throw new Error(network.reason)
const quiet = new Writable({ write: (_c, _e, done) => done() })
const logger = createLogger({ level: process.env.MESHD_TEST_LOG ?? 'silent', destination: process.env.MESHD_TEST_LOG ? process.stderr : quiet, pretty: false })
const node = createMembershipNode(
  { listen: options.listen, bootstrap: options.bootstrap ?? [], relay: options.relay ?? {}, inboundConnectionsPerSecond: 1000 },
  { identity, network: network.value, logger, clock: { now: () => Date.now() } },
)
node.handle(HELLO, async (stream) => {
  const framed = new FramedStream(stream, 64)
  await framed.write(new TextEncoder().encode('hello'), { signal: AbortSignal.timeout(5_000) })
  await framed.close({ signal: AbortSignal.timeout(5_000) })
})
await node.start({ signal: AbortSignal.timeout(10_000) })
const say = (object) => process.stdout.write(`${JSON.stringify(object)}\n`)
say({ event: 'started', id: identity.nodeId, addresses: node.listenAddresses() })

const watched = new Map()
setInterval(() => {
  for (const [peer, last] of watched) {
    const now = node.connectionsTo(peer).sort().join(' ')
    if (now === last) continue
    watched.set(peer, now)
    say({ event: 'connections', peer, remoteAddresses: now === '' ? [] : now.split(' ') })
  }
  // Reservations appear after start: report the addresses again when they change.
  const addresses = node.listenAddresses().join(' ')
  if (addresses !== lastAddresses) {
    lastAddresses = addresses
    say({ event: 'addresses', addresses: node.listenAddresses() })
  }
}, 100)
let lastAddresses = ''

for await (const line of createInterface({ input: process.stdin })) {
  const [command, peer] = line.trim().split(/\s+/)
  if (command === 'watch' && peer !== undefined) watched.set(peer, undefined)
  if (command === 'open' && peer !== undefined) {
    try {
      const { stream, context } = await node.openStream(peer, HELLO, { signal: AbortSignal.timeout(20_000) })
      const reply = await new FramedStream(stream, 64).readRequired('hello', { signal: AbortSignal.timeout(5_000) })
      say({ event: 'opened', remoteAddress: context.remoteAddress, reply: new TextDecoder().decode(reply) })
    } catch (error) {
      say({ event: 'open-failed', error: String(error) })
    }
  }
}
