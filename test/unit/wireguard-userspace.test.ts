// The userspace backend against a fake wireguard-go: a unix socket server in a
// temporary UAPI directory. Process lifecycle against the real wireguard-go is
// in test/netns/wireguard-userspace.test.ts.

import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { createLogger } from '../../src/logging/logger.js'
import { Secret } from '../../src/logging/secret.js'
import type { WireguardDevice } from '../../src/kernel/types.js'
import { createUserspaceBackend } from '../../src/kernel/wireguard/userspace.js'

const KEY = 'dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo='
const KEY_HEX = '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'
const PEER = 'hSulEuR3g5gRcwHooVXCHHQLbh75QIf7Fb55A8jlFlo='
const PEER_HEX = '852ba512e4778398117301e8a155c21c740b6e1ef94087fb15be7903c8e5165a'

const dir = mkdtempSync(join(tmpdir(), 'meshd-uapi-'))

/** An inotify limit no machine reaches, so a process that dies at start is not blamed on this shared host's inotify use. */
function roomyInotifyLimit(): string {
  const path = join(dir, 'roomy_max_user_instances')
  if (!existsSync(path)) writeFileSync(path, '1000000\n')
  return path
}
const servers: Server[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))))
})
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

/** A fake UAPI server: answers each request (text up to its empty line) with `respond`; undefined = never answer. */
async function fake(name: string, respond: (request: string) => string | undefined): Promise<{ requests: string[] }> {
  const requests: string[] = []
  const server = createServer((socket: Socket) => {
    let buffer = ''
    socket.setEncoding('utf8')
    socket.on('error', () => undefined)
    socket.on('data', (chunk: string) => {
      buffer += chunk
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const request = buffer.slice(0, end + 2)
        buffer = buffer.slice(end + 2)
        requests.push(request)
        const response = respond(request)
        if (response !== undefined) socket.write(response)
      }
    })
  })
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(join(dir, `${name}.sock`), resolve))
  return { requests }
}

/** Leaves a socket file nobody listens on, as a SIGKILLed wireguard-go does. */
async function staleSocket(name: string): Promise<void> {
  const path = join(dir, `${name}.sock`)
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('ready'))`])
  await new Promise((resolve) => child.stdout.once('data', resolve))
  child.kill('SIGKILL')
  await new Promise((resolve) => child.once('exit', resolve))
}

const options = (): { signal: AbortSignal } => ({ signal: new AbortController().signal })
const backend = (extra: Parameters<typeof createUserspaceBackend>[0] = {}) =>
  createUserspaceBackend({ uapiDir: dir, wireguardGoPath: '/nonexistent/wireguard-go', requestTimeoutMs: 2000, processTimeoutMs: 2000, inotifyLimitPath: roomyInotifyLimit(), ...extra })

const device: WireguardDevice = {
  name: 'md-set',
  privateKey: new Secret(KEY),
  listenPort: 51820,
  peers: [{ publicKey: PEER, allowedIps: ['0.0.0.0/0'], endpoint: { address: 'fd00::2', port: 51821 } }],
}

describe('userspace backend over a fake UAPI socket', () => {
  it('gets and decodes a device', async () => {
    await fake('md-get', () => `private_key=${KEY_HEX}\nlisten_port=7\npublic_key=${PEER_HEX}\nallowed_ip=10.0.0.0/8\nerrno=0\n\n`)
    const got = await backend().get('md-get', options())
    expect(got.listenPort).toBe(7)
    expect(got.privateKey?.reveal()).toBe(KEY)
    expect(got.peers).toEqual([{ publicKey: PEER, allowedIps: ['10.0.0.0/8'] }])
  })

  it('sets a fresh device with one request after reading it, and logs no key', async () => {
    const chunks: string[] = []
    const destination = new Writable({
      write(c: Buffer, _e, done) {
        chunks.push(c.toString())
        done()
      },
    })
    const { requests } = await fake('md-set', (r) => (r.startsWith('get=1') ? 'errno=0\n\n' : 'errno=0\n\n'))
    await backend({ logger: createLogger({ destination, pretty: false }) }).set(device, options())
    expect(requests).toEqual([
      'get=1\n\n',
      `set=1\nprivate_key=${KEY_HEX}\nlisten_port=51820\npublic_key=${PEER_HEX}\npreshared_key=${'0'.repeat(64)}\nendpoint=[fd00::2]:51821\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=0.0.0.0/0\n\n`,
    ])
    const log = chunks.join('')
    expect(log).toContain('configured wireguard-go')
    expect(log).not.toContain(KEY)
    expect(log).not.toContain(KEY_HEX)
  })

  it('sends no set when the device already matches', async () => {
    const { requests } = await fake('md-same', () =>
      `private_key=${KEY_HEX}\nlisten_port=51820\npublic_key=${PEER_HEX}\nendpoint=[fd00::2]:51821\nallowed_ip=0.0.0.0/0\nerrno=0\n\n`,
    )
    await backend().set({ ...device, name: 'md-same' }, options())
    expect(requests).toEqual(['get=1\n\n'])
  })

  it('turns a refused set into KernelError with the errno name', async () => {
    await fake('md-refuse', (r) => (r.startsWith('get=1') ? 'errno=0\n\n' : 'errno=-22\n\n'))
    await expect(backend().set({ ...device, name: 'md-refuse' }, options())).rejects.toMatchObject({ name: 'KernelError', errno: 'EINVAL' })
  })

  it.each([
    ['a garbled response', 'garbage\n\n'],
    ['a response cut short', 'listen_port=1\n'],
  ])('reports %s as EPROTO', async (_why, response) => {
    const name = `md-bad${response.length}`
    await fake(name, () => response)
    if (!response.endsWith('\n\n')) {
      // Answer, then hang up before the empty line.
      servers.at(-1)?.on('connection', (s: Socket) => setTimeout(() => s.end(), 20))
    }
    await expect(backend().get(name, options())).rejects.toMatchObject({ name: 'KernelError', errno: 'EPROTO' })
  })

  it('times out a silent socket with ETIMEDOUT, and honours abort with EABORTED', async () => {
    await fake('md-silent', () => undefined)
    await expect(backend({ requestTimeoutMs: 50 }).get('md-silent', options())).rejects.toMatchObject({ errno: 'ETIMEDOUT' })
    const controller = new AbortController()
    setTimeout(() => {
      controller.abort()
    }, 20)
    await expect(backend().get('md-silent', { signal: controller.signal })).rejects.toMatchObject({ errno: 'EABORTED' })
    await expect(backend().get('md-silent', { signal: AbortSignal.abort() })).rejects.toMatchObject({ errno: 'EABORTED' })
  })

  it('reports a missing or stale socket as ENODEV', async () => {
    await expect(backend().get('md-missing', options())).rejects.toMatchObject({ errno: 'ENODEV' })
    await staleSocket('md-stale')
    await expect(backend().get('md-stale', options())).rejects.toMatchObject({ errno: 'ENODEV' })
  })

  it('lists only live meshd sockets of this namespace', async () => {
    await fake('md-live', () => 'errno=0\n\n')
    await fake('wg0', () => 'errno=0\n\n')
    await staleSocket('md-dead')
    writeFileSync(join(dir, 'md-file.sock'), '')
    const names = await backend().listInterfaces(options())
    expect(names).toContain('md-live')
    expect(names).not.toContain('wg0')
    expect(names).not.toContain('md-dead')
    expect(names).not.toContain('md-file')
  })

  it('adopts a live socket instead of starting a process', async () => {
    await fake('md-adopt', () => 'errno=0\n\n')
    // The binary does not exist, so a start attempt would fail.
    await backend().ensureInterface('md-adopt', options())
  })

  it('reports a binary that cannot run, or exits before its socket appears', async () => {
    await expect(backend().ensureInterface('md-nobin', options())).rejects.toMatchObject({ errno: 'EIO', message: expect.stringMatching(/cannot run/) as unknown })
    await staleSocket('md-false')
    await expect(backend({ wireguardGoPath: '/bin/false' }).ensureInterface('md-false', options())).rejects.toMatchObject({
      errno: 'EIO',
      message: expect.stringMatching(/exited \(code 1\)/) as unknown,
    })
    // The stale socket was cleared before the start attempt.
    expect(existsSync(join(dir, 'md-false.sock'))).toBe(false)
  })

  it('names the inotify instance limit when wireguard-go dies at start with every instance in use', async () => {
    // A limit this user's processes already exceed: the diagnosis must name it and how to raise it.
    const limit = join(dir, 'max_user_instances')
    writeFileSync(limit, '0\n')
    await expect(backend({ wireguardGoPath: '/bin/false', inotifyLimitPath: limit }).ensureInterface('md-inotify', options())).rejects.toMatchObject({
      errno: 'EMFILE',
      message: expect.stringMatching(/exited \(code 1\).*fs\.inotify\.max_user_instances is 0 .*every wireguard-go needs one/) as unknown,
    })
  })

  it('runs wireguard-go in the foreground with a minimal environment, output to logDir', async () => {
    const script = join(dir, 'fake-wireguard-go')
    writeFileSync(script, '#!/bin/sh\necho "argv=$* fg=$WG_PROCESS_FOREGROUND level=$LOG_LEVEL home=${HOME:-none}"\nexit 3\n')
    chmodSync(script, 0o755)
    await expect(backend({ wireguardGoPath: script, logDir: dir }).ensureInterface('md-args', options())).rejects.toMatchObject({
      errno: 'EIO',
      message: expect.stringMatching(/exited \(code 3\)/) as unknown,
    })
    expect(readFileSync(join(dir, 'md-args.log'), 'utf8')).toBe('argv=-f md-args fg=1 level=error home=none\n')
  })

  it('removes a stale socket, and treats a missing one as done', async () => {
    await staleSocket('md-gone')
    await backend().removeInterface('md-gone', options())
    expect(existsSync(join(dir, 'md-gone.sock'))).toBe(false)
    await backend().removeInterface('md-gone', options())
  })

  it.each(['eth0', 'md-', 'md-0123456789abc', 'md-../../x', 'md-a b', 'md-a\nb'])('refuses the interface name %j', async (name) => {
    const b = backend()
    await expect(b.ensureInterface(name, options())).rejects.toMatchObject({ errno: 'EINVAL' })
    await expect(b.removeInterface(name, options())).rejects.toMatchObject({ errno: 'EINVAL' })
    await expect(b.get(name, options())).rejects.toMatchObject({ errno: 'EINVAL' })
  })
})
