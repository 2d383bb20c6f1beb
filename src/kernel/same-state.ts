// Structural equality of two desired states, pure: lets the agent skip a
// kernel pass whose input has not changed since one applied cleanly. Secrets
// compare by value (a new preshared key is a change); arrays by position (the
// planner's output order is deterministic, and a reorder only costs a pass).

import { Secret } from '../logging/secret.js'
import type { DesiredState } from './types.js'

export function sameDesiredState(a: DesiredState, b: DesiredState): boolean {
  return same(a, b)
}

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (a instanceof Secret || b instanceof Secret) return a instanceof Secret && b instanceof Secret && same(a.reveal(), b.reveal())
  if (a instanceof Uint8Array || b instanceof Uint8Array) return a instanceof Uint8Array && b instanceof Uint8Array && Buffer.compare(a, b) === 0
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (!same(a[i], b[i])) return false
    return true
  }
  const keysA = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined)
  const keysB = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined)
  if (keysA.length !== keysB.length) return false
  for (const key of keysA) if (!same((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])) return false
  return true
}
