// A cluster of membership nodes in one process, on loopback TCP only
// (127.0.0.1, port 0): a founder creates the network, joiners join with
// tokens. Shared by test/e2e/membership.test.ts and bench/membership.bench.ts.

import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { createLogger, type Logger } from '../../src/logging/logger.js'
import type { Secret } from '../../src/logging/secret.js'
import type { InterfaceAddress } from '../../src/membership/endpoints.js'
import { identityFromSeed, type Identity } from '../../src/membership/identity.js'
import { requestAdmission } from '../../src/membership/join-protocol.js'
import { createLinkNegotiator, type LinkNegotiator, type LinkNegotiatorInit } from '../../src/membership/link-negotiation.js'
import { createNetwork, type Network } from '../../src/membership/network.js'
import { createMembershipNode, type MembershipNode, type MembershipNodeInit } from '../../src/membership/node.js'
import type { Admission } from '../../src/membership/records.js'
import { createMembershipService, type MembershipService, type MembershipServiceInit } from '../../src/membership/service.js'
import { createToken, parseToken } from '../../src/membership/token.js'

export const LOOPBACK_LISTEN = ['/ip4/127.0.0.1/tcp/0']
const LOOPBACK_INTERFACES: readonly InterfaceAddress[] = [{ interfaceName: 'lo', address: '127.0.0.1', internal: true }]
const WIREGUARD_KEY = Buffer.alloc(32, 7).toString('base64')

export interface Member {
  readonly name: string
  readonly identity: Identity
  readonly network: Network
  readonly node: MembershipNode
  readonly service: MembershipService
  readonly links: LinkNegotiator | undefined
  readonly admissions: readonly Admission[]
}

export interface MemberOptions {
  node?: MembershipNodeInit
  service?: Partial<Omit<MembershipServiceInit, 'admissions'>>
  /** Link negotiation on (default) or off (the benchmark). */
  links?: false | Partial<LinkNegotiatorInit>
  /** The host's interface addresses; default loopback only. */
  interfaces?: () => Promise<readonly InterfaceAddress[]>
}

/** Records and state logs go to the void unless MESHD_TEST_LOG=debug|info is set, then to stderr. */
export function testLogger(): Logger {
  const level = process.env.MESHD_TEST_LOG
  if (level === undefined) return createLogger({ level: 'silent', destination: new Writable({ write: (_c, _e, done) => { done() } }) })
  return createLogger({ level, destination: process.stderr, pretty: false })
}

export const clock = { now: (): number => Date.now() }
const signal = (): AbortSignal => AbortSignal.timeout(30_000)

let seedCounter = 1
/** Distinct, reproducible identities within one run. */
export async function nextIdentity(): Promise<Identity> {
  const seed = new Uint8Array(32)
  new DataView(seed.buffer).setUint32(0, seedCounter++)
  seed[31] = 0x5a
  return identityFromSeed(seed)
}

export function createTestNetwork(founder: Identity, name = 'lab'): Network {
  const result = createNetwork({ name, founder: founder.nodeId, existingRoutes: [], random: (size) => new Uint8Array(randomBytes(size)) })
  if (!result.ok) throw new Error(result.reason)
  return result.value
}

/** Builds, starts and returns one member with a known admission chain. */
export async function startMember(name: string, identity: Identity, network: Network, admissions: readonly Admission[], options: MemberOptions = {}, existingNode?: MembershipNode): Promise<Member> {
  const logger = testLogger().child({ member: name })
  const node =
    existingNode ??
    createMembershipNode({ listen: LOOPBACK_LISTEN, inboundConnectionsPerSecond: 1000, relay: { server: false }, ...options.node }, { identity, network, logger, clock })
  await node.start({ signal: signal() })
  const service = createMembershipService(
    {
      hostname: name,
      wireguardPublicKey: WIREGUARD_KEY,
      capabilities: { linkKinds: ['wireguard'], wireguardBackend: 'userspace' },
      includeLoopbackEndpoints: true,
      ...options.service,
      admissions,
    },
    { node, identity, network, logger, clock, interfaceAddresses: options.interfaces ?? (() => Promise.resolve(LOOPBACK_INTERFACES)) },
  )
  const links =
    options.links === false
      ? undefined
      : createLinkNegotiator({ ...options.links }, { node, service, identity, logger, clock, random: (size) => new Uint8Array(randomBytes(size)) })
  links?.start()
  await service.start({ signal: signal() })
  return { name, identity, network, node, service, links, admissions }
}

export async function startFounder(name = 'founder', options: MemberOptions = {}): Promise<Member> {
  const identity = await nextIdentity()
  return startMember(name, identity, createTestNetwork(identity), [], options)
}

export function tokenFrom(issuer: Member, maxUses = 1): Secret<string> {
  return createToken({
    network: issuer.network,
    issuer: issuer.identity,
    bootstrap: issuer.node.listenAddresses(),
    now: clock.now(),
    random: (size) => new Uint8Array(randomBytes(size)),
    maxUses,
  })
}

/** A new host joins with a token from `issuer`: parse, start a node for the token's network, get admitted, start the service. */
export async function joinWithToken(name: string, tokenText: Secret<string>, options: MemberOptions = {}): Promise<Member> {
  const parsed = parseToken(tokenText.reveal(), { now: clock.now() })
  if (!parsed.ok) throw new Error(parsed.reason)
  const identity = await nextIdentity()
  const logger = testLogger().child({ member: name })
  const node = createMembershipNode(
    { listen: LOOPBACK_LISTEN, inboundConnectionsPerSecond: 1000, relay: { server: false }, ...options.node },
    { identity, network: parsed.token.network, logger, clock },
  )
  await node.start({ signal: signal() })
  const admissions = await requestAdmission({ token: parsed.token, tokenText }, { node, logger, clock }, { signal: signal() })
  return startMember(name, identity, parsed.token.network, admissions, options, node)
}

export async function stopMember(member: Member): Promise<void> {
  member.links?.stop()
  await member.service.stop({ signal: signal() })
  await member.node.stop({ signal: signal() })
}

/** Sorted node ids a member currently holds, itself included. */
export function view(member: Member): string[] {
  return member.service.members().map((record) => record.nodeId)
}

export function sameView(members: readonly Member[], expected: readonly string[]): boolean {
  const wanted = [...expected].sort().join(',')
  return members.every((member) => view(member).join(',') === wanted)
}
