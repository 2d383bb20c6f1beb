// Errors of the membership protocols, with stable names and codes so that
// callers (the agent, the CLI) can branch on them and counters can use the
// code directly. Messages are built from fixed text, ids and reason lines
// only, never from key material.

/** A peer broke one of meshd's stream protocols (bad frame, bad message, early end). */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError'
  readonly code: string
  constructor(code: string, message: string) {
    super(message)
    this.code = code
  }
}

/** Every bootstrap member refused or could not be reached; `reasons` has one line per address. */
export class JoinRefusedError extends Error {
  override readonly name = 'JoinRefusedError'
  readonly reasons: readonly string[]
  constructor(reasons: readonly string[]) {
    super(reasons.length === 0 ? 'the token lists no bootstrap address' : `join refused: ${reasons.join('; ')}`)
    this.reasons = reasons
  }
}

/** A method was called in a lifecycle state that does not allow it (e.g. publish before start). */
export class NotStartedError extends Error {
  override readonly name = 'NotStartedError'
}
