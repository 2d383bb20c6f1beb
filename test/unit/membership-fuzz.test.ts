// Fuzzing the decoders of everything that crosses the wire or a clipboard:
// random input, truncations, bit flips of valid encodings, and oversized or
// out-of-range fields that are correctly signed. Decoders must never throw
// and must never accept a mutated signed object. Seeds are fixed, so a
// failure reproduces.

import { describe, expect, it } from 'vitest'
import { ByteWriter, ObjectKind, SIGNATURE_BYTES, decodeBase64Url, encodeBase64Url, fromHex } from '../../src/membership/codec.js'
import { publicKeyOfNodeId, type Signer } from '../../src/membership/keys.js'
import { acceptRecord, createRecordStore } from '../../src/membership/record-store.js'
import { decodeAdmission, decodeRecord, signAdmission, signEviction, signLeave } from '../../src/membership/records.js'
import { createToken, parseToken, type InviteId } from '../../src/membership/token.js'
import { NOW, countingRandom, labNetwork, peerRecord, prng, seededSigner } from './membership-fixtures.js'

const founder = seededSigner(1)
const alice = seededSigner(2)
const carol = seededSigner(4)
const network = labNetwork(founder)
const INVITE = '000102030405060708090a0b0c0d0e0f' as InviteId
const aliceChain = [signAdmission(founder, { networkId: network.id, joiner: alice.nodeId, inviteId: INVITE, issuedAt: NOW, expiresAt: null })]
const validToken = createToken({ network, issuer: founder, bootstrap: ['/ip4/192.0.2.1/tcp/4001'], now: NOW, random: countingRandom(3) }).reveal()
const validRecord = peerRecord(alice, network, aliceChain).bytes
const validLeave = signLeave(alice, { networkId: network.id, seq: NOW + 1, admissions: aliceChain }).bytes
const validEviction = signEviction(founder, { networkId: network.id, evicted: alice.nodeId, at: NOW, reason: 'test', admissions: [] }).bytes
const validAdmission = aliceChain[0]?.bytes ?? new Uint8Array(0)

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const copy = bytes.slice()
  copy[bit >> 3] = (copy[bit >> 3] ?? 0) ^ (0x80 >> (bit & 7))
  return copy
}

/** Runs every decoder that could see these bytes; each must return a value, and none may accept. */
function expectAllRefuse(bytes: Uint8Array): void {
  const store = createRecordStore(network)
  const record = decodeRecord(bytes)
  const step = acceptRecord(store, bytes, NOW)
  expect(record.ok).toBe(false)
  expect(step.outcome.accepted).toBe(false)
  expect(step.state).toBe(store)
}

describe('token decoder fuzz', () => {
  it('random text never throws and is never accepted', () => {
    const random = prng(101)
    const alphabet = 'meshd1.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_ \n\t=+/\u00e9\u0000'
    for (let i = 0; i < 3000; i++) {
      const length = random.int(600)
      let text = random.next() < 0.5 ? 'meshd1.' : ''
      for (let j = 0; j < length; j++) text += alphabet[random.int(alphabet.length)] ?? ''
      expect(parseToken(text, { now: NOW }).ok).toBe(false)
    }
  })

  it('random payload bytes behind a valid header are never accepted', () => {
    const random = prng(102)
    for (let i = 0; i < 2000; i++) {
      expect(parseToken(`meshd1.${encodeBase64Url(random.bytes(random.int(700)))}`, { now: NOW }).ok).toBe(false)
    }
  })

  it('every truncation of a valid token is refused', () => {
    for (let length = 0; length < validToken.length; length++) {
      expect(parseToken(validToken.slice(0, length), { now: NOW }).ok).toBe(false)
    }
  })

  it('every single-bit flip of a valid token’s bytes is refused', () => {
    const bytes = decodeBase64Url(validToken.slice('meshd1.'.length)) ?? new Uint8Array(0)
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const result = parseToken(`meshd1.${encodeBase64Url(flipBit(bytes, bit))}`, { now: NOW })
      expect(result.ok, `bit ${bit}`).toBe(false)
    }
  })

  it('random character substitutions in the text are refused', () => {
    const random = prng(103)
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    for (let i = 0; i < 2000; i++) {
      const at = 'meshd1.'.length + random.int(validToken.length - 'meshd1.'.length)
      const replacement = alphabet[random.int(alphabet.length)] ?? 'A'
      if (replacement === validToken[at]) continue
      const mutated = `${validToken.slice(0, at)}${replacement}${validToken.slice(at + 1)}`
      expect(parseToken(mutated, { now: NOW }).ok).toBe(false)
    }
  })

  it('refuses correctly signed tokens whose fields are out of bounds', () => {
    const cases: Record<string, Partial<TokenKnobs>> = {
      'nine bootstrap addresses': { bootstrap: Array.from({ length: 9 }, () => '/ip4/192.0.2.1/tcp/1') },
      'a 64-character name': { name: 'x'.repeat(64) },
      'a name with a space': { name: 'a b' },
      'zero uses': { maxUses: 0 },
      'too many uses': { maxUses: 1001 },
      'expiry before issue': { expiresAt: NOW - 1 },
      'a 31-day lifetime': { expiresAt: NOW + 31 * 86_400_000 },
      'a /30 overlay': { prefix: 30 },
      'a bootstrap address without a slash': { bootstrap: ['ip4/1.2.3.4'] },
      'a trailing byte': { trailing: true },
      'an integer beyond 2^53': { issuedAtHigh: 0x00400000 },
      'another object kind': { kind: ObjectKind.peerRecord },
    }
    for (const [name, knobs] of Object.entries(cases)) {
      const result = parseToken(craftToken(founder, knobs), { now: NOW })
      expect(result, name).toMatchObject({ ok: false, code: 'malformed' })
    }
    // The crafting itself is right: with no knobs it yields a valid token.
    expect(parseToken(craftToken(founder, {}), { now: NOW }).ok).toBe(true)
  })
})

describe('record decoder fuzz', () => {
  it('random bytes never throw and are never accepted', () => {
    const random = prng(201)
    for (let i = 0; i < 3000; i++) {
      const bytes = random.bytes(random.int(600))
      // Half of the inputs start like a real record, to get past the first checks.
      if (random.next() < 0.5 && bytes.length > 2) bytes.set([ObjectKind.peerRecord + random.int(3), 1])
      expectAllRefuse(bytes)
      expect(decodeAdmission(bytes).ok).toBe(false)
    }
  })

  for (const [name, valid] of [
    ['peer record', validRecord],
    ['leave', validLeave],
    ['eviction', validEviction],
  ] as const) {
    it(`every truncation and extension of a ${name} is refused`, () => {
      for (let length = 0; length < valid.length; length++) expectAllRefuse(valid.subarray(0, length))
      expectAllRefuse(Uint8Array.from([...valid, 0]))
    })

    it(`every single-bit flip of a ${name} is refused`, () => {
      expect(acceptRecord(createRecordStore(network), valid, NOW).outcome.accepted).toBe(true)
      for (let bit = 0; bit < valid.length * 8; bit++) expectAllRefuse(flipBit(valid, bit))
    })
  }

  it('every single-bit flip of an admission is refused', () => {
    expect(decodeAdmission(validAdmission).ok).toBe(true)
    for (let bit = 0; bit < validAdmission.length * 8; bit++) expect(decodeAdmission(flipBit(validAdmission, bit)).ok, `bit ${bit}`).toBe(false)
  })

  it('random multi-byte corruption of a record is refused', () => {
    const random = prng(202)
    for (let i = 0; i < 2000; i++) {
      const bytes = validRecord.slice()
      const edits = 1 + random.int(8)
      for (let j = 0; j < edits; j++) bytes[random.int(bytes.length)] = random.int(256)
      if (bytes.every((byte, k) => byte === validRecord[k])) continue
      expectAllRefuse(bytes)
    }
  })

  it('refuses correctly signed records whose fields are out of bounds or not canonical', () => {
    const cases: Record<string, Partial<RecordKnobs>> = {
      '17 endpoints': { endpoints: 17 },
      '65 routes': { routes: 65 },
      '65 link RTTs': { linkRttPeers: Array.from({ length: 65 }, (_, i) => seededSigner(100 + i).publicKey) },
      'a link RTT listed twice': { linkRttPeers: [carol.publicKey, carol.publicKey] },
      'a link RTT to the node itself': { linkRttPeers: [alice.publicKey] },
      '9 admissions': { admissions: 9 },
      'a 254-character hostname': { hostname: 'h'.repeat(254) },
      'a hostname with a newline': { hostname: 'a\nb' },
      'duplicate link kinds': { linkKinds: [0, 0] },
      'an unknown link kind': { linkKinds: [7] },
      'an unknown WireGuard backend': { backend: 2 },
      'endpoint port 0': { port: 0 },
      'an unknown endpoint source': { source: 3 },
      'address family 5': { family: 5 },
      'a route with host bits': { routePrefix: 8 },
      'a route prefix beyond 32': { routePrefix: 33 },
      'a trailing byte': { trailing: true },
      'schema version 2': { version: 2 },
      'a sequence beyond 2^53': { seqHigh: 0x00200000 },
      'a record over 8 KiB': { padHostnames: true },
    }
    for (const [name, knobs] of Object.entries(cases)) {
      const bytes = craftRecord(alice, knobs)
      expect(decodeRecord(bytes), name).toMatchObject({ ok: false, reason: 'malformed' })
      expect(acceptRecord(createRecordStore(network), bytes, NOW).outcome, name).toMatchObject({ accepted: false, reason: 'malformed' })
    }
    expect(decodeRecord(craftRecord(alice, {})).ok).toBe(true)
  })

  it('never accepts a record whose outer signature was swapped for another valid one', () => {
    const other = peerRecord(alice, network, aliceChain, { hostname: 'other' }).bytes
    const spliced = Uint8Array.from([...validRecord.subarray(0, validRecord.length - SIGNATURE_BYTES), ...other.subarray(other.length - SIGNATURE_BYTES)])
    expect(decodeRecord(spliced)).toMatchObject({ ok: false, reason: 'bad-signature' })
  })
})

// ── Crafting correctly signed but invalid encodings ──────────────────────────

interface TokenKnobs {
  kind: number
  name: string
  prefix: number
  bootstrap: string[]
  issuedAtHigh: number
  expiresAt: number
  maxUses: number
  trailing: boolean
}

/** The token layout of src/membership/token.ts written by hand, with knobs that break one rule each. */
function craftToken(issuer: Signer, knobs: Partial<TokenKnobs>): string {
  const k: TokenKnobs = { kind: ObjectKind.token, name: network.name, prefix: 16, bootstrap: [], issuedAtHigh: 0, expiresAt: NOW + 1000, maxUses: 1, trailing: false, ...knobs }
  const w = new ByteWriter().u8(k.kind).u8(1).fixed(fromHex(network.id, 16) ?? new Uint8Array(16), 16)
  rawString(w, k.name)
  w.fixed(network.secret.reveal(), 32).fixed(publicKeyOfNodeId(network.founder), 32).fixed(Uint8Array.of(10, 73, 0, 0), 4).u8(k.prefix)
  w.fixed(Uint8Array.of(0xfd, 0xa0, 0x4a, 0x09, 0xfe, 0x7b), 6).u8(k.bootstrap.length)
  for (const address of k.bootstrap) rawString(w, address)
  if (k.issuedAtHigh !== 0) w.u16(k.issuedAtHigh >>> 16).u16(k.issuedAtHigh & 0xffff).u16(0).u16(0)
  else w.u64(NOW)
  w.u64(Math.max(0, k.expiresAt)).u16(k.maxUses).fixed(new Uint8Array(16), 16).fixed(issuer.publicKey, 32)
  if (k.trailing) w.u8(0)
  const body = w.finish()
  return `meshd1.${encodeBase64Url(Uint8Array.from([...body, ...issuer.signBody(body)]))}`
}

interface RecordKnobs {
  version: number
  seqHigh: number
  hostname: string
  endpoints: number
  family: number
  port: number
  source: number
  linkKinds: number[]
  backend: number
  routes: number
  routePrefix: number
  admissions: number
  /** Public keys of the link RTT entries (u16 ms each). */
  linkRttPeers: Uint8Array[]
  trailing: boolean
  padHostnames: boolean
}

/** The peer-record layout of src/membership/records.ts written by hand, with knobs that break one rule each. */
function craftRecord(node: Signer, knobs: Partial<RecordKnobs>): Uint8Array {
  const k: RecordKnobs = {
    version: 1, seqHigh: 0, hostname: 'host', endpoints: 1, family: 4, port: 51820, source: 0, linkKinds: [0], backend: 0,
    routes: 1, routePrefix: 24, admissions: 1, linkRttPeers: [carol.publicKey], trailing: false, padHostnames: false, ...knobs,
  }
  const w = new ByteWriter().u8(ObjectKind.peerRecord).u8(k.version).fixed(fromHex(network.id, 16) ?? new Uint8Array(16), 16).fixed(node.publicKey, 32)
  if (k.seqHigh !== 0) w.u16(k.seqHigh >>> 16).u16(k.seqHigh & 0xffff).u16(0).u16(0)
  else w.u64(NOW)
  w.u64(NOW + 60_000)
  rawString(w, k.hostname)
  w.fixed(Uint8Array.of(10, 73, 1, 1), 4).fixed(Uint8Array.of(0xfd, 0xa0, 0x4a, 0x09, 0xfe, 0x7b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1), 16).fixed(new Uint8Array(32).fill(9), 32)
  w.u8(k.endpoints)
  for (let i = 0; i < k.endpoints; i++) w.u8(k.family).fixed(Uint8Array.of(192, 0, 2, i), 4).u16(k.port).u8(k.source)
  w.u8(k.linkKinds.length)
  for (const kind of k.linkKinds) w.u8(kind)
  w.u8(k.backend).u8(k.routes)
  for (let i = 0; i < k.routes; i++) w.u8(4).fixed(Uint8Array.of(10, 20, i, 0), 4).u8(k.routePrefix)
  w.u8(k.linkRttPeers.length)
  for (const peer of k.linkRttPeers) w.fixed(peer, 32).u16(12)
  w.u8(k.admissions)
  for (let i = 0; i < k.admissions; i++) w.bytes16(validAdmission, 512)
  if (k.padHostnames) for (let i = 0; i < 40; i++) w.bytes16(validAdmission, 512) // pushes the record past MAX_RECORD_BYTES
  if (k.trailing) w.u8(0)
  const body = w.finish()
  return Uint8Array.from([...body, ...node.signBody(body)])
}

/** u8 length and raw bytes, bypassing the writer's own validation. */
function rawString(w: ByteWriter, text: string): void {
  const bytes = new TextEncoder().encode(text)
  w.u8(Math.min(bytes.length, 255)).fixed(bytes.subarray(0, 255), Math.min(bytes.length, 255))
}
