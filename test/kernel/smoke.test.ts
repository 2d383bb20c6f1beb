// Smoke test of the kernel tier: the link kinds the host kernel lacks
// (wireguard, dummy, bond, gretap) and netem can be created, inspected with
// `ip -j` / `tc -j` / `wg` as the oracle, and removed inside the qemu guest.
// One boot for everything (boot is slow): the guest script prints one JSON
// document between marker lines, and each `it` asserts on a part of it.
import { beforeAll, describe, expect, it } from 'vitest'
import { runInKernelVm, type KernelVmResult } from '../support/kernel-vm.js'

const MARKER = '@@kernel-smoke-json@@'
// Not 0, so the status assertion proves the guest's status crosses the VM
// boundary rather than being a default.
const GUEST_EXIT = 7

const guestScript = String.raw`
set -eu
umask 077
# -a: without it modprobe takes every name after the first as a module parameter.
modprobe -a wireguard dummy bonding ip_gre sch_netem

ip link add wgk0 type wireguard
wg genkey >/tmp/wgk0.key
wg set wgk0 private-key /tmp/wgk0.key listen-port 51820
ip link set wgk0 up

# The dummy carries the gretap tunnels' local address; remotes need not exist.
ip link add dum0 type dummy
ip addr add 10.0.0.1/24 dev dum0
ip link set dum0 up
tc qdisc add dev dum0 root netem delay 10ms

ip link add bond0 type bond mode active-backup miimon 100
ip link add gt0 type gretap local 10.0.0.1 remote 10.0.0.2
ip link add gt1 type gretap local 10.0.0.1 remote 10.0.0.3
ip link set gt0 master bond0
ip link set gt1 master bond0
ip link set bond0 up
# miimon notices slave carrier within a poll interval; wait for it with a deadline.
deadline=$(($(date +%s) + 20))
until [ "$(cat /sys/class/net/bond0/operstate)" = up ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done

links=$(ip -j -d link show)
qdiscs=$(tc -j qdisc show dev dum0)
wg_port=$(wg show wgk0 listen-port)
wg_pub=$(wg show wgk0 public-key)
key_pub=$(wg pubkey </tmp/wgk0.key)

tc qdisc del dev dum0 root
qdiscs_after_del=$(tc -j qdisc show dev dum0)
ip link del wgk0
ip link del bond0
ip link del gt0
ip link del gt1
ip link del dum0
links_after=$(ip -j -d link show)

echo '${MARKER}'
printf '{"links":%s,"qdiscs":%s,"wgListenPort":"%s","wgPublicKey":"%s","keyPublicKey":"%s","qdiscsAfterDel":%s,"linksAfter":%s}\n' \
  "$links" "$qdiscs" "$wg_port" "$wg_pub" "$key_pub" "$qdiscs_after_del" "$links_after"
echo '${MARKER}'
exit ${GUEST_EXIT}
`

/** The parts of `ip -j -d link show` entries this test reads. */
interface IpLink {
  ifname: string
  operstate: string
  flags: string[]
  master?: string
  linkinfo?: {
    info_kind?: string
    info_data?: Record<string, unknown>
    info_slave_kind?: string
    info_slave_data?: Record<string, unknown>
  }
}

interface TcQdisc {
  kind: string
  root?: boolean
  options?: { delay?: { delay: number } }
}

interface Snapshot {
  links: IpLink[]
  qdiscs: TcQdisc[]
  wgListenPort: string
  wgPublicKey: string
  keyPublicKey: string
  qdiscsAfterDel: TcQdisc[]
  linksAfter: IpLink[]
}

let result: KernelVmResult

beforeAll(async () => {
  result = await runInKernelVm(guestScript, { timeoutSeconds: 240 })
}, 300_000)

/** The guest's JSON document; a failed guest shows its whole output. */
function snapshot(): Snapshot {
  const parts = result.output.split(`${MARKER}\n`)
  const json = parts[1]
  if (parts.length !== 3 || json === undefined) {
    throw new Error(`guest printed no JSON document (status ${result.status}):\n${result.output}\n${result.stderr}`)
  }
  return JSON.parse(json) as Snapshot
}

function link(name: string): IpLink {
  const found = snapshot().links.find((l) => l.ifname === name)
  if (!found) throw new Error(`no link ${name} in ip -j link show`)
  return found
}

describe('kernel tier smoke (qemu guest)', () => {
  it('propagates the guest exit status through scripts/kernel-vm', () => {
    expect(result.status, result.output + result.stderr).toBe(GUEST_EXIT)
  })

  it('creates a kernel WireGuard link configured through wg', () => {
    const wg = link('wgk0')
    expect(wg.linkinfo?.info_kind).toBe('wireguard')
    expect(wg.flags).toContain('UP')
    const s = snapshot()
    expect(s.wgListenPort).toBe('51820')
    expect(s.wgPublicKey).toMatch(/^[A-Za-z0-9+/]{43}=$/)
    expect(s.wgPublicKey).toBe(s.keyPublicKey)
  })

  it('creates a dummy link', () => {
    const dummy = link('dum0')
    expect(dummy.linkinfo?.info_kind).toBe('dummy')
    expect(dummy.flags).toContain('UP')
    // Dummies report no carrier state of their own.
    expect(dummy.operstate).toBe('UNKNOWN')
  })

  it('creates an active-backup bond over two gretap slaves', () => {
    const bond = link('bond0')
    expect(bond.linkinfo?.info_kind).toBe('bond')
    expect(bond.linkinfo?.info_data).toMatchObject({ mode: 'active-backup', miimon: 100 })
    expect(bond.operstate).toBe('UP')

    const slaves = [link('gt0'), link('gt1')]
    for (const [i, slave] of slaves.entries()) {
      expect(slave.linkinfo?.info_kind).toBe('gretap')
      expect(slave.linkinfo?.info_data).toMatchObject({ local: '10.0.0.1', remote: `10.0.0.${i + 2}` })
      expect(slave.master).toBe('bond0')
      expect(slave.linkinfo?.info_slave_kind).toBe('bond')
    }
    // Exactly one slave carries traffic in active-backup mode.
    expect(slaves.map((s) => s.linkinfo?.info_slave_data?.state).sort()).toEqual(['ACTIVE', 'BACKUP'])
  })

  it('attaches a netem qdisc as root of the dummy', () => {
    const root = snapshot().qdiscs.find((q) => q.root === true)
    expect(root?.kind).toBe('netem')
    expect(root?.options?.delay?.delay).toBeCloseTo(0.01, 6)
  })

  it('removes every object it created', () => {
    const s = snapshot()
    expect(s.qdiscsAfterDel.map((q) => q.kind)).not.toContain('netem')
    const remaining = s.linksAfter.map((l) => l.ifname)
    for (const name of ['wgk0', 'dum0', 'bond0', 'gt0', 'gt1']) expect(remaining).not.toContain(name)
    expect(remaining).toContain('lo')
  })
})
