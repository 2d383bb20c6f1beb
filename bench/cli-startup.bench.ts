import { spawnSync } from 'node:child_process'
import { it } from 'vitest'
import { recordBenchmark } from './record.js'

// Start-up cost of the CLI against the bare Node start-up it rides on,
// measured in the same run so the machine's speed cancels out.
function medianMs(runs: number, command: string, args: string[]): number {
  const times: number[] = []
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint()
    const result = spawnSync(command, args, { stdio: 'ignore' })
    if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}`)
    times.push(Number(process.hrtime.bigint() - start) / 1e6)
  }
  times.sort((a, b) => a - b)
  return times[Math.floor(times.length / 2)] ?? Number.NaN
}

it('cli start-up: `meshd version` vs `node -e 0`', () => {
  const runs = 15
  const baseline = medianMs(runs, process.execPath, ['-e', '0'])
  const meshd = medianMs(runs, process.execPath, ['bin/meshd.js', 'version'])
  recordBenchmark({
    name: 'cli-startup',
    figure: `${(meshd / baseline).toFixed(2)}x`,
    detail: `meshd version ${meshd.toFixed(1)} ms, node -e 0 ${baseline.toFixed(1)} ms (median of ${runs})`,
  })
})
