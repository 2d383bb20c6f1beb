// The canonical binary encoding shared by tokens and signed records.
//
// Why binary and not canonical JSON: every value has exactly one encoding
// (fixed field order, fixed-width big-endian integers, length-prefixed ASCII
// strings, no optional whitespace, no key order, no number formats, no
// duplicate keys), so "decode, then re-encode and compare" proves the bytes
// are canonical and a signature can be checked over exactly the bytes that
// were received. Bounds are explicit in each length prefix, which makes the
// decoder easy to fuzz, and tokens stay short enough to paste.
//
// Layout of every signed object: body ‖ signature(64). body[0] is the object
// kind and body[1] its schema version; the signature is Ed25519 over
// SIGNING_CONTEXT ‖ body, so a signature of one kind can never pass as another.

import { createHash, hkdfSync } from 'node:crypto'

/** Thrown only inside decoders and caught at their edge: never escapes a public decode function. */
export class DecodeError extends Error {
  override readonly name = 'DecodeError'
}

export const SIGNATURE_BYTES = 64
export const PUBLIC_KEY_BYTES = 32
export const SIGNING_CONTEXT = new TextEncoder().encode('meshd signed object v1\0')

/** The first byte of every signed body. */
export const ObjectKind = {
  token: 0x01,
  admission: 0x02,
  peerRecord: 0x03,
  leave: 0x04,
  eviction: 0x05,
} as const
export type ObjectKind = (typeof ObjectKind)[keyof typeof ObjectKind]

/** Largest JavaScript integer we put in a u64 field (timestamps in ms, sequence numbers). */
export const MAX_U64_NUMBER = Number.MAX_SAFE_INTEGER

const textEncoder = new TextEncoder()
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

export class ByteWriter {
  #buffer = new Uint8Array(256)
  #length = 0

  #reserve(extra: number): void {
    if (this.#length + extra <= this.#buffer.length) return
    const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + extra))
    grown.set(this.#buffer.subarray(0, this.#length))
    this.#buffer = grown
  }

  u8(value: number): this {
    assertInteger(value, 0, 0xff)
    this.#reserve(1)
    this.#buffer[this.#length++] = value
    return this
  }

  u16(value: number): this {
    assertInteger(value, 0, 0xffff)
    return this.u8(value >>> 8).u8(value & 0xff)
  }

  u64(value: number): this {
    assertInteger(value, 0, MAX_U64_NUMBER)
    const high = Math.floor(value / 2 ** 32)
    const low = value >>> 0
    for (const word of [high, low]) {
      this.u8(word >>> 24).u8((word >>> 16) & 0xff).u8((word >>> 8) & 0xff).u8(word & 0xff)
    }
    return this
  }

  /** Raw bytes whose length the schema fixes. */
  fixed(bytes: Uint8Array, length: number): this {
    if (bytes.length !== length) throw new RangeError(`expected ${length} bytes, got ${bytes.length}`)
    this.#reserve(length)
    this.#buffer.set(bytes, this.#length)
    this.#length += length
    return this
  }

  /** u16 length prefix, then the bytes. */
  bytes16(bytes: Uint8Array, maxLength: number): this {
    if (bytes.length > maxLength) throw new RangeError(`field of ${bytes.length} bytes exceeds ${maxLength}`)
    return this.u16(bytes.length).fixed(bytes, bytes.length)
  }

  /** u8 length prefix, then ASCII text that must match `pattern`. */
  string8(text: string, field: StringField): this {
    if (!isValidString(text, field)) throw new RangeError(`invalid ${field.name}: ${JSON.stringify(text.slice(0, 80))}`)
    return this.u8(text.length).fixed(textEncoder.encode(text), text.length)
  }

  finish(): Uint8Array {
    return this.#buffer.slice(0, this.#length)
  }
}

export class ByteReader {
  readonly #bytes: Uint8Array
  #offset = 0

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes
  }

  get offset(): number {
    return this.#offset
  }

  u8(): number {
    const value = this.#bytes[this.#offset]
    if (value === undefined) throw new DecodeError(`truncated at byte ${this.#offset}`)
    this.#offset++
    return value
  }

  u16(): number {
    return (this.u8() << 8) | this.u8()
  }

  u64(): number {
    const high = ((this.u8() << 24) | (this.u8() << 16) | (this.u8() << 8) | this.u8()) >>> 0
    const low = ((this.u8() << 24) | (this.u8() << 16) | (this.u8() << 8) | this.u8()) >>> 0
    const value = high * 2 ** 32 + low
    if (value > MAX_U64_NUMBER) throw new DecodeError('integer out of range')
    return value
  }

  fixed(length: number): Uint8Array {
    if (this.#offset + length > this.#bytes.length) throw new DecodeError(`truncated: needed ${length} bytes at ${this.#offset}`)
    const slice = this.#bytes.slice(this.#offset, this.#offset + length)
    this.#offset += length
    return slice
  }

  bytes16(maxLength: number): Uint8Array {
    const length = this.u16()
    if (length > maxLength) throw new DecodeError(`field of ${length} bytes exceeds ${maxLength}`)
    return this.fixed(length)
  }

  string8(field: StringField): string {
    const length = this.u8()
    let text: string
    try {
      text = strictUtf8.decode(this.fixed(length))
    } catch (error) {
      if (error instanceof DecodeError) throw error
      throw new DecodeError(`${field.name} is not UTF-8`)
    }
    if (!isValidString(text, field)) throw new DecodeError(`invalid ${field.name}`)
    return text
  }

  /** A u8 count bounded by `max`. */
  count(max: number, what: string): number {
    const count = this.u8()
    if (count > max) throw new DecodeError(`${count} ${what} exceeds ${max}`)
    return count
  }

  end(): void {
    if (this.#offset !== this.#bytes.length) throw new DecodeError(`${this.#bytes.length - this.#offset} trailing bytes`)
  }
}

/** A bounded ASCII string field: its name (for messages), length bounds and allowed shape. */
export interface StringField {
  readonly name: string
  readonly minLength: number
  readonly maxLength: number
  readonly pattern: RegExp
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/

/** Printable ASCII only, so that text length equals byte length and nothing can hide in a log line. */
export function isValidString(text: string, field: StringField): boolean {
  return PRINTABLE_ASCII.test(text) && text.length >= field.minLength && text.length <= field.maxLength && field.pattern.test(text)
}

function assertInteger(value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`integer ${value} outside [${min}, ${max}]`)
}

// ── Text forms of bytes ──────────────────────────────────────────────────────

const BASE64URL = /^[A-Za-z0-9_-]*$/

/** Strict base64url without padding: anything that does not round-trip exactly (stray bits, bad length) is refused. */
export function decodeBase64Url(text: string): Uint8Array | undefined {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return undefined
  const bytes = Buffer.from(text, 'base64url')
  if (bytes.toString('base64url') !== text) return undefined
  return new Uint8Array(bytes)
}

export function encodeBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url')
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

export function fromHex(text: string, length: number): Uint8Array | undefined {
  if (text.length !== length * 2 || !/^[0-9a-f]*$/.test(text)) return undefined
  return new Uint8Array(Buffer.from(text, 'hex'))
}

const BASE32_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'

/** RFC 4648 base32, lowercase, unpadded: safe in interface names and file names. */
export function toBase32(bytes: Uint8Array): string {
  let bits = 0
  let value = 0
  let out = ''
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += BASE32_ALPHABET[(value >>> (bits - 5)) & 31] ?? ''
      bits -= 5
    }
    value &= (1 << bits) - 1
  }
  if (bits > 0) out += BASE32_ALPHABET[(value << (5 - bits)) & 31] ?? ''
  return out
}

// ── Hashing ──────────────────────────────────────────────────────────────────

/**
 * SHA-256 over a domain label and parts, each length-prefixed so that no two
 * different inputs share a preimage ("ab","c" ≠ "a","bc"). Numbers are u32.
 */
export function domainHash(domain: string, ...parts: readonly (string | number | Uint8Array)[]): Uint8Array {
  const hash = createHash('sha256')
  const writer = new ByteWriter()
  for (const part of [domain, ...parts]) {
    if (typeof part === 'number') {
      writer.u8(0).u16(part >>> 16).u16(part & 0xffff)
      continue
    }
    const bytes = typeof part === 'string' ? textEncoder.encode(part) : part
    writer.u8(typeof part === 'string' ? 1 : 2).bytes16(bytes, 0xffff)
  }
  hash.update(writer.finish())
  return new Uint8Array(hash.digest())
}

/** The first 6 bytes of a hash as an integer (< 2^48, exact in a double). */
export function hashToInteger(hash: Uint8Array): number {
  let value = 0
  for (let i = 0; i < 6; i++) value = value * 256 + (hash[i] ?? 0)
  return value
}

export function hkdfSha256(secret: Uint8Array, info: string, length: number): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', secret, new Uint8Array(0), info, length))
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i])
}

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}
