// Takes a CPU profile of a running Node process (an agent) without restarting
// it: SIGUSR1 opens its inspector on 127.0.0.1:9229 (of the process's own
// network namespace, so run this with `ip netns exec <ns>`), then the
// DevTools protocol over WebSocket starts and stops the profiler.
//
//   ip netns exec NS node bench/support/cpu-profile.mjs <pid> [seconds] [out.cpuprofile]
//
// Prints self time per function (top 40) and per package/file; writes the
// whole profile to out.cpuprofile when given (loadable in Chrome DevTools).

import { writeFileSync } from 'node:fs'
import { connectInspector } from './inspector.mjs'

const [pidText, secondsText = '10', out] = process.argv.slice(2)
const pid = Number(pidText)
if (!Number.isInteger(pid) || pid <= 0) {
  process.stderr.write('usage: cpu-profile.mjs <pid> [seconds] [out.cpuprofile]\n')
  process.exit(2)
}
const { send, close } = await connectInspector(pid)

await send('Profiler.enable')
await send('Profiler.setSamplingInterval', { interval: 500 })
await send('Profiler.start')
await new Promise((resolve) => setTimeout(resolve, Number(secondsText) * 1000))
const { result } = await send('Profiler.stop')
close()
const profile = result.profile
if (out) writeFileSync(out, JSON.stringify(profile))

// Self time per node from the sample counts.
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const counts = new Map()
for (const id of profile.samples) counts.set(id, (counts.get(id) ?? 0) + 1)
const total = profile.samples.length
const spanMs = (profile.endTime - profile.startTime) / 1000
const perFunction = new Map()
const perFile = new Map()
for (const [id, count] of counts) {
  const { callFrame } = byId.get(id)
  const url = callFrame.url.replace(/^file:\/\//, '').replace(/.*node_modules\//, '')
  const file = url === '' ? `(${callFrame.functionName || 'native'})` : url.replace(/\/dist\/.*|\/src\/.*/, '') || url
  const key = `${callFrame.functionName || '(anonymous)'} ${url}:${callFrame.lineNumber + 1}`
  perFunction.set(key, (perFunction.get(key) ?? 0) + count)
  perFile.set(file, (perFile.get(file) ?? 0) + count)
}
const idle = [...counts].filter(([id]) => byId.get(id).callFrame.functionName === '(idle)').reduce((a, [, c]) => a + c, 0)
const busyMs = ((total - idle) / total) * spanMs
console.log(`${spanMs.toFixed(0)} ms profiled, busy ${busyMs.toFixed(0)} ms (${((busyMs / spanMs) * 100).toFixed(2)} % of a core)`)
const show = (title, map, n) => {
  console.log(`── ${title}`)
  for (const [key, count] of [...map].sort((a, b) => b[1] - a[1]).slice(0, n)) {
    if (key.startsWith('(idle)')) continue
    console.log(`${((count / total) * spanMs).toFixed(1).padStart(8)} ms  ${key}`)
  }
}
show('by package / file', perFile, 25)
show('by function (self)', perFunction, 40)
