import { describe, expect, it } from 'vitest'
import { errnoOfMessage, ipAvailable, ipBatch, parseFailures } from '../../src/kernel/wireguard/ip-batch.js'
import { KernelError } from '../../src/kernel/port.js'

describe('ip -force -batch output', () => {
  it('names each failed line with what ip printed before "Command failed"', () => {
    const stderr = 'ioctl(TUNSETIFF): Device or resource busy\nCommand failed -:2\nCannot find device "md-zz"\nCommand failed -:3\n'
    const failures = parseFailures(stderr, 4)
    expect([...failures]).toEqual([
      [1, 'ioctl(TUNSETIFF): Device or resource busy'],
      [2, 'Cannot find device "md-zz"'],
    ])
    expect(errnoOfMessage(failures.get(1) ?? '')).toBe('EBUSY')
    expect(errnoOfMessage(failures.get(2) ?? '')).toBe('ENODEV')
    expect(errnoOfMessage('something else')).toBe('EIO')
  })

  it('ignores line numbers outside the batch', () => {
    expect(parseFailures('x\nCommand failed -:9\n', 2).size).toBe(0)
  })

  it('reports a missing ip as ENOENT, saying what needs it', async () => {
    expect(await ipAvailable('/nonexistent/ip')).toBe(false)
    const error = await ipBatch('tuntap add', ['tuntap add dev md-x mode tun'], { ipPath: '/nonexistent/ip', signal: AbortSignal.timeout(5000), timeoutMs: 5000 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(KernelError)
    expect(error).toMatchObject({ operation: 'tuntap add', errno: 'ENOENT' })
    expect(String(error)).toMatch(/needs iproute2/)
  })
})
