// The meshd command line. Client commands talk to the agent only through the
// control socket; the commands that run or set up the agent locally are
// injected (src/main.ts wires them), so this folder never imports the agent.

import { readFileSync } from 'node:fs'
import { AgentError, AgentNotRunning, callAgent } from '../control/client.js'
import { LogLevelError, parseLogLevel } from '../logging/logger.js'
import { packageVersion } from '../version.js'
import { parseCommandLine, parseCount, parseDuration, UsageError, type GlobalOptions } from './args.js'
import { formatPing, parsePingReport, PingShapeError } from './ping-format.js'
import { formatStatus, parseStatusReport, StatusShapeError, alignTable } from './status-format.js'

export interface CliIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  env?: Readonly<Record<string, string | undefined>>
}

/** Exit codes: 0 ok, 1 failure, 2 bad usage or bad input (e.g. a bad token). */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const

export interface LocalCommandContext {
  global: GlobalOptions
  io: CliIo
  signal: AbortSignal
}

/** Commands that run on this host rather than asking a running agent. */
export interface LocalCommands {
  init(options: { name?: string; cidr?: string; foreground: boolean }, context: LocalCommandContext): Promise<number>
  join(options: { token: string; foreground: boolean }, context: LocalCommandContext): Promise<number>
  /** Installs or upgrades meshd and its systemd unit without joining. */
  install?(context: LocalCommandContext): Promise<number>
  agent(context: LocalCommandContext): Promise<number>
  /** Removes every kernel object meshd owns, with or without a running agent. */
  down(context: LocalCommandContext): Promise<number>
}

interface CommandHelp {
  usage: string
  summary: string
  example: string
}

export const HELP: Record<string, CommandHelp> = {
  init: { usage: 'meshd init [--name NAME] [--cidr CIDR] [--foreground]', summary: 'Create a network with this host as its first member and start the agent (without --foreground: install and start meshd.service).', example: 'meshd init --name lab --cidr 10.73.0.0/16' },
  join: { usage: 'meshd join <token> [--foreground]', summary: 'Join the network a token from "meshd token create" invites to, and start the agent (without --foreground: install and start meshd.service).', example: 'meshd join meshd1.AAEC…' },
  install: { usage: 'meshd install', summary: 'Install or upgrade meshd in /usr/local/lib/meshd and meshd.service without joining; restarts the service on a member.', example: 'meshd install' },
  token: { usage: 'meshd token create [--ttl 24h] [--uses 1]', summary: 'Print a join token (and nothing else) for another host. The token is a secret: it carries the network key.', example: 'meshd token create --ttl 2h --uses 3' },
  status: { usage: 'meshd status [--json]', summary: 'Show this host, its peers, links, handshakes and the path to each peer.', example: 'meshd status --json | jq .peers' },
  peers: { usage: 'meshd peers [--json]', summary: 'Show the peer table only.', example: 'meshd peers' },
  up: { usage: 'meshd up', summary: 'Re-apply the mesh to the kernel now (after "meshd down", or to repair by hand).', example: 'meshd up' },
  down: { usage: 'meshd down', summary: "Remove every kernel object meshd owns (links, addresses, routes, rules); the agent stays idle until \"meshd up\".", example: 'meshd down' },
  leave: { usage: 'meshd leave', summary: 'Tell the network this host leaves, remove its kernel objects, and wipe its state.', example: 'meshd leave' },
  evict: { usage: 'meshd evict <node> [--reason TEXT]', summary: 'Remove another member from the network everywhere; its id is refused from then on.', example: 'meshd evict 12D3KooWAbc… --reason "host retired"' },
  ping: { usage: 'meshd ping <peer> [--count 5]', summary: 'Probe a peer over every candidate path (direct and through each relay) and mark the forward path in use; <peer> is a name or node id.', example: 'meshd ping beta --count 10' },
  agent: { usage: 'meshd agent', summary: 'Run the agent in the foreground (what the systemd unit runs).', example: 'meshd agent --state-dir /var/lib/meshd' },
  version: { usage: 'meshd version', summary: 'Print the meshd version and the Node.js it runs on.', example: 'meshd version' },
}

const GLOBAL_HELP = `global options:
  --state-dir DIR     state directory (env MESHD_STATE_DIR; default /var/lib/meshd)
  --socket PATH       control socket (env MESHD_SOCKET; default /run/meshd/meshd.sock)
  --listen MULTIADDR  libp2p listen address, repeatable (default /ip4/0.0.0.0/tcp/7373)
  --mdns              find members on this LAN by multicast DNS (env MESHD_MDNS=1; default off)
  -h, --help          help for a command`

function usageText(): string {
  const rows = Object.entries(HELP).map(([name, h]) => [`  ${name}`, h.summary])
  return `usage: meshd <command> [options]\n\ncommands:\n${alignTable(rows)}\n\n${GLOBAL_HELP}\n\nRun "meshd <command> --help" for a command's options and an example.\n`
}

function commandHelp(name: string): string {
  const h = HELP[name]
  if (!h) return usageText()
  return `usage: ${h.usage}\n\n${h.summary}\n\nexample:\n  ${h.example}\n\n${GLOBAL_HELP}\n`
}

/** Whether this process has CAP_NET_ADMIN (bit 12 of CapEff), which root has. */
export function hasNetAdmin(statusText?: string): boolean {
  let text = statusText
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8')
    } catch {
      return process.getuid?.() === 0
    }
  }
  const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(text)
  return match?.[1] !== undefined && (BigInt(`0x${match[1]}`) & (1n << 12n)) !== 0n
}

const NEEDS_NET_ADMIN = new Set(['init', 'join', 'install', 'agent', 'up', 'down', 'leave', 'evict', 'token', 'status', 'peers', 'ping'])

export async function main(argv: readonly string[], io: CliIo, local?: LocalCommands): Promise<number> {
  const env = io.env ?? process.env
  const print = (text: string): void => {
    io.stdout.write(text)
  }
  const fail = (code: number, message: string): number => {
    io.stderr.write(`meshd: ${message}\n`)
    return code
  }

  let parsed
  try {
    parseLogLevel(env.MESHD_LOG_LEVEL, 'info')
    parsed = parseCommandLine(argv, env)
  } catch (error) {
    if (error instanceof UsageError || error instanceof LogLevelError) return fail(EXIT.usage, error.message)
    throw error
  }
  const { command, positionals, options, global } = parsed
  if (command === 'help') {
    const topic = positionals[0]
    print(topic ? commandHelp(topic) : usageText())
    return EXIT.ok
  }
  if (global.help) {
    print(commandHelp(command))
    return EXIT.ok
  }
  if (command === 'version') {
    print(`meshd ${packageVersion()} (node ${process.version})\n`)
    return EXIT.ok
  }
  if (NEEDS_NET_ADMIN.has(command) && !hasNetAdmin()) return fail(EXIT.failure, `"${command}" needs root (CAP_NET_ADMIN); run it with sudo`)

  const controller = new AbortController()
  const context: LocalCommandContext = { global, io, signal: controller.signal }
  const ask = (method: Parameters<typeof callAgent>[1], params: Record<string, unknown> = {}): Promise<unknown> => callAgent(global.socketPath, method, params, { signal: controller.signal })

  try {
    switch (command) {
      case 'status':
      case 'peers': {
        const report = parseStatusReport(await ask('status'))
        if (global.json) print(JSON.stringify(command === 'peers' ? report.peers : report, null, 2) + '\n')
        else if (command === 'status') print(formatStatus(report, Date.now()))
        else print(formatStatus(report, Date.now()).split('\n\n').slice(1).join('\n\n'))
        return EXIT.ok
      }
      case 'token': {
        if (positionals[0] !== 'create' || positionals.length > 1) return fail(EXIT.usage, 'usage: meshd token create [--ttl 24h] [--uses 1]')
        const ttlMs = parseDuration(typeof options.ttl === 'string' ? options.ttl : '24h')
        const uses = parseCount(typeof options.uses === 'string' ? options.uses : '1', '--uses')
        const result = (await ask('token.create', { ttlMs, uses })) as { token?: unknown }
        if (typeof result.token !== 'string') return fail(EXIT.failure, 'the agent answered without a token')
        print(result.token + '\n')
        return EXIT.ok
      }
      case 'up':
        await ask('up')
        print('mesh applied\n')
        return EXIT.ok
      case 'leave':
        await ask('leave')
        print('left the network; kernel objects removed and state wiped\n')
        return EXIT.ok
      case 'evict': {
        const node = positionals[0]
        if (!node || positionals.length > 1) return fail(EXIT.usage, 'usage: meshd evict <node> [--reason TEXT]')
        await ask('evict', { node, reason: typeof options.reason === 'string' ? options.reason : 'evicted by an operator' })
        print(`evicted ${node}\n`)
        return EXIT.ok
      }
      case 'ping': {
        const peer = positionals[0]
        if (!peer || positionals.length > 1) return fail(EXIT.usage, 'usage: meshd ping <peer> [--count 5]')
        const count = parseCount(typeof options.count === 'string' ? options.count : '5', '--count')
        if (count > 100) return fail(EXIT.usage, '--count: at most 100')
        const report = parsePingReport(await ask('ping', { peer, count }))
        print(global.json ? JSON.stringify(report, null, 2) + '\n' : formatPing(report))
        return EXIT.ok
      }
      case 'down':
        try {
          await ask('down')
          print('meshd objects removed; the agent is idle until "meshd up"\n')
          return EXIT.ok
        } catch (error) {
          if (!(error instanceof AgentNotRunning) || !local) throw error
          return await local.down(context)
        }
      case 'agent':
        if (!local) return fail(EXIT.failure, '"agent" is not available in this build')
        return await local.agent(context)
      case 'init': {
        if (positionals.length > 0) return fail(EXIT.usage, `usage: ${HELP.init?.usage ?? ''}`)
        if (!local) return fail(EXIT.failure, '"init" is not available in this build')
        return await local.init({ foreground: options.foreground === true, ...(typeof options.name === 'string' ? { name: options.name } : {}), ...(typeof options.cidr === 'string' ? { cidr: options.cidr } : {}) }, context)
      }
      case 'join': {
        const token = positionals[0]
        if (!token || positionals.length > 1) return fail(EXIT.usage, `usage: ${HELP.join?.usage ?? ''}`)
        if (!local) return fail(EXIT.failure, '"join" is not available in this build')
        return await local.join({ token, foreground: options.foreground === true }, context)
      }
      case 'install':
        if (positionals.length > 0) return fail(EXIT.usage, `usage: ${HELP.install?.usage ?? ''}`)
        if (!local?.install) return fail(EXIT.failure, '"install" is not available in this build')
        return await local.install(context)
      default:
        return fail(EXIT.usage, `unknown command "${command}"; run "meshd help"`)
    }
  } catch (error) {
    if (error instanceof UsageError) return fail(EXIT.usage, error.message)
    if (error instanceof AgentNotRunning || error instanceof AgentError || error instanceof StatusShapeError || error instanceof PingShapeError) return fail(EXIT.failure, error.message)
    throw error
  }
}
