import { mkdtempSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { AgentError, AgentNotRunning, callAgent } from '../../src/control/client.js'
import { ControlProtocolError, decodeRequest } from '../../src/control/protocol.js'
import { ControlRefusal, createControlServer, type ControlServer } from '../../src/control/server.js'
import { createLogger } from '../../src/logging/logger.js'

const logger = createLogger({ pretty: false, destination: new Writable({ write: (_c, _e, done) => { done() } }) })
const signal = new AbortController().signal

describe('control socket', () => {
  let server: ControlServer | undefined
  afterEach(async () => {
    await server?.stop()
  })

  it('answers a request over a 0600 unix socket', async () => {
    const socketPath = join(mkdtempSync(join(tmpdir(), 'meshd-ctl-')), 'meshd.sock')
    server = createControlServer({ socketPath }, { logger, handlers: { status: () => Promise.resolve({ self: { id: 'a' } }) } })
    await server.start()
    expect(statSync(socketPath).mode & 0o777).toBe(0o600)
    expect(await callAgent(socketPath, 'status', {}, { signal })).toEqual({ self: { id: 'a' } })
  })

  it('passes a handler refusal to the client as one line', async () => {
    const socketPath = join(mkdtempSync(join(tmpdir(), 'meshd-ctl-')), 'meshd.sock')
    server = createControlServer({ socketPath }, { logger, handlers: { evict: () => Promise.reject(new ControlRefusal('no member named x', 'unknown-node')) } })
    await server.start()
    await expect(callAgent(socketPath, 'evict', { node: 'x' }, { signal })).rejects.toEqual(new AgentError('no member named x', 'unknown-node'))
    await expect(callAgent(socketPath, 'leave', {}, { signal })).rejects.toThrow('the agent does not support "leave"')
  })

  it('says no agent is running when nothing listens', async () => {
    const socketPath = join(mkdtempSync(join(tmpdir(), 'meshd-ctl-')), 'none.sock')
    await expect(callAgent(socketPath, 'status', {}, { signal })).rejects.toBeInstanceOf(AgentNotRunning)
  })

  it.each([
    ['not json', 'request is not JSON'],
    ['[]', 'request is not an object'],
    ['{"method":"rm -rf"}', 'unknown method "rm -rf"'],
    ['{"method":"status","params":[1]}', 'params must be an object'],
  ])('refuses the malformed request %s', (line, message) => {
    expect(() => decodeRequest(line)).toThrow(new ControlProtocolError(message))
  })
})
