// The composition root of the meshd process: the CLI, with the commands that
// run the agent on this host plugged in. bin/meshd.js calls this.

import { main as cli, type CliIo, type LocalCommands } from './cli/main.js'

/** The agent's modules (libp2p and the kernel layer) load only for the commands that need them. */
const localCommands: LocalCommands = {
  init: async (options, context) => (await import('./agent/commands.js')).initCommand(options, context),
  join: async (options, context) => (await import('./agent/commands.js')).joinCommand(options, context),
  install: async (context) => (await import('./agent/commands.js')).installCommand(context),
  agent: async (context) => (await import('./agent/commands.js')).agentCommand(context),
  down: async (context) => (await import('./agent/commands.js')).downCommand(context),
}

export function main(argv: readonly string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  return cli(argv, io, localCommands)
}
