import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { startDriftRepair } from '../../src/kernel/drift.js'
import { createLogger } from '../../src/logging/logger.js'

// A manual clock: timers fire only when the test advances time.
function manualClock(): { now: () => number; setTimer: (fn: () => void, ms: number) => unknown; clearTimer: (h: unknown) => void; advance: (ms: number) => Promise<void> } {
  let time = 0
  let timers: { at: number; fn: () => void; id: number }[] = []
  let nextId = 1
  return {
    now: () => time,
    setTimer: (fn, ms) => {
      const id = nextId++
      timers.push({ at: time + ms, fn, id })
      return id
    },
    clearTimer: (handle) => {
      timers = timers.filter((t) => t.id !== handle)
    },
    advance: async (ms) => {
      time += ms
      const due = timers.filter((t) => t.at <= time)
      timers = timers.filter((t) => t.at > time)
      for (const t of due) t.fn()
      await new Promise((resolve) => setImmediate(resolve))
    },
  }
}

const quietLogger = createLogger({ pretty: false, destination: new Writable({ write: (_c, _e, done) => { done() } }) })

describe('drift repair', () => {
  it('coalesces a burst of notifications into one repair, rate-limited', async () => {
    const clock = manualClock()
    let notify: (what: 'link' | 'address' | 'route' | 'rule') => void = () => undefined
    let repairs = 0
    const controller = new AbortController()
    startDriftRepair(
      { minIntervalMs: 250 },
      {
        rtnl: { watch: (cb) => { notify = cb; return () => undefined } },
        repair: () => { repairs++; return Promise.resolve() },
        logger: quietLogger,
        ...clock,
      },
      controller.signal,
    )
    // First change: repaired at once.
    notify('route')
    await clock.advance(0)
    expect(repairs).toBe(1)
    // A storm right after: held back until the interval has passed, then one repair.
    for (let i = 0; i < 50; i++) notify('link')
    await clock.advance(100)
    expect(repairs).toBe(1)
    await clock.advance(150)
    expect(repairs).toBe(2)
    controller.abort()
    notify('rule')
    await clock.advance(1000)
    expect(repairs).toBe(2)
  })
})
