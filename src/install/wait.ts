// After the service starts: wait until the agent has joined (its control
// socket answers `status` with this host's overlay address), then a little
// longer for its peers to come up, reporting progress. Gives up at a
// deadline, or as soon as systemd reports that the agent exited (a join the
// members refused, or no member reachable), so the caller can undo the install.

/** The part of the agent's `status` answer this needs. */
export interface JoinStatus {
  self: { addresses: readonly string[]; network?: { name: string } }
  peers: readonly { state: string }[]
}

export interface ServiceState {
  activeState: string
  subState: string
  restarts: number
}

export interface WaitInit {
  /** From the start of the wait to the agent answering with an overlay address. */
  joinTimeoutMs: number
  /** After joining, how long to wait for every known peer to be up. */
  peerTimeoutMs: number
  pollMs: number
  /** NRestarts before the service was (re)started: more means the agent exited since. */
  restartsBefore: number
}

export interface WaitComponents {
  /** The agent's status, or undefined while nothing answers on the socket. */
  status: (signal: AbortSignal) => Promise<JoinStatus | undefined>
  service: (signal: AbortSignal) => Promise<ServiceState>
  now: () => number
  sleep: (ms: number, signal: AbortSignal) => Promise<void>
  /** One line on a change of phase or of the number of peers up. */
  progress: (line: string) => void
}

export type WaitResult =
  | { ok: true; overlay: string; network: string | undefined; peersUp: number; peersKnown: number }
  | { ok: false; reason: string }

/** Parses `systemctl show -p ActiveState -p SubState -p NRestarts` output. */
export function parseServiceState(text: string): ServiceState {
  const values = new Map<string, string>()
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=')
    if (eq > 0) values.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim())
  }
  const restarts = Number(values.get('NRestarts') ?? '0')
  return { activeState: values.get('ActiveState') ?? 'unknown', subState: values.get('SubState') ?? 'unknown', restarts: Number.isFinite(restarts) ? restarts : 0 }
}

/** Whether the agent has exited since it was started (it failed: systemd restarts it, or gave up). */
export function serviceFailed(state: ServiceState, restartsBefore: number): boolean {
  return state.activeState === 'failed' || state.subState === 'auto-restart' || state.restarts > restartsBefore
}

export async function waitForJoin(init: WaitInit, components: WaitComponents, signal: AbortSignal): Promise<WaitResult> {
  const { now, progress } = components
  const start = now()
  const joinDeadline = start + init.joinTimeoutMs
  let announced = ''
  const say = (line: string): void => {
    if (line !== announced) progress(line)
    announced = line
  }

  say(`waiting for the agent to join (up to ${Math.round(init.joinTimeoutMs / 1000)} s)…`)
  let joined: JoinStatus | undefined
  for (;;) {
    signal.throwIfAborted()
    const status = await components.status(signal)
    if (status !== undefined && status.self.addresses.length > 0) {
      joined = status
      break
    }
    if (serviceFailed(await components.service(signal), init.restartsBefore)) {
      return { ok: false, reason: 'the agent exited before joining (see "journalctl -u meshd")' }
    }
    if (now() >= joinDeadline) return { ok: false, reason: `the agent did not join within ${Math.round(init.joinTimeoutMs / 1000)} s (see "journalctl -u meshd")` }
    await components.sleep(init.pollMs, signal)
  }

  const overlay = joined.self.addresses[0] ?? ''
  const peerDeadline = now() + init.peerTimeoutMs
  let last = joined
  for (;;) {
    const up = last.peers.filter((peer) => peer.state === 'up').length
    const known = last.peers.length
    if ((known > 0 && up === known) || now() >= peerDeadline) {
      return { ok: true, overlay, network: last.self.network?.name, peersUp: up, peersKnown: known }
    }
    say(`joined as ${overlay}; ${up} of ${known} peer(s) up…`)
    await components.sleep(init.pollMs, signal)
    signal.throwIfAborted()
    last = (await components.status(signal)) ?? last
  }
}
