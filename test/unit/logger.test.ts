import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger, formatPrettyLine, LogLevelError, parseLogLevel } from '../../src/logging/logger.js'
import { Secret } from '../../src/logging/secret.js'

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString('utf8'))
      done()
    },
  })
  return { stream, text: () => chunks.join('') }
}

// A WireGuard private key (base64 of 32 bytes) that must never reach a log line.
const PRIVATE_KEY = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk='

describe('logger', () => {
  it('writes one JSON object per line with level, time and message', () => {
    const out = capture()
    const log = createLogger({ destination: out.stream, pretty: false })
    log.info({ peer: 'b' }, 'link up')
    const lines = out.text().trim().split('\n')
    expect(lines).toHaveLength(1)
    const record = JSON.parse(lines[0] ?? '') as Record<string, unknown>
    expect(record).toMatchObject({ level: 'info', msg: 'link up', peer: 'b' })
    expect(typeof record.time).toBe('string')
  })

  it('never writes a private key, however it is nested', () => {
    const out = capture()
    const log = createLogger({ destination: out.stream, pretty: false, level: 'trace' })
    log.info({ privateKey: PRIVATE_KEY }, 'top level')
    log.info({ device: { privateKey: PRIVATE_KEY } }, 'nested')
    log.info({ desired: { devices: { wg0: { privateKey: PRIVATE_KEY } } } }, 'deeper')
    log.info({ peers: [{ presharedKey: PRIVATE_KEY }] }, 'in an array')
    log.info({ key: new Secret(PRIVATE_KEY) }, 'wrapped in Secret')
    log.debug({ net: { secret: PRIVATE_KEY, token: PRIVATE_KEY } }, 'network secret and token')
    const text = out.text()
    expect(text.split('\n').filter(Boolean)).toHaveLength(6)
    expect(text).not.toContain(PRIVATE_KEY)
    expect(text).toContain('[redacted]')
  })

  it('keeps secrets out of string conversion and inspection too', () => {
    const key = new Secret(PRIVATE_KEY)
    expect(String(key)).toBe('[redacted]')
    expect(JSON.stringify({ key })).toBe('{"key":"[redacted]"}')
    expect(key.reveal()).toBe(PRIVATE_KEY)
  })

  it('formats lines for a terminal', () => {
    const line = JSON.stringify({ level: 'warn', time: '2026-11-22T10:11:12.000Z', msg: 'path changed', dst: 'c' })
    expect(formatPrettyLine(line)).toBe('10:11:12 WARN  path changed dst=c')
  })

  it('is human-readable when asked to be pretty', () => {
    const out = capture()
    createLogger({ destination: out.stream, pretty: true }).info({ a: 1 }, 'hello')
    expect(out.text()).toMatch(/^\d\d:\d\d:\d\d INFO {2}hello a=1\n$/)
  })
})

describe('parseLogLevel (MESHD_LOG_LEVEL at the edge)', () => {
  it.each([
    [undefined, 'info'],
    ['', 'info'],
    ['  ', 'info'],
    ['debug', 'debug'],
    ['WARN', 'warn'],
    ['silent', 'silent'],
  ])('%j gives %s', (text, level) => {
    expect(parseLogLevel(text, 'info')).toBe(level)
  })

  it('refuses an unknown level naming the variable and the allowed names', () => {
    expect(() => parseLogLevel('verbose', 'info')).toThrow(LogLevelError)
    expect(() => parseLogLevel('verbose', 'info')).toThrow('MESHD_LOG_LEVEL "verbose" is not one of fatal, error, warn, info, debug, trace, silent')
  })

  it('an empty level makes a working logger at the default level', () => {
    const out = capture()
    const log = createLogger({ destination: out.stream, pretty: false, level: '' })
    log.info('still logs')
    log.debug('not at info')
    expect(out.text().trim().split('\n')).toHaveLength(1)
  })
})
