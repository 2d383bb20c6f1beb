import { appendFileSync, mkdirSync } from 'node:fs'
import os from 'node:os'

export interface BenchmarkResult {
  name: string
  /** The headline figure, a ratio against the in-run baseline where there is one. */
  figure: string
  detail: string
}

/** Prints a result and appends it to bench/results.jsonl so docs/benchmarks.md can be updated from it. */
export function recordBenchmark(result: BenchmarkResult): void {
  const line = {
    ...result,
    date: new Date().toISOString(),
    machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.release()}, node ${process.version}`,
  }
  console.log(`BENCH ${result.name}: ${result.figure} — ${result.detail}`)
  mkdirSync('bench/out', { recursive: true })
  appendFileSync('bench/out/results.jsonl', JSON.stringify(line) + '\n')
}
