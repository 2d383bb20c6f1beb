// The commands that run on this host: set up a network or join one, run the
// agent, and tear down meshd's kernel objects without an agent.

import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { createLogger, type Logger } from '../logging/logger.js'
import type { LocalCommandContext } from '../cli/main.js'
import { openRtnetlink } from '../kernel/netlink.js'
import { NoWireguardError, openKernelLayer } from '../kernel/open.js'
import { EMPTY_STATE, isOwnedTable } from '../kernel/types.js'
import { IdentityError } from '../membership/identity.js'
import { createNetwork } from '../membership/network.js'
import { parseToken } from '../membership/token.js'
import { Secret } from '../logging/secret.js'
import { createAgent } from './agent.js'
import { hasNetwork, loadIdentity, loadOrCreateWireguardKey, saveAdmissions, saveNetwork, savePendingToken, StateError } from './state.js'

const EXIT_OK = 0
const EXIT_FAILURE = 1
const EXIT_USAGE = 2

const NO_SERVICE_INSTALL =
  'installing the systemd service is not implemented yet; run with --foreground (containers and tests do), or run "meshd agent" under your own supervisor'

function processLogger(context: LocalCommandContext): Logger {
  const env = context.io.env ?? process.env
  return createLogger({ destination: context.io.stderr, level: env.MESHD_LOG_LEVEL ?? 'info' })
}

function progress(context: LocalCommandContext, line: string): void {
  const stderr = context.io.stderr as NodeJS.WritableStream & { isTTY?: boolean }
  if (stderr.isTTY === true) stderr.write(`${line}\n`)
}

/** Runs the agent until SIGTERM/SIGINT, the command's signal, a leave or an eviction. */
async function runAgent(context: LocalCommandContext, announce?: (overlay: string, peers: number) => void): Promise<number> {
  const logger = processLogger(context)
  const agent = createAgent({ stateDir: context.global.stateDir, socketPath: context.global.socketPath, listen: context.global.listen, hostname: hostname() }, { logger })
  const onSignal = (): void => {
    void agent.stop()
  }
  process.once('SIGTERM', onSignal)
  process.once('SIGINT', onSignal)
  context.signal.addEventListener('abort', onSignal, { once: true })
  try {
    progress(context, 'meshd: starting the agent…')
    await agent.start({ signal: context.signal })
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

export async function initCommand(options: { name?: string; cidr?: string; foreground: boolean }, context: LocalCommandContext): Promise<number> {
  const { stateDir } = context.global
  if (!options.foreground) {
    context.io.stderr.write(`meshd: ${NO_SERVICE_INSTALL}\n`)
    return EXIT_FAILURE
  }
  try {
    if (await hasNetwork(stateDir)) {
      context.io.stderr.write(`meshd: ${stateDir} already holds a network; run "meshd agent", or "meshd leave" first\n`)
      return EXIT_FAILURE
    }
    const identity = await loadIdentity(stateDir)
    const created = createNetwork({
      name: options.name ?? 'meshd',
      founder: identity.nodeId,
      ...(options.cidr === undefined ? {} : { cidr: options.cidr }),
      existingRoutes: await hostRouteDestinations(context.signal),
      random: (size) => new Uint8Array(randomBytes(size)),
    })
    if (!created.ok) {
      context.io.stderr.write(`meshd: ${created.reason}\n`)
      return EXIT_USAGE
    }
    await loadOrCreateWireguardKey(stateDir)
    await saveNetwork(stateDir, created.value)
    await saveAdmissions(stateDir, [])
    progress(context, `meshd: created network ${created.value.name} (${created.value.ipv4Cidr})`)
  } catch (error) {
    if (error instanceof StateError || error instanceof IdentityError) {
      context.io.stderr.write(`meshd: ${error.message}\n`)
      return EXIT_FAILURE
    }
    throw error
  }
  return runAgent(context, (overlay) => context.io.stdout.write(`network created; this host is ${overlay}\n`))
}

export async function joinCommand(options: { token: string; foreground: boolean }, context: LocalCommandContext): Promise<number> {
  const { stateDir } = context.global
  const parsed = parseToken(options.token, { now: Date.now() })
  if (!parsed.ok) {
    context.io.stderr.write(`meshd: ${parsed.reason}\n`)
    return EXIT_USAGE
  }
  if (!options.foreground) {
    context.io.stderr.write(`meshd: ${NO_SERVICE_INSTALL}\n`)
    return EXIT_FAILURE
  }
  try {
    if (await hasNetwork(stateDir)) {
      context.io.stderr.write(`meshd: ${stateDir} already holds a network; run "meshd leave" before joining another\n`)
      return EXIT_FAILURE
    }
    await loadIdentity(stateDir)
    await loadOrCreateWireguardKey(stateDir)
    await savePendingToken(stateDir, new Secret(options.token.replace(/\s+/g, '')))
    await saveNetwork(stateDir, parsed.token.network)
    progress(context, `meshd: token for network ${parsed.token.network.name} checked; asking a member for admission…`)
  } catch (error) {
    if (error instanceof StateError || error instanceof IdentityError) {
      context.io.stderr.write(`meshd: ${error.message}\n`)
      return EXIT_FAILURE
    }
    throw error
  }
  return runAgent(context, (overlay) => context.io.stdout.write(`joined network ${parsed.token.network.name}; this host is ${overlay}\n`))
}

export function agentCommand(context: LocalCommandContext): Promise<number> {
  return runAgent(context)
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
