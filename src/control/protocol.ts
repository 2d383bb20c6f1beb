// The control protocol between `meshd <command>` and the agent: one JSON
// request line, one JSON response line, over a unix socket (mode 0600).

export const DEFAULT_SOCKET_PATH = '/run/meshd/meshd.sock'
/** Requests and responses larger than this are refused: nothing legitimate comes near it. */
export const MAX_LINE_BYTES = 1024 * 1024

export const CONTROL_METHODS = ['status', 'token.create', 'down', 'up', 'leave', 'evict', 'ping'] as const
export type ControlMethod = (typeof CONTROL_METHODS)[number]

export interface ControlRequest {
  method: ControlMethod
  params: Record<string, unknown>
}

export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: string; code?: string }

export class ControlProtocolError extends Error {
  override readonly name = 'ControlProtocolError'
}

/** Validates one request line into a typed request; throws ControlProtocolError with one line of why. */
export function decodeRequest(line: string): ControlRequest {
  if (Buffer.byteLength(line) > MAX_LINE_BYTES) throw new ControlProtocolError('request too large')
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    throw new ControlProtocolError('request is not JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ControlProtocolError('request is not an object')
  const { method, params } = value as { method?: unknown; params?: unknown }
  if (typeof method !== 'string' || !(CONTROL_METHODS as readonly string[]).includes(method)) throw new ControlProtocolError(`unknown method ${JSON.stringify(method)}`)
  if (params !== undefined && (typeof params !== 'object' || params === null || Array.isArray(params))) throw new ControlProtocolError('params must be an object')
  return { method: method as ControlMethod, params: (params ?? {}) as Record<string, unknown> }
}

export function decodeResponse(line: string): ControlResponse {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    throw new ControlProtocolError('agent answered something that is not JSON')
  }
  if (typeof value !== 'object' || value === null) throw new ControlProtocolError('agent answered something that is not an object')
  const response = value as { ok?: unknown; result?: unknown; error?: unknown; code?: unknown }
  if (response.ok === true) return { ok: true, result: response.result }
  if (response.ok === false && typeof response.error === 'string') return { ok: false, error: response.error, ...(typeof response.code === 'string' ? { code: response.code } : {}) }
  throw new ControlProtocolError('agent answered a malformed response')
}
