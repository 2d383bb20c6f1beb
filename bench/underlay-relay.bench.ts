import { it } from 'vitest'
import { UdpPeer } from '../test/support/udp-peer.js'
import { Underlay } from '../test/support/underlay.js'
import { recordBenchmark } from './record.js'

// What the test underlay's userspace impairment relay adds to a UDP packet at zero
// configured impairment. Baseline in the same run: the same two hosts and the same
// router hop, but one UDP port exempted from the redirect so the kernel forwards it.
// One-way delay is a receive time minus the sender's send time, both on the
// machine-wide monotonic clock.

const RELAYED = 5000
const DIRECT = 7000
const PINGS = 400

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

async function measure(from: UdpPeer, to: UdpPeer, address: string, port: number, label: string): Promise<{ oneWayUs: number; rttUs: number }> {
  const oneWay: number[] = []
  const rtt: number[] = []
  for (let i = 0; i < PINGS; i++) {
    const tag = `ping-${label}-${i}`
    const sent = await from.send(address, port, tag)
    const arrived = await to.waitFor((d) => d.data === tag, 5000, tag)
    const back = await from.waitFor((d) => d.data === `pong${tag.slice(4)}`, 5000, `pong ${tag}`)
    if (i >= 20) { // warm-up
      oneWay.push(Number(arrived.tNs - sent) / 1e3)
      rtt.push(Number(back.tNs - sent) / 1e3)
    }
  }
  // Keep the received lists short for the next round's searches.
  from.received.length = 0
  to.received.length = 0
  return { oneWayUs: median(oneWay), rttUs: median(rtt) }
}

it('test underlay: impairment relay latency at zero impairment vs kernel forwarding', async () => {
  const ul = await Underlay.create({ hosts: ['a', 'b'] })
  try {
    ul.router.exec('nft', ['insert', 'rule', 'ip', 'meshd_underlay', 'redirect_udp', 'udp', 'dport', String(DIRECT), 'accept'])
    const a = ul.host('a')
    const b = ul.host('b')
    const peers = await Promise.all([
      UdpPeer.start(a.ns, RELAYED, { echo: true }), UdpPeer.start(b.ns, RELAYED, { echo: true }),
      UdpPeer.start(a.ns, DIRECT, { echo: true }), UdpPeer.start(b.ns, DIRECT, { echo: true }),
    ])
    const [aRelayed, bRelayed, aDirect, bDirect] = peers
    try {
      // Alternate rounds so drift in machine load hits both alike.
      const relayed = { oneWay: [] as number[], rtt: [] as number[] }
      const direct = { oneWay: [] as number[], rtt: [] as number[] }
      for (let round = 0; round < 3; round++) {
        const r = await measure(aRelayed, bRelayed, b.address, RELAYED, `r${round}`)
        const d = await measure(aDirect, bDirect, b.address, DIRECT, `d${round}`)
        relayed.oneWay.push(r.oneWayUs)
        relayed.rtt.push(r.rttUs)
        direct.oneWay.push(d.oneWayUs)
        direct.rtt.push(d.rttUs)
      }
      const stats = await ul.relayStats()
      if (stats.delayed !== 0) throw new Error('the relay delayed packets with no impairment configured')
      const ow = median(relayed.oneWay)
      const owDirect = median(direct.oneWay)
      recordBenchmark({
        name: 'underlay-relay',
        figure: `+${(ow - owDirect).toFixed(0)} µs per packet`,
        detail: `one-way median ${ow.toFixed(0)} µs relayed vs ${owDirect.toFixed(0)} µs kernel-forwarded; RTT median ${median(relayed.rtt).toFixed(0)} vs ${median(direct.rtt).toFixed(0)} µs (3 alternating rounds of ${PINGS - 20} sequential pings, median of round medians)`,
      })
    } finally {
      await Promise.all(peers.map((p) => p.close()))
    }
  } finally {
    await ul.close()
  }
})
