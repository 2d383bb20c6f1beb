import { describe, expect, it } from 'vitest'
import { findRedirectedDestination, packetDelayMs, parseConntrackLine, validateImpairment } from '../support/impairment-relay.js'

// Lines as this kernel prints them in /proc/net/nf_conntrack (captured in a namespace).
const redirected = 'ipv4     2 udp      17 29 src=10.200.1.2 dst=10.200.2.2 sport=48197 dport=5000 [UNREPLIED] src=10.200.1.1 dst=10.200.1.2 sport=20000 dport=48197 mark=0 zone=0 use=2'
const assured = 'ipv4     2 udp      17 118 src=10.200.3.2 dst=10.200.1.2 sport=5000 dport=5000 src=10.200.1.2 dst=10.200.3.2 sport=5000 dport=5000 [ASSURED] mark=0 zone=0 use=2'
const icmp = 'ipv4     2 icmp     1 29 src=10.200.1.2 dst=10.200.2.2 type=8 code=0 id=7 src=10.200.2.2 dst=10.200.1.2 type=0 code=0 id=7 mark=0 zone=0 use=2'

describe('parseConntrackLine', () => {
  it('reads the original and the reply tuple', () => {
    expect(parseConntrackLine(redirected)).toEqual({
      protocol: 'udp',
      original: { src: '10.200.1.2', dst: '10.200.2.2', sport: 48197, dport: 5000 },
      reply: { src: '10.200.1.1', dst: '10.200.1.2', sport: 20000, dport: 48197 },
    })
    expect(parseConntrackLine(assured)?.reply).toEqual({ src: '10.200.1.2', dst: '10.200.3.2', sport: 5000, dport: 5000 })
  })

  it('rejects lines without two complete port tuples', () => {
    expect(parseConntrackLine(icmp)).toBeUndefined()
    expect(parseConntrackLine('')).toBeUndefined()
    expect(parseConntrackLine('ipv4 2 udp 17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2')).toBeUndefined()
    expect(parseConntrackLine('ipv4 2 udp 17 29 src=10.0.0.1 dst=10.0.0.2 sport=x dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1')).toBeUndefined()
    expect(parseConntrackLine('ipv4 2 udp 17 29 src=10.0.0.1 dst=10.0.0.2 dst=10.0.0.3 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1')).toBeUndefined()
  })
})

describe('findRedirectedDestination', () => {
  const table = [icmp, assured, redirected, ''].join('\n')
  it('finds the original destination of the client on that listening port', () => {
    expect(findRedirectedDestination(table, { address: '10.200.1.2', port: 48197 }, 20000)).toEqual({ address: '10.200.2.2', port: 5000 })
  })
  it('finds nothing for another listening port or client', () => {
    expect(findRedirectedDestination(table, { address: '10.200.1.2', port: 48197 }, 20001)).toBeUndefined()
    expect(findRedirectedDestination(table, { address: '10.200.1.3', port: 48197 }, 20000)).toBeUndefined()
    // A non-redirected entry (reply from the real peer) is not a relay flow.
    expect(findRedirectedDestination(table, { address: '10.200.3.2', port: 5000 }, 5000)).toBeUndefined()
  })
})

describe('validateImpairment', () => {
  it('fills missing fields with 0', () => {
    expect(validateImpairment({})).toEqual({ delayMs: 0, jitterMs: 0, lossPct: 0 })
    expect(validateImpairment({ delayMs: 70, jitterMs: 20 })).toEqual({ delayMs: 70, jitterMs: 20, lossPct: 0 })
    expect(validateImpairment({ lossPct: 100 })).toEqual({ delayMs: 0, jitterMs: 0, lossPct: 100 })
  })
  it.each([
    [{ delayMs: -1 }, /delayMs/],
    [{ jitterMs: Number.NaN }, /jitterMs/],
    [{ lossPct: 100.5 }, /lossPct/],
    [{ delayMs: Number.POSITIVE_INFINITY }, /delayMs/],
    [{ delayMs: '5' as unknown as number }, /delayMs/],
  ])('rejects %o', (input, message) => {
    expect(() => validateImpairment(input)).toThrow(message)
  })
})

describe('packetDelayMs', () => {
  it('is the delay without jitter', () => {
    expect(packetDelayMs({ delayMs: 60, jitterMs: 0, lossPct: 0 }, 0.9)).toBe(60)
  })
  it('spreads uniformly over delay ± jitter and never goes below 0', () => {
    const impairment = { delayMs: 70, jitterMs: 30, lossPct: 0 }
    expect(packetDelayMs(impairment, 0)).toBe(40)
    expect(packetDelayMs(impairment, 0.5)).toBe(70)
    expect(packetDelayMs(impairment, 0.75)).toBe(85)
    expect(packetDelayMs({ delayMs: 5, jitterMs: 30, lossPct: 0 }, 0)).toBe(0)
  })
})
