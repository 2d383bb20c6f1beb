import { inspect } from 'node:util'

const REDACTED = '[redacted]'

/**
 * Wraps key material so it cannot leak by accident: JSON, string conversion and
 * util.inspect all print "[redacted]". Only `reveal()` gives the value, and only
 * the code that hands it to the kernel or to a cipher should call it.
 */
export class Secret<T = Uint8Array | string> {
  readonly #value: T
  constructor(value: T) {
    this.#value = value
  }
  reveal(): T {
    return this.#value
  }
  toJSON(): string {
    return REDACTED
  }
  toString(): string {
    return REDACTED
  }
  [inspect.custom](): string {
    return REDACTED
  }
}

/** Field names that hold secrets wherever they appear; the logger censors them. */
export const SECRET_FIELD_NAMES = [
  'privateKey',
  'presharedKey',
  'secret',
  'networkSecret',
  'psk',
  'token',
  'seed',
] as const
