import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createLinkCounterReader, createProcFileReader, parseProcNetDev } from '../../src/kernel/link-counters.js'
import type { LinkCounters } from '../../src/kernel/types.js'

// Recorded from a namespace with a 15-character meshd link name (no space before its colon) and a veth.
const RECORDED = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compress
    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0
md-2mhtxpmlbtks: 18446744 73709    0    0    0     0          0         0  1207304    9311    0    3    0     0       0          0
  eth0: 9007199254740991 12 0 0 0 0 0 0 42 1 0 0 0 0 0 0
`

const signal = new AbortController().signal

describe('/proc/net/dev counters', () => {
  it('reads each link\'s received and sent bytes, long names included, and skips the header', () => {
    expect(parseProcNetDev(RECORDED)).toEqual([
      { name: 'lo', rxBytes: 3193, txBytes: 3193 },
      { name: 'md-2mhtxpmlbtks', rxBytes: 18446744, txBytes: 1207304 },
      { name: 'eth0', rxBytes: 9007199254740991, txBytes: 42 },
    ])
  })

  it('leaves out lines that are not a link and its 16 counters', () => {
    const bad = [
      'md-a: 1 2 3', // too few fields
      'md-b: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x', // not a number
      'md-c: 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0', // past 2^53: not exact in a double
      'a/b: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16', // not an interface name
      'sixteen-chars-xx: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16',
      ': 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16',
      'md-d: -1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16',
    ]
    expect(parseProcNetDev(bad.join('\n'))).toEqual([])
    expect(parseProcNetDev('')).toEqual([])
  })

  it('never throws on mutated recordings, and returns only well-formed counters', () => {
    let seed = 0x5eed
    const next = (): number => {
      seed = (seed + 0x6d2b79f5) | 0
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
    const alphabet = Array.from('0123456789 :\n/-abc\t\u00e9\u0000')
    for (let i = 0; i < 3000; i++) {
      let text = RECORDED
      for (let m = 1 + Math.floor(next() * 6); m > 0; m--) {
        const at = Math.floor(next() * (text.length + 1))
        const char = alphabet[Math.floor(next() * alphabet.length)] ?? ''
        text = next() < 0.5 ? text.slice(0, at) + char + text.slice(at) : text.slice(0, at) + text.slice(at + 1)
      }
      for (const counters of parseProcNetDev(text)) {
        expect(counters.name).toMatch(/^[^\s/:]{1,15}$/)
        expect(Number.isSafeInteger(counters.rxBytes) && counters.rxBytes >= 0).toBe(true)
        expect(Number.isSafeInteger(counters.txBytes) && counters.txBytes >= 0).toBe(true)
      }
    }
  })
})

describe('link counter reader', () => {
  const fromNetlink: LinkCounters[] = [{ name: 'lo', rxBytes: 1, txBytes: 1 }]

  it('reads /proc and does not dump links while the file reads', async () => {
    let dumps = 0
    const reader = createLinkCounterReader({
      rtnl: { linkCounters: () => (dumps++, Promise.resolve(fromNetlink)) },
      readProcFile: () => RECORDED,
    })
    expect((await reader.read({ signal })).map((c) => c.name)).toEqual(['lo', 'md-2mhtxpmlbtks', 'eth0'])
    await reader.read({ signal })
    expect({ dumps, source: reader.source }).toEqual({ dumps: 0, source: 'proc' })
  })

  it('falls back to the netlink dump for good when the file cannot be read or holds no link', async () => {
    for (const readProcFile of [
      () => {
        throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' })
      },
      () => 'not /proc/net/dev\n',
    ]) {
      let reads = 0
      const reader = createLinkCounterReader({
        rtnl: { linkCounters: () => Promise.resolve(fromNetlink) },
        readProcFile: () => (reads++, readProcFile()),
      })
      expect(await reader.read({ signal })).toEqual(fromNetlink)
      expect(await reader.read({ signal })).toEqual(fromNetlink)
      expect({ reads, source: reader.source }).toEqual({ reads: 1, source: 'netlink' })
    }
  })

  it('refuses to start a read once aborted', async () => {
    const reader = createLinkCounterReader({ rtnl: { linkCounters: () => Promise.resolve(fromNetlink) }, readProcFile: () => RECORDED })
    await expect(reader.read({ signal: AbortSignal.abort() })).rejects.toThrow()
  })

  describe('a procfs file kept open', () => {
    it('reads the whole file from the start every time, however long it has grown', () => {
      const dir = mkdtempSync(join(tmpdir(), 'meshd-procfile-'))
      try {
        const path = join(dir, 'dev')
        writeFileSync(path, 'first\n')
        const file = createProcFileReader(path)
        expect(file.read()).toBe('first\n')
        // Same inode rewritten in place, as procfs regenerates its text: longer than the first buffer.
        const long = `${'x'.repeat(20_000)}\nend\n`
        writeFileSync(path, long)
        expect(file.read()).toBe(long)
        writeFileSync(path, 'short\n')
        expect(file.read()).toBe('short\n')
        file.close()
        file.close()
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    })

    it('gives what a fresh read of /proc/self/net/dev gives', () => {
      const file = createProcFileReader('/proc/self/net/dev')
      try {
        const names = (text: string): string[] => parseProcNetDev(text).map((c) => c.name)
        expect(names(file.read())).toContain('lo')
        expect(names(file.read())).toEqual(names(readFileSync('/proc/self/net/dev', 'latin1')))
      } finally {
        file.close()
      }
    })
  })
})
