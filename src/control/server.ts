// The agent's side of the control socket. Handlers are injected; the server
// only frames, validates and answers. The socket is created 0600 (root only).

import { chmod, mkdir, rm } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import { ControlProtocolError, MAX_LINE_BYTES, decodeRequest, type ControlMethod, type ControlResponse } from './protocol.js'

export type ControlHandler = (params: Record<string, unknown>, options: { signal: AbortSignal }) => Promise<unknown>

/** An error a handler throws to send the client one clear line (and a stable code). */
export class ControlRefusal extends Error {
  override readonly name = 'ControlRefusal'
  constructor(
    message: string,
    readonly code = 'refused',
  ) {
    super(message)
  }
}

export interface ControlServer {
  start(): Promise<void>
  stop(): Promise<void>
}

export function createControlServer(
  init: { socketPath: string },
  components: { handlers: Partial<Record<ControlMethod, ControlHandler>>; logger: Logger },
): ControlServer {
  let server: Server | undefined
  const controller = new AbortController()
  const sockets = new Set<Socket>()

  async function answer(line: string): Promise<ControlResponse> {
    try {
      const request = decodeRequest(line)
      const handler = components.handlers[request.method]
      if (!handler) return { ok: false, error: `the agent does not support "${request.method}"`, code: 'unsupported' }
      return { ok: true, result: await handler(request.params, { signal: controller.signal }) }
    } catch (error) {
      if (error instanceof ControlProtocolError) return { ok: false, error: error.message, code: 'bad-request' }
      if (error instanceof ControlRefusal) return { ok: false, error: error.message, code: error.code }
      components.logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'control request failed')
      return { ok: false, error: error instanceof Error ? error.message : String(error), code: 'failed' }
    }
  }

  function serve(socket: Socket): void {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    let buffer = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      buffer += chunk
      if (buffer.length > MAX_LINE_BYTES) {
        socket.end(JSON.stringify({ ok: false, error: 'request too large', code: 'bad-request' }) + '\n')
        return
      }
      const newline = buffer.indexOf('\n')
      if (newline < 0) return
      const line = buffer.slice(0, newline)
      buffer = ''
      socket.pause()
      void answer(line).then((response) => socket.end(JSON.stringify(response) + '\n'))
    })
  }

  return {
    async start() {
      if (server) return
      await mkdir(dirname(init.socketPath), { recursive: true, mode: 0o755 })
      // A socket file left by a crashed agent would make listen fail with EADDRINUSE.
      await rm(init.socketPath, { force: true })
      const listening = createServer(serve)
      await new Promise<void>((resolve, reject) => {
        listening.once('error', reject)
        listening.listen(init.socketPath, () => {
          resolve()
        })
      })
      await chmod(init.socketPath, 0o600)
      server = listening
    },
    async stop() {
      if (!server) return
      controller.abort()
      const closing = server
      server = undefined
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => closing.close(() => {
        resolve()
      }))
      await rm(init.socketPath, { force: true })
    },
  }
}
