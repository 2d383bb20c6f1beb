import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../../src/logging/logger.js'
import { createReconciler } from '../../src/kernel/reconciler.js'
import { InvalidDesiredState } from '../../src/kernel/validate.js'
import { EMPTY_STATE, LINK_KINDS } from '../../src/kernel/types.js'
import { FakeKernel } from '../support/fake-kernel.js'
import { onePeerMesh, TEST_PEER_KEY, TEST_PRIVATE_KEY } from '../support/kernel-fixtures.js'

const PRIVATE_KEY = TEST_PRIVATE_KEY
const PEER_KEY = TEST_PEER_KEY

const mesh = onePeerMesh

function setup(): { kernel: FakeKernel; reconciler: ReturnType<typeof createReconciler>; log: () => string } {
  const kernel = new FakeKernel()
  let text = ''
  const logger = createLogger({
    pretty: false,
    destination: new Writable({
      write(chunk: Buffer, _e, done) {
        text += chunk.toString('utf8')
        done()
      },
    }),
  })
  const reconciler = createReconciler(
    { supportedKinds: new Set(LINK_KINDS) },
    { rtnl: kernel, wireguard: kernel.wireguardBackend(), sysctl: kernel.sysctlPort(), logger },
  )
  return { kernel, reconciler, log: () => text }
}

const signal = new AbortController().signal

describe('reconciler.apply', () => {
  it('builds the state, and a second apply changes nothing', async () => {
    const { kernel, reconciler } = setup()
    const first = await reconciler.apply(mesh(), { signal })
    expect(first.failures).toEqual([])
    expect(kernel.dump()).toBe(
      [
        'addr md-self|100.64.0.1/32|',
        'addr md-w-b|169.254.10.1/32|169.254.10.2/32',
        'link lo loopback mtu 1500 up',
        'link md-self dummy mtu 1500 up',
        'link md-w-b wireguard mtu 1440 up',
        'route 4|7300|100.64.0.2/32|0 proto 73',
        'rule 4|7300|7300||100.64.0.0/16|||| proto 73',
        'sysctl net.ipv4.conf.md-w-b.rp_filter=2',
        `wg md-w-b port 51820 peers ${PEER_KEY}`,
      ].join('\n'),
    )
    kernel.calls = []
    const second = await reconciler.apply(mesh(), { signal })
    expect(second.planned).toEqual([])
    expect(kernel.calls).toEqual([])
  })

  it('apply(empty) leaves exactly the objects that were there before', async () => {
    const { kernel, reconciler } = setup()
    kernel.addUserLink('eth0', 'veth')
    kernel.addUserAddress({ link: 'eth0', local: '192.0.2.1/24', family: 4, protocol: 0 })
    kernel.addUserRoute({ table: 254, dst: '0.0.0.0/0', nexthop: { via: '192.0.2.254', dev: 'eth0' }, family: 4, protocol: 3 })
    kernel.addUserRoute({ table: 7300, dst: '10.9.0.0/16', nexthop: { via: '192.0.2.254', dev: 'eth0' }, family: 4, protocol: 4 })
    kernel.addUserRule({ family: 4, priority: 7310, table: 100, from: '10.0.0.0/8', protocol: 4 })
    const before = kernel.dump()
    await reconciler.apply(mesh(), { signal })
    expect(kernel.dump()).not.toBe(before)
    const teardown = await reconciler.apply(EMPTY_STATE, { signal })
    expect(teardown.failures).toEqual([])
    // Sysctls are not restored (forwarding and rp_filter stay as set); everything else is as before.
    expect(kernel.dump().split('\n').filter((l) => !l.startsWith('sysctl')).join('\n')).toBe(before)
  })

  it('keeps going past a failure and reports every failure with its operation', async () => {
    const { kernel, reconciler, log } = setup()
    kernel.failNext = { routeReplace: 'ENETUNREACH', ruleAdd: 'EPERM' }
    const result = await reconciler.apply(mesh(), { signal })
    expect(result.failures.map((f) => [f.description, (f.error as { errno?: string }).errno])).toEqual([
      ['ip route replace 100.64.0.2/32 via 169.254.10.2 dev md-w-b onlink table 7300', 'ENETUNREACH'],
      ['ip -4 rule add priority 7300 to 100.64.0.0/16 lookup 7300', 'EPERM'],
    ])
    // Everything else was applied; the next pass repairs the rest.
    expect(result.applied).toHaveLength(result.planned.length - 2)
    const retry = await reconciler.apply(mesh(), { signal })
    expect(retry.planned.map((o) => o.op)).toEqual(['routeReplace', 'ruleAdd'])
    expect(retry.failures).toEqual([])
    expect(log()).not.toContain(PRIVATE_KEY)
  })

  it('repairs drift: a route deleted behind its back comes back', async () => {
    const { kernel, reconciler } = setup()
    await reconciler.apply(mesh(), { signal })
    kernel.routes.clear()
    const repair = await reconciler.apply(mesh(), { signal })
    expect(repair.planned.map((o) => o.op)).toEqual(['routeReplace'])
  })

  it('refuses an invalid state before touching the kernel', async () => {
    const { kernel, reconciler } = setup()
    const bad = mesh()
    bad.links.push({ kind: 'dummy', name: 'md-much-too-long-name', up: true })
    await expect(reconciler.apply(bad, { signal })).rejects.toBeInstanceOf(InvalidDesiredState)
    expect(kernel.calls).toEqual([])
  })

  it('runs concurrent applies one after another, so they never add the same object twice', async () => {
    const { kernel, reconciler } = setup()
    const results = await Promise.all([reconciler.apply(mesh(), { signal }), reconciler.apply(mesh(), { signal })])
    expect(results.map((r) => r.failures)).toEqual([[], []])
    expect(results[1]?.planned).toEqual([])
    expect(kernel.calls.filter((c) => c === 'ruleAdd')).toHaveLength(1)
  })

  it('stops when aborted', async () => {
    const { reconciler } = setup()
    const controller = new AbortController()
    controller.abort()
    await expect(reconciler.apply(mesh(), { signal: controller.signal })).rejects.toThrow()
  })
})

describe('reconciler.apply on wireguard-go with persistent tuns', () => {
  function userspace() {
    const kernel = new FakeKernel()
    const backend = kernel.userspaceBackend()
    const logger = createLogger({ pretty: false, level: 'silent' })
    const reconciler = createReconciler({ supportedKinds: new Set(LINK_KINDS) }, { rtnl: kernel, wireguard: backend, sysctl: kernel.sysctlPort(), logger })
    return { kernel, backend, reconciler }
  }
  const STATE = [
    'addr md-self|100.64.0.1/32|',
    'addr md-w-b|169.254.10.1/32|169.254.10.2/32',
    'link lo loopback mtu 1500 up',
    'link md-self dummy mtu 1500 up',
    'link md-w-b tun mtu 1440 up',
    'route 4|7300|100.64.0.2/32|0 proto 73',
    'rule 4|7300|7300||100.64.0.0/16|||| proto 73',
    'sysctl net.ipv4.conf.md-w-b.rp_filter=2',
    `wg md-w-b port 51820 peers ${PEER_KEY}`,
  ].join('\n')

  it('does the kernel work before wireguard-go starts, then configures it; a second apply changes nothing', async () => {
    const { kernel, reconciler } = userspace()
    const first = await reconciler.apply(mesh(), { signal })
    expect(first.failures).toEqual([])
    expect(kernel.dump()).toBe(STATE)
    // Every link, address, route and rule change before the process starts; only its MTU after.
    expect(kernel.calls).toEqual(['tunAdd', 'linkAdd', 'linkSet', 'addrAdd', 'addrAdd', 'linkSet', 'routeReplace', 'ruleAdd', 'wgEnsure', 'wgSet', 'linkSet'])
    kernel.calls = []
    expect((await reconciler.apply(mesh(), { signal })).planned).toEqual([])
    expect(kernel.calls).toEqual([])
  })

  it('restarts a wireguard-go that died (its tun stays, without carrier) and configures it again', async () => {
    const { kernel, backend, reconciler } = userspace()
    await reconciler.apply(mesh(), { signal })
    await reconciler.apply(mesh(), { signal })
    backend.kill('md-w-b')
    const repair = await reconciler.apply(mesh(), { signal })
    expect(repair.failures).toEqual([])
    // The cache trusted the device (same link, same configuration): the missing carrier is what tells.
    expect(repair.planned.map((o) => o.op)).toEqual(['wgEnsure', 'wgSet', 'linkSet'])
    expect(kernel.dump()).toBe(STATE)
    expect((await reconciler.apply(mesh(), { signal })).planned).toEqual([])
  })

  it('sets again, after the other sets, a configuration refused because a random port held its listen port', async () => {
    const { kernel, reconciler } = userspace()
    kernel.failNext = { wgSet: 'EADDRINUSE' }
    const result = await reconciler.apply(mesh(), { signal })
    expect(result.failures).toEqual([])
    expect(kernel.calls.filter((c) => c === 'wgSet')).toEqual(['wgSet', 'wgSet'])
    expect(kernel.dump()).toBe(STATE)
  })

  it('tears down processes and their links', async () => {
    const { kernel, reconciler } = userspace()
    await reconciler.apply(mesh(), { signal })
    const result = await reconciler.apply(EMPTY_STATE, { signal })
    expect(result.failures).toEqual([])
    expect(kernel.processes.size).toBe(0)
    expect([...kernel.links.keys()]).toEqual(['lo'])
  })
})
