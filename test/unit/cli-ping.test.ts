import { describe, expect, it } from 'vitest'
import { formatPing, parsePingReport, PingShapeError, type PingReport } from '../../src/cli/ping-format.js'

const report: PingReport = {
  peer: { id: '12D3KooWC', name: 'gamma' },
  chosen: '12D3KooWB',
  paths: [
    { via: null, viaName: null, returnLeg: 'direct', sent: 5, received: 5, minMs: 84.2, avgMs: 88.04, maxMs: 101.5 },
    { via: '12D3KooWB', viaName: 'beta', returnLeg: 'direct', sent: 5, received: 4, minMs: 35.1, avgMs: 36, maxMs: 37.9 },
    { via: '12D3KooWD', viaName: 'delta', returnLeg: 'direct', sent: 5, received: 0, minMs: null, avgMs: null, maxMs: null },
  ],
}

describe('meshd ping output', () => {
  it('lists every candidate path and marks the one in use', () => {
    expect(formatPing(report)).toBe(
      [
        'ping gamma (12D3KooWC): forward path in use: via beta (*)',
        '   PATH       RETURN  SENT  RECEIVED  LOSS  MIN ms  AVG ms  MAX ms',
        '   direct     direct  5     5         0%    84.2    88.0    101.5',
        '*  via beta   direct  5     4         20%   35.1    36.0    37.9',
        '   via delta  direct  5     0         100%  -       -       -',
        '',
      ].join('\n'),
    )
  })

  it('checks the agent answer at the edge', () => {
    expect(parsePingReport(JSON.parse(JSON.stringify(report)))).toEqual(report)
    expect(() => parsePingReport({ peer: { id: 'x' }, chosen: null, paths: [] })).toThrow(PingShapeError)
    expect(() => parsePingReport({ ...report, paths: [{ ...report.paths[0], returnLeg: 'sideways' }] })).toThrow(/return leg/)
  })
})
