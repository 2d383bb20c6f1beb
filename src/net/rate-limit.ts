// A token bucket, pure: what the prober and the membership node use to bound
// the work one peer can cause. Values in, new value out; callers own the map.

export interface TokenBucket {
  tokens: number
  updatedAt: number
}

export interface Rate {
  perSecond: number
  burst: number
}

/** Refill by elapsed time, then take one token if there is one. */
export function takeToken(bucket: TokenBucket | undefined, now: number, rate: Rate): { bucket: TokenBucket; allowed: boolean } {
  const previous = bucket ?? { tokens: rate.burst, updatedAt: now }
  const elapsedMs = Math.max(0, now - previous.updatedAt)
  const tokens = Math.min(rate.burst, previous.tokens + (elapsedMs * rate.perSecond) / 1000)
  if (tokens < 1) return { bucket: { tokens, updatedAt: now }, allowed: false }
  return { bucket: { tokens: tokens - 1, updatedAt: now }, allowed: true }
}
