// The socket layer of src/kernel/netlink.ts against a fake kernel: request /
// ACK / dump framing, errno mapping, sequence matching, one request in flight,
// NLM_F_DUMP_INTR retries, timeouts and aborts, notifications, and the
// WireGuard family lookup. The real kernel is exercised in test/netns.

import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { encodeLinkGet, RTM_GETLINK, RTM_NEWLINK } from '../../src/kernel/encode/link.js'
import {
  attr,
  frameMessage,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_MULTI,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseMessages,
  str,
  u16,
  u32,
  type NlMessage,
} from '../../src/kernel/encode/nlattr.js'
import { GENL_ID_CTRL, genlmsghdr } from '../../src/kernel/encode/genl.js'
import { openRtnetlink, openWireguardGenl, type NetlinkComponents, type NetlinkSocketLike } from '../../src/kernel/netlink.js'
import { KernelError } from '../../src/kernel/port.js'
import { Secret } from '../../src/logging/secret.js'
import { pollUntil } from '../support/poll.js'

type Reply = Buffer[] | 'silence'

class FakeSocket extends EventEmitter implements NetlinkSocketLike {
  readonly sent: NlMessage[] = []
  readonly groups: number[] = []
  closed = false
  constructor(
    readonly protocol: number,
    private readonly kernel: FakeKernel,
  ) {
    super()
  }
  send(datagram: Buffer, _options: Record<string, never>, callback: (error?: { code?: string }) => void): void {
    const [message] = parseMessages(datagram)
    if (!message) throw new Error('empty datagram')
    this.sent.push(message)
    callback()
    const reply = this.kernel.handle(message, this)
    if (reply === 'silence') return
    // The kernel answers asynchronously, one datagram at a time.
    setImmediate(() => {
      for (const datagram of reply) if (!this.closed) this.emit('message', datagram)
    })
  }
  close(): void {
    this.closed = true
  }
  ref(): void {
    // nothing to keep alive
  }
  unref(): void {
    // nothing to keep alive
  }
  addMembership(group: number): void {
    this.groups.push(group)
  }
}

class FakeKernel implements NetlinkComponents {
  readonly sockets: FakeSocket[] = []
  constructor(readonly handle: (request: NlMessage, socket: FakeSocket) => Reply) {}
  openSocket = (protocol: number): NetlinkSocketLike => {
    const socket = new FakeSocket(protocol, this)
    this.sockets.push(socket)
    return socket
  }
  get sent(): NlMessage[] {
    return this.sockets.flatMap((s) => s.sent)
  }
}

function message(type: number, flags: number, seq: number, payload: Buffer): Buffer {
  return frameMessage({ type, flags, seq, payload })
}
/** NLMSG_ERROR: -errno, then the request's header. */
function ack(request: NlMessage, errno = 0): Buffer {
  const payload = Buffer.alloc(20)
  payload.writeInt32LE(-errno, 0)
  return message(NLMSG_ERROR, 0, request.seq, payload)
}
function done(request: NlMessage, errno = 0): Buffer {
  const payload = Buffer.alloc(4)
  payload.writeInt32LE(-errno, 0)
  return message(NLMSG_DONE, NLM_F_MULTI, request.seq, payload)
}
function linkPayload(index: number, name: string, extra: Buffer[] = []): Buffer {
  const header = Buffer.alloc(16)
  header.writeInt32LE(index, 4)
  header.writeUInt32LE(1, 8) // IFF_UP
  return Buffer.concat([header, attr(3, str(name)), attr(4, u32(1500)), ...extra])
}
/** A kernel that knows links by name and answers lookups and link dumps. */
function linkKernel(links: Record<string, number>, onOther: (request: NlMessage) => Reply = (r) => [ack(r)]): FakeKernel {
  return new FakeKernel((request) => {
    if (request.type !== RTM_GETLINK) return onOther(request)
    if ((request.flags & NLM_F_DUMP) === NLM_F_DUMP) {
      const parts = Object.entries(links).map(([name, index]) => message(RTM_NEWLINK, NLM_F_MULTI, request.seq, linkPayload(index, name)))
      return [Buffer.concat(parts), done(request)]
    }
    const name = request.payload.subarray(16 + 8 + 4).toString('utf8').replace(/\0.*$/s, '')
    const index = links[name]
    return index === undefined ? [ack(request, 19)] : [message(RTM_NEWLINK, 0, request.seq, linkPayload(index, name)), ack(request)]
  })
}
const signal = (): AbortSignal => new AbortController().signal

async function rejection(promise: Promise<unknown>): Promise<KernelError> {
  try {
    await promise
  } catch (error) {
    if (error instanceof KernelError) return error
    throw error
  }
  throw new Error('expected a KernelError')
}

describe('rtnetlink requests', () => {
  it('sends NLM_F_REQUEST|NLM_F_ACK with the encoder’s flags and resolves on the ACK', async () => {
    const kernel = linkKernel({ 'md-a': 7 })
    const rt = openRtnetlink({}, kernel)
    await rt.linkSet('md-a', { mtu: 1400 }, { signal: signal() })
    const [lookup, set] = kernel.sent
    expect(lookup?.payload).toEqual(encodeLinkGet('md-a').payload)
    expect(set?.type).toBe(RTM_NEWLINK)
    expect(set?.flags).toBe(NLM_F_REQUEST | NLM_F_ACK)
    expect(set?.payload.readInt32LE(4)).toBe(7)
    rt.close()
  })

  it('maps a kernel refusal to a typed KernelError naming the operation', async () => {
    const rt = openRtnetlink({}, linkKernel({}, (r) => [ack(r, 17)]))
    const error = await rejection(rt.routeReplace({ table: 7300, dst: '10.1.0.0/24', type: 'blackhole' }, { signal: signal() }))
    expect(error.errno).toBe('EEXIST')
    expect(error.operation).toBe('routeReplace 10.1.0.0/24 table 7300')
    expect(error.message).toBe('routeReplace 10.1.0.0/24 table 7300: EEXIST')
  })

  it('reports a missing link as ENODEV with its name', async () => {
    const rt = openRtnetlink({}, linkKernel({}))
    const error = await rejection(rt.addrAdd({ link: 'md-gone', local: '10.0.0.1/32' }, { signal: signal() }))
    expect(error.errno).toBe('ENODEV')
    expect(error.message).toContain('no link named md-gone')
  })

  it('rejects malformed input as EINVAL without sending anything', async () => {
    const kernel = linkKernel({})
    const rt = openRtnetlink({}, kernel)
    const error = await rejection(rt.ruleAdd({ family: 4, priority: 7300, table: 7300, from: 'fd00::/8' }, { signal: signal() }))
    expect(error.errno).toBe('EINVAL')
    expect(kernel.sent).toHaveLength(0)
  })

  it('names EOPNOTSUPP by the kernel’s name, not libuv’s ENOTSUP', async () => {
    const rt = openRtnetlink({}, linkKernel({}, (r) => [ack(r, 95)]))
    const error = await rejection(rt.linkAdd({ kind: 'dummy', name: 'md-d0', up: false }, { signal: signal() }))
    expect(error.errno).toBe('EOPNOTSUPP')
  })
})

describe('dumps', () => {
  it('collects a multi-part dump across datagrams and decodes it', async () => {
    const rt = openRtnetlink({}, linkKernel({ lo: 1, 'md-a': 2 }))
    const links = await rt.linkList({ signal: signal() })
    expect(links.map((l) => [l.name, l.index, l.mtu, l.up])).toEqual([
      ['lo', 1, 1500, true],
      ['md-a', 2, 1500, true],
    ])
  })

  it('fails with the errno NLMSG_DONE carries', async () => {
    const kernel = new FakeKernel((r) => [done(r, 90)])
    const error = await rejection(openRtnetlink({}, kernel).linkList({ signal: signal() }))
    expect(error.errno).toBe('EMSGSIZE')
  })

  it('retries a dump marked NLM_F_DUMP_INTR and gives up with EINTR', async () => {
    let attempts = 0
    const interrupted = new FakeKernel((r) => {
      attempts++
      return [message(RTM_NEWLINK, NLM_F_MULTI | NLM_F_DUMP_INTR, r.seq, linkPayload(1, 'lo')), done(r)]
    })
    const error = await rejection(openRtnetlink({}, interrupted).linkList({ signal: signal() }))
    expect(error.errno).toBe('EINTR')
    expect(attempts).toBe(3)

    let calls = 0
    const once = new FakeKernel((r) => {
      calls++
      const flags = calls === 1 ? NLM_F_MULTI | NLM_F_DUMP_INTR : NLM_F_MULTI
      return [message(RTM_NEWLINK, flags, r.seq, linkPayload(1, 'lo')), done(r)]
    })
    expect(await openRtnetlink({}, once).linkList({ signal: signal() })).toHaveLength(1)
    expect(calls).toBe(2)
  })

  it('ignores replies that carry another sequence number', async () => {
    const kernel = new FakeKernel((r) => [
      message(RTM_NEWLINK, NLM_F_MULTI, r.seq - 1, linkPayload(9, 'stale')),
      message(RTM_NEWLINK, NLM_F_MULTI, r.seq, linkPayload(1, 'lo')),
      done(r),
    ])
    const links = await openRtnetlink({}, kernel).linkList({ signal: signal() })
    expect(links.map((l) => l.name)).toEqual(['lo'])
  })
})

describe('one request in flight, timeouts and aborts', () => {
  it('sends the next request only after the previous one was answered', async () => {
    const events: string[] = []
    const kernel = new FakeKernel((r) => {
      events.push(`request ${r.type}`)
      setImmediate(() => events.push(`answer ${r.type}`))
      return [ack(r)]
    })
    const rt = openRtnetlink({}, kernel)
    await Promise.all([
      rt.ruleAdd({ family: 4, priority: 7300, table: 7300 }, { signal: signal() }),
      rt.routeDel({ table: 7300, dst: '10.0.0.0/8' }, { signal: signal() }),
      rt.ruleDel({ family: 4, priority: 7300, table: 7300 }, { signal: signal() }),
    ])
    expect(events).toEqual(['request 32', 'answer 32', 'request 25', 'answer 25', 'request 33', 'answer 33'])
  })

  it('with several sockets, runs concurrent calls at once, one request in flight on each', async () => {
    const events: string[] = []
    const kernel = new FakeKernel((r) => {
      events.push(`request ${r.type}`)
      setImmediate(() => events.push(`answer ${r.type}`))
      return [ack(r)]
    })
    const rt = openRtnetlink({ sockets: 2 }, kernel)
    await Promise.all([
      rt.ruleAdd({ family: 4, priority: 7300, table: 7300 }, { signal: signal() }),
      rt.routeDel({ table: 7300, dst: '10.0.0.0/8' }, { signal: signal() }),
      rt.ruleDel({ family: 4, priority: 7300, table: 7300 }, { signal: signal() }),
    ])
    // Two go out together, one per socket; the third waits for the first socket to be free.
    expect(events.slice(0, 2)).toEqual(['request 32', 'request 25'])
    expect(events.indexOf('request 33')).toBeGreaterThan(events.indexOf('answer 32'))
    expect(kernel.sockets).toHaveLength(2)
    expect(kernel.sockets.map((s) => s.sent.length).sort()).toEqual([1, 2])
  })

  it('times out with ETIMEDOUT and opens a fresh socket for the next call', async () => {
    let silent = true
    const kernel = new FakeKernel((r) => (silent ? 'silence' : [ack(r)]))
    const rt = openRtnetlink({ timeoutMs: 20 }, kernel)
    const error = await rejection(rt.ruleDel({ family: 4, priority: 7300, table: 7300 }, { signal: signal() }))
    expect(error.errno).toBe('ETIMEDOUT')
    expect(error.operation).toBe('ruleDel priority 7300 table 7300')
    expect(kernel.sockets[0]?.closed).toBe(true)
    silent = false
    await rt.ruleDel({ family: 4, priority: 7300, table: 7300 }, { signal: signal() })
    expect(kernel.sockets).toHaveLength(2)
  })

  it('rejects with EABORTED when the caller aborts, also while queued', async () => {
    const kernel = new FakeKernel(() => 'silence')
    const rt = openRtnetlink({}, kernel)
    const controller = new AbortController()
    const first = rejection(rt.ruleAdd({ family: 4, priority: 7300, table: 7300 }, { signal: controller.signal }))
    const queued = rejection(rt.ruleAdd({ family: 4, priority: 7305, table: 7300 }, { signal: controller.signal }))
    await pollUntil(() => (kernel.sent.length === 1 ? true : undefined), { deadlineMs: 1000, what: 'the first request to be sent' })
    controller.abort()
    expect((await first).errno).toBe('EABORTED')
    expect((await queued).errno).toBe('EABORTED')
    expect(kernel.sent).toHaveLength(1)
  })

  it('does not send when the signal is already aborted', async () => {
    const kernel = new FakeKernel((r) => [ack(r)])
    const error = await rejection(openRtnetlink({}, kernel).ruleList({ signal: AbortSignal.abort() }))
    expect(error.errno).toBe('EABORTED')
    expect(kernel.sent).toHaveLength(0)
  })

  it('fails calls after close() with EBADF', async () => {
    const rt = openRtnetlink({}, new FakeKernel((r) => [ack(r)]))
    rt.close()
    expect((await rejection(rt.ruleList({ signal: signal() }))).errno).toBe('EBADF')
  })
})

describe('watch', () => {
  it('joins the link, address, route and rule groups of both families and reports what changed', () => {
    const kernel = new FakeKernel(() => 'silence')
    const rt = openRtnetlink({}, kernel)
    const seen: string[] = []
    const stop = rt.watch((what) => seen.push(what))
    const socket = kernel.sockets[0]
    expect(socket?.groups.sort((a, b) => a - b)).toEqual([1, 5, 7, 8, 9, 11, 19])
    socket?.emit('message', Buffer.concat([message(24, 0, 0, Buffer.alloc(12)), message(24, 0, 0, Buffer.alloc(12)), message(20, 0, 0, Buffer.alloc(8))]))
    expect(seen).toEqual(['route', 'address'])
    // Lost notifications (ENOBUFS): everything may have changed.
    socket?.emit('error', { code: 'ENOBUFS', message: 'recvmsg' })
    expect(seen.slice(2).sort()).toEqual(['address', 'link', 'route', 'rule'])
    stop()
    expect(socket?.closed).toBe(true)
  })
})

describe('WireGuard generic netlink', () => {
  const familyReply = (r: NlMessage, id: number): Buffer =>
    message(GENL_ID_CTRL, 0, r.seq, Buffer.concat([genlmsghdr(1, 2), attr(2, str('wireguard')), attr(1, u16(id))]))

  it('is unavailable, not an error, when the controller does not know the family', async () => {
    const kernel = new FakeKernel((r) => [ack(r, 2)])
    expect(await openWireguardGenl({}, kernel).available({ signal: signal() })).toBe(false)
    expect(kernel.sent[0]?.type).toBe(GENL_ID_CTRL)
  })

  it('resolves the family once and sends WG_CMD_SET_DEVICE with its id', async () => {
    const kernel = new FakeKernel((r) => (r.type === GENL_ID_CTRL ? [familyReply(r, 33), ack(r)] : [ack(r)]))
    const wg = openWireguardGenl({}, kernel)
    expect(await wg.available({ signal: signal() })).toBe(true)
    await wg.deviceSet({ name: 'md-w1', privateKey: new Secret(Buffer.alloc(32, 1).toString('base64')), listenPort: 51820, peers: [] }, { signal: signal() })
    expect(kernel.sent.map((m) => m.type)).toEqual([GENL_ID_CTRL, 33])
    expect(kernel.sent[1]?.payload.readUInt8(0)).toBe(1) // WG_CMD_SET_DEVICE
  })

  it('refuses device calls with EOPNOTSUPP when the family is missing', async () => {
    const wg = openWireguardGenl({}, new FakeKernel((r) => [ack(r, 2)]))
    expect((await rejection(wg.deviceGet('md-w1', { signal: signal() }))).errno).toBe('EOPNOTSUPP')
  })
})
