// The userspace backend: one wireguard-go process per interface, configured
// over its UAPI socket <uapiDir>/<name>.sock.
//
// Lifecycle facts this module is built on (wireguard-go 0.0.20220316, checked
// on this machine):
// - `wireguard-go -f NAME` stays in the foreground; without -f it forks a
//   daemon we could neither reap nor watch. WG_PROCESS_FOREGROUND=1 also
//   silences a banner wrongly claiming the kernel has WireGuard.
// - It exits cleanly, removing its socket, on SIGTERM, on deletion of the tun
//   link and on deletion of the socket file. SIGKILL leaves a stale socket
//   behind (connect → ECONNREFUSED). A tun it created itself goes away with
//   the process; a persistent one (below) stays, without carrier.
// - Its TUNSETIFF (IFF_TUN, packet information on: the "TUN status hack")
//   attaches to an existing persistent tun of that name, created beforehand
//   by `ip tuntap add` (./ip-batch.ts): the attach takes the opener's flags,
//   so the tun's default no-pi does not matter. On attach it sets the MTU to
//   1420 (a no-op when it already is) and, when the link is already up,
//   brings the device up at once, binding a random UDP port until the UAPI
//   sets listen_port. createInterfaces makes such tuns so that the reconciler
//   can address, route and bring them up before any new process runs; removal
//   then deletes the link after the process has stopped.
// - The socket directory is compiled in (/var/run/wireguard) and shared by
//   every network namespace, and a unix socket can be connected from any
//   namespace. So "a live socket" is not "our interface": only a listener
//   that appears in our own /proc/net/unix (which the kernel filters by
//   network namespace) is ours to adopt, list or stop.

import { spawn, type ChildProcess } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { readFile, readdir, readlink, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { constants as osConstants } from 'node:os'
import { basename, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import type { Logger } from 'pino'
import { KernelError } from '../port.js'
import { isOwnedLinkName, LINK_PREFIX, type ObservedWireguardDevice, type WireguardDevice } from '../types.js'
import { interfaceNameProblem } from '../validate.js'
import type { WireguardBackend } from './backend.js'
import { errnoOfMessage, ipAvailable, ipBatch } from './ip-batch.js'
import { decodeGetResponse, decodeSetResponse, encodeSetRequest, GET_REQUEST, planSetRequest, UapiError, type UapiSetRequest } from './uapi.js'

export interface UserspaceBackendInit {
  /** Where wireguard-go puts its sockets. It is compiled into wireguard-go; change it only to talk to a fake in tests. */
  uapiDir?: string
  /** The wireguard-go binary; looked up on PATH by default. */
  wireguardGoPath?: string
  logger?: Logger
  /** When set, each process appends its output to <logDir>/<name>.log; otherwise it goes to /dev/null. */
  logDir?: string
  /** wireguard-go's LOG_LEVEL: 'error' (default), 'verbose' or 'silent'. */
  wireguardGoLogLevel?: 'error' | 'verbose' | 'silent'
  /** Deadline of one UAPI request. */
  requestTimeoutMs?: number
  /** Deadline for a started process to open its socket, and for a stopped one to exit. */
  processTimeoutMs?: number
  /** The inotify instance limit consulted when a process dies at start; a test can point it at a file of its own. */
  inotifyLimitPath?: string
  /** iproute2's ip, which creates and deletes persistent tuns; looked up on PATH by default. */
  ipPath?: string
}

/** A process this backend spawned; `exited` settles when Node has reaped it. */
interface Child {
  process: ChildProcess
  exited: Promise<void>
  /** Set when it has exited, before `exited` settles. */
  done: boolean
  /** Set when we asked it to stop, so its exit is expected. */
  stopping: boolean
}

/** At most this many ip processes delete links at once. */
const DELETE_PROCESSES = 8

/** Responses larger than this are not a WireGuard device (a 10 000-peer device is ~5 MB). */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024

/** Creates the wireguard-go backend; processes it starts outlive the agent and are adopted by the next one. */
export function createUserspaceBackend(init: UserspaceBackendInit = {}): WireguardBackend {
  const uapiDir = init.uapiDir ?? '/var/run/wireguard'
  const wireguardGo = init.wireguardGoPath ?? 'wireguard-go'
  const requestTimeoutMs = init.requestTimeoutMs ?? 5_000
  const processTimeoutMs = init.processTimeoutMs ?? 10_000
  const log = init.logger
  const ipPath = init.ipPath ?? 'ip'
  let ipFound: Promise<boolean> | undefined
  const children = new Map<string, Child>()
  const queues = new Map<string, Promise<unknown>>()

  const socketPath = (name: string): string => join(uapiDir, `${name}.sock`)

  /** Runs operations on one interface one at a time, so two ensures never start two processes. */
  function serial<T>(name: string, run: () => Promise<T>): Promise<T> {
    // Each tail never rejects, so the next operation runs whatever the previous one did.
    const next = (queues.get(name) ?? Promise.resolve()).then(run)
    const tail = next.catch(() => undefined)
    queues.set(name, tail)
    void tail.then(() => {
      if (queues.get(name) === tail) queues.delete(name)
    })
    return next
  }

  /** Sends one request on a fresh connection and returns the response text up to its empty line. */
  function exchange(operation: string, name: string, request: string, signal: AbortSignal): Promise<string> {
    return new Promise((resolve, reject) => {
      const deadline = AbortSignal.any([signal, AbortSignal.timeout(requestTimeoutMs)])
      const socket = connect({ path: socketPath(name) })
      let text = ''
      const finish = (error: Error | undefined): void => {
        deadline.removeEventListener('abort', onAbort)
        socket.destroy()
        if (error === undefined) resolve(text)
        else reject(error)
      }
      const onAbort = (): void => {
        finish(new KernelError(operation, signal.aborted ? 'EABORTED' : 'ETIMEDOUT', name))
      }
      if (deadline.aborted) {
        onAbort()
        return
      }
      deadline.addEventListener('abort', onAbort, { once: true })
      socket.setEncoding('utf8')
      socket.on('connect', () => socket.write(request))
      socket.on('data', (chunk: string) => {
        text += chunk
        if (text.includes('\n\n')) finish(undefined)
        else if (text.length > MAX_RESPONSE_BYTES) finish(new KernelError(operation, 'EPROTO', `${name}: response too large`))
      })
      socket.on('error', (error: NodeJS.ErrnoException) => {
        // No socket, or a socket nobody listens on: either way there is no such interface.
        const missing = error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
        finish(new KernelError(operation, missing ? 'ENODEV' : (error.code ?? 'EIO'), name))
      })
      socket.on('close', () => {
        finish(new KernelError(operation, 'EPROTO', `${name}: connection closed before the response ended`))
      })
    })
  }

  /** Turns codec errors into the KernelError every kernel-facing caller handles. */
  function uapiCall<T>(operation: string, name: string, run: () => T): T {
    try {
      return run()
    } catch (error) {
      if (!(error instanceof UapiError)) throw error
      const errno = error.errno === undefined ? 'EPROTO' : errnoName(error.errno)
      throw new KernelError(operation, errno, `${name}: ${error.message}`)
    }
  }

  /** 'absent': no socket file; 'stale': nobody listens; 'ours'/'foreign': a listener in this / another netns. */
  async function socketState(name: string): Promise<{ state: 'absent' | 'stale' | 'ours' | 'foreign'; inode?: string }> {
    const reachable = await new Promise<'absent' | 'stale' | 'live'>((resolve, reject) => {
      const socket = connect({ path: socketPath(name) })
      socket.on('connect', () => {
        socket.destroy()
        resolve('live')
      })
      socket.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') resolve('absent')
        else if (error.code === 'ECONNREFUSED') resolve('stale')
        else reject(new KernelError('wireguard socket', error.code ?? 'EIO', name))
      })
    })
    if (reachable !== 'live') return { state: reachable }
    const inode = (await listeners()).get(name)
    return inode === undefined ? { state: 'foreign' } : { state: 'ours', inode }
  }

  /**
   * Listening UAPI sockets bound in this network namespace: interface name → socket inode.
   * Callers that ask while a read is under way share it (parallel starts poll together).
   */
  let listenersRead: Promise<Map<string, string>> | undefined
  function listeners(): Promise<Map<string, string>> {
    if (listenersRead !== undefined) return listenersRead
    const read = readListeners().finally(() => {
      if (listenersRead === read) listenersRead = undefined
    })
    listenersRead = read
    return read
  }

  async function readListeners(): Promise<Map<string, string>> {
    const found = new Map<string, string>()
    const table = await readFile('/proc/net/unix', 'utf8')
    for (const line of table.split('\n').slice(1)) {
      // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is __SO_ACCEPTCON (listening).
      const [, , , flags = '0', , , inode, path] = line.trim().split(/\s+/)
      if (inode === undefined || path === undefined || (parseInt(flags, 16) & 0x10000) === 0) continue
      // Matched by file name: the kernel records the path as bound, which may spell the dir differently (/run vs /var/run).
      const file = basename(path)
      if (file.startsWith(LINK_PREFIX) && file.endsWith('.sock')) found.set(file.slice(0, -'.sock'.length), inode)
    }
    return found
  }

  /** The pids of the wireguard-go processes holding socket inodes `inodes`, found through /proc in one scan. */
  async function socketOwners(inodes: ReadonlySet<string>): Promise<Map<string, number>> {
    const owners = new Map<string, number>()
    if (inodes.size === 0) return owners
    const comm = basename(wireguardGo).slice(0, 15)
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      try {
        // The comm check keeps this from reading every process's fd table.
        if ((await readFile(`/proc/${entry}/comm`, 'utf8')).trim() !== comm) continue
        for (const fd of await readdir(`/proc/${entry}/fd`)) {
          const link = await readlink(`/proc/${entry}/fd/${fd}`).catch(() => '')
          const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1]
          if (inode !== undefined && inodes.has(inode)) owners.set(inode, Number(entry))
        }
      } catch {
        // The process exited while we looked.
      }
      if (owners.size === inodes.size) break
    }
    return owners
  }

  /** Polls `done` with a growing interval (up to 25 ms) until it holds, the deadline passes, or `signal` aborts. */
  async function waitFor(operation: string, what: string, done: () => Promise<boolean>, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + processTimeoutMs
    for (let interval = 2; ; interval = Math.min(interval * 2, 25)) {
      if (signal.aborted) throw new KernelError(operation, 'EABORTED', what)
      if (await done()) return
      if (Date.now() > deadline) throw new KernelError(operation, 'ETIMEDOUT', what)
      await delay(interval, undefined, { signal }).catch(() => undefined)
    }
  }

  /** Starts `wireguard-go -f NAME` in its own session and waits for its socket to listen. */
  async function start(name: string, signal: AbortSignal): Promise<void> {
    const output = init.logDir === undefined ? 'ignore' : openSync(join(init.logDir, `${name}.log`), 'a')
    let wg: ChildProcess
    try {
      wg = spawn(wireguardGo, ['-f', name], {
        // Own session and process group: a signal to the agent's group (Ctrl-C, a restart) must not reach it.
        detached: true,
        // Never pipes: a Go program dies of SIGPIPE when it writes to stdout/stderr after the agent is gone.
        stdio: ['ignore', output, output],
        // A minimal environment keeps a stray WG_TUN_FD/WG_UAPI_FD of ours from reaching it.
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: init.wireguardGoLogLevel ?? 'error' },
      })
    } finally {
      if (typeof output === 'number') closeSync(output)
    }
    // The agent may exit while wireguard-go runs on; Node still reaps it if it exits first.
    wg.unref()
    let failure: string | undefined
    let started = false
    let markExited = (): void => undefined
    const child: Child = { process: wg, done: false, stopping: false, exited: new Promise((resolve) => (markExited = resolve)) }
    const exited = (): void => {
      child.done = true
      if (children.get(name) === child) children.delete(name)
      markExited()
    }
    wg.once('error', (error: NodeJS.ErrnoException) => {
      failure ??= `cannot run ${wireguardGo}: ${error.code ?? error.message}`
      exited()
    })
    wg.once('exit', (code, exitSignal) => {
      failure ??= `wireguard-go exited (${exitSignal ?? `code ${code}`}) before opening its socket`
      if (started && !child.stopping) log?.warn({ interface: name, code, signal: exitSignal }, 'wireguard-go exited')
      exited()
    })
    try {
      await waitFor('wireguard ensure', `${name}: wireguard-go socket`, async () => {
        if (child.done) {
          // The usual cause at scale: every wireguard-go holds an inotify instance, capped per user machine-wide.
          const inotify = await inotifyExhaustion(init.inotifyLimitPath ?? '/proc/sys/fs/inotify/max_user_instances')
          if (inotify !== undefined) throw new KernelError('wireguard ensure', 'EMFILE', `${name}: ${failure ?? 'wireguard-go exited'}; ${inotify}`)
          throw new KernelError('wireguard ensure', 'EIO', `${name}: ${failure ?? 'wireguard-go exited'}`)
        }
        return (await socketState(name)).state === 'ours'
      }, signal)
    } catch (error) {
      wg.kill('SIGKILL')
      await child.exited
      throw error
    }
    started = true
    children.set(name, child)
    log?.info({ interface: name, pid: wg.pid }, 'started wireguard-go')
  }

  /** Signals pid (SIGTERM, then SIGKILL past the deadline) and waits until it has exited. */
  async function stop(name: string, pid: number, signal: AbortSignal): Promise<void> {
    const child = children.get(name)
    if (child !== undefined) child.stopping = true
    const gone = async (): Promise<boolean> => (child !== undefined && child.process.pid === pid ? child.done : !(await running(pid)))
    for (const how of ['SIGTERM', 'SIGKILL'] as const) {
      try {
        process.kill(pid, how)
      } catch {
        return // already gone
      }
      try {
        await waitFor('wireguard remove', `${name}: wireguard-go pid ${pid} to exit`, gone, signal)
        // Our own child: wait for Node to reap it, so no zombie is left.
        if (child !== undefined) await child.exited
        return
      } catch (error) {
        if (how === 'SIGKILL' || !(error instanceof KernelError) || error.errno !== 'ETIMEDOUT') throw error
        log?.warn({ interface: name, pid }, 'wireguard-go ignored SIGTERM; killing it')
      }
    }
  }

  /**
   * Stops several processes together: SIGTERM to all, one poll loop until all
   * have exited, SIGKILL to those still there at the deadline. Resolves with
   * the pids that would not exit.
   */
  async function stopAll(targets: readonly { name: string; pid: number }[], signal: AbortSignal): Promise<Map<string, Error>> {
    const failures = new Map<string, Error>()
    const gone = async ({ name, pid }: { name: string; pid: number }): Promise<boolean> => {
      const child = children.get(name)
      return child !== undefined && child.process.pid === pid ? child.done : !(await running(pid))
    }
    let left = [...targets]
    for (const how of ['SIGTERM', 'SIGKILL'] as const) {
      if (how === 'SIGKILL') log?.warn({ interfaces: left.map((t) => t.name) }, 'wireguard-go ignored SIGTERM; killing it')
      for (const target of left) {
        const child = children.get(target.name)
        if (child !== undefined) child.stopping = true
        try {
          process.kill(target.pid, how)
        } catch {
          // already gone
        }
      }
      try {
        await waitFor('wireguard remove', `${left.length} wireguard-go processes to exit`, async () => {
          const still = []
          for (const target of left) if (!(await gone(target))) still.push(target)
          left = still
          return left.length === 0
        }, signal)
        break
      } catch (error) {
        if (how === 'SIGKILL' || !(error instanceof KernelError) || error.errno !== 'ETIMEDOUT') {
          for (const target of left) failures.set(target.name, error instanceof Error ? error : new Error(String(error)))
          break
        }
      }
    }
    // Our own children: wait for Node to reap them, so no zombie is left.
    const reaped: Promise<void>[] = []
    for (const { name, pid } of targets) {
      const child = children.get(name)
      if (child !== undefined && child.process.pid === pid) reaped.push(child.exited)
    }
    await Promise.all(reaped)
    return failures
  }

  /**
   * Deletes the tun links of stopped interfaces (persistent tuns outlive their
   * process), in one ip process; a link already gone is fine. Without ip no
   * persistent tun was made here, and wireguard-go's own went with it.
   */
  async function deleteLinks(names: readonly string[], signal: AbortSignal): Promise<Map<string, Error>> {
    const failures = new Map<string, Error>()
    if (names.length === 0 || !(await canCreate())) return failures
    // Each deletion waits for an RCU grace period (~17 ms here, one after another: 1.7 s for
    // 100): several ip processes at once let those waits overlap (0.7 s for 100 in 10).
    const chunks: string[][] = Array.from({ length: Math.min(DELETE_PROCESSES, names.length) }, () => [])
    names.forEach((name, i) => chunks[i % chunks.length]?.push(name))
    await Promise.all(
      chunks.map(async (chunk) => {
        let failed: Map<number, string>
        try {
          failed = await ipBatch('wireguard remove', chunk.map((name) => `link del dev ${name}`), { ipPath, signal, timeoutMs: processTimeoutMs })
        } catch (error) {
          for (const name of chunk) failures.set(name, error instanceof Error ? error : new Error(String(error)))
          return
        }
        for (const [index, message] of failed) {
          const name = chunk[index] ?? ''
          const errno = errnoOfMessage(message)
          if (errno !== 'ENODEV') failures.set(name, new KernelError('wireguard remove', errno, `${name}: ip link del: ${message}`))
        }
      }),
    )
    return failures
  }

  function canCreate(): Promise<boolean> {
    return (ipFound ??= ipAvailable(ipPath))
  }

  const backend: WireguardBackend = {
    kind: 'userspace',

    canCreateInterfaces: canCreate,

    async createInterfaces(names, { signal }) {
      const { valid, failures } = validNames(names, 'tuntap add', signal)
      const failed = await ipBatch('tuntap add', valid.map((name) => `tuntap add dev ${name} mode tun`), { ipPath, signal, timeoutMs: processTimeoutMs })
      for (const [index, message] of failed) {
        const name = valid[index] ?? ''
        // ip's TUNSETIFF uses IFF_TUN_EXCL: a tun of that name already there is EBUSY.
        failures.set(name, new KernelError('tuntap add', errnoOfMessage(message), `${name}: ${message}`))
      }
      const made = valid.filter((name) => !failures.has(name))
      if (made.length > 0) log?.debug({ interfaces: made }, 'created persistent tun devices')
      return failures
    },

    async removeInterfaces(names, { signal }) {
      const { valid, failures } = validNames(names, 'wireguard remove', signal)
      // One read of the socket table and one scan of /proc for all of them.
      const table = await listeners()
      const inodes = new Map(valid.flatMap((name) => (table.has(name) ? [[name, table.get(name) ?? '']] : [])))
      const unknown = new Set([...inodes].filter(([name]) => children.get(name) === undefined).map(([, inode]) => inode))
      const owners = await socketOwners(unknown)
      const targets: { name: string; pid: number }[] = []
      const oneByOne: string[] = []
      for (const name of valid) {
        const inode = inodes.get(name)
        const pid = inode === undefined ? undefined : (children.get(name)?.process.pid ?? owners.get(inode))
        // Not ours, gone, stale, or a process we cannot see: the careful path, per interface.
        if (pid === undefined) oneByOne.push(name)
        else targets.push({ name, pid })
      }
      for (const [name, error] of await stopAll(targets, signal)) failures.set(name, error)
      const stopped: string[] = []
      for (const { name, pid } of targets) {
        if (failures.has(name)) continue
        log?.info({ interface: name, pid }, 'stopped wireguard-go')
        // wireguard-go deletes its socket on a clean exit; SIGKILL or a crash leaves it.
        await rm(socketPath(name), { force: true })
        stopped.push(name)
      }
      // Their links once no process is left to wake on each deletion.
      for (const [name, error] of await deleteLinks(stopped, signal)) failures.set(name, error)
      await Promise.all(
        oneByOne.map(async (name) => {
          try {
            await backend.removeInterface(name, { signal })
          } catch (error) {
            failures.set(name, error instanceof Error ? error : new Error(String(error)))
          }
        }),
      )
      return failures
    },

    ensureInterface(name, { signal }) {
      return serial(name, async () => {
        checkCall(name, 'wireguard ensure', signal)
        const { state } = await socketState(name)
        if (state === 'ours') {
          log?.debug({ interface: name }, 'adopted running wireguard-go')
          return
        }
        if (state === 'foreign') throw new KernelError('wireguard ensure', 'EEXIST', `${name}: its socket belongs to another network namespace`)
        if (state === 'stale') {
          log?.info({ interface: name }, 'removing stale wireguard-go socket')
          await rm(socketPath(name), { force: true })
        }
        await start(name, signal)
      })
    },

    removeInterface(name, { signal }) {
      return serial(name, async () => {
        checkCall(name, 'wireguard remove', signal)
        const { state, inode } = await socketState(name)
        // Another namespace's interface is not ours to stop; removing its socket would kill it.
        if (state === 'foreign') return
        if (state === 'ours' && inode !== undefined) {
          const pid = children.get(name)?.process.pid ?? (await socketOwners(new Set([inode]))).get(inode)
          if (pid === undefined) {
            // Not visible as a process (another pid namespace): deleting the socket makes wireguard-go exit.
            await rm(socketPath(name), { force: true })
            await waitFor('wireguard remove', `${name}: socket listener to close`, async () => !(await listeners()).has(name), signal)
          } else {
            await stop(name, pid, signal)
          }
          log?.info({ interface: name, pid }, 'stopped wireguard-go')
        }
        // wireguard-go deletes its socket on a clean exit; SIGKILL or a crash leaves it.
        if (state !== 'absent') await rm(socketPath(name), { force: true })
        // A persistent tun stays after its process: delete it (absent: a tun whose process died).
        const failed = (await deleteLinks([name], signal)).get(name)
        if (failed !== undefined) throw failed
      })
    },

    async listInterfaces({ signal }) {
      if (signal.aborted) throw new KernelError('wireguard list', 'EABORTED')
      const files = new Set(await readdir(uapiDir).catch(() => []))
      // A listener whose file is gone is shutting down (wireguard-go exits when its socket is deleted).
      return [...(await listeners()).keys()].filter((name) => files.has(`${name}.sock`)).sort()
    },

    async get(name, { signal }): Promise<ObservedWireguardDevice> {
      checkCall(name, 'wireguard get', signal)
      const text = await exchange('wireguard get', name, GET_REQUEST, signal)
      return uapiCall('wireguard get', name, () => decodeGetResponse(name, text))
    },

    async set(device: WireguardDevice, { signal }) {
      const { name } = device
      checkCall(name, 'wireguard set', signal)
      const current = await exchange('wireguard set', name, GET_REQUEST, signal)
      const observed = uapiCall('wireguard set', name, () => decodeGetResponse(name, current))
      const request = uapiCall('wireguard set', name, () => planSetRequest(device, observed))
      if (request === undefined) return
      const text = uapiCall('wireguard set', name, () => encodeSetRequest(request))
      const response = await exchange('wireguard set', name, text, signal)
      uapiCall('wireguard set', name, () => {
        decodeSetResponse(response)
      })
      log?.info({ interface: name, changes: describe(request) }, 'configured wireguard-go')
    },

    close() {
      // Processes keep running on purpose: the next agent adopts them without interrupting traffic.
      children.clear()
      return Promise.resolve()
    },
  }
  return backend
}

/**
 * Why a wireguard-go may have died at start: every one holds an inotify
 * instance, and fs.inotify.max_user_instances caps them per user across the
 * whole machine (namespaces do not help). A message when this user is at the
 * cap, undefined otherwise. Reads every process's fd table: only on failure.
 */
async function inotifyExhaustion(limitPath: string): Promise<string | undefined> {
  try {
    const limit = Number((await readFile(limitPath, 'utf8')).trim())
    const uid = process.getuid?.() ?? 0
    let used = 0
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      try {
        const status = await readFile(`/proc/${entry}/status`, 'utf8')
        if (Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]) !== uid) continue
        for (const fd of await readdir(`/proc/${entry}/fd`)) {
          if ((await readlink(`/proc/${entry}/fd/${fd}`).catch(() => '')) === 'anon_inode:inotify') used++
        }
      } catch {
        // exited while we looked
      }
    }
    // A few to spare: instances of processes that just exited are released a little later.
    if (used + 2 < limit) return undefined
    return `fs.inotify.max_user_instances is ${limit} and this user's processes hold ${used}: every wireguard-go needs one (raise it, e.g. sysctl fs.inotify.max_user_instances=1024)`
  } catch {
    return undefined
  }
}

/** Whether pid exists and is not a zombie (a zombie has exited; its parent reaps it). */
async function running(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

/** Each distinct name checked as checkCall does; the refused ones come back as failures, never thrown. */
function validNames(names: Iterable<string>, operation: string, signal: AbortSignal): { valid: string[]; failures: Map<string, Error> } {
  const failures = new Map<string, Error>()
  const valid: string[] = []
  for (const name of new Set(names)) {
    try {
      checkCall(name, operation, signal)
      valid.push(name)
    } catch (error) {
      failures.set(name, error instanceof Error ? error : new Error(String(error)))
    }
  }
  return { valid, failures }
}

/** Rejects an aborted call, and names meshd does not own or the kernel would refuse (which also keeps the socket path inside uapiDir). */
function checkCall(name: string, operation: string, signal: AbortSignal): void {
  if (signal.aborted) throw new KernelError(operation, 'EABORTED', name)
  if (!isOwnedLinkName(name) || name === LINK_PREFIX || interfaceNameProblem(name) !== undefined) {
    throw new KernelError(operation, 'EINVAL', `not a meshd interface name: ${JSON.stringify(name)}`)
  }
}

/** The errno name of a number (22 → "EINVAL"), as KernelError carries it. */
function errnoName(errno: number): string {
  const entry = Object.entries(osConstants.errno).find(([, value]) => value === errno)
  return entry?.[0] ?? `errno ${errno}`
}

/** A log-safe summary of a set request: what changes, never a key. */
function describe(request: UapiSetRequest): string[] {
  const changes: string[] = []
  if (request.privateKey !== undefined) changes.push('private key')
  if (request.listenPort !== undefined) changes.push(`listen port ${request.listenPort}`)
  if (request.fwmark !== undefined) changes.push(`fwmark ${request.fwmark}`)
  for (const peer of request.peers) changes.push(`${peer.remove === true ? 'remove' : 'set'} peer ${peer.publicKey}`)
  return changes
}
