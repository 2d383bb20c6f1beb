// Drift repair: when someone else changes links, addresses, routes or rules,
// re-apply the last desired state soon (within a second) but never in a storm.
// Our own changes also notify; the re-apply they cause plans nothing, so it settles.

import type { Logger } from 'pino'
import type { RtnetlinkPort } from './port.js'

export interface DriftRepairInit {
  /** Minimum gap between two repairs; notifications in between coalesce into one. */
  minIntervalMs?: number
}

export interface DriftRepairComponents {
  rtnl: Pick<RtnetlinkPort, 'watch'>
  /** Re-applies the current desired state. */
  repair: (signal: AbortSignal) => Promise<void>
  logger: Logger
  /** Injected for tests. */
  setTimer?: (fn: () => void, ms: number) => unknown
  clearTimer?: (handle: unknown) => void
  now?: () => number
}

export interface DriftRepair {
  /** Number of repairs run so far. */
  readonly repairs: number
  stop(): void
}

export function startDriftRepair(init: DriftRepairInit, components: DriftRepairComponents, signal: AbortSignal): DriftRepair {
  const minInterval = init.minIntervalMs ?? 250
  const setTimer = components.setTimer ?? ((fn, ms) => setTimeout(fn, ms))
  const clearTimer = components.clearTimer ?? ((handle) => {
    clearTimeout(handle as NodeJS.Timeout)
  })
  const now = components.now ?? Date.now
  let lastRun = -Infinity
  let timer: unknown
  let running = false
  let again = false
  let repairs = 0

  const run = (): void => {
    timer = undefined
    if (signal.aborted) return
    if (running) {
      again = true
      return
    }
    running = true
    lastRun = now()
    repairs++
    components
      .repair(signal)
      .catch((error: unknown) => {
        components.logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'drift repair failed')
      })
      .finally(() => {
        running = false
        if (again) {
          again = false
          schedule()
        }
      })
  }

  const schedule = (): void => {
    if (timer !== undefined || signal.aborted) return
    const wait = Math.max(0, lastRun + minInterval - now())
    timer = setTimer(run, wait)
  }

  const unsubscribe = components.rtnl.watch((what) => {
    components.logger.debug({ what }, 'kernel changed')
    schedule()
  })
  const stop = (): void => {
    unsubscribe()
    if (timer !== undefined) clearTimer(timer)
    timer = undefined
  }
  signal.addEventListener('abort', stop, { once: true })
  return {
    get repairs() {
      return repairs
    },
    stop,
  }
}
