import { Writable } from 'node:stream'
import { pino, type Logger, type DestinationStream } from 'pino'
import { SECRET_FIELD_NAMES } from './secret.js'

export type { Logger } from 'pino'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export class LogLevelError extends Error {
  override readonly name = 'LogLevelError'
}

/**
 * MESHD_LOG_LEVEL validated at the edge: unset or empty means the default;
 * anything else must be one of pino's level names.
 */
export function parseLogLevel(text: string | undefined, fallback: LogLevel): LogLevel {
  if (text === undefined || text.trim() === '') return fallback
  const level = text.trim().toLowerCase()
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel
  throw new LogLevelError(`MESHD_LOG_LEVEL "${text}" is not one of ${LOG_LEVELS.join(', ')}`)
}

export interface LoggerOptions {
  /** A level name; unset or empty means info (see parseLogLevel). */
  level?: string
  /** Where lines go; stdout by default (journald reads it). */
  destination?: NodeJS.WritableStream
  /** Human-readable lines; by default only when the destination is a TTY. */
  pretty?: boolean
}

// pino's redaction takes explicit paths; cover the secret names at the depths
// meshd objects nest to (top level, one and two levels down, and in arrays).
export const REDACT_PATHS: string[] = SECRET_FIELD_NAMES.flatMap((name) => [
  name,
  `*.${name}`,
  `*.*.${name}`,
  `*[*].${name}`,
  `*.*[*].${name}`,
  `err.${name}`,
])

/** Creates the one logger of a process. Call it at the entry point only and pass it down. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? process.stdout
  const pretty = options.pretty ?? ('isTTY' in destination && destination.isTTY)
  const stream: DestinationStream = pretty ? prettyStream(destination) : destination
  return pino(
    {
      level: parseLogLevel(options.level, 'info'),
      base: undefined,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  )
}

/** A small human formatter for terminals: "12:00:01 INFO  message key=value". */
export function formatPrettyLine(line: string): string {
  let record: Record<string, unknown>
  try {
    record = JSON.parse(line) as Record<string, unknown>
  } catch {
    return line
  }
  const { time, level, msg, ...rest } = record
  const clock = typeof time === 'string' ? time.slice(11, 19) : ''
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ')
  const levelLabel = typeof level === 'string' ? level.toUpperCase() : 'INFO'
  const message = typeof msg === 'string' ? msg : ''
  return `${clock} ${levelLabel.padEnd(5)} ${message}${fields ? ' ' + fields : ''}`
}

function prettyStream(out: NodeJS.WritableStream): DestinationStream {
  let pending = ''
  const writable = new Writable({
    write(chunk: Buffer, _encoding, done) {
      pending += chunk.toString('utf8')
      let newline = pending.indexOf('\n')
      while (newline >= 0) {
        out.write(formatPrettyLine(pending.slice(0, newline)) + '\n')
        pending = pending.slice(newline + 1)
        newline = pending.indexOf('\n')
      }
      done()
    },
  })
  return writable
}
