import { spawnSync } from 'node:child_process'
import { it } from 'vitest'
import { recordBenchmark } from './record.js'

// The prober's per-packet send cost (issue 5, idle CPU): a link's UDP socket
// connected to the far end, as the prober now opens it, against the same
// socket unconnected (node:dgram then looks the address up for every send),
// in one child process run with the agent's V8 flags (bin/meshd.js
// AGENT_NODE_FLAGS: no optimising JIT), alternating rounds so the machine's
// state is shared. Loopback only: 127.0.0.1 to 127.0.0.2.

const AGENT_FLAGS = ['--max-semi-space-size=1', '--no-opt', '--no-maglev', '--optimize-for-size']

const child = `
import { createSocket } from 'node:dgram'
import { dgramSocketFactory } from './dist/probe/service.js'
const PER_ROUND = 4000, ROUNDS = 6
const sink = createSocket('udp4')
let received = 0
sink.on('message', () => received++)
await new Promise((resolve) => sink.bind(0, '127.0.0.2', resolve))
const port = sink.address().port
const open = (peer) => dgramSocketFactory({ address: '127.0.0.1', port: 0, ...(peer ? { peer: { address: '127.0.0.2', port } } : {}), onMessage: () => {}, onError: (e) => { throw e } }, new AbortController().signal)
const sockets = { connected: await open(true), unconnected: await open(false) }
const packet = new Uint8Array(13)
const cpu = { connected: 0, unconnected: 0 }
for (let round = 0; round < ROUNDS; round++) {
  for (const kind of round % 2 === 0 ? ['connected', 'unconnected'] : ['unconnected', 'connected']) {
    const before = process.cpuUsage()
    for (let i = 0; i < PER_ROUND; i++) {
      sockets[kind].send(packet, '127.0.0.2', port)
      // Let the sends complete, as the agent does between packets.
      if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve))
    }
    await new Promise((resolve) => setImmediate(resolve))
    const used = process.cpuUsage(before)
    cpu[kind] += used.user + used.system
  }
}
const sends = (PER_ROUND * ROUNDS) / 2
console.log(JSON.stringify({ connectedUs: cpu.connected / sends, unconnectedUs: cpu.unconnected / sends, sends, received }))
process.exit(0)
`

it('probe socket: send CPU, connected vs unconnected UDP socket (agent V8 flags)', () => {
  const result = spawnSync(process.execPath, [...AGENT_FLAGS, '--input-type=module', '-e', child], { encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`probe socket child failed: ${result.stderr}`)
  const figures = JSON.parse(result.stdout) as { connectedUs: number; unconnectedUs: number; sends: number; received: number }
  recordBenchmark({
    name: 'probe-socket-send',
    figure: `${(figures.connectedUs / figures.unconnectedUs).toFixed(2)}x`,
    detail: `CPU per send ${figures.connectedUs.toFixed(1)} µs on a connected socket against ${figures.unconnectedUs.toFixed(1)} µs unconnected (${figures.sends} sends each, alternating rounds, ${figures.received} received on loopback), node ${process.version} with ${AGENT_FLAGS.join(' ')}`,
  })
})
