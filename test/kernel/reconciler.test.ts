// Kernel tier, through meshd's reconciler: what this host's kernel lacks
// (kernel WireGuard, dummy, gre/gretap, bond) created by
// `dist/kernel/reconcile-driver.js apply` inside the qemu guest, with `ip -j`
// and `wg` as the independent oracle (design §3, §7; issue 3 item 8).
//
// One boot for everything (boot is slow): two namespaces A and B joined by a
// veth underlay (the user's objects), a mesh state applied in each, a ping over
// kernel WireGuard, a bond over two gretap slaves and a gre link in A, a second
// apply that must change nothing, and apply({}) that must leave exactly what
// was there before. The guest script prints one JSON document between marker
// lines; each `it` asserts on a part of it.
import { beforeAll, describe, expect, it } from 'vitest'
import { runInKernelVm, type KernelVmResult } from '../support/kernel-vm.js'

const MARKER = '@@kernel-reconciler-json@@'
const DRIVER = 'dist/kernel/reconcile-driver.js'

// ── The desired states (JSON as the driver reads it) ─────────────────────────
// Keys are generated in the guest with `wg genkey`; the guest substitutes them
// for these placeholders.

interface Member {
  underlay: string
  overlay: string
  linkLocal: string
  listenPort: number
  privateKey: string
  publicKey: string
}

const A: Member = { underlay: '192.0.2.1', overlay: '10.73.0.1', linkLocal: '169.254.1.1', listenPort: 51820, privateKey: '@PRIV_A@', publicKey: '@PUB_A@' }
const B: Member = { underlay: '192.0.2.2', overlay: '10.73.0.2', linkLocal: '169.254.1.2', listenPort: 51821, privateKey: '@PRIV_B@', publicKey: '@PUB_B@' }

/** What a mesh member puts in the kernel for one peer: WireGuard link + device, overlay dummy, p2p address, route, rule. */
function meshState(self: Member, peer: Member) {
  return {
    links: [
      { kind: 'wireguard', name: 'md-wg', mtu: 1420, up: true },
      { kind: 'dummy', name: 'md-self', up: true },
    ],
    addresses: [
      { link: 'md-self', local: `${self.overlay}/32` },
      { link: 'md-wg', local: `${self.linkLocal}/32`, peer: `${peer.linkLocal}/32` },
    ],
    routes: [{ table: 7300, dst: `${peer.overlay}/32`, nexthop: { via: peer.linkLocal, dev: 'md-wg', onlink: true } }],
    rules: [{ family: 4, priority: 7300, to: '10.73.0.0/16', table: 7300 }],
    wireguard: [
      {
        name: 'md-wg',
        privateKey: self.privateKey,
        listenPort: self.listenPort,
        peers: [{ publicKey: peer.publicKey, endpoint: { address: peer.underlay, port: peer.listenPort }, allowedIps: ['0.0.0.0/0', '::/0'] }],
      },
    ],
    sysctls: [{ key: 'net.ipv4.conf.md-wg.rp_filter', value: '2' }],
  }
}

/** A's full state: the mesh plus an active-backup bond over two gretap slaves and a keyed gre link. */
const GRE_KEY = 73
const GRE_TTL = 64
function fullStateA() {
  const mesh = meshState(A, B)
  return {
    ...mesh,
    links: [
      ...mesh.links,
      { kind: 'bond', name: 'md-bond', mode: 'active-backup', miimonMs: 100, up: true },
      // One slave over the underlay, one over the overlay (GRE inside WireGuard).
      { kind: 'gretap', name: 'md-gt1', local: A.underlay, remote: B.underlay, master: 'md-bond', up: true },
      { kind: 'gretap', name: 'md-gt2', local: A.overlay, remote: B.overlay, master: 'md-bond', up: true },
      { kind: 'gre', name: 'md-gre', local: A.underlay, remote: B.underlay, key: GRE_KEY, ttl: GRE_TTL, up: true },
    ],
  }
}

// ── The guest script ─────────────────────────────────────────────────────────
// Note: inside String.raw, `${…}` is TypeScript interpolation; the shell code
// uses `$var` only.

const guestScript = String.raw`
set -eu
umask 077
ms() { echo $(( $(date +%s%N) / 1000000 )); }
t0=$(ms)
# Explicitly: the guest does not autoload modules on demand. And before any
# namespace exists: ip_gre adds fallback devices (gre0, gretap0…) to every
# namespace, so loading it later would change the "before" dumps.
modprobe -a wireguard dummy bonding ip_gre gre vxlan bridge veth

doc=/tmp/doc.json
printf '{' >$doc
# put NAME JSON-VALUE
put() { printf '"%s":%s,' "$1" "$2" >>$doc; }
# A shell string as a JSON string.
jstr() {
  printf '"'
  printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' -e 's/\r//g' | awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }'
  printf '"'
}
# driver NS ARGS… <stdin: the driver's last output line if it is JSON, else null.
# Its stderr goes to the guest output, shown when a test fails.
driver() {
  ns=$1
  shift
  out=$(ip netns exec "$ns" node ${DRIVER} "$@" 2>/tmp/driver-$ns.err) || true
  sed "s/^/[driver $ns $*] /" /tmp/driver-$ns.err >&2 || true
  line=$(printf '%s\n' "$out" | tail -n 1)
  case $line in
    '{'*) printf '%s' "$line" ;;
    *) printf 'null' ;;
  esac
}
# Everything in a namespace, as ip -j reports it.
dump() {
  printf '{"links":%s,"addrs":%s,"routes4":%s,"routes6":%s,"rules4":%s,"rules6":%s}' \
    "$(ip -n $1 -j -d link show)" "$(ip -n $1 -j addr show)" \
    "$(ip -n $1 -j route show table all)" "$(ip -n $1 -j -6 route show table all)" \
    "$(ip -n $1 -j rule show)" "$(ip -n $1 -j -6 rule show)"
}

# 1. Capabilities, in a namespace of their own.
ip netns add cap
put capabilities "$(driver cap capabilities)"
t_caps=$(ms)

# 2. The user's objects: a veth underlay between A and B, and in A a dummy,
#    routes and a rule, some of them inside meshd's table and priority range.
for ns in A B; do
  ip netns add $ns
  ip -n $ns link set lo up
  # No IPv6 DAD: "tentative" would otherwise differ between the before and after dumps.
  ip netns exec $ns sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
done
ip -n A link add eth0 type veth peer name eth0 netns B
ip -n A addr add ${A.underlay}/24 dev eth0
ip -n B addr add ${B.underlay}/24 dev eth0
ip -n A link set eth0 up
ip -n B link set eth0 up
ip -n A link add user0 type dummy
ip -n A addr add 10.99.0.1/32 dev user0
ip -n A link set user0 up
ip -n A route add 198.51.100.0/24 via 192.0.2.254 dev eth0
ip -n A route add 203.0.113.0/24 via 192.0.2.254 dev eth0 table 7300
ip -n A rule add priority 7310 from 192.0.2.0/24 lookup 100
# Both veth ends report carrier once both are up, and the kernel marks a link running (no NO-CARRIER) and gives
# it an IPv6 link-local address up to a second after LOWER_UP (linkwatch): the "before" dumps must not race any of it.
settled() { ip -n $1 link show eth0 | grep -q LOWER_UP && ! ip -n $1 link show eth0 | grep -q NO-CARRIER && ip -n $1 -6 addr show dev eth0 | grep -q 'inet6 fe80'; }
deadline=$(( $(date +%s) + 10 ))
until { settled A && settled B; } || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
put userBeforeA "$(dump A)"
put userBeforeB "$(dump B)"

# 3. Keys, and the desired states with them.
wg genkey >/tmp/a.key
wg genkey >/tmp/b.key
priv_a=$(cat /tmp/a.key)
priv_b=$(cat /tmp/b.key)
pub_a=$(wg pubkey </tmp/a.key)
pub_b=$(wg pubkey </tmp/b.key)
put publicKeyA "$(jstr "$pub_a")"
put publicKeyB "$(jstr "$pub_b")"
keys() { sed -e "s|@PRIV_A@|$priv_a|g" -e "s|@PUB_A@|$pub_a|g" -e "s|@PRIV_B@|$priv_b|g" -e "s|@PUB_B@|$pub_b|g"; }
keys >/tmp/a.json <<'JSON'
${JSON.stringify(fullStateA())}
JSON
keys >/tmp/b.json <<'JSON'
${JSON.stringify(meshState(B, A))}
JSON

# 4. Apply in both namespaces at once.
driver A apply </tmp/a.json >/tmp/apply-a.out &
driver B apply </tmp/b.json >/tmp/apply-b.out &
wait
put applyA "$(cat /tmp/apply-a.out)"
put applyB "$(cat /tmp/apply-b.out)"
t_apply=$(ms)

# 5. Ping A → B over kernel WireGuard, until it answers or a deadline passes.
deadline=$(( $(date +%s) + 30 ))
attempts=0
ping_status=1
while :; do
  attempts=$((attempts + 1))
  if ping_out=$(ip netns exec A ping -c 3 -W 2 -I ${A.overlay} ${B.overlay} 2>&1); then ping_status=0; break; fi
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.5
done
put ping "{\"status\":$ping_status,\"attempts\":$attempts,\"output\":$(jstr "$ping_out")}"
t_ping=$(ms)

# miimon sees the slaves' carrier within a poll interval; wait for the bond with a deadline.
deadline=$(( $(date +%s) + 20 ))
until ip -n A link show md-bond 2>/dev/null | grep -q 'state UP' || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done

put linksA "$(ip -n A -j -d link show)"
put linksB "$(ip -n B -j -d link show)"
put addrsA "$(ip -n A -j addr show)"
put addrsB "$(ip -n B -j addr show)"
put routesA "$(ip -n A -j route show table 7300)"
put routesB "$(ip -n B -j route show table 7300)"
put rulesA "$(ip -n A -j rule show)"
put rulesB "$(ip -n B -j rule show)"
# Peers only: the first dump line holds the private key.
put wgPeersA "$(jstr "$(ip netns exec A wg show md-wg dump | tail -n +2)")"
put wgPeersB "$(jstr "$(ip netns exec B wg show md-wg dump | tail -n +2)")"
put wgPortA "$(jstr "$(ip netns exec A wg show md-wg listen-port)")"
put wgPortB "$(jstr "$(ip netns exec B wg show md-wg listen-port)")"
put wgPublicKeyA "$(jstr "$(ip netns exec A wg show md-wg public-key)")"
put wgPublicKeyB "$(jstr "$(ip netns exec B wg show md-wg public-key)")"
put rpFilterA "$(jstr "$(ip netns exec A cat /proc/sys/net/ipv4/conf/md-wg/rp_filter)")"

# 6. The same state again: nothing to do.
put fullBeforeSecond "$(dump A)"
put secondA "$(driver A apply </tmp/a.json)"
put fullAfterSecond "$(dump A)"
t_second=$(ms)

# 7. Teardown: apply({}) in both.
echo '{}' | driver A apply >/tmp/down-a.out &
echo '{}' | driver B apply >/tmp/down-b.out &
wait
put teardownA "$(cat /tmp/down-a.out)"
put teardownB "$(cat /tmp/down-b.out)"
put afterA "$(dump A)"
put afterB "$(dump B)"
put rootLinks "$(ip -j link show)"
put capLinks "$(ip -n cap -j link show)"
t_down=$(ms)

put timingsMs "{\"modulesAndCapabilities\":$((t_caps - t0)),\"firstApply\":$((t_apply - t_caps)),\"ping\":$((t_ping - t_apply)),\"secondApply\":$((t_second - t_ping)),\"teardown\":$((t_down - t_second)),\"total\":$((t_down - t0))}"
printf '"complete":true}\n' >>$doc

echo '${MARKER}'
cat $doc
echo '${MARKER}'
`

// ── Shapes of what the guest reports ─────────────────────────────────────────

interface IpLink {
  ifname: string
  operstate: string
  flags: string[]
  mtu: number
  master?: string
  linkinfo?: {
    info_kind?: string
    info_data?: Record<string, unknown>
    info_slave_kind?: string
    info_slave_data?: Record<string, unknown>
  }
}
interface IpAddr {
  ifname: string
  addr_info: { family: string; local: string; address?: string; prefixlen: number }[]
}
interface IpRoute {
  dst: string
  gateway?: string
  dev?: string
  protocol?: string
  flags: string[]
}
interface IpRule {
  priority: number
  src?: string
  dst?: string
  dstlen?: number
  table: string
  protocol?: string
}
interface DriverOutput {
  planned: number
  applied: number
  operations: string[]
  changes: string[]
  failures: { operation: string; error: string; errno?: string }[]
  ms: number
  error?: string
}
interface Capabilities {
  linkKinds: string[]
  wireguard: { backend: string; reason: string }
  overlayDevice: string
  fallbacks: { feature: string; reason: string }[]
}
interface Dump {
  links: IpLink[]
  addrs: IpAddr[]
  routes4: unknown[]
  routes6: unknown[]
  rules4: unknown[]
  rules6: unknown[]
}
interface Snapshot {
  capabilities: Capabilities | null
  userBeforeA: Dump
  userBeforeB: Dump
  publicKeyA: string
  publicKeyB: string
  applyA: DriverOutput | null
  applyB: DriverOutput | null
  ping: { status: number; attempts: number; output: string }
  linksA: IpLink[]
  linksB: IpLink[]
  addrsA: IpAddr[]
  addrsB: IpAddr[]
  routesA: IpRoute[]
  routesB: IpRoute[]
  rulesA: IpRule[]
  rulesB: IpRule[]
  wgPeersA: string
  wgPeersB: string
  wgPortA: string
  wgPortB: string
  wgPublicKeyA: string
  wgPublicKeyB: string
  rpFilterA: string
  fullBeforeSecond: Dump
  secondA: DriverOutput | null
  fullAfterSecond: Dump
  teardownA: DriverOutput | null
  teardownB: DriverOutput | null
  afterA: Dump
  afterB: Dump
  rootLinks: IpLink[]
  capLinks: IpLink[]
  timingsMs: Record<string, number>
  complete: true
}

let result: KernelVmResult
let parsed: Snapshot | undefined

beforeAll(async () => {
  result = await runInKernelVm(guestScript, { timeoutSeconds: 240 })
}, 300_000)

/** The guest's whole output, for failure messages. */
function guestOutput(): string {
  return `guest status ${result.status}\n--- guest output ---\n${result.output}\n--- kernel-vm ---\n${result.stderr}`
}

/** The guest's JSON document; a failed guest fails every test with its whole output. */
function snapshot(): Snapshot {
  if (parsed) return parsed
  const parts = result.output.split(`${MARKER}\n`)
  const json = parts[1]
  if (result.status !== 0 || parts.length !== 3 || json === undefined) {
    throw new Error(`the guest script did not complete\n${guestOutput()}`)
  }
  try {
    parsed = JSON.parse(json) as Snapshot
  } catch (error) {
    throw new Error(`the guest printed malformed JSON (${String(error)})\n${guestOutput()}`)
  }
  return parsed
}

/** A driver run's output; a driver that printed no JSON fails with the guest output (which holds its stderr). */
function driverRun(name: 'applyA' | 'applyB' | 'secondA' | 'teardownA' | 'teardownB'): DriverOutput {
  const out = snapshot()[name]
  if (out === null) throw new Error(`${name}: the reconcile driver printed no JSON line\n${guestOutput()}`)
  if (out.error !== undefined) throw new Error(`${name}: the reconcile driver failed: ${out.error}\n${guestOutput()}`)
  return out
}

function link(links: IpLink[], name: string): IpLink {
  const found = links.find((l) => l.ifname === name)
  if (!found) throw new Error(`no link ${name} in ip -j -d link show (have: ${links.map((l) => l.ifname).join(', ')})`)
  return found
}

/** The p2p / host addresses `ip -j addr` shows on a link, as "local peer address/len". */
function addressesOn(addrs: IpAddr[], name: string): string[] {
  const entry = addrs.find((a) => a.ifname === name)
  return (entry?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local} peer ${a.address ?? '-'}/${a.prefixlen}`)
}

/** One `wg show dump` peer line as named fields. */
function wgPeers(dump: string): { publicKey: string; endpoint: string; allowedIps: string; latestHandshake: number; rx: number; tx: number }[] {
  return dump
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [publicKey = '', , endpoint = '', allowedIps = '', latestHandshake = '0', rx = '0', tx = '0'] = line.split('\t')
      return { publicKey, endpoint, allowedIps, latestHandshake: Number(latestHandshake), rx: Number(rx), tx: Number(tx) }
    })
}

/** A dump without what moves by itself (counters, indexes, operational state). */
function stable(dump: Dump): unknown {
  const ignored = new Set(['stats', 'stats64', 'ifindex', 'link_index', 'operstate', 'valid_life_time', 'preferred_life_time'])
  return JSON.parse(JSON.stringify(dump, (key, value: unknown) => (ignored.has(key) ? undefined : value))) as unknown
}

// iproute2 prints names registered in /etc/iproute2 (the host has meshd's), else numbers.
function isMeshdProtocol(protocol: string | undefined): boolean {
  return protocol === 'meshd' || protocol === '73'
}

describe('reconciler on the Debian kernel (qemu guest)', () => {
  it('completes the guest script', () => {
    const s = snapshot()
    expect(s.complete).toBe(true)
    // Not asserted: figures for the report and for whoever reads a slow run.
    const applyMs = Object.fromEntries((['applyA', 'applyB', 'secondA', 'teardownA', 'teardownB'] as const).map((name) => [name, s[name]?.ms]))
    console.log(`kernel-tier reconciler timings (ms): guest phases ${JSON.stringify(s.timingsMs)}, inside apply ${JSON.stringify(applyMs)}`)
  })

  it('reports kernel WireGuard, a dummy overlay device, every link kind and no fallbacks', () => {
    const caps = snapshot().capabilities
    expect(caps, `capabilities printed nothing\n${guestOutput()}`).not.toBeNull()
    expect(caps?.wireguard.backend, JSON.stringify(caps)).toBe('kernel')
    expect(caps?.overlayDevice).toBe('dummy')
    expect(caps?.linkKinds).toEqual(expect.arrayContaining(['wireguard', 'dummy', 'gre', 'gretap', 'bond', 'vxlan', 'bridge']))
    expect(caps?.fallbacks).toEqual([])
  })

  it('applies both mesh states without failures', () => {
    for (const name of ['applyA', 'applyB'] as const) {
      const out = driverRun(name)
      expect(out.failures, `${name}: ${JSON.stringify(out.failures)}`).toEqual([])
      expect(out.applied, `${name}: ${JSON.stringify(out.changes)}`).toBe(out.planned)
      expect(out.operations, name).toEqual(expect.arrayContaining(['linkAdd', 'wgSet', 'addrAdd', 'routeReplace', 'ruleAdd']))
    }
  })

  it('creates kernel WireGuard and dummy links with the overlay and point-to-point addresses', () => {
    const s = snapshot()
    for (const [links, addrs, self, peer] of [
      [s.linksA, s.addrsA, A, B],
      [s.linksB, s.addrsB, B, A],
    ] as const) {
      const wg = link(links, 'md-wg')
      expect(wg.linkinfo?.info_kind).toBe('wireguard')
      expect(wg.mtu).toBe(1420)
      expect(wg.flags).toContain('UP')
      const dummy = link(links, 'md-self')
      expect(dummy.linkinfo?.info_kind).toBe('dummy')
      expect(dummy.flags).toContain('UP')
      expect(addressesOn(addrs, 'md-self')).toEqual([`${self.overlay} peer -/32`])
      expect(addressesOn(addrs, 'md-wg')).toEqual([`${self.linkLocal} peer ${peer.linkLocal}/32`])
    }
    expect(s.rpFilterA).toBe('2')
  })

  it('configures the WireGuard devices: keys, ports, peer endpoint and allowed IPs', () => {
    const s = snapshot()
    expect(s.wgPublicKeyA).toBe(s.publicKeyA)
    expect(s.wgPublicKeyB).toBe(s.publicKeyB)
    expect(s.wgPortA).toBe(String(A.listenPort))
    expect(s.wgPortB).toBe(String(B.listenPort))
    expect(wgPeers(s.wgPeersA)).toEqual([expect.objectContaining({ publicKey: s.publicKeyB, endpoint: `${B.underlay}:${B.listenPort}`, allowedIps: '0.0.0.0/0,::/0' })])
    expect(wgPeers(s.wgPeersB)).toEqual([expect.objectContaining({ publicKey: s.publicKeyA, endpoint: `${A.underlay}:${A.listenPort}`, allowedIps: '0.0.0.0/0,::/0' })])
  })

  it('routes the peer overlay address in table 7300 via the peer link-local, onlink, and looks it up by rule', () => {
    const s = snapshot()
    for (const [routes, rules, peer] of [
      [s.routesA, s.rulesA, B],
      [s.routesB, s.rulesB, A],
    ] as const) {
      const ours = routes.filter((r) => isMeshdProtocol(r.protocol))
      expect(ours, JSON.stringify(routes)).toEqual([expect.objectContaining({ dst: peer.overlay, gateway: peer.linkLocal, dev: 'md-wg', flags: ['onlink'] })])
      const rule = rules.filter((r) => r.priority === 7300)
      expect(rule.map((r) => `to ${r.dst ?? 'all'}/${r.dstlen ?? '-'} lookup ${r.table}`), JSON.stringify(rules)).toEqual([
        // The host registers meshd's table name with iproute2; the guest sees it.
        expect.stringMatching(/^to 10\.73\.0\.0\/16 lookup (7300|meshd)$/),
      ])
      expect(isMeshdProtocol(rule[0]?.protocol), `rule protocol ${rule[0]?.protocol}`).toBe(true)
    }
  })

  it('pings B from A over kernel WireGuard', () => {
    const s = snapshot()
    expect(s.ping.status, `ping ${A.overlay} → ${B.overlay} failed after ${s.ping.attempts} attempts:\n${s.ping.output}`).toBe(0)
    expect(s.ping.output).toMatch(/[1-3] received/)
    // The handshake happened and traffic crossed the tunnel both ways.
    const [peerOfA] = wgPeers(s.wgPeersA)
    expect(peerOfA?.latestHandshake, 'no WireGuard handshake on A').toBeGreaterThan(0)
    expect(peerOfA?.rx, 'A received nothing over WireGuard').toBeGreaterThan(0)
    expect(peerOfA?.tx, 'A sent nothing over WireGuard').toBeGreaterThan(0)
  })

  it('creates an active-backup bond over two gretap slaves, and a keyed gre link', () => {
    const links = snapshot().linksA
    const bond = link(links, 'md-bond')
    expect(bond.linkinfo?.info_kind).toBe('bond')
    expect(bond.linkinfo?.info_data).toMatchObject({ mode: 'active-backup', miimon: 100 })
    expect(bond.flags).toContain('UP')
    expect(bond.operstate, 'the bond never came up over its slaves').toBe('UP')

    const slaves = [
      [link(links, 'md-gt1'), A.underlay, B.underlay],
      [link(links, 'md-gt2'), A.overlay, B.overlay],
    ] as const
    for (const [slave, local, remote] of slaves) {
      expect(slave.linkinfo?.info_kind, slave.ifname).toBe('gretap')
      expect(slave.linkinfo?.info_data, slave.ifname).toMatchObject({ local, remote })
      expect(slave.master, slave.ifname).toBe('md-bond')
      expect(slave.linkinfo?.info_slave_kind, slave.ifname).toBe('bond')
    }
    // Exactly one slave carries traffic in active-backup mode.
    expect(slaves.map(([s]) => s.linkinfo?.info_slave_data?.state).sort()).toEqual(['ACTIVE', 'BACKUP'])

    const gre = link(links, 'md-gre')
    expect(gre.linkinfo?.info_kind).toBe('gre')
    expect(gre.linkinfo?.info_data).toMatchObject({ local: A.underlay, remote: B.underlay, ttl: GRE_TTL, ikey: `0.0.0.${GRE_KEY}`, okey: `0.0.0.${GRE_KEY}` })
    expect(gre.flags).toContain('UP')
  })

  it('changes nothing on a second apply of the full state', () => {
    const s = snapshot()
    const out = driverRun('secondA')
    expect(out.operations, `second apply planned: ${JSON.stringify(out.changes)}`).toEqual([])
    expect(out.failures).toEqual([])
    expect(stable(s.fullAfterSecond)).toEqual(stable(s.fullBeforeSecond))
  })

  it('apply({}) removes every md- link and leaves the user objects exactly as they were', () => {
    const s = snapshot()
    for (const name of ['teardownA', 'teardownB'] as const) {
      const out = driverRun(name)
      expect(out.failures, `${name}: ${JSON.stringify(out.failures)}`).toEqual([])
      expect(out.operations, name).toContain('linkDel')
    }
    for (const [where, links] of [
      ['A', s.afterA.links],
      ['B', s.afterB.links],
      ['root', s.rootLinks],
      ['capabilities netns', s.capLinks],
    ] as const) {
      expect(links.map((l) => l.ifname).filter((n) => n.startsWith('md-')), `md- links left in ${where}`).toEqual([])
    }
    // The user's veth, dummy, addresses, routes (one inside table 7300) and rule (inside meshd's priority range).
    expect(stable(s.afterA), 'namespace A differs from before meshd').toEqual(stable(s.userBeforeA))
    expect(stable(s.afterB), 'namespace B differs from before meshd').toEqual(stable(s.userBeforeB))
    // The comparison is only meaningful if the user objects were there to begin with.
    expect(s.userBeforeA.links.map((l) => l.ifname)).toEqual(expect.arrayContaining(['eth0', 'user0']))
    expect(JSON.stringify(s.userBeforeA.routes4)).toContain('203.0.113.0/24')
    expect(JSON.stringify(s.userBeforeA.rules4)).toContain('"priority":7310')
  })
})
