// A UDP socket living in a network namespace, driven from the test process.
//
// Library and program in one file: `UdpPeer.start(ns, port)` runs this file inside
// `ns` (Node >= 23.6 strips the types; only node: imports here) and talks to it over
// JSON lines. The program binds one UDP socket, sends what it is told to, reports
// every datagram it receives with the receive time, and, with echo on, answers every
// datagram starting with "ping" with the same text starting "pong".
//
// Times are process.hrtime.bigint(): CLOCK_MONOTONIC, one clock for every namespace
// on the machine, so a receive time minus the peer's send time is a one-way delay.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import dgram from 'node:dgram'
import { existsSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export interface Datagram {
  address: string
  port: number
  data: string
  /** Receive time, monotonic nanoseconds. */
  tNs: bigint
}

interface NamespaceLike {
  readonly name: string
}

const script = fileURLToPath(import.meta.url)
const repoNode = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url))

export class UdpPeer {
  readonly received: Datagram[] = []
  private readonly child: ChildProcessWithoutNullStreams
  private readonly sendWaiters = new Map<number, (tNs: bigint) => void>()
  private readonly listeners = new Set<() => void>()
  private nextId = 1
  private boundPort = 0

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.child = child
  }

  /** The port the peer's socket is bound to. */
  get port(): number {
    return this.boundPort
  }

  /** Starts a peer bound to 0.0.0.0:`port` (0 for any) inside `ns`. */
  static async start(ns: NamespaceLike, port: number, options: { echo?: boolean } = {}): Promise<UdpPeer> {
    const node = existsSync(repoNode) ? repoNode : process.execPath
    const child = spawn('ip', ['netns', 'exec', ns.name, node, script, String(port), options.echo === true ? 'echo' : 'quiet'], { stdio: ['pipe', 'pipe', 'pipe'] })
    const peer = new UdpPeer(child)
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8') })
    child.stdin.on('error', () => undefined)
    const lines = createInterface({ input: child.stdout })
    peer.boundPort = await new Promise<number>((resolve, reject) => {
      child.once('exit', (code) => { reject(new Error(`udp peer exited ${code}: ${stderr.trim()}`)) })
      lines.on('line', (line) => {
        const message = JSON.parse(line) as Record<string, string | number>
        if (message.event === 'bound') resolve(Number(message.port))
        else peer.onEvent(message)
      })
    })
    return peer
  }

  private onEvent(message: Record<string, string | number>): void {
    if (message.event === 'sent') {
      const waiter = this.sendWaiters.get(Number(message.id))
      this.sendWaiters.delete(Number(message.id))
      waiter?.(BigInt(message.tNs ?? 0))
    } else if (message.event === 'recv') {
      this.received.push({ address: String(message.address), port: Number(message.port), data: String(message.data), tNs: BigInt(message.tNs ?? 0) })
      for (const listener of this.listeners) listener()
    }
  }

  /** Sends one datagram; resolves with the send time (monotonic ns, taken just before the send). */
  send(address: string, port: number, data: string): Promise<bigint> {
    const id = this.nextId++
    return new Promise((resolve) => {
      this.sendWaiters.set(id, resolve)
      this.child.stdin.write(`${JSON.stringify({ id, address, port, data })}\n`)
    })
  }

  /** Resolves with the first received datagram matching `match`, or rejects after `deadlineMs`. */
  waitFor(match: (d: Datagram) => boolean, deadlineMs: number, what = 'a datagram'): Promise<Datagram> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.received.find(match)
        if (found === undefined) return false
        clearTimeout(timer)
        this.listeners.delete(listener)
        resolve(found)
        return true
      }
      const listener = (): void => { check() }
      const timer = setTimeout(() => {
        this.listeners.delete(listener)
        reject(new Error(`timed out after ${deadlineMs} ms waiting for ${what}`))
      }, deadlineMs)
      this.listeners.add(listener)
      check()
    })
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => { resolve() }))
    this.child.stdin.end()
    await exited
  }
}

function main(): void {
  const port = Number(process.argv[2] ?? 0)
  const echo = process.argv[3] === 'echo'
  const socket = dgram.createSocket('udp4')
  const out = (value: Record<string, unknown>): void => { process.stdout.write(`${JSON.stringify(value)}\n`) }
  socket.on('message', (msg, rinfo) => {
    const tNs = process.hrtime.bigint()
    const data = msg.toString('utf8')
    if (echo && data.startsWith('ping')) socket.send(`pong${data.slice(4)}`, rinfo.port, rinfo.address)
    out({ event: 'recv', address: rinfo.address, port: rinfo.port, data, tNs: String(tNs) })
  })
  socket.bind(port, '0.0.0.0', () => { out({ event: 'bound', port: socket.address().port }) })
  const lines = createInterface({ input: process.stdin })
  lines.on('line', (line) => {
    const command = JSON.parse(line) as { id: number; address: string; port: number; data: string }
    const tNs = process.hrtime.bigint()
    socket.send(command.data, command.port, command.address, () => { out({ event: 'sent', id: command.id, tNs: String(tNs) }) })
  })
  lines.on('close', () => { socket.close(); process.exit(0) })
}

if (import.meta.main) main()
