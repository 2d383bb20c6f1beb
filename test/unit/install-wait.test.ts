import { describe, expect, it } from 'vitest'
import { parseServiceState, serviceFailed, waitForJoin, type JoinStatus, type ServiceState } from '../../src/install/wait.js'

/** A fake clock that sleep() advances, and scripted answers per poll. */
function harness(answers: (JoinStatus | undefined)[], services: ServiceState[] = []) {
  let clock = 0
  let polls = 0
  const lines: string[] = []
  const components = {
    status: () => Promise.resolve(answers[Math.min(polls++, answers.length - 1)]),
    service: () => Promise.resolve(services[Math.min(polls - 1, services.length - 1)] ?? { activeState: 'active', subState: 'running', restarts: 0 }),
    now: () => clock,
    sleep: (ms: number) => {
      clock += ms
      return Promise.resolve()
    },
    progress: (line: string) => lines.push(line),
  }
  return { components, lines, polls: () => polls }
}

const init = { joinTimeoutMs: 10_000, peerTimeoutMs: 5_000, pollMs: 500, restartsBefore: 0 }
const joined = (states: string[]): JoinStatus => ({ self: { addresses: ['10.73.0.9', 'fd00::9'], network: { name: 'lab' } }, peers: states.map((state) => ({ state })) })

describe('waiting for the join', () => {
  it('waits for the overlay address, then for the peers, reporting each change once', async () => {
    const h = harness([undefined, undefined, joined(['connecting', 'connecting']), joined(['up', 'connecting']), joined(['up', 'connecting']), joined(['up', 'up'])])
    expect(await waitForJoin(init, h.components, AbortSignal.timeout(5000))).toEqual({ ok: true, overlay: '10.73.0.9', network: 'lab', peersUp: 2, peersKnown: 2 })
    expect(h.lines).toEqual(['waiting for the agent to join (up to 10 s)…', 'joined as 10.73.0.9; 0 of 2 peer(s) up…', 'joined as 10.73.0.9; 1 of 2 peer(s) up…'])
  })

  it('reports the peers reached when the peer wait runs out', async () => {
    const h = harness([joined(['up', 'down', 'connecting'])])
    expect(await waitForJoin(init, h.components, AbortSignal.timeout(5000))).toMatchObject({ ok: true, peersUp: 1, peersKnown: 3 })
  })

  it('does not count an agent that answers before it has an address as joined', async () => {
    const h = harness([{ self: { addresses: [] }, peers: [] }])
    expect(await waitForJoin({ ...init, peerTimeoutMs: 0 }, h.components, AbortSignal.timeout(5000))).toEqual({ ok: false, reason: 'the agent did not join within 10 s (see "journalctl -u meshd")' })
  })

  it('gives up as soon as systemd reports that the agent exited', async () => {
    const h = harness([undefined], [{ activeState: 'active', subState: 'running', restarts: 0 }, { activeState: 'activating', subState: 'auto-restart', restarts: 0 }])
    expect(await waitForJoin(init, h.components, AbortSignal.timeout(5000))).toEqual({ ok: false, reason: 'the agent exited before joining (see "journalctl -u meshd")' })
    expect(h.polls()).toBe(2)
  })

  it('parses systemctl show and tells a failed agent apart', () => {
    const state = parseServiceState('NRestarts=2\nActiveState=active\nSubState=running\n')
    expect(state).toEqual({ activeState: 'active', subState: 'running', restarts: 2 })
    expect(serviceFailed(state, 2)).toBe(false)
    expect(serviceFailed(state, 1)).toBe(true)
    expect(serviceFailed({ activeState: 'failed', subState: 'failed', restarts: 0 }, 0)).toBe(true)
  })
})
