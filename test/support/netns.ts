import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'

/** Runs a command and returns stdout; throws with stderr on failure. */
export function run(cmd: string, args: readonly string[], input?: string): string {
  const result = spawnSync(cmd, args, { encoding: 'utf8', input })
  if (result.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${result.status}: ${result.stderr.trim()}`)
  }
  return result.stdout
}

/** A throw-away network namespace. Names are random so parallel runs and leftovers never collide. */
export class Netns {
  readonly name: string
  constructor(prefix = 'mt') {
    this.name = `${prefix}-${randomBytes(4).toString('hex')}`
    run('ip', ['netns', 'add', this.name])
    this.ip('link', 'set', 'lo', 'up')
  }

  /** `ip -n <ns> …`, returning stdout. */
  ip(...args: string[]): string {
    return run('ip', ['-n', this.name, ...args])
  }

  /** `ip -j -n <ns> …` parsed; the caller names the shape it expects. */
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  ipJson<T = unknown[]>(...args: string[]): T {
    const text = run('ip', ['-j', '-n', this.name, ...args])
    const parsed: unknown = text.trim() === '' ? [] : JSON.parse(text)
    return parsed as T
  }

  /** Runs any command inside the namespace. */
  exec(cmd: string, args: readonly string[], input?: string): string {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], input)
  }

  execStatus(cmd: string, args: readonly string[]): number | null {
    return spawnSync('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: 'ignore' }).status
  }

  delete(): void {
    // Killing the namespace's processes first keeps `ip netns del` from leaving a busy mount.
    try {
      const pids = execFileSync('ip', ['netns', 'pids', this.name], { encoding: 'utf8' }).split('\n').filter(Boolean)
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL')
        } catch {
          // already gone
        }
      }
    } catch {
      // namespace already gone
    }
    spawnSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' })
  }
}

export interface IpLink {
  ifname: string
  ifindex: number
  operstate?: string
  flags?: string[]
  master?: string
  link?: string
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> }
}
