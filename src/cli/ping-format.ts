// `meshd ping <peer>`: the agent's answer (every candidate path with its RTT),
// checked at the CLI's edge, and its table.

import { alignTable } from './status-format.js'

export interface PingPathReport {
  via: string | null
  viaName: string | null
  /** 'direct': the peer answered over its direct link; 'relay': back through the relay. */
  returnLeg: 'direct' | 'relay'
  sent: number
  received: number
  minMs: number | null
  avgMs: number | null
  maxMs: number | null
}

export interface PingReport {
  peer: { id: string; name: string }
  /** The forward path in use: null direct, else the relay's id. */
  chosen: string | null
  paths: PingPathReport[]
}

export class PingShapeError extends Error {
  override readonly name = 'PingShapeError'
}

const isNumberOrNull = (v: unknown): v is number | null => v === null || typeof v === 'number'
const isStringOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string'

export function parsePingReport(value: unknown): PingReport {
  const fail = (what: string): never => {
    throw new PingShapeError(`the agent's ping answer is malformed (${what}); are the CLI and agent the same version?`)
  }
  if (typeof value !== 'object' || value === null) return fail('not an object')
  const v = value as Record<string, unknown>
  const peer = v.peer as Record<string, unknown> | null | undefined
  if (typeof peer !== 'object' || peer === null || typeof peer.id !== 'string' || typeof peer.name !== 'string') return fail('peer')
  if (!isStringOrNull(v.chosen)) return fail('chosen')
  if (!Array.isArray(v.paths)) return fail('paths')
  for (const path of v.paths as unknown[]) {
    const p = path as Record<string, unknown>
    if (typeof p !== 'object' || !isStringOrNull(p.via) || !isStringOrNull(p.viaName)) return fail('path')
    if (p.returnLeg !== 'direct' && p.returnLeg !== 'relay') return fail('return leg')
    if (typeof p.sent !== 'number' || typeof p.received !== 'number' || !isNumberOrNull(p.minMs) || !isNumberOrNull(p.avgMs) || !isNumberOrNull(p.maxMs)) return fail('path figures')
  }
  return value as PingReport
}

const ms = (value: number | null): string => (value === null ? '-' : value.toFixed(1))

/** One row per candidate path; the forward path in use is marked with "*". */
export function formatPing(report: PingReport): string {
  const header = ['', 'PATH', 'RETURN', 'SENT', 'RECEIVED', 'LOSS', 'MIN ms', 'AVG ms', 'MAX ms']
  const rows = report.paths.map((p) => [
    p.via === report.chosen ? '*' : ' ',
    p.via === null ? 'direct' : `via ${p.viaName ?? p.via}`,
    p.returnLeg,
    String(p.sent),
    String(p.received),
    p.sent === 0 ? '-' : `${Math.round((100 * (p.sent - p.received)) / p.sent)}%`,
    ms(p.minMs),
    ms(p.avgMs),
    ms(p.maxMs),
  ])
  const chosen = report.chosen === null ? 'direct' : `via ${report.paths.find((p) => p.via === report.chosen)?.viaName ?? report.chosen}`
  return `ping ${report.peer.name} (${report.peer.id}): forward path in use: ${chosen} (*)\n${alignTable([header, ...rows])}\n`
}
