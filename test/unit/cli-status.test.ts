import { describe, expect, it } from 'vitest'
import { formatAge, formatStatus, parseStatusReport, StatusShapeError, type StatusReport } from '../../src/cli/status-format.js'

const NOW = Date.parse('2026-11-22T12:00:00Z')

const report: StatusReport = {
  self: { id: '12D3KooWA', name: 'alpha', addresses: ['10.73.0.1', 'fd73::1'], network: { id: '7d5c', name: 'lab' }, wireguardBackend: 'userspace', fallbacks: [{ feature: 'dummy', reason: 'module missing; overlay address is on lo' }], rpFilter: 'loose' },
  peers: [
    { id: '12D3KooWB', name: 'beta', addresses: ['10.73.0.2'], state: 'up', interface: 'md-abc', endpoint: '192.0.2.2:51821', lastHandshake: '2026-11-22T11:59:55Z', rxBytes: 2048, txBytes: 100, rttMs: null, jitterMs: null, lossPct: null, path: { via: null, forwardSavingMs: 0 }, control: 'direct', returnPath: null },
    { id: '12D3KooWC', name: 'gamma-long-name', addresses: ['10.73.0.3'], state: 'connecting', interface: 'md-def', endpoint: null, lastHandshake: null, rxBytes: 0, txBytes: 0, rttMs: 72.34, jitterMs: 9.5, lossPct: 0, path: { via: '12D3KooWB', forwardSavingMs: 41.2 }, control: 'relayed', returnPath: { via: null } },
  ],
}

describe('status output', () => {
  it('prints an aligned table', () => {
    expect(formatStatus(report, NOW)).toBe(
      [
        'node      alpha (12D3KooWA)',
        'network   lab (7d5c)',
        'addresses 10.73.0.1, fd73::1',
        'wireguard userspace',
        'rp_filter loose on mesh links (asymmetric paths pass)',
        'fallback  dummy: module missing; overlay address is on lo',
        '',
        'PEER             ADDRESS    STATE       INTERFACE  ENDPOINT         HANDSHAKE  RX      TX    RTT     JITTER  LOSS  PATH      SAVING  RETURN',
        'beta             10.73.0.2  up          md-abc     192.0.2.2:51821  5s         2.0KiB  100B  -       -       -     direct    -       -',
        'gamma-long-name  10.73.0.3  connecting  md-def     -                -          0B      0B    72.3ms  9.5ms   0%    via beta  41.2ms  direct',
        '',
      ].join('\n'),
    )
  })

  it('formats ages', () => {
    expect(formatAge('2026-11-22T11:00:00Z', NOW)).toBe('60m')
    expect(formatAge('2026-11-20T12:00:00Z', NOW)).toBe('2d')
  })

  it('refuses a malformed answer with one line', () => {
    expect(() => parseStatusReport({ self: {}, peers: [] })).toThrow(StatusShapeError)
    expect(() => parseStatusReport({ ...report, peers: [{ ...report.peers[0], state: 'sideways' }] })).toThrow(/peer state/)
    expect(parseStatusReport(JSON.parse(JSON.stringify(report)))).toEqual(report)
  })
})
