import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { meshd } from '../support/agents.js'
import { median, PathLab, pingStream } from '../support/path-lab.js'
import { pollUntil } from '../support/poll.js'

// Issue 6 scenarios with real agents on the routed test underlay, whose
// userspace relay delays, jitters and drops UDP (so WireGuard) per direction.
// (a) A→C is slow and jittery, C→A fast, A–B–C fast: A forwards to C via B
//     while C answers A directly; ping A→C ends near the best possible RTT.
// (b) A–B dies: A's traffic to C moves to the direct path at once (the gap in
//     a packet stream is measured), and back after recovery without flapping.
// (c) A and C behind address-and-port-dependent NATs reach each other via B.

describe('asymmetric forward paths through one relay', () => {
  let lab: PathLab

  beforeAll(async () => {
    lab = await PathLab.create(['a', 'b', 'c'])
    await lab.startMesh('a', '10.75.0.0/16')
  })
  afterAll(() => lab.destroy())

  it('(a) a slow, jittery A→C leg is routed via B while C→A stays direct, and ping A→C is near the best possible', async () => {
    const { underlay } = lab
    const a = lab.host('a')
    const cOverlay = lab.overlayOf('c')
    const baseline = median((await pingStream(a, cOverlay, 10, 0.1)).rtts)

    await underlay.impair('a', 'c', { delayMs: 70, jitterMs: 20 })
    await underlay.impair('c', 'a', { delayMs: 15 })
    for (const [x, y] of [['a', 'b'], ['b', 'a'], ['b', 'c'], ['c', 'b']] as const) await underlay.impair(x, y, { delayMs: 10 })

    const b = lab.idOf('b')
    const c = lab.idOf('c')
    // Both directions at once: A→C via B, C→A direct, and A's status shows C's own (direct) choice as the return path.
    // Steady state, as the issue asks: the condition must have held for 10 s in a row (c's own estimates
    // take a few seconds to follow a change of impairments, and a sample during that is a transition).
    let heldSince: number | undefined
    const aView = await pollUntil(
      () => {
        const view = lab.status('a')?.peers.find((p) => p.id === c)
        const holds = view?.path.via === b && lab.pathOf('c', 'a') === null && view.returnPath?.via === null
        if (!holds) heldSince = undefined
        else heldSince ??= Date.now()
        return holds && heldSince !== undefined && Date.now() - heldSince >= 10_000 ? view : undefined
      },
      { deadlineMs: 120_000, intervalMs: 500, what: 'a routes to c via b while c answers a directly, for 10 s' },
    )
    expect(aView.path.forwardSavingMs ?? 0).toBeGreaterThan(20)

    // meshd ping shows both candidate paths and marks the relay in use.
    const ping = meshd(a, ['ping', 'c', '--count', '3', '--json'].map((arg) => (arg === 'c' ? c : arg)))
    expect(ping.status, ping.stderr).toBe(0)
    const report = JSON.parse(ping.stdout) as { chosen: string | null; paths: { via: string | null; received: number; avgMs: number | null }[] }
    expect(report.chosen).toBe(b)
    const direct = report.paths.find((p) => p.via === null)
    const viaB = report.paths.find((p) => p.via === b)
    expect(direct?.received).toBeGreaterThan(0)
    expect(viaB?.received).toBeGreaterThan(0)
    expect(viaB?.avgMs ?? Infinity).toBeLessThan(direct?.avgMs ?? 0)
    expect(meshd(a, ['ping', c, '--count', '1']).stdout).toMatch(/^\* +via \S+/m)

    // Best possible: forward via B (10 + 10) + return direct (15) as configured,
    // plus what each impaired leg really costs here (timers, the userspace
    // underlay, WireGuard), calibrated on A↔B: two 10 ms legs.
    // Only valid while A↔B itself goes direct both ways (a relayed A→B would inflate it).
    await pollUntil(() => (lab.pathOf('a', 'b') === null && lab.pathOf('b', 'a') === null ? true : undefined), { deadlineMs: 60_000, intervalMs: 500, what: 'a↔b direct' })
    const legCost = Math.max(0, (median((await pingStream(a, lab.overlayOf('b'), 20, 0.1)).rtts) - 20) / 2)
    const best = 35 + 3 * legCost
    const rtt = median((await pingStream(a, cOverlay, 20, 0.1)).rtts)
    process.stderr.write(`path quality: ping A→C ${rtt} ms, best possible ${best.toFixed(2)} ms (${(rtt / best).toFixed(3)}×); unimpaired ${baseline} ms\n`)
    expect(rtt).toBeLessThanOrEqual(best * 1.1)
    // Forced direct would cost 70 + 15: the relay is what makes the figure.
    expect(rtt).toBeLessThan(70)
  })

  it('(b) when A–B dies, A→C moves to the direct path at once, and back after recovery without flapping', async () => {
    const { underlay } = lab
    const a = lab.host('a')
    const cOverlay = lab.overlayOf('c')
    const b = lab.idOf('b')
    expect(lab.pathOf('a', 'c')).toBe(b)
    const changesBefore = lab.pathChanges('a', 'c').length

    // A stream of pings across the failure: 10 per second for 10 s.
    const intervalS = 0.1
    const count = 100
    const stream = pingStream(a, cOverlay, count, intervalS)
    // Cut once the stream is flowing.
    await pollUntil(() => (lab.status('a') ? true : undefined), { deadlineMs: 5_000, intervalMs: 1_000, what: 'status' })
    await underlay.cut('a', 'b')
    await pollUntil(() => (lab.pathOf('a', 'c') === null ? true : undefined), { deadlineMs: 10_000, intervalMs: 100, what: 'a routes to c directly after a–b died' })
    const { answered } = await stream
    // Sequence numbers run 1..count; a loss at either end counts too.
    const bounds = [0, ...answered, count + 1]
    const gaps = bounds.slice(1).map((seq, i) => seq - (bounds[i] ?? 0) - 1).filter((lost) => lost > 0)
    const longestGap = Math.max(0, ...gaps)
    // The figure is for the log; bench/paths.bench.ts holds it to the ~1 s target on a quiet machine.
    // Here only the behaviour is asserted, since wall-clock bounds fail on a loaded CI host.
    process.stderr.write(`failover gap: ${Math.round(longestGap * intervalS * 1000)} ms (${longestGap} pings lost in a row)\n`)
    // One outage, not several (no flapping between a dead and a live path; a lone lost ping on a loaded
    // host is not an outage), and the stream ends flowing: traffic resumed on the direct path within the
    // stream, instead of waiting out a dead interval.
    expect(gaps.filter((lost) => lost > 1).length, `gaps ${JSON.stringify(gaps)}`).toBeLessThanOrEqual(1)
    expect(answered.at(-1)).toBe(count)
    expect(answered.length).toBeGreaterThan(count / 2)
    expect(lab.pathChanges('a', 'c').at(-1)).toMatchObject({ to: 'direct', reason: 'dead' })

    await underlay.restore('a', 'b')
    await pollUntil(() => (lab.pathOf('a', 'c') === b ? true : undefined), { deadlineMs: 60_000, intervalMs: 500, what: 'a returns to c via b after recovery' })
    // The log line of the return may reach us a moment after status shows it: wait for it before counting.
    await pollUntil(() => (lab.pathChanges('a', 'c').at(-1)?.to === b ? true : undefined), { deadlineMs: 10_000, intervalMs: 100, what: "a's log shows the return via b" })
    // Steady for a 5 s stream: no further change.
    const settled = lab.pathChanges('a', 'c').length
    await pingStream(a, cOverlay, 50, 0.1)
    const changes = lab.pathChanges('a', 'c')
    expect(changes.length).toBe(settled)
    // Exactly two moves since the cut: off the dead relay, and back once it has been good for the hold time.
    expect(changes.slice(changesBefore).map((c) => `${c.to === 'direct' ? 'direct' : 'relay'} (${c.reason})`)).toEqual(['direct (dead)', 'relay (better)'])
  })
})

describe('hosts behind address-and-port-dependent NATs', () => {
  let lab: PathLab

  beforeAll(async () => {
    lab = await PathLab.create(['b', 'a', 'c'], { a: 'address-and-port-dependent', c: 'address-and-port-dependent' })
    // a–c's own link never handshakes (both NATs change ports per destination): only the links to b come up.
    await lab.startMesh('b', '10.76.0.0/16', (view) => view.peers.filter((p) => p.state === 'up').length >= 1)
  }, 180_000)
  afterAll(() => lab.destroy())

  it('(c) reach each other through the public host', async () => {
    const b = lab.idOf('b')
    await pollUntil(() => (lab.pathOf('a', 'c') === b && lab.pathOf('c', 'a') === b ? true : undefined), { deadlineMs: 60_000, intervalMs: 500, what: 'a and c route to each other via b' })
    const { answered } = await pingStream(lab.host('a'), lab.overlayOf('c'), 5, 0.2)
    expect(answered.length).toBeGreaterThan(0)
    const table = meshd(lab.host('a'), ['status']).stdout
    expect(table).toMatch(/\bvia \S+/)
    expect(lab.status('a')?.peers.find((p) => p.id === lab.idOf('c'))?.path.via).toBe(b)
  })

  it('(c) negotiate their own pair link over a circuit relay through the public host', async () => {
    // Neither NAT lets the other dial in, so the a–c link parameters (ports, link-locals, preshared key)
    // can only have been agreed over /meshd/link/1.0.0 relayed by b: each end then has the link's interface.
    for (const [from, to] of [['a', 'c'], ['c', 'a']] as const) {
      await pollUntil(() => lab.status(from)?.peers.find((p) => p.id === lab.idOf(to))?.interface ?? undefined, {
        deadlineMs: 60_000,
        intervalMs: 500,
        what: `${from} has negotiated its link to ${to}`,
      })
    }
  })
})

describe('hosts behind endpoint-independent NATs', () => {
  let lab: PathLab

  beforeAll(async () => {
    // Neither a nor c accepts TCP from outside, so their libp2p connection starts relayed through b; their
    // WireGuard link comes up directly (both NATs keep the source port, so each end's sends open the way).
    // a and c listen on every address (meshd's default), so each can take a connection at its end of the pair link.
    lab = await PathLab.create(['b', 'a', 'c'], { a: 'endpoint-independent', c: 'endpoint-independent' })
    await lab.startMesh('b', '10.77.0.0/16', undefined, { a: '0.0.0.0', c: '0.0.0.0' })
  }, 180_000)
  afterAll(() => lab.destroy())

  it('move their libp2p connection off the relay onto their own WireGuard link', async () => {
    const a = lab.idOf('a')
    const c = lab.idOf('c')
    const controlOf = (from: string, to: string): string | null | undefined => lab.status(from)?.peers.find((p) => p.id === to)?.control
    await pollUntil(() => (controlOf('a', c) === 'pair-link' && controlOf('c', a) === 'pair-link' ? true : undefined), {
      deadlineMs: 60_000,
      intervalMs: 500,
      what: 'a and c reach each other over their pair link',
    }).catch((error: unknown) => {
      process.stderr.write(`control routes: a→c ${controlOf('a', c)}, c→a ${controlOf('c', a)}\n`)
      throw error
    })
    // Each talks to b, which has a public address, directly over the underlay.
    expect(controlOf('a', lab.idOf('b'))).toBe('direct')
    // The dialling side logs the move once it has also closed the relayed connections (a moment after status shows it).
    await pollUntil(() => ([lab.host('a'), lab.host('c')].some((host) => host.log.join('').includes('control connection moved onto the pair link')) ? true : undefined), {
      deadlineMs: 10_000,
      intervalMs: 100,
      what: "a's or c's log shows the move onto the pair link",
    })
    const { answered } = await pingStream(lab.host('a'), lab.overlayOf('c'), 5, 0.2)
    expect(answered.length).toBeGreaterThan(0)
  })

  it('leave a dead pair link for the relay, and go back onto it once it recovers', async () => {
    const a = lab.idOf('a')
    const c = lab.idOf('c')
    const controlOf = (from: string, to: string): string | null | undefined => lab.status(from)?.peers.find((p) => p.id === to)?.control
    await lab.underlay.cut('a', 'c')
    // The prober holds the link dead within a second or so; its libp2p connection goes with it.
    await pollUntil(() => (controlOf('a', c) !== 'pair-link' && controlOf('c', a) !== 'pair-link' ? true : undefined), {
      deadlineMs: 30_000,
      intervalMs: 250,
      what: 'neither a nor c keeps a control connection over the dead pair link',
    })
    await pollUntil(() => ([lab.host('a'), lab.host('c')].some((host) => host.log.join('').includes('pair link dead: its control connection closed')) ? true : undefined), {
      deadlineMs: 10_000,
      intervalMs: 100,
      what: "a's or c's log shows the connection over the dead link closed",
    })
    await lab.underlay.restore('a', 'c')
    await pollUntil(() => (controlOf('a', c) === 'pair-link' && controlOf('c', a) === 'pair-link' ? true : undefined), {
      deadlineMs: 90_000,
      intervalMs: 500,
      what: 'a and c back on their pair link',
    })
  })
})
