// What the kernel fills in when a route leaves a field out. The encoder sends
// these, and the planner compares with them, so one place decides both.

import { parseCidr } from './ip.js'
import type { Route, RouteScope } from './types.js'

/** iproute2's default scope: global for IPv6 (which has no route scopes); link for an IPv4 unicast route with neither gateway nor multipath; else global. */
export function effectiveRouteScope(route: Route): RouteScope {
  if (route.scope !== undefined) return route.scope
  if (parseCidr(route.dst)?.family === 6) return 'global'
  const hasGateway = route.nexthop?.via !== undefined || (route.multipath?.length ?? 0) > 0
  return (route.type ?? 'unicast') === 'unicast' && !hasGateway ? 'link' : 'global'
}

/** The kernel gives IPv6 routes metric 1024 when none is asked for, IPv4 routes 0. */
export function effectiveMetric(route: Route): number {
  return route.metric ?? (parseCidr(route.dst)?.family === 6 ? 1024 : 0)
}
