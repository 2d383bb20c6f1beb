// The commands that run on this host: set up a network or join one, run the
// agent, and tear down meshd's kernel objects without an agent.

import { createLogger } from '../logging/logger.js'
import type { LocalCommandContext } from '../cli/main.js'
import { NoWireguardError, openKernelLayer } from '../kernel/open.js'
import { EMPTY_STATE } from '../kernel/types.js'

export function initCommand(_options: { name?: string; cidr?: string; foreground: boolean }, context: LocalCommandContext): Promise<number> {
  context.io.stderr.write('meshd: init is not implemented yet\n')
  return Promise.resolve(1)
}

export function joinCommand(_options: { token: string; foreground: boolean }, context: LocalCommandContext): Promise<number> {
  context.io.stderr.write('meshd: join is not implemented yet\n')
  return Promise.resolve(1)
}

export function agentCommand(context: LocalCommandContext): Promise<number> {
  context.io.stderr.write('meshd: agent is not implemented yet\n')
  return Promise.resolve(1)
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
