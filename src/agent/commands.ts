// The commands that run on this host: set up a network or join one, run the
// agent, and tear down meshd's kernel objects without an agent.
//
// init and join write the state directory inside a StateTransaction, then
// either run the agent here (--foreground) or install meshd and its systemd
// service (src/install) and wait for the agent there to join. The join
// request reaches the service as join.token (0600) in the state directory,
// which the agent consumes once at start. Whichever way, a join that fails
// undoes what the run wrote: state files, and for the service the install.

import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { setTimeout as delay } from 'node:timers/promises'
import { createLogger, type Logger } from '../logging/logger.js'
import type { LocalCommandContext } from '../cli/main.js'
import { DEFAULT_STATE_DIR } from '../cli/args.js'
import { callAgent } from '../control/client.js'
import { DEFAULT_SOCKET_PATH } from '../control/protocol.js'
import {
  createSystemctl,
  InstallError,
  installService,
  layoutFromEnv,
  nodeInstallFs,
  nodePackageReader,
  onHost,
  serviceState,
  systemdRunning,
  thisPackageRoot,
  waitForJoin,
  type InstallFs,
  type InstallLayout,
  type JoinStatus,
  type PackageReader,
  type Systemctl,
} from '../install/index.js'
import { openRtnetlink } from '../kernel/netlink.js'
import { NoWireguardError, openKernelLayer } from '../kernel/open.js'
import { EMPTY_STATE, isOwnedTable } from '../kernel/types.js'
import { IdentityError } from '../membership/identity.js'
import { createNetwork } from '../membership/network.js'
import { parseToken } from '../membership/token.js'
import { Secret } from '../logging/secret.js'
import { createAgent as createRealAgent, type Agent, type AgentComponents, type AgentInit } from './agent.js'
import { beginStateChange, hasNetwork, loadIdentity, loadOrCreateWireguardKey, saveAdmissions, saveNetwork, savePendingToken, StateError, type StateTransaction } from './state.js'

const EXIT_OK = 0
const EXIT_FAILURE = 1
const EXIT_USAGE = 2

/** What init and join need besides the state directory; tests replace parts of it. */
export interface CommandDeps {
  createAgent: (init: AgentInit, components: AgentComponents) => Agent
  fs: InstallFs
  reader: PackageReader
  systemctl: Systemctl
  /** The meshd package this process runs from, copied to the install prefix. */
  sourceRoot: string
  /** The agent's status over the control socket, or undefined while it does not answer. */
  agentStatus: (socketPath: string, signal: AbortSignal) => Promise<JoinStatus | undefined>
  /** IPv4 destinations of the host's routes, for init's overlap check. */
  hostRoutes: (signal: AbortSignal) => Promise<string[]>
  now: () => number
  sleep: (ms: number, signal: AbortSignal) => Promise<void>
  joinTimeoutMs: number
  peerTimeoutMs: number
  pollMs: number
}

export function defaultCommandDeps(): CommandDeps {
  return {
    createAgent: createRealAgent,
    fs: nodeInstallFs,
    reader: nodePackageReader,
    systemctl: createSystemctl(),
    sourceRoot: thisPackageRoot(),
    agentStatus: async (socketPath, signal) => {
      try {
        return (await callAgent(socketPath, 'status', {}, { signal, timeoutMs: 5000 })) as JoinStatus
      } catch {
        // Not listening yet, still starting, or restarting: keep polling until the deadline.
        return undefined
      }
    },
    hostRoutes: hostRouteDestinations,
    now: Date.now,
    sleep: (ms, signal) => delay(ms, undefined, { signal }),
    joinTimeoutMs: 90_000,
    peerTimeoutMs: 20_000,
    pollMs: 500,
  }
}

type ServiceCommand = 'init' | 'join' | 'install'

function foregroundHint(command: ServiceCommand): string {
  const example = command === 'join' ? 'meshd join <token> --foreground' : command === 'init' ? 'meshd init --foreground' : 'meshd init --foreground or meshd join <token> --foreground'
  return `this host does not run systemd (no /run/systemd/system), so meshd cannot install its service; run the agent in the foreground instead: ${example}`
}

function processLogger(context: LocalCommandContext): Logger {
  const env = context.io.env ?? process.env
  return createLogger({ destination: context.io.stderr, level: env.MESHD_LOG_LEVEL ?? 'info' })
}

function progress(context: LocalCommandContext, line: string): void {
  const stderr = context.io.stderr as NodeJS.WritableStream & { isTTY?: boolean }
  if (stderr.isTTY === true) stderr.write(`${line}\n`)
}

/**
 * Runs the agent until SIGTERM/SIGINT, the command's signal, a leave or an
 * eviction. With a state transaction (init, join): committed once the agent
 * has started (joined), rolled back when it fails to, so a failed join leaves
 * nothing behind.
 */
async function runAgent(context: LocalCommandContext, deps: Pick<CommandDeps, 'createAgent'>, transaction?: StateTransaction, announce?: (overlay: string, peers: number) => void): Promise<number> {
  const logger = processLogger(context)
  const agent = deps.createAgent({ stateDir: context.global.stateDir, socketPath: context.global.socketPath, listen: context.global.listen, mdns: context.global.mdns, hostname: hostname() }, { logger })
  const onSignal = (): void => {
    void agent.stop()
  }
  process.once('SIGTERM', onSignal)
  process.once('SIGINT', onSignal)
  context.signal.addEventListener('abort', onSignal, { once: true })
  let started = false
  try {
    progress(context, 'meshd: starting the agent…')
    await agent.start({ signal: context.signal })
    started = true
    transaction?.commit()
    const overlay = agent.overlay()
    if (overlay !== undefined) announce?.(overlay.ipv4, 0)
    await agent.stopped
    return EXIT_OK
  } catch (error) {
    if (error instanceof StateError || error instanceof IdentityError || error instanceof NoWireguardError) {
      context.io.stderr.write(`meshd: ${error.message}\n`)
      return EXIT_FAILURE
    }
    context.io.stderr.write(`meshd: the agent failed: ${error instanceof Error ? error.message : String(error)}\n`)
    return EXIT_FAILURE
  } finally {
    process.removeListener('SIGTERM', onSignal)
    process.removeListener('SIGINT', onSignal)
    await agent.stop()
    if (!started && transaction !== undefined) {
      await transaction.rollback()
      progress(context, 'meshd: nothing was kept: the state this run wrote is removed')
    }
  }
}

/** IPv4 destinations of the host's routes outside meshd's own tables, for the overlay overlap check. */
async function hostRouteDestinations(signal: AbortSignal): Promise<string[]> {
  const rtnl = openRtnetlink({})
  try {
    const routes = await rtnl.routeList({ signal })
    return routes.filter((route) => route.family === 4 && !isOwnedTable(route.table) && route.otherType !== 'multicast').map((route) => route.dst)
  } finally {
    rtnl.close()
  }
}

type ServiceTarget = { layout: InstallLayout; stateDir: string }

/**
 * Without --foreground: where the service's state goes, or the exit code when
 * the service cannot be installed here (options that only --foreground can
 * honour; no systemd). Nothing is changed on the host either way.
 */
async function serviceTarget(command: ServiceCommand, context: LocalCommandContext, deps: CommandDeps): Promise<ServiceTarget | number> {
  const { global } = context
  if (global.stateDir !== DEFAULT_STATE_DIR || global.socketPath !== DEFAULT_SOCKET_PATH || global.listen.length > 0) {
    context.io.stderr.write(`meshd: --state-dir, --socket and --listen need --foreground; the service always uses ${DEFAULT_STATE_DIR} and ${DEFAULT_SOCKET_PATH}\n`)
    return EXIT_USAGE
  }
  if (global.mdns) {
    context.io.stderr.write('meshd: --mdns (MESHD_MDNS) needs --foreground; for the service, set Environment=MESHD_MDNS=1 in a drop-in (README, "mDNS")\n')
    return EXIT_USAGE
  }
  const layout = layoutFromEnv(context.io.env ?? process.env)
  if (!(await systemdRunning(layout, deps.fs))) {
    context.io.stderr.write(`meshd: ${foregroundHint(command)}\n`)
    return EXIT_FAILURE
  }
  return { layout, stateDir: onHost(layout, layout.stateDir) }
}

function stateFailure(context: LocalCommandContext, error: unknown): number {
  if (error instanceof StateError || error instanceof IdentityError) {
    context.io.stderr.write(`meshd: ${error.message}\n`)
    return EXIT_FAILURE
  }
  throw error
}

const NOTHING_KEPT = 'nothing of this run is kept (the previous install, if any, is back)'

/**
 * Installs and starts the service for a prepared state directory, waits for
 * the agent to join, and prints the result. On any failure (install, join
 * refused or timed out, Ctrl-C) undoes the install and the state this run
 * wrote, so the host is as it was. `start: false` (install on a host that is
 * not a member yet) installs the files only.
 */
async function installAndWait(
  command: ServiceCommand,
  target: ServiceTarget,
  transaction: StateTransaction | undefined,
  context: LocalCommandContext,
  deps: CommandDeps,
  start = true,
): Promise<number> {
  const { layout } = target
  const controller = new AbortController()
  const onSignal = (): void => {
    controller.abort(new Error('interrupted'))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const signal = AbortSignal.any([context.signal, controller.signal])
  let install
  try {
    const restartsBefore = (await serviceState(layout, deps.systemctl, signal)).restarts
    install = await installService(
      layout,
      {
        fs: deps.fs,
        reader: deps.reader,
        systemctl: deps.systemctl,
        sourceRoot: deps.sourceRoot,
        report: (line) => {
          context.io.stderr.write(`meshd: ${line}\n`)
        },
      },
      { signal, runId: `${process.pid}-${randomBytes(4).toString('hex')}`, start },
    )
    if (!start) {
      await install.commit()
      context.io.stdout.write(`meshd is installed in ${layout.prefix} with ${layout.unitName}; run "meshd init" or "meshd join <token>" to start it\n`)
      return EXIT_OK
    }
    const result = await waitForJoin(
      { joinTimeoutMs: deps.joinTimeoutMs, peerTimeoutMs: command === 'join' ? deps.peerTimeoutMs : 0, pollMs: deps.pollMs, restartsBefore },
      {
        status: (s) => deps.agentStatus(onHost(layout, layout.socketPath), s),
        service: (s) => serviceState(layout, deps.systemctl, s),
        now: deps.now,
        sleep: deps.sleep,
        progress: (line) => {
          progress(context, `meshd: ${line}`)
        },
      },
      signal,
    )
    if (!result.ok) {
      await install.rollback()
      await transaction?.rollback()
      context.io.stderr.write(`meshd: ${result.reason}; ${NOTHING_KEPT}\n`)
      return EXIT_FAILURE
    }
    await install.commit()
    transaction?.commit()
    const network = result.network === undefined ? '' : ` ${result.network}`
    const running = `${layout.unitName} is enabled and running`
    context.io.stdout.write(
      command === 'join'
        ? `joined network${network}; this host is ${result.overlay}; reached ${result.peersUp} of ${result.peersKnown} peer(s); ${running}\n`
        : command === 'init'
          ? `network${network} created; this host is ${result.overlay}; ${running}\n`
          : `meshd is installed in ${layout.prefix}; this host is ${result.overlay} in network${network}; ${running}\n`,
    )
    return EXIT_OK
  } catch (error) {
    let undoFailed = ''
    try {
      await install?.rollback()
    } catch (undoError) {
      undoFailed = `; ${undoError instanceof Error ? undoError.message : 'undoing the install failed'}`
    }
    await transaction?.rollback()
    if (error instanceof InstallError) {
      context.io.stderr.write(`meshd: ${error.message}${undoFailed}\n`)
      return EXIT_FAILURE
    }
    if (signal.aborted) {
      context.io.stderr.write(`meshd: interrupted; ${NOTHING_KEPT}${undoFailed}\n`)
      return EXIT_FAILURE
    }
    // e.g. systemctl missing, or a state file that cannot be written: one line, never a stack.
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error)
    context.io.stderr.write(`meshd: ${message}; ${NOTHING_KEPT}${undoFailed}\n`)
    return EXIT_FAILURE
  } finally {
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
  }
}

export async function initCommand(options: { name?: string; cidr?: string; foreground: boolean }, context: LocalCommandContext, deps: CommandDeps = defaultCommandDeps()): Promise<number> {
  const target = options.foreground ? undefined : await serviceTarget('init', context, deps)
  if (typeof target === 'number') return target
  const stateDir = target?.stateDir ?? context.global.stateDir
  let transaction: StateTransaction | undefined
  let networkName: string
  try {
    if (await hasNetwork(stateDir)) {
      context.io.stderr.write(`meshd: ${stateDir} already holds a network; run "meshd agent", or "meshd leave" first\n`)
      return EXIT_FAILURE
    }
    transaction = await beginStateChange(stateDir)
    const identity = await loadIdentity(stateDir)
    const created = createNetwork({
      name: options.name ?? 'meshd',
      founder: identity.nodeId,
      ...(options.cidr === undefined ? {} : { cidr: options.cidr }),
      existingRoutes: await deps.hostRoutes(context.signal),
      random: (size) => new Uint8Array(randomBytes(size)),
    })
    if (!created.ok) {
      await transaction.rollback()
      context.io.stderr.write(`meshd: ${created.reason}\n`)
      return EXIT_USAGE
    }
    await loadOrCreateWireguardKey(stateDir)
    await saveNetwork(stateDir, created.value)
    await saveAdmissions(stateDir, [])
    networkName = created.value.name
    progress(context, `meshd: created network ${created.value.name} (${created.value.ipv4Cidr})`)
  } catch (error) {
    await transaction?.rollback()
    return stateFailure(context, error)
  }
  if (target !== undefined) return installAndWait('init', target, transaction, context, deps)
  return runAgent(context, deps, transaction, (overlay) => {
    context.io.stdout.write(`network ${networkName} created; this host is ${overlay}\n`)
  })
}

export async function joinCommand(options: { token: string; foreground: boolean }, context: LocalCommandContext, deps: CommandDeps = defaultCommandDeps()): Promise<number> {
  const parsed = parseToken(options.token, { now: Date.now() })
  if (!parsed.ok) {
    context.io.stderr.write(`meshd: ${parsed.reason}\n`)
    return EXIT_USAGE
  }
  const target = options.foreground ? undefined : await serviceTarget('join', context, deps)
  if (typeof target === 'number') return target
  const stateDir = target?.stateDir ?? context.global.stateDir
  let transaction: StateTransaction | undefined
  try {
    if (await hasNetwork(stateDir)) {
      context.io.stderr.write(`meshd: ${stateDir} already holds a network; run "meshd leave" before joining another\n`)
      return EXIT_FAILURE
    }
    // The agent consumes the token once: it asks a member for admission, saves the chain and deletes join.token.
    transaction = await beginStateChange(stateDir)
    await loadIdentity(stateDir)
    await loadOrCreateWireguardKey(stateDir)
    await savePendingToken(stateDir, new Secret(options.token.replace(/\s+/g, '')))
    await saveNetwork(stateDir, parsed.token.network)
    progress(context, `meshd: token for network ${parsed.token.network.name} checked; asking a member for admission…`)
  } catch (error) {
    await transaction?.rollback()
    return stateFailure(context, error)
  }
  if (target !== undefined) return installAndWait('join', target, transaction, context, deps)
  return runAgent(context, deps, transaction, (overlay) => {
    context.io.stdout.write(`joined network ${parsed.token.network.name}; this host is ${overlay}\n`)
  })
}

/**
 * `meshd install`: install or upgrade meshd and its unit without joining. On
 * a member the service is enabled and restarted on the new files (the links
 * keep forwarding) and must come back with its address, else the previous
 * install is restored; elsewhere only the files are installed.
 */
export async function installCommand(context: LocalCommandContext, deps: CommandDeps = defaultCommandDeps()): Promise<number> {
  const target = await serviceTarget('install', context, deps)
  if (typeof target === 'number') return target
  let member
  try {
    member = await hasNetwork(target.stateDir)
  } catch (error) {
    return stateFailure(context, error)
  }
  return installAndWait('install', target, undefined, context, deps, member)
}

export function agentCommand(context: LocalCommandContext, deps: Pick<CommandDeps, 'createAgent'> = { createAgent: createRealAgent }): Promise<number> {
  return runAgent(context, deps)
}

/** `meshd down` with no agent running: apply the empty state, which removes exactly what meshd owns. */
export async function downCommand(context: LocalCommandContext): Promise<number> {
  const logger = createLogger({ destination: context.io.stderr, level: 'warn' })
  let kernel
  try {
    kernel = await openKernelLayer({ wireguard: 'auto' }, { logger }, context.signal)
  } catch (error) {
    if (error instanceof NoWireguardError) kernel = undefined
    else throw error
  }
  if (!kernel) {
    context.io.stderr.write('meshd: no WireGuard backend on this host; nothing of meshd can be running\n')
    return 0
  }
  try {
    const result = await kernel.reconciler.apply(EMPTY_STATE, { signal: context.signal })
    for (const failure of result.failures) context.io.stderr.write(`meshd: ${failure.description}: ${failure.error.message}\n`)
    context.io.stdout.write(`removed ${result.applied.length} meshd object(s)\n`)
    return result.failures.length === 0 ? 0 : 1
  } finally {
    await kernel.close()
  }
}
