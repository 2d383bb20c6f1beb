// Runs rtnetlink / WireGuard-genl operations from JSON on stdin, so tests and
// benchmarks can act inside a network namespace (a netlink socket belongs to
// the namespace of the process that opens it):
//
//   echo '{"op":"routeList"}' | ip netns exec NS node dist/kernel/netlink-driver.js
//
// Input: one command object, or an array of them (run in order, each result
// reported). A command is {"op": NAME, …arguments, "timeoutMs"?: N}:
//   linkList | linkCounters | procLinkCounters (the link monitor's reader) | addrList | routeList | ruleList
//   linkAdd {link} | linkSet {name, change} | linkDel {name}
//   addrAdd {address} | addrDel {address} | routeReplace {route} | routeDel {route}
//   ruleAdd {rule} | ruleDel {rule}
//   watch {count}: prints {"ready":true}, then one {"changed":KIND} line per
//     notification until `count` have arrived
//   wgAvailable | wgDeviceGet {name} | wgDeviceSet {device} (keys as base64 strings)
// Output: {"result": …} or {"error": {"operation", "errno", "message"}} per
// command, one JSON line each; exit status 1 if any command failed.

import { Secret } from '../logging/secret.js'
import { createLinkCounterReader } from './link-counters.js'
import { openRtnetlink, openWireguardGenl } from './netlink.js'
import { KernelError, type LinkChange } from './port.js'
import type { Address, Link, Route, Rule, WireguardDevice, WireguardPeer } from './types.js'

interface Command {
  op: string
  timeoutMs?: number
  [argument: string]: unknown
}

interface WireguardDeviceInput extends Omit<WireguardDevice, 'privateKey' | 'peers'> {
  privateKey: string
  peers: (Omit<WireguardPeer, 'presharedKey'> & { presharedKey?: string })[]
}

function toDevice(input: WireguardDeviceInput): WireguardDevice {
  return {
    ...input,
    privateKey: new Secret(input.privateKey),
    peers: input.peers.map(({ presharedKey, ...peer }) => (presharedKey === undefined ? peer : { ...peer, presharedKey: new Secret(presharedKey) })),
  }
}

async function watch(count: number, timeoutMs: number): Promise<string[]> {
  const port = openRtnetlink()
  const seen: string[] = []
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new KernelError('watch', 'ETIMEDOUT', `${seen.length} of ${count} notifications`))
      }, timeoutMs)
      const stop = port.watch((what) => {
        seen.push(what)
        process.stdout.write(`${JSON.stringify({ changed: what })}\n`)
        if (seen.length >= count) {
          clearTimeout(timer)
          stop()
          resolve()
        }
      })
      process.stdout.write(`${JSON.stringify({ ready: true })}\n`)
    })
    return seen
  } finally {
    port.close()
  }
}

async function run(command: Command): Promise<unknown> {
  const timeoutMs = command.timeoutMs ?? 5000
  const options = { signal: AbortSignal.timeout(timeoutMs * 2) }
  if (command.op === 'watch') return watch(Number(command.count ?? 1), timeoutMs)
  if (command.op.startsWith('wg')) {
    const wg = openWireguardGenl({ timeoutMs })
    try {
      switch (command.op) {
        case 'wgAvailable':
          return await wg.available(options)
        case 'wgDeviceGet':
          return await wg.deviceGet(String(command.name), options)
        case 'wgDeviceSet':
          await wg.deviceSet(toDevice(command.device as WireguardDeviceInput), options)
          return null
        default:
          throw new KernelError(command.op, 'EINVAL', 'unknown op')
      }
    } finally {
      wg.close()
    }
  }
  const rt = openRtnetlink({ timeoutMs })
  try {
    switch (command.op) {
      case 'linkCounters':
        return await rt.linkCounters(options)
      case 'procLinkCounters': {
        const reader = createLinkCounterReader({ rtnl: rt })
        try {
          const counters = await reader.read(options)
          return { source: reader.source, counters }
        } finally {
          reader.close()
        }
      }
      case 'linkList':
        return await rt.linkList(options)
      case 'addrList':
        return await rt.addrList(options)
      case 'routeList':
        return await rt.routeList(options)
      case 'ruleList':
        return await rt.ruleList(options)
      case 'linkAdd':
        await rt.linkAdd(command.link as Link, options)
        return null
      case 'linkSet':
        await rt.linkSet(String(command.name), command.change as LinkChange, options)
        return null
      case 'linkDel':
        await rt.linkDel(String(command.name), options)
        return null
      case 'addrAdd':
        await rt.addrAdd(command.address as Address, options)
        return null
      case 'addrDel':
        await rt.addrDel(command.address as Address, options)
        return null
      case 'routeReplace':
        await rt.routeReplace(command.route as Route, options)
        return null
      case 'routeDel':
        await rt.routeDel(command.route as Route, options)
        return null
      case 'ruleAdd':
        await rt.ruleAdd(command.rule as Rule, options)
        return null
      case 'ruleDel':
        await rt.ruleDel(command.rule as Rule, options)
        return null
      default:
        throw new KernelError(command.op, 'EINVAL', 'unknown op')
    }
  } finally {
    rt.close()
  }
}

function describe(error: unknown): { operation: string; errno: string; message: string } {
  if (error instanceof KernelError) return { operation: error.operation, errno: error.errno, message: error.message }
  return { operation: 'driver', errno: 'EINVAL', message: error instanceof Error ? error.message : String(error) }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

async function main(): Promise<number> {
  let input: unknown
  try {
    input = JSON.parse(await readStdin())
  } catch (error) {
    process.stdout.write(`${JSON.stringify({ error: describe(error) })}\n`)
    return 1
  }
  const commands = (Array.isArray(input) ? input : [input]) as Command[]
  let failed = false
  for (const command of commands) {
    try {
      if (typeof command.op !== 'string') throw new KernelError('driver', 'EINVAL', 'command without "op"')
      const result = await run(command)
      if (command.op !== 'watch') process.stdout.write(`${JSON.stringify({ result })}\n`)
    } catch (error) {
      failed = true
      process.stdout.write(`${JSON.stringify({ error: describe(error) })}\n`)
    }
  }
  return failed ? 1 : 0
}

process.exitCode = await main()
