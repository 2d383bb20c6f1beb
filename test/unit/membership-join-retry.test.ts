import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../../src/logging/logger.js'
import { Secret } from '../../src/logging/secret.js'
import { JoinRefusedError } from '../../src/membership/errors.js'
import { requestAdmission } from '../../src/membership/join-protocol.js'
import type { MembershipNode } from '../../src/membership/node.js'
import { createToken, parseToken } from '../../src/membership/token.js'
import { NOW, countingRandom, labNetwork, seededSigner } from './membership-fixtures.js'

// The joiner asks again when members were only busy (a timeout, a reset), and
// gives up at once when a member refused or could not be reached.

const logger = createLogger({ pretty: false, destination: new Writable({ write: (_c, _e, done) => { done() } }) })
const network = labNetwork()
const BOOTSTRAP = ['/ip4/192.0.2.10/tcp/4001/p2p/12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5']
const tokenText = createToken({ network, issuer: seededSigner(1), bootstrap: BOOTSTRAP, now: NOW, random: countingRandom(100) })
const parsed = parseToken(tokenText.reveal(), { now: NOW + 1 })
if (!parsed.ok) throw new Error(parsed.reason)
const token = parsed.token

/** A node whose dials behave as `dial` says, per attempt (1-based); nothing else is reached. */
function fakeNode(dial: (attempt: number, signal: AbortSignal) => Promise<never>): { node: MembershipNode; dials: () => number } {
  let count = 0
  const node = {
    nodeId: seededSigner(2).nodeId,
    dial: (_address: string, options: { signal: AbortSignal }) => dial(++count, options.signal),
    connectedPeers: () => [],
  } as unknown as MembershipNode
  return { node, dials: () => count }
}
const hang = (signal: AbortSignal): Promise<never> =>
  new Promise((_resolve, reject) => {
    signal.addEventListener('abort', () => {
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'))
    }, { once: true })
  })

const ask = (node: MembershipNode, retryForMs: number): Promise<unknown> =>
  requestAdmission({ token, tokenText: new Secret(tokenText.reveal()), attemptTimeoutMs: 30, retryForMs }, { node, logger, clock: { now: () => Date.now() } }, { signal: AbortSignal.timeout(20_000) })

describe('requestAdmission retries', () => {
  it('asks again after a member timed out, and reports the last answer', async () => {
    const { node, dials } = fakeNode((attempt, signal) => (attempt === 1 ? hang(signal) : Promise.reject(new Error('refused: the invite was used up'))))
    const error = await ask(node, 5_000).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(JoinRefusedError)
    expect(dials()).toBe(2)
    expect((error as JoinRefusedError).reasons).toEqual([`${BOOTSTRAP[0]}: refused: the invite was used up`])
  })

  it('asks again after a reset (a member shedding inbound connections)', async () => {
    const { node, dials } = fakeNode((attempt) => Promise.reject(new Error(attempt === 1 ? 'read ECONNRESET' : 'connect ECONNREFUSED 192.0.2.10:4001')))
    await expect(ask(node, 5_000)).rejects.toThrow(/ECONNREFUSED/)
    expect(dials()).toBe(2)
  })

  it("asks again after libp2p's own dial timeout", async () => {
    const { node, dials } = fakeNode((attempt) => Promise.reject(attempt === 1 ? new DOMException('The operation was aborted due to timeout', 'TimeoutError') : new Error('refused: no')))
    await expect(ask(node, 5_000)).rejects.toThrow(/refused: no/)
    expect(dials()).toBe(2)
  })

  it('does not ask again when the member is unreachable or refused', async () => {
    for (const message of ['connect ECONNREFUSED 192.0.2.10:4001', 'refused: the token has expired']) {
      const { node, dials } = fakeNode(() => Promise.reject(new Error(message)))
      await expect(ask(node, 5_000)).rejects.toThrow(message)
      expect(dials()).toBe(1)
    }
  })

  it('gives up when members stay too slow past the retry window', async () => {
    const { node, dials } = fakeNode((_attempt, signal) => hang(signal))
    const error = await ask(node, 1_500).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(JoinRefusedError)
    // The first round, then one more after the 1 s pause; the next pause (2 s) would end past the window.
    expect(dials()).toBe(2)
  })
})
