import { describe, expect, it } from 'vitest'
import { BoundedMap } from '../../src/net/bounded-map.js'

describe('BoundedMap', () => {
  it('forgets the oldest entry once full, and keeps the newest ones', () => {
    const map = new BoundedMap<string, number>(2)
    map.set('a', 1)
    map.set('b', 2)
    map.set('c', 3)
    expect([map.has('a'), map.get('b'), map.get('c'), map.size]).toEqual([false, 2, 3, 2])
  })

  it('replacing a held key does not evict another', () => {
    const map = new BoundedMap<string, number>(2)
    map.set('a', 1)
    map.set('b', 2)
    map.set('a', 10)
    expect([map.get('a'), map.get('b'), map.size]).toEqual([10, 2, 2])
  })
})
