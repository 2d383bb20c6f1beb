// A small driver that runs one probe service in the network namespace it is
// started in, for netns tests (node cannot setns, so each namespace gets a
// process):
//   ip netns exec NS node dist/probe/driver.js <selfId> [port]
// stdin: JSON lines, one command each:
//   {"op":"setLinks","links":[{"peerId","local4","peer4"}…]}
//   {"op":"setRelayCandidates","candidates":{"<destination>":["<relay>"…]}}
//   {"op":"setActive","peerId":"…","active":true}
//   {"op":"snapshot","id":1}            → {"reply":1,"snapshot":{"links":[…],"relayed":[…]}}
//   {"op":"ping","id":2,"peerId":"…","count":3} → {"reply":2,"ping":{…}}
// stdout: JSON lines: {"event":"ready"}, {"event":"change","kind":"link-dead","peerId":"…"}, replies.
// The service stops when stdin closes or on SIGTERM.

import { createInterface } from 'node:readline'
import { createLogger, parseLogLevel } from '../logging/logger.js'
import { createProbeService } from './service.js'
import type { ProbeLink, ProbeSnapshot } from './types.js'

type Command =
  | { op: 'setLinks'; links: ProbeLink[] }
  | { op: 'setRelayCandidates'; candidates: Record<string, string[]> }
  | { op: 'setActive'; peerId: string; active: boolean }
  | { op: 'snapshot'; id: number }
  | { op: 'ping'; id: number; peerId: string; count: number }

/** Maps → arrays, so a snapshot survives JSON. */
export function snapshotToJson(snapshot: ProbeSnapshot): { links: unknown[]; relayed: unknown[] } {
  return {
    links: [...snapshot.links.values()],
    relayed: [...snapshot.relayed.values()].flatMap((toward) => [...toward.values()]),
  }
}

async function main(argv: string[]): Promise<number> {
  const [selfId, portText] = argv
  if (!selfId) {
    process.stderr.write('usage: driver.js <selfId> [port]\n')
    return 2
  }
  const logger = createLogger({ destination: process.stderr, pretty: false, level: parseLogLevel(process.env.MESHD_LOG_LEVEL, 'warn') })
  const controller = new AbortController()
  process.on('SIGTERM', () => {
    controller.abort()
  })
  const service = createProbeService({ selfId, logger, ...(portText ? { port: Number(portText) } : {}) }, controller.signal)
  const print = (value: unknown): void => {
    process.stdout.write(JSON.stringify(value) + '\n')
  }
  service.onChange((event) => {
    print({ event: 'change', ...event })
  })
  print({ event: 'ready' })
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === '') continue
    const command = JSON.parse(line) as Command
    switch (command.op) {
      case 'setLinks':
        service.setLinks(command.links)
        break
      case 'setRelayCandidates':
        service.setRelayCandidates(new Map(Object.entries(command.candidates)))
        break
      case 'setActive':
        service.setActive(command.peerId, command.active)
        break
      case 'snapshot':
        print({ reply: command.id, snapshot: snapshotToJson(service.snapshot()) })
        break
      case 'ping':
        // Not awaited: replies to other commands keep flowing while a ping runs.
        void service.ping(command.peerId, { count: command.count, signal: controller.signal }).then((result) => {
          print({ reply: command.id, ping: result })
        })
        break
    }
  }
  await service.close()
  controller.abort()
  return 0
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    process.stderr.write(`probe driver: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exitCode = 1
  },
)
