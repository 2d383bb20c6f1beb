import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { pollUntil } from '../support/poll.js'
import { AgentLab, createToken, mdLinks, pingOnce, startAgent, status, stopAgent, waitForAgent, wireguardGoPids, type AgentHost, type StatusJson } from '../support/agents.js'

// Issue 5 item 1: SIGTERM leaves the kernel forwarding, and a restarted agent
// adopts what is there without interrupting traffic. A ping stream runs over
// the overlay while one host's agent stops and starts again; the stream may
// lose at most one reply, and the host's md- link and wireguard-go process
// are the same objects afterwards (same ifindex, same pid), with the same
// listen port and preshared key on both ends (`wg show`).

interface PingStream {
  child: ChildProcess
  output: string[]
  replies(): number
  /** Stops the stream (SIGINT) and returns ping's own transmitted/received summary. */
  finish(): Promise<{ transmitted: number; received: number }>
}

function pingStream(host: AgentHost, address: string): PingStream {
  const child = spawn('ip', ['netns', 'exec', host.ns.name, 'ping', '-n', '-i', '0.2', '-W', '1', address], { stdio: ['ignore', 'pipe', 'pipe'] })
  const output: string[] = []
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')))
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')))
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    resolve()
  }))
  return {
    child,
    output,
    replies: () => output.join('').split('\n').filter((line) => line.includes(' bytes from ')).length,
    async finish() {
      child.kill('SIGINT')
      await exited
      const match = /(\d+) packets transmitted, (\d+) received/.exec(output.join(''))
      if (match === null) throw new Error(`no ping summary in: ${output.join('').slice(-500)}`)
      return { transmitted: Number(match[1]), received: Number(match[2]) }
    },
  }
}

interface KernelSnapshot {
  links: Map<string, number>
  wireguardGo: number[]
  /** Per md- link, `wg show <link> listen-port` and a digest of `wg show <link> preshared-keys`: a new key would re-key the tunnel. */
  wireguard: Map<string, { port: string; psk: string }>
}

function snapshot(host: AgentHost): KernelSnapshot {
  const links = new Map<string, number>()
  const wireguard = new Map<string, { port: string; psk: string }>()
  for (const link of host.ns.ipJson<{ ifname: string; ifindex: number }[]>('link', 'show')) {
    if (!link.ifname.startsWith('md-')) continue
    links.set(link.ifname, link.ifindex)
    const psk = createHash('sha256').update(host.ns.exec('wg', ['show', link.ifname, 'preshared-keys'])).digest('hex').slice(0, 16)
    wireguard.set(link.ifname, { port: host.ns.exec('wg', ['show', link.ifname, 'listen-port']).trim(), psk })
  }
  return { links, wireguardGo: wireguardGoPids(host).sort((a, b) => a - b), wireguard }
}

function logSince(host: AgentHost, mark: number): string {
  return host.log.slice(mark).join('')
}

describe('agent restart adopts the kernel without traffic loss', () => {
  const lab = new AgentLab(2, 'mr')
  const [h1, h2] = [lab.host(0), lab.host(1)]
  let s1: StatusJson | undefined
  let s2: StatusJson | undefined
  const streams: PingStream[] = []

  afterAll(async () => {
    for (const stream of streams) if (stream.child.exitCode === null) stream.child.kill('SIGKILL')
    await lab.destroy()
  })

  it('forms a 2-host mesh', async () => {
    startAgent(h1, ['init', '--name', 'restart', '--cidr', '10.75.0.0/16'])
    await waitForAgent(h1)
    startAgent(h2, ['join', createToken(h1)])
    await pollUntil(
      () => {
        s1 = status(h1)
        s2 = status(h2)
        return s1?.peers[0]?.state === 'up' && s2?.peers[0]?.state === 'up' ? true : undefined
      },
      { deadlineMs: 60_000, intervalMs: 500, what: 'one peer up on each host' },
    )
    await pollUntil(() => (pingOnce(h1, s2?.self.addresses[0] ?? '') ? true : undefined), { deadlineMs: 20_000, what: 'h1 pings h2' })
  })

  for (const [which, restarted, other] of [
    ['the joiner', 1, 0],
    ['the founder', 0, 1],
  ] as const) {
    it(`SIGTERM and restart of ${which}: at most one lost reply, same link, wireguard-go, port and key`, async () => {
      const host = lab.host(restarted)
      const peer = lab.host(other)
      const target = (restarted === 1 ? s2 : s1)?.self.addresses[0] ?? ''
      const before = snapshot(host)
      const peerBefore = snapshot(peer)
      expect(before.links.size).toBe(1)
      expect(before.wireguardGo).toHaveLength(1)

      // The peer pings the restarting host's overlay address throughout.
      const stream = pingStream(peer, target)
      streams.push(stream)
      await pollUntil(() => (stream.replies() >= 5 ? true : undefined), { deadlineMs: 20_000, what: 'ping stream running' })

      await stopAgent(host, 'SIGTERM')
      expect(host.agent?.exitCode, 'agent exit code after SIGTERM').toBe(0)
      // Traffic keeps flowing with no agent at all.
      const withoutAgent = stream.replies()
      await pollUntil(() => (stream.replies() >= withoutAgent + 5 ? true : undefined), { deadlineMs: 20_000, what: 'replies while the agent is stopped' })
      expect(snapshot(host)).toEqual(before)

      const mark = host.log.length
      startAgent(host, ['agent'])
      await waitForAgent(host)
      // Adoption done: the stored link is kept (or renegotiated) once the peer's record is back.
      await pollUntil(() => (/adopted link kept|link negotiated/.test(logSince(host, mark)) ? true : undefined), { deadlineMs: 60_000, intervalMs: 200, what: 'link adopted after restart' })
      await pollUntil(() => (status(host)?.peers[0]?.state === 'up' && status(peer)?.peers[0]?.state === 'up' ? true : undefined), { deadlineMs: 60_000, intervalMs: 500, what: 'peer up on both after restart' })
      // Keep the stream going well past the adoption grace, through any rekey the restart may have caused.
      const settled = stream.replies()
      await pollUntil(() => (stream.replies() >= settled + 25 ? true : undefined), { deadlineMs: 60_000, intervalMs: 200, what: 'replies after restart' })
      const { transmitted, received } = await stream.finish()

      expect(transmitted - received, `lost replies (${received}/${transmitted}); agent log:\n${logSince(host, mark).slice(-3000)}`).toBeLessThanOrEqual(1)
      expect(snapshot(host), 'md- link ifindex, wireguard-go pid, port and key on the restarted host').toEqual(before)
      expect(snapshot(peer), 'md- link ifindex, wireguard-go pid, port and key on the peer').toEqual(peerBefore)
      expect(mdLinks(host)).toHaveLength(1)
    })
  }
})
