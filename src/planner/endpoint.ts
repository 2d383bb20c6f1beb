// Which endpoint to give WireGuard for a peer (issue 5 item 6), pure.
//
// While the tunnel has a fresh handshake, meshd sets no endpoint and so leaves
// whatever WireGuard learned from the peer's authenticated packets: behind a
// NAT that is the mapped address, which no candidate knows. Without a fresh
// handshake, the candidates are tried in turn, each for `tryMs`, with
// keepalive doing the knocking.

export interface Endpoint {
  address: string
  port: number
}

export interface EndpointAttempt {
  index: number
  since: number
}

export interface EndpointChoice {
  /** undefined: leave the endpoint to WireGuard (roaming). */
  endpoint?: Endpoint
  attempt?: EndpointAttempt
}

export const ENDPOINT_TRY_MS = 5_000

export function chooseEndpoint(candidates: readonly Endpoint[], handshakeFresh: boolean, previous: EndpointAttempt | undefined, now: number, tryMs = ENDPOINT_TRY_MS): EndpointChoice {
  if (handshakeFresh) return {}
  if (candidates.length === 0) return {}
  let attempt = previous ?? { index: 0, since: now }
  if (attempt.index >= candidates.length) attempt = { index: 0, since: now }
  else if (now - attempt.since >= tryMs) attempt = { index: (attempt.index + 1) % candidates.length, since: now }
  const endpoint = candidates[attempt.index]
  return endpoint === undefined ? {} : { endpoint, attempt }
}

/**
 * Whether a pass would now give WireGuard a different endpoint: the attempt has run its time and
 * there is another candidate to move to. With one candidate the rotation lands where it was, so
 * it is no reason for a pass (idle CPU, issue 5: a down peer would otherwise cost one every 5 s).
 */
export function endpointChangeDue(attempt: EndpointAttempt, candidateCount: number, now: number, tryMs = ENDPOINT_TRY_MS): boolean {
  return candidateCount > 1 && now - attempt.since >= tryMs
}
