// Command-line parsing into typed values. Every command declares its options;
// unknown options and bad values become one-line usage errors (exit 2).

import { parseArgs } from 'node:util'
import { DEFAULT_SOCKET_PATH } from '../control/protocol.js'

export const DEFAULT_STATE_DIR = '/var/lib/meshd'

export class UsageError extends Error {
  override readonly name = 'UsageError'
}

export interface GlobalOptions {
  stateDir: string
  socketPath: string
  listen: string[]
  /** LAN discovery by multicast DNS (--mdns or MESHD_MDNS=1). */
  mdns: boolean
  json: boolean
  help: boolean
}

export interface ParsedCommand {
  command: string
  positionals: string[]
  options: Record<string, string | boolean | string[] | undefined>
  global: GlobalOptions
}

const GLOBAL_OPTIONS = {
  'state-dir': { type: 'string' },
  socket: { type: 'string' },
  listen: { type: 'string', multiple: true },
  mdns: { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

export const COMMAND_OPTIONS: Record<string, Record<string, { type: 'string' | 'boolean' }>> = {
  init: { name: { type: 'string' }, cidr: { type: 'string' }, foreground: { type: 'boolean' } },
  join: { foreground: { type: 'boolean' } },
  install: {},
  token: { ttl: { type: 'string' }, uses: { type: 'string' } },
  status: {},
  peers: {},
  up: {},
  down: {},
  leave: {},
  evict: { reason: { type: 'string' } },
  ping: { count: { type: 'string' } },
  agent: {},
  version: {},
  help: {},
}

export function parseCommandLine(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParsedCommand {
  const [first = 'help', ...rest] = argv
  const aliases: Record<string, string> = { '--help': 'help', '-h': 'help', '--version': 'version' }
  const command = aliases[first] ?? first
  const specific = COMMAND_OPTIONS[command]
  if (!specific) throw new UsageError(`unknown command "${command}"; run "meshd help"`)
  let parsed
  try {
    parsed = parseArgs({ args: [...rest], options: { ...GLOBAL_OPTIONS, ...specific }, allowPositionals: true, strict: true })
  } catch (error) {
    // parseArgs' messages are long; keep the first sentence.
    const message = error instanceof Error ? (error.message.split('. ')[0] ?? error.message) : String(error)
    throw new UsageError(`${command}: ${message.replace(/^Unknown option '(.*)'$/, 'unknown option $1')}`)
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>
  const listen = values.listen
  return {
    command,
    positionals: parsed.positionals,
    options: values,
    global: {
      stateDir: (values['state-dir'] as string | undefined) ?? env.MESHD_STATE_DIR ?? DEFAULT_STATE_DIR,
      socketPath: (values.socket as string | undefined) ?? env.MESHD_SOCKET ?? DEFAULT_SOCKET_PATH,
      listen: Array.isArray(listen) ? listen : [],
      mdns: values.mdns === true || parseSwitch(env.MESHD_MDNS, 'MESHD_MDNS'),
      json: values.json === true,
      help: values.help === true,
    },
  }
}

/** An on/off environment variable: unset or empty is off; anything but 1/0/true/false is refused. */
export function parseSwitch(text: string | undefined, name: string): boolean {
  if (text === undefined || text === '' || text === '0' || text === 'false') return false
  if (text === '1' || text === 'true') return true
  throw new UsageError(`${name} must be 1 or 0 (true or false), not "${text.slice(0, 20)}"`)
}

/** "90s", "30m", "24h", "7d" → milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d{1,6})(s|m|h|d)$/.exec(text)
  if (!match) throw new UsageError(`"${text}" is not a duration like 90s, 30m, 24h or 7d`)
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 's' | 'm' | 'h' | 'd']
  const ms = Number(match[1]) * unit
  if (ms <= 0) throw new UsageError('duration must be positive')
  return ms
}

export function parseCount(text: string, what: string): number {
  if (!/^\d{1,6}$/.test(text) || Number(text) < 1) throw new UsageError(`${what} must be a whole number from 1`)
  return Number(text)
}
