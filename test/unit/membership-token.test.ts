import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { decodeBase64Url, encodeBase64Url, toHex } from '../../src/membership/codec.js'
import type { NetworkId } from '../../src/membership/network.js'
import { DEFAULT_TOKEN_TTL_MS, createToken, parseToken, type CreateTokenInit } from '../../src/membership/token.js'
import { NOW, countingRandom, labNetwork, seededSigner } from './membership-fixtures.js'

const network = labNetwork()
const issuer = seededSigner(1)
const BOOTSTRAP = ['/ip4/192.0.2.10/tcp/4001/p2p/12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5', '/dns4/mesh.example.org/tcp/4001']

function token(overrides: Partial<CreateTokenInit> = {}): string {
  return createToken({ network, issuer, bootstrap: BOOTSTRAP, now: NOW, random: countingRandom(100), ...overrides }).reveal()
}

/** Rewrites one byte of the signed payload, keeping the signature: a tampered token. */
function tamper(text: string, offsetFromBodyEnd: number, value: number): string {
  const bytes = decodeBase64Url(text.slice('meshd1.'.length)) ?? new Uint8Array(0)
  bytes[bytes.length - 64 - offsetFromBodyEnd] = value
  return `meshd1.${encodeBase64Url(bytes)}`
}

describe('token format', () => {
  // Cross-checked by an independent Python decoder (struct + cryptography's Ed25519) of the layout in src/membership/token.ts.
  it('pins the exact text for fixed inputs', () => {
    expect(token()).toBe(
      'meshd1.AQF9XOjQjyaOajG5IbbHBGZxA2xhYgABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fiojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1wKSQAAEP2gSgn-ewJRL2lwNC8xOTIuMC4yLjEwL3RjcC80MDAxL3AycC8xMkQzS29vV0s5OVZvVnhORTdYenlCd1hFelc3eGhLN0dwdjg1cjlGM1YzZnlLU1VLUEg1Hy9kbnM0L21lc2guZXhhbXBsZS5vcmcvdGNwLzQwMDEAAAGUHyl8AAAAAZQkT9gAAAFkZWZnaGlqa2xtbm9wcXJziojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w5esyrtWve59Mt3zBQ-aoCX-dt93PyVF112YuXxnTotKW0pnKvZjc8KScMRSHuX81ZGi5lssAlriWq2mVGWaMN',
    )
  })

  it('is one line of URL-safe characters', () => {
    expect(token()).toMatch(/^meshd1\.[A-Za-z0-9_-]+$/)
  })

  it('round-trips every field', () => {
    const result = parseToken(token({ maxUses: 3, ttlMs: 3_600_000 }), { now: NOW + 1, expectedNetworkId: network.id })
    expect(result.ok).toBe(true)
    if (!result.ok) return
    const parsed = result.token
    expect(parsed.network.id).toBe(network.id)
    expect(parsed.network.name).toBe('lab')
    expect(parsed.network.founder).toBe(network.founder)
    expect(parsed.network.ipv4Cidr).toBe('10.73.0.0/16')
    expect(parsed.network.ipv6Ula).toBe(network.ipv6Ula)
    expect(toHex(parsed.network.secret.reveal())).toBe(toHex(network.secret.reveal()))
    expect(parsed.bootstrap).toEqual(BOOTSTRAP)
    expect(parsed.issuedAt).toBe(NOW)
    expect(parsed.expiresAt).toBe(NOW + 3_600_000)
    expect(parsed.maxUses).toBe(3)
    expect(parsed.inviteId).toBe('6465666768696a6b6c6d6e6f70717273')
    expect(parsed.issuer).toBe(issuer.nodeId)
    expect(parsed.issuerPublicKey).toEqual(issuer.publicKey)
  })

  it('defaults to 24 hours and one use', () => {
    const result = parseToken(token(), { now: NOW })
    expect(result.ok && [result.token.expiresAt - result.token.issuedAt, result.token.maxUses]).toEqual([DEFAULT_TOKEN_TTL_MS, 1])
  })

  it('tolerates whitespace and line breaks from copy and paste', () => {
    const wrapped = `\n  ${token().replace(/(.{60})/g, '$1\n')}  \r\n`
    expect(parseToken(wrapped, { now: NOW }).ok).toBe(true)
  })

  it('is a secret: JSON and inspect print [redacted]', () => {
    const secret = createToken({ network, issuer, bootstrap: [], now: NOW, random: countingRandom(0) })
    expect(JSON.stringify({ token: secret })).toBe('{"token":"[redacted]"}')
    expect(inspect(secret)).toBe('[redacted]')
    const parsed = parseToken(secret.reveal(), { now: NOW })
    expect(parsed.ok && JSON.stringify(parsed.token)).not.toContain(toHex(network.secret.reveal()))
  })

  it('refuses arguments no token can carry', () => {
    expect(() => token({ maxUses: 0 })).toThrow(RangeError)
    expect(() => token({ ttlMs: 0 })).toThrow(RangeError)
    expect(() => token({ bootstrap: ['not a multiaddr'] })).toThrow(RangeError)
    expect(() => token({ bootstrap: Array.from({ length: 9 }, () => '/ip4/192.0.2.1/tcp/1') })).toThrow(RangeError)
  })
})

describe('parseToken refusals: one clear line each', () => {
  const valid = token()
  const cases: { name: string; text: string; now?: number; expected?: NetworkId; code: string; reason: string; detail?: string }[] = [
    { name: 'empty', text: '', code: 'not-meshd', reason: 'not a meshd token (a token starts with "meshd1.")' },
    { name: 'something else', text: 'ssh-ed25519 AAAAC3Nza', code: 'not-meshd', reason: 'not a meshd token (a token starts with "meshd1.")' },
    { name: 'wrong prefix case', text: valid.replace('meshd1', 'MESHD1'), code: 'not-meshd', reason: 'not a meshd token (a token starts with "meshd1.")' },
    {
      name: 'a future version',
      text: valid.replace('meshd1.', 'meshd2.'),
      code: 'unknown-version',
      reason: 'token version 2 is not supported (this meshd reads version 1); upgrade meshd or ask for a version 1 token',
    },
    { name: 'bad base64', text: `${valid.slice(0, 40)}*${valid.slice(41)}`, code: 'malformed', reason: 'token is truncated or corrupted (invalid base64url); copy the whole line again' },
    { name: 'header only', text: 'meshd1.', code: 'malformed', reason: 'token is truncated (too short); copy the whole line again' },
    {
      name: 'truncated',
      text: valid.slice(0, -8),
      code: 'malformed',
      reason: 'token is truncated or corrupted; copy the whole line again',
      detail: 'truncated: needed 32 bytes at 246',
    },
    { name: 'extended', text: `${valid}AAAA`, code: 'malformed', reason: 'token is truncated or corrupted; copy the whole line again', detail: '3 trailing bytes' },
    { name: 'tampered uses', text: tamper(valid, 32 + 16 + 1, 0x09), code: 'bad-signature', reason: 'token signature does not verify: the token was altered' },
    {
      name: 'tampered issuer key',
      text: tamper(valid, 1, 0x00),
      code: 'bad-signature',
      reason: 'token signature does not verify: the token was altered',
    },
    {
      name: 'another network',
      text: valid,
      expected: '00000000000000000000000000000000' as NetworkId,
      code: 'wrong-network',
      reason: 'token is for network "lab" (7d5ce8d08f268e6a31b921b6c7046671), not this network (00000000000000000000000000000000)',
    },
    { name: 'expired', text: valid, now: NOW + DEFAULT_TOKEN_TTL_MS, code: 'expired', reason: 'token expired at 2025-01-02T00:00:00.000Z; ask a member for a new one' },
    {
      name: 'an id that does not match its contents',
      text: token({ network: { ...network, id: 'ffffffffffffffffffffffffffffffff' as NetworkId } }),
      code: 'malformed',
      reason: 'token is inconsistent: its network id does not match its contents',
    },
  ]
  for (const c of cases) {
    it(c.name, () => {
      const result = parseToken(c.text, { now: c.now ?? NOW, ...(c.expected === undefined ? {} : { expectedNetworkId: c.expected }) })
      expect(result).toEqual({ ok: false, code: c.code, reason: c.reason, ...(c.detail === undefined ? {} : { detail: c.detail }) })
    })
  }

  it('does not throw on values that are not strings', () => {
    const values: unknown[] = [undefined, null, 42, {}, ['meshd1.'], new Uint8Array(3)]
    for (const value of values) {
      expect(parseToken(value as string, { now: NOW })).toMatchObject({ ok: false, code: 'not-meshd' })
    }
  })

  it('refuses base64 with stray low bits (two texts must not decode to one token)', () => {
    // The last character carries 4 unused bits here; setting one must not be accepted as the same token.
    const body = valid.slice('meshd1.'.length)
    const last = body.at(-1) ?? 'A'
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const sibling = alphabet[alphabet.indexOf(last) ^ 1] ?? 'A'
    const result = parseToken(`meshd1.${body.slice(0, -1)}${sibling}`, { now: NOW })
    expect(result.ok).toBe(false)
  })
})
