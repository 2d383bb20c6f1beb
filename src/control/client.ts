// The CLI's side of the control socket: one request, one response.

import { connect } from 'node:net'
import { decodeResponse, MAX_LINE_BYTES, type ControlMethod } from './protocol.js'

/** No agent is listening on the socket. */
export class AgentNotRunning extends Error {
  override readonly name = 'AgentNotRunning'
  constructor(readonly socketPath: string) {
    super(`no meshd agent is running (nothing listens on ${socketPath}); start it with "systemctl start meshd" or "meshd agent"`)
  }
}

/** The agent refused or failed the request; the message is one line meant for the user. */
export class AgentError extends Error {
  override readonly name = 'AgentError'
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message)
  }
}

export async function callAgent(socketPath: string, method: ControlMethod, params: Record<string, unknown>, options: { signal: AbortSignal; timeoutMs?: number }): Promise<unknown> {
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs ?? 30_000)])
  const line = await new Promise<string>((resolve, reject) => {
    const socket = connect(socketPath)
    let buffer = ''
    const onAbort = (): void => {
      socket.destroy()
      reject(new AgentError(`the agent did not answer "${method}" in time`, 'timeout'))
    }
    signal.addEventListener('abort', onAbort, { once: true })
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write(JSON.stringify({ method, params }) + '\n'))
    socket.on('data', (chunk: string) => {
      buffer += chunk
      if (buffer.length > MAX_LINE_BYTES) socket.destroy(new Error('response too large'))
    })
    socket.on('end', () => {
      signal.removeEventListener('abort', onAbort)
      resolve(buffer.trim())
    })
    socket.on('error', (error: NodeJS.ErrnoException) => {
      signal.removeEventListener('abort', onAbort)
      if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED') reject(new AgentNotRunning(socketPath))
      else if (error.code === 'EACCES') reject(new AgentError(`cannot open ${socketPath}: permission denied (run as root)`, 'permission'))
      else reject(error)
    })
  })
  const response = decodeResponse(line)
  if (!response.ok) throw new AgentError(response.error, response.code)
  return response.result
}
