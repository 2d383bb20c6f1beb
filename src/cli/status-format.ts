// `meshd status` output: the JSON shape the agent answers with (documented in
// docs/status-json.md), its validation at the CLI's edge, and the aligned table.

export type PeerState = 'up' | 'connecting' | 'down'

export interface PeerStatus {
  id: string
  name: string
  addresses: string[]
  state: PeerState
  interface: string | null
  endpoint: string | null
  /** ISO time of the last WireGuard handshake, or null before the first. */
  lastHandshake: string | null
  rxBytes: number
  txBytes: number
  /** The direct link's smoothed RTT, jitter and loss from probing; null until measured. */
  rttMs: number | null
  jitterMs: number | null
  lossPct: number | null
  /** Our forward path to the peer: direct (via null) or through one relay, and the forward delay it saves against direct. */
  path: { via: string | null; forwardSavingMs: number | null }
  /** The path the peer reports it uses towards us; null until it has said. */
  returnPath: { via: string | null } | null
  /** How libp2p (membership, negotiation) reaches the peer: over the underlay, through the pair link, only through a relay, or not at all. */
  control: 'direct' | 'pair-link' | 'relayed' | null
}

export interface StatusReport {
  self: {
    id: string
    name: string
    addresses: string[]
    network: { id: string; name: string }
    wireguardBackend: 'kernel' | 'userspace'
    fallbacks: { feature: string; reason: string }[]
    /** rp_filter meshd sets on its links: loose, so asymmetric paths pass. */
    rpFilter: 'loose'
  }
  peers: PeerStatus[]
}

export class StatusShapeError extends Error {
  override readonly name = 'StatusShapeError'
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string')
}

/** Checks the agent's answer before printing it; a mismatched agent version shows as one clear line. */
export function parseStatusReport(value: unknown): StatusReport {
  const fail = (what: string): never => {
    throw new StatusShapeError(`the agent's status is malformed (${what}); are the CLI and agent the same version?`)
  }
  if (typeof value !== 'object' || value === null) return fail('not an object')
  const { self, peers } = value as { self?: unknown; peers?: unknown }
  if (typeof self !== 'object' || self === null) return fail('no self')
  const s = self as Record<string, unknown>
  if (typeof s.id !== 'string' || typeof s.name !== 'string' || !isStringArray(s.addresses)) return fail('self')
  if (!Array.isArray(peers)) return fail('no peers')
  for (const peer of peers as unknown[]) {
    const p = peer as Record<string, unknown>
    if (typeof p.id !== 'string' || typeof p.name !== 'string' || !isStringArray(p.addresses)) return fail('peer')
    if (p.state !== 'up' && p.state !== 'connecting' && p.state !== 'down') return fail('peer state')
  }
  return value as StatusReport
}

/** "3s", "2m", "1h", "4d"; "-" for never. */
export function formatAge(iso: string | null, now: number): string {
  if (iso === null) return '-'
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  if (seconds < 120) return `${seconds}s`
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`
  return `${Math.round(seconds / 86_400)}d`
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value}B` : `${value.toFixed(1)}${units[unit] ?? ''}`
}

/** Left-aligned columns separated by two spaces; no trailing spaces. */
export function alignTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd()).join('\n')
}

export function formatStatus(report: StatusReport, now: number): string {
  const { self } = report
  const lines = [
    `node      ${self.name} (${self.id})`,
    `network   ${self.network.name} (${self.network.id})`,
    `addresses ${self.addresses.join(', ')}`,
    `wireguard ${self.wireguardBackend}`,
    `rp_filter ${self.rpFilter} on mesh links (asymmetric paths pass)`,
    ...self.fallbacks.map((f) => `fallback  ${f.feature}: ${f.reason}`),
    '',
  ]
  if (report.peers.length === 0) return [...lines, 'no peers yet'].join('\n') + '\n'
  const nameOf = new Map(report.peers.map((p) => [p.id, p.name]))
  const pathName = (via: string | null): string => (via === null ? 'direct' : `via ${nameOf.get(via) ?? via}`)
  const ms = (value: number | null): string => (value === null ? '-' : `${value.toFixed(1)}ms`)
  const header = ['PEER', 'ADDRESS', 'STATE', 'INTERFACE', 'ENDPOINT', 'HANDSHAKE', 'RX', 'TX', 'RTT', 'JITTER', 'LOSS', 'PATH', 'SAVING', 'RETURN']
  const rows = report.peers.map((p) => [
    p.name,
    p.addresses[0] ?? '-',
    p.state,
    p.interface ?? '-',
    p.endpoint ?? '-',
    formatAge(p.lastHandshake, now),
    formatBytes(p.rxBytes),
    formatBytes(p.txBytes),
    ms(p.rttMs),
    ms(p.jitterMs),
    p.lossPct === null ? '-' : `${p.lossPct.toFixed(0)}%`,
    pathName(p.path.via),
    p.path.via === null ? '-' : ms(p.path.forwardSavingMs),
    p.returnPath === null ? '-' : pathName(p.returnPath.via),
  ])
  return [...lines, alignTable([header, ...rows])].join('\n') + '\n'
}
