// A small driver that runs the reconciler in the network namespace it is
// started in, for netns/kernel-tier tests and benchmarks:
//   ip netns exec NS node dist/kernel/reconcile-driver.js capabilities
//   ip netns exec NS node dist/kernel/reconcile-driver.js apply  < desired.json
//   ip netns exec NS node dist/kernel/reconcile-driver.js serve  < JSON lines (one desired state each)
// `serve` keeps applying the last state and repairs drift until stdin closes; a
// line `resync` re-applies the last state reading every WireGuard device back.
// Output: one JSON object per line. Keys never appear in it.

import { createInterface } from 'node:readline'
import { createLogger, parseLogLevel } from '../logging/logger.js'
import { decodeDesiredState } from './decode.js'
import { startDriftRepair } from './drift.js'
import { openKernelLayer } from './open.js'
import { describeOperation } from './plan.js'
import type { ApplyResult } from './reconciler.js'
import type { WireguardPreference } from './capabilities.js'
import type { DesiredState } from './types.js'

function summary(result: ApplyResult): Record<string, unknown> {
  return {
    planned: result.planned.length,
    applied: result.applied.length,
    operations: result.planned.map((o) => o.op),
    changes: result.planned.map(describeOperation),
    failures: result.failures.map((f) => ({ operation: f.description, error: f.error.message, errno: (f.error as { errno?: string }).errno })),
  }
}

async function readAll(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

async function main(argv: string[]): Promise<number> {
  const [command = '', ...rest] = argv
  const backendFlag = rest.indexOf('--backend')
  const preference = (backendFlag >= 0 ? rest[backendFlag + 1] : 'auto') as WireguardPreference
  const logger = createLogger({ destination: process.stderr, pretty: false, level: parseLogLevel(process.env.MESHD_LOG_LEVEL, 'warn') })
  const controller = new AbortController()
  process.on('SIGTERM', () => {
    controller.abort()
  })
  const kernel = await openKernelLayer({ wireguard: preference }, { logger }, controller.signal)
  const print = (value: unknown): void => {
    process.stdout.write(JSON.stringify(value) + '\n')
  }
  try {
    switch (command) {
      case 'capabilities':
        print({ ...kernel.capabilities, linkKinds: [...kernel.capabilities.linkKinds].sort() })
        return 0
      case 'apply': {
        const desired = decodeDesiredState(JSON.parse(await readAll()))
        const started = process.hrtime.bigint()
        const result = await kernel.reconciler.apply(desired, { signal: controller.signal })
        print({ ...summary(result), ms: Number(process.hrtime.bigint() - started) / 1e6 })
        return result.failures.length === 0 ? 0 : 1
      }
      case 'serve': {
        let desired: DesiredState | undefined
        const repair = startDriftRepair(
          { minIntervalMs: 200 },
          {
            rtnl: kernel.rtnl,
            logger,
            repair: async (signal) => {
              if (!desired) return
              print({ event: 'repair', ...summary(await kernel.reconciler.apply(desired, { signal })) })
            },
          },
          controller.signal,
        )
        for await (const line of createInterface({ input: process.stdin })) {
          if (line.trim() === '') continue
          const resync = line.trim() === 'resync'
          if (!resync) desired = decodeDesiredState(JSON.parse(line))
          if (desired === undefined) throw new Error('resync before any state')
          const started = process.hrtime.bigint()
          const result = await kernel.reconciler.apply(desired, { signal: controller.signal, resync })
          print({ event: 'applied', ...summary(result), ms: Number(process.hrtime.bigint() - started) / 1e6 })
        }
        repair.stop()
        return 0
      }
      default:
        process.stderr.write('usage: reconcile-driver capabilities|apply|serve [--backend auto|kernel|userspace]\n')
        return 2
    }
  } finally {
    await kernel.close()
  }
}

process.exitCode = await main(process.argv.slice(2)).catch((error: unknown) => {
  process.stdout.write(JSON.stringify({ error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) }) + '\n')
  return 1
})
