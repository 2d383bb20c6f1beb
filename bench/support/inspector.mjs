// Opens the inspector of a running Node process (an agent) and speaks the
// DevTools protocol to it: SIGUSR1 makes it listen on 127.0.0.1:9229 of its
// own network namespace, so the caller runs under `ip netns exec <ns>`.
// Used by cpu-profile.mjs and alloc-profile.mjs.

/** Connects to pid's inspector; `send` resolves with the reply, `close` closes the inspector again. */
export async function connectInspector(pid) {
  process.kill(pid, 'SIGUSR1')
  let targets
  for (let i = 0; i < 100 && targets === undefined; i++) {
    try {
      targets = await (await fetch('http://127.0.0.1:9229/json/list')).json()
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  if (!targets?.[0]) throw new Error('no inspector target')
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl)
  await new Promise((resolve, reject) => {
    ws.onopen = resolve
    ws.onerror = reject
  })
  let nextId = 1
  const pending = new Map()
  ws.onmessage = (event) => {
    const message = JSON.parse(String(event.data))
    if (message.id !== undefined) pending.get(message.id)?.(message)
  }
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      const id = nextId++
      pending.set(id, resolve)
      ws.send(JSON.stringify({ id, method, params }))
    })
  const close = () => {
    // It answers nothing once closed, so do not wait.
    ws.send(JSON.stringify({ id: nextId++, method: 'Runtime.evaluate', params: { expression: 'process._debugEnd?.()' } }))
    ws.close()
  }
  return { send, close }
}
