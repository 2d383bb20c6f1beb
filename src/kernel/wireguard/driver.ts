// A test driver for the userspace backend. Network namespaces are per
// process, and the netns tests run in the host namespace, so they run this
// inside a namespace instead:
//
//   echo '[{"op":"ensure","name":"md-x"},{"op":"get","name":"md-x"}]' |
//     ip netns exec NS node dist/kernel/wireguard/driver.js
//
// stdin: a JSON array of commands; stdout: {"results":[…]} with one entry per
// command, or {"results":[…],"error":{…}} (exit code 1) at the first failure.
// Keys are plain base64 strings in the input; output never contains a key.

import { readFileSync, readdirSync } from 'node:fs'
import { createLogger, parseLogLevel } from '../../logging/logger.js'
import { Secret } from '../../logging/secret.js'
import { KernelError } from '../port.js'
import type { Endpoint, WireguardDevice } from '../types.js'
import { wireguardDeviceDiffers } from './backend.js'
import { createUserspaceBackend } from './userspace.js'

interface JsonPeer {
  publicKey: string
  presharedKey?: string
  endpoint?: Endpoint
  allowedIps: string[]
  persistentKeepaliveSeconds?: number
}
interface JsonDevice {
  name: string
  privateKey: string
  listenPort: number
  fwmark?: number
  peers: JsonPeer[]
}

export type DriverCommand =
  | { op: 'ensure' | 'remove' | 'get' | 'create'; name: string }
  | { op: 'set' | 'check'; device: JsonDevice }
  | { op: 'list' | 'zombies' }

/** Wraps the plain keys of a JSON device into Secrets. */
function toDevice(json: JsonDevice): WireguardDevice {
  return {
    ...json,
    privateKey: new Secret(json.privateKey),
    peers: json.peers.map(({ presharedKey, ...peer }) => ({
      ...peer,
      ...(presharedKey === undefined ? {} : { presharedKey: new Secret(presharedKey) }),
    })),
  }
}

/** Counts this process's children that have exited but were not reaped. */
function zombieChildren(): number {
  let count = 0
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (state === 'Z' && Number(ppid) === process.pid) count++
    } catch {
      // exited meanwhile
    }
  }
  return count
}

/** Runs the commands in order and returns their results; stops at the first failure. */
async function run(commands: DriverCommand[]): Promise<{ results: unknown[]; error?: unknown }> {
  const logger = createLogger({ destination: process.stderr, level: parseLogLevel(process.env.MESHD_LOG_LEVEL, 'warn') })
  const backend = createUserspaceBackend({ logger })
  const signal = AbortSignal.timeout(30_000)
  const results: unknown[] = []
  try {
    for (const command of commands) {
      switch (command.op) {
        case 'ensure':
          await backend.ensureInterface(command.name, { signal })
          results.push(null)
          break
        case 'create': {
          const failure = (await backend.createInterfaces?.([command.name], { signal }))?.get(command.name)
          if (failure !== undefined) throw failure
          results.push(null)
          break
        }
        case 'remove':
          await backend.removeInterface(command.name, { signal })
          results.push(null)
          break
        case 'get':
          results.push(await backend.get(command.name, { signal }))
          break
        case 'set':
          await backend.set(toDevice(command.device), { signal })
          results.push(null)
          break
        case 'check': {
          const device = toDevice(command.device)
          results.push({ differs: wireguardDeviceDiffers(device, await backend.get(device.name, { signal })) })
          break
        }
        case 'list':
          results.push(await backend.listInterfaces({ signal }))
          break
        case 'zombies':
          results.push(zombieChildren())
          break
      }
    }
    return { results }
  } catch (error) {
    const errno = error instanceof KernelError ? error.errno : undefined
    const name = error instanceof Error ? error.name : 'Error'
    return { results, error: { name, errno, message: String(error) } }
  } finally {
    await backend.close()
  }
}

const input = readFileSync(0, 'utf8')
const outcome = await run(JSON.parse(input) as DriverCommand[])
process.stdout.write(JSON.stringify(outcome) + '\n')
process.exitCode = outcome.error === undefined ? 0 : 1
