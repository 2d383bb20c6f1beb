/** Polls `probe` until it returns a value other than undefined, or throws after the deadline. Tests never sleep a fixed time. */
export async function pollUntil<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  options: { deadlineMs: number; intervalMs?: number; what: string },
): Promise<T> {
  const deadline = Date.now() + options.deadlineMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined) return value
    } catch (error) {
      lastError = error
    }
    if (Date.now() > deadline) {
      const cause = lastError instanceof Error ? `: last error ${lastError.message}` : ''
      throw new Error(`timed out after ${options.deadlineMs} ms waiting for ${options.what}${cause}`)
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50))
  }
}
