// Bench-only helpers for bench/kernel-apply.bench.ts: a node's desired kernel
// state with N peers (as reconcile-driver JSON), the same state as a shell
// script of ip/wg commands, throw-away namespaces that clean up after
// themselves (wireguard-go processes and their sockets included), and a
// client for `reconcile-driver serve`.

import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { setTimeout as delay } from 'node:timers/promises'

/** wireguard-go's compiled-in socket directory, shared by every namespace. */
export const UAPI_DIR = '/var/run/wireguard'
export const DRIVER = 'dist/kernel/reconcile-driver.js'
/** The driver runs on the project's Node 24 even when vitest was started by an older `node` on PATH. */
const PROJECT_NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url))
export const NODE = existsSync(PROJECT_NODE) ? PROJECT_NODE : process.execPath
export const NODE_VERSION = spawnSync(NODE, ['--version'], { encoding: 'utf8' }).stdout.trim()

export interface Keypair {
  privateKey: string
  publicKey: string
}

/** PKCS#8 DER framing of a raw X25519 private key (RFC 8410). */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')

/**
 * An X25519 key pair as WireGuard writes keys: base64 of the raw 32 bytes.
 * Built from random bytes rather than generateKeyPairSync, whose key-generation
 * jobs can deadlock Node 20 when the GC frees them during a key export (seen here:
 * the vitest worker hung in ~KeyGenJob under ExportJWK when vitest ran on the host's Node 20).
 */
export function keypair(): Keypair {
  const raw = randomBytes(32)
  // Clamped as `wg genkey` does.
  raw[0] = (raw[0] ?? 0) & 248
  raw[31] = ((raw[31] ?? 0) & 127) | 64
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' })
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
  return { privateKey: raw.toString('base64'), publicKey: spki.subarray(spki.length - 32).toString('base64') }
}

export interface MeshPeer {
  link: string
  publicKey: string
  listenPort: number
  local: string
  remote: string
  /** Link-local next hops the routes go through (`onlink`). */
  via4: string
  via6: string
  overlay4: string
  overlay6: string
  endpoint: string
}

export interface Mesh {
  nodeKey: Keypair
  peers: MeshPeer[]
}

/**
 * A node with n peers, one WireGuard link each. Link names are
 * `md-<random tag><role letter><index base 36>` (≤ 10 bytes), unique across
 * namespaces as wireguard-go's shared socket directory requires.
 */
export function mesh(n: number, role: string): Mesh {
  if (n < 2 || n > 250) throw new Error(`peer count ${n} is outside 2..250`)
  if (!/^[a-z]$/.test(role)) throw new Error(`role must be one letter, not ${JSON.stringify(role)}`)
  const tag = randomBytes(2).toString('hex')
  const nodeKey = keypair()
  const peers: MeshPeer[] = []
  for (let i = 0; i < n; i++) {
    const host = i + 2
    peers.push({
      link: `md-${tag}${role}${i.toString(36)}`,
      publicKey: keypair().publicKey,
      // Below the ephemeral range (32768–60999): the reconciler brings a wireguard-go link up before
      // it sets the listen port, and the random port wireguard-go binds meanwhile can take another
      // link's configured one (EADDRINUSE on wg set) — reported, kept out of the figures.
      listenPort: 20000 + i,
      local: `169.254.${i + 1}.1`,
      remote: `169.254.${i + 1}.2`,
      via4: `169.254.${i + 1}.2`,
      via6: `fe80::${(i + 1).toString(16)}:2`,
      overlay4: `10.73.${host >> 8}.${host & 255}`,
      overlay6: `fd73::${host.toString(16)}`,
      // TEST-NET-1: the namespace has no route there, so nothing ever leaves it.
      endpoint: `192.0.2.${i + 1}:51820`,
    })
  }
  return { nodeKey, peers }
}

const OVERLAY4 = '10.73.0.1'
const OVERLAY6 = 'fd73::1'
const OVERLAY_PREFIX4 = '10.73.0.0/16'
const TABLE = 7300
const RULE_TO_PRIORITY = 7300
const RULE_IIF_PRIORITY = 7305
const MTU = 1420

/** Which peer's link carries the route to peer `routeOwner`'s overlay /32 (for the incremental change). */
export interface RouteOverride {
  peer: number
  via: number
}

/**
 * The desired state as reconcile-driver reads it: N links, N point-to-point
 * addresses, 2 overlay addresses on lo, 2·N routes, N + 1 rules, N devices.
 */
export function desiredState(m: Mesh, override?: RouteOverride): Record<string, unknown> {
  const { peers } = m
  const hop4 = (i: number): Record<string, unknown> => {
    const through = override?.peer === i ? (peers[override.via] ?? peers[i]) : peers[i]
    return { via: through?.via4, dev: through?.link, onlink: true }
  }
  return {
    links: peers.map((p) => ({ kind: 'wireguard', name: p.link, mtu: MTU, up: true })),
    addresses: [
      { link: 'lo', local: `${OVERLAY4}/32` },
      { link: 'lo', local: `${OVERLAY6}/128` },
      ...peers.map((p) => ({ link: p.link, local: `${p.local}/32`, peer: `${p.remote}/32` })),
    ],
    routes: peers.flatMap((p, i) => [
      { table: TABLE, dst: `${p.overlay4}/32`, nexthop: hop4(i) },
      { table: TABLE, dst: `${p.overlay6}/128`, nexthop: { via: p.via6, dev: p.link, onlink: true } },
    ]),
    rules: [
      { family: 4, priority: RULE_TO_PRIORITY, to: OVERLAY_PREFIX4, table: TABLE },
      ...peers.map((p) => ({ family: 4, priority: RULE_IIF_PRIORITY, iif: p.link, table: TABLE })),
    ],
    wireguard: peers.map((p) => {
      const [address, port] = p.endpoint.split(':')
      return {
        name: p.link,
        privateKey: m.nodeKey.privateKey,
        listenPort: p.listenPort,
        peers: [{ publicKey: p.publicKey, allowedIps: ['0.0.0.0/0', '::/0'], endpoint: { address, port: Number(port) } }],
      }
    }),
    sysctls: [],
  }
}

/** The ip(8) commands of the state, without the leading `ip`, in the order a script would run them. */
export function ipCommands(m: Mesh): { perLink: string[][]; rest: string[] } {
  const perLink = m.peers.map((p) => [`link set ${p.link} mtu ${MTU} up`, `addr add ${p.local}/32 peer ${p.remote}/32 dev ${p.link}`])
  const rest = [
    `addr add ${OVERLAY4}/32 dev lo`,
    `addr add ${OVERLAY6}/128 dev lo`,
    ...m.peers.flatMap((p) => [
      `route add ${p.overlay4}/32 via ${p.via4} dev ${p.link} onlink table ${TABLE} proto 73`,
      `route add ${p.overlay6}/128 via ${p.via6} dev ${p.link} onlink table ${TABLE} proto 73`,
    ]),
    `rule add priority ${RULE_TO_PRIORITY} to ${OVERLAY_PREFIX4} lookup ${TABLE} protocol 73`,
    ...m.peers.map((p) => `rule add priority ${RULE_IIF_PRIORITY} iif ${p.link} lookup ${TABLE} protocol 73`),
  ]
  return { perLink, rest }
}

/**
 * The state as a /bin/sh script, the way wg-quick would build it: per link
 * `wireguard-go NAME` (which daemonises once its socket listens), a wait for
 * the socket, `wg set`, then ip commands — one process each, or with `batchFile`
 * all ip commands in one `ip -batch` process at the end. wireguard-go's own
 * output goes to `<logDir>/<link>.log`.
 */
export function shellScript(m: Mesh, keyFile: string, logDir: string, batchFile?: string): { script: string; batch?: string } {
  const { perLink, rest } = ipCommands(m)
  const lines = ['set -e']
  const batch: string[] = []
  m.peers.forEach((p, i) => {
    // Its errors go to a file, for the diagnosis if one dies (the daemon keeps stdout/stderr only with LOG_LEVEL set).
    lines.push(`LOG_LEVEL=error wireguard-go ${p.link} >>${logDir}/${p.link}.log 2>&1`)
    lines.push(`n=0; while [ ! -S ${UAPI_DIR}/${p.link}.sock ]; do n=$((n + 1)); [ $n -lt 1000 ] || exit 1; sleep 0.01; done`)
    lines.push(`wg set ${p.link} private-key ${keyFile} listen-port ${p.listenPort} peer ${p.publicKey} allowed-ips 0.0.0.0/0,::/0 endpoint ${p.endpoint}`)
    for (const command of perLink[i] ?? []) {
      if (batchFile === undefined) lines.push(`ip ${command}`)
      else batch.push(command)
    }
  })
  if (batchFile === undefined) lines.push(...rest.map((c) => `ip ${c}`))
  else lines.push(`ip -batch ${batchFile}`)
  return batchFile === undefined ? { script: lines.join('\n') + '\n' } : { script: lines.join('\n') + '\n', batch: [...batch, ...rest].join('\n') + '\n' }
}

// ── Namespaces ───────────────────────────────────────────────────────────────

/** Every blocking child gets a deadline: a hung spawnSync would also stop vitest's own test timeout. */
export const SPAWN_TIMEOUT_MS = 300_000

function run(cmd: string, args: readonly string[]): string {
  const result = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 })
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${result.status}: ${result.stderr.trim()}`)
  return result.stdout
}

/** Every namespace created and not yet destroyed, so an afterAll can clean up whatever a failure left. */
const live = new Set<BenchNetns>()

/** A throw-away namespace; `destroy()` stops its processes (SIGTERM, then SIGKILL), deletes it and the sockets of its links. */
export class BenchNetns {
  readonly name: string
  /** wireguard-go interface names whose sockets to remove on destroy. */
  readonly links = new Set<string>()

  constructor(prefix: string) {
    this.name = `${prefix}-${randomBytes(4).toString('hex')}`
    run('ip', ['netns', 'add', this.name])
    live.add(this)
    run('ip', ['-n', this.name, 'link', 'set', 'lo', 'up'])
  }

  pids(): number[] {
    const result = spawnSync('ip', ['netns', 'pids', this.name], { encoding: 'utf8', timeout: 30_000 })
    return result.status === 0 ? result.stdout.split('\n').filter(Boolean).map(Number) : []
  }

  /** `ip -j -n <ns> …` parsed; the caller names the shape it expects. */
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  ipJson<T>(...args: string[]): T {
    const text = run('ip', ['-j', '-n', this.name, ...args])
    return (text.trim() === '' ? [] : JSON.parse(text)) as T
  }

  async destroy(): Promise<void> {
    // SIGTERM lets wireguard-go remove its tun and socket; SIGKILL is the fallback.
    for (const how of ['SIGTERM', 'SIGKILL'] as const) {
      const pids = this.pids()
      if (pids.length === 0) break
      for (const pid of pids) {
        try {
          process.kill(pid, how)
        } catch {
          // already gone
        }
      }
      for (let waited = 0; waited < 5000 && this.pids().length > 0; waited += 50) await delay(50)
    }
    spawnSync('ip', ['netns', 'del', this.name], { stdio: 'ignore', timeout: 30_000 })
    for (const link of this.links) rmSync(`${UAPI_DIR}/${link}.sock`, { force: true })
    live.delete(this)
  }
}

export async function destroyAll(): Promise<void> {
  for (const ns of [...live]) await ns.destroy()
}

// Last resort when the worker exits without its afterAll (a crash, an uncaught error): SIGKILL and delete, synchronously.
process.once('exit', () => {
  for (const ns of live) {
    for (const pid of ns.pids()) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    spawnSync('ip', ['netns', 'del', ns.name], { stdio: 'ignore', timeout: 30_000 })
    // SIGKILLed wireguard-go leaves its socket behind.
    for (const link of ns.links) rmSync(`${UAPI_DIR}/${link}.sock`, { force: true })
  }
})

/** What remains of namespaces and links after cleanup: names of live namespaces, pids of wireguard-go serving our links, our socket files. */
export function leftovers(namespaces: string[], links: string[]): { namespaces: string[]; processes: number[]; sockets: string[] } {
  const existing = new Set(run('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]))
  const wanted = new Set(links)
  const processes: number[] = []
  const pgrep = spawnSync('pgrep', ['-a', 'wireguard-go'], { encoding: 'utf8', timeout: 30_000 })
  for (const line of pgrep.stdout.split('\n').filter(Boolean)) {
    const [pid = '', ...args] = line.split(' ')
    if (args.some((a) => wanted.has(a))) processes.push(Number(pid))
  }
  return {
    namespaces: namespaces.filter((n) => existing.has(n)),
    processes,
    sockets: links.filter((l) => existsSync(`${UAPI_DIR}/${l}.sock`)),
  }
}

// ── inotify instances ────────────────────────────────────────────────────────
// Every wireguard-go process holds one inotify instance (it watches its UAPI
// socket and exits when the file goes away), and fs.inotify.max_user_instances
// (128 by default) caps them per user across the whole machine — namespaces
// do not help. Past the cap a new wireguard-go dies at start ("Failed to listen
// on uapi socket: too many open files"), after the daemonising parent already
// reported success. So before starting N of them, wait for N free instances.

/** This user's inotify instances in use, machine-wide, and the cap. */
export function inotifyUsage(): { limit: number; used: number } {
  const limit = Number(readFileSync('/proc/sys/fs/inotify/max_user_instances', 'utf8').trim())
  const uid = process.getuid?.() ?? 0
  let used = 0
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      if (statSync(`/proc/${pid}`).uid !== uid) continue
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:inotify') used++
      }
    } catch {
      // The process exited while we looked, or its fds are not ours to read.
    }
  }
  return { limit, used }
}

/** Waits until `needed` inotify instances are free (instances of exited processes are released shortly after). */
export async function awaitInotifyHeadroom(needed: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { limit, used } = inotifyUsage()
    if (limit - used >= needed) return
    if (Date.now() > deadline) {
      throw new Error(
        `wireguard-go needs one inotify instance per interface: ${needed} needed, but fs.inotify.max_user_instances is ${limit} and this user's processes hold ${used}; ` +
          'run on a quieter machine or raise the limit',
      )
    }
    await delay(250)
  }
}

// ── The driver ───────────────────────────────────────────────────────────────

export interface DriverResult {
  event?: string
  planned: number
  applied: number
  operations: string[]
  changes: string[]
  failures: { operation: string; error: string; errno?: string }[]
  ms: number
  error?: string
}

export interface TimedDriverRun {
  result: DriverResult
  /** Wall time of the whole `ip netns exec … node driver apply` process. */
  wallMs: number
  stderr: string
}

/** One `reconcile-driver apply` in the namespace. */
export function driverApply(ns: BenchNetns, desired: unknown, env: Record<string, string> = {}): TimedDriverRun {
  const started = process.hrtime.bigint()
  const child = spawnSync('ip', ['netns', 'exec', ns.name, NODE, DRIVER, 'apply', '--backend', 'userspace'], {
    input: JSON.stringify(desired),
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 64 * 1024 * 1024,
    timeout: SPAWN_TIMEOUT_MS,
  })
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6
  const line = child.stdout.trim().split('\n').at(-1) ?? ''
  if (!line.startsWith('{')) throw new Error(`driver printed nothing (exit ${child.status}, ${child.signal ?? 'no signal'}): ${child.stderr.slice(-2000)}`)
  return { result: JSON.parse(line) as DriverResult, wallMs, stderr: child.stderr }
}

/** A warm `reconcile-driver serve` in the namespace: send a state, read its result lines. */
export class ServeDriver {
  readonly #child: ChildProcessWithoutNullStreams
  readonly #events: DriverResult[] = []
  #waiters: (() => void)[] = []
  #closed: Promise<void>
  stderr = ''

  constructor(ns: BenchNetns) {
    this.#child = spawn('ip', ['netns', 'exec', ns.name, NODE, DRIVER, 'serve', '--backend', 'userspace'])
    this.#child.stderr.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString('utf8')).slice(-20_000)
    })
    createInterface({ input: this.#child.stdout }).on('line', (line) => {
      this.#events.push(JSON.parse(line) as DriverResult)
      for (const wake of this.#waiters) wake()
      this.#waiters = []
    })
    this.#closed = new Promise((resolve) => this.#child.on('close', () => {
      resolve()
    }))
  }

  get events(): readonly DriverResult[] {
    return this.#events
  }

  /** Waits until an event at index ≥ `from` satisfies `match`, and returns it. */
  async waitFor(from: number, match: (e: DriverResult) => boolean, timeoutMs: number): Promise<DriverResult> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = this.#events.slice(from).find(match)
      if (found) return found
      const error = this.#events.slice(from).find((e) => e.error !== undefined)
      if (error) throw new Error(`driver: ${error.error}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`driver: no matching event within ${timeoutMs} ms; stderr: ${this.stderr.slice(-2000)}`)
      await Promise.race([new Promise<void>((resolve) => this.#waiters.push(resolve)), delay(Math.min(left, 250))])
    }
  }

  /** Sends a state and returns its `applied` result. */
  async apply(desired: unknown, timeoutMs = 120_000): Promise<DriverResult> {
    const from = this.#events.length
    this.#child.stdin.write(JSON.stringify(desired) + '\n')
    return this.waitFor(from, (e) => e.event === 'applied', timeoutMs)
  }

  /** Waits until no event has arrived for `quietMs` (drift repair of our own changes has settled). */
  async settle(quietMs: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    let seen = this.#events.length
    let since = Date.now()
    while (Date.now() < deadline) {
      await delay(25)
      if (this.#events.length !== seen) {
        seen = this.#events.length
        since = Date.now()
      } else if (Date.now() - since >= quietMs) return
    }
  }

  async close(): Promise<void> {
    this.#child.stdin.end()
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 60_000)
    await this.#closed
    clearTimeout(timer)
  }
}
