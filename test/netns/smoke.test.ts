import { afterAll, describe, expect, it } from 'vitest'
import { Netns, type IpLink } from '../support/netns.js'

// Proves the harness: a real namespace on the real kernel, objects checked with `ip -j`.
describe('netns tier smoke', () => {
  const ns = new Netns('mt-smoke')
  afterAll(() => {
    ns.delete()
  })

  it('creates a veth pair, sees it up with ip -j, and removes it', () => {
    ns.ip('link', 'add', 'veth-a', 'type', 'veth', 'peer', 'name', 'veth-b')
    ns.ip('link', 'set', 'veth-a', 'up')
    ns.ip('link', 'set', 'veth-b', 'up')
    const links = ns.ipJson<IpLink[]>('-d', 'link', 'show')
    const a = links.find((l) => l.ifname === 'veth-a')
    expect(a?.linkinfo?.info_kind).toBe('veth')
    expect(a?.flags).toContain('UP')
    ns.ip('link', 'del', 'veth-a')
    const after = ns.ipJson<IpLink[]>('link', 'show').map((l) => l.ifname)
    expect(after).not.toContain('veth-a')
    expect(after).not.toContain('veth-b')
  })

  it('runs wireguard-go and configures it with wg', () => {
    ns.exec('wireguard-go', ['mtsmoke0'])
    try {
      ns.exec('wg', ['set', 'mtsmoke0', 'listen-port', '51999'])
      expect(ns.exec('wg', ['show', 'mtsmoke0', 'listen-port']).trim()).toBe('51999')
      const [link] = ns.ipJson<IpLink[]>('-d', 'link', 'show', 'mtsmoke0')
      expect(link?.linkinfo?.info_kind).toBe('tun')
    } finally {
      ns.ip('link', 'del', 'mtsmoke0')
    }
  })
})
