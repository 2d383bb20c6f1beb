// Samples what a running Node process (an agent) allocates, garbage included,
// without restarting it: SIGUSR1 opens its inspector (as in cpu-profile.mjs),
// then the sampling heap profiler runs for the given seconds. Also prints the
// heap spaces' sizes at the start (new_space: how often a scavenge comes).
//
//   ip netns exec NS node bench/support/alloc-profile.mjs <pid> [seconds]
//
// Prints bytes allocated per second by allocating function (top 40, with its
// caller) and per package/file.

import { connectInspector } from './inspector.mjs'

const [pidText, secondsText = '30'] = process.argv.slice(2)
const pid = Number(pidText)
if (!Number.isInteger(pid) || pid <= 0) {
  process.stderr.write('usage: alloc-profile.mjs <pid> [seconds]\n')
  process.exit(2)
}
const { send, close } = await connectInspector(pid)
const heapCounters = async () => {
  const { result } = await send('Runtime.evaluate', {
    expression: `JSON.stringify(process.getBuiltinModule('v8').getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]))`,
    returnByValue: true,
  })
  return JSON.parse(result.result.value)
}

const seconds = Number(secondsText)
const spaces = await heapCounters()
await send('HeapProfiler.enable')
await send('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true })
await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
const { result } = await send('HeapProfiler.stopSampling')
close()

const perFunction = new Map()
const perFile = new Map()
let total = 0
const walk = (node, caller) => {
  const { callFrame } = node
  const url = callFrame.url.replace(/^file:\/\//, '').replace(/.*node_modules\//, '')
  const name = `${callFrame.functionName || '(anonymous)'} ${url}:${callFrame.lineNumber + 1}`
  const file = url === '' ? '(native)' : url.replace(/\/dist\/.*|\/src\/.*/, '') || url
  if (node.selfSize > 0) {
    total += node.selfSize
    const key = `${name}  ← ${caller}`
    perFunction.set(key, (perFunction.get(key) ?? 0) + node.selfSize)
    perFile.set(file, (perFile.get(file) ?? 0) + node.selfSize)
  }
  for (const child of node.children ?? []) walk(child, name)
}
walk(result.profile.head, '(root)')
console.log(`${(total / seconds / 1024).toFixed(1)} KiB/s allocated over ${seconds} s; heap spaces at the start: ${spaces.map(([n, s]) => `${n} ${(s / 1024).toFixed(0)} KiB`).join(', ')}`)
const show = (title, map, n) => {
  console.log(`── ${title}`)
  for (const [key, bytes] of [...map].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${(bytes / seconds / 1024).toFixed(2).padStart(8)} KiB/s  ${key}`)
}
show('by package / file', perFile, 20)
show('by function (self), with caller', perFunction, 40)
