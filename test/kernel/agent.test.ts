// Kernel tier, issue 5 item 7's 2-host version: two real agents
// (bin/meshd.js --foreground) in namespaces of Debian's kernel under qemu,
// with kernel WireGuard and a real dummy for the overlay address — what this
// host's kernel lacks. One boot: init in A, token create, join in B, wait for
// B's md- link, ping the overlay both ways, `status --json` on both, then
// `meshd down` in B with a user route and rule in place. The guest prints one
// JSON document between marker lines; `ip -j` and `wg` are the oracle.
//
// Under TCG emulation Node starts in seconds, so every wait in the guest is a
// poll with a generous deadline (a loop of 1 s steps), never a fixed sleep.
import { beforeAll, describe, expect, it } from 'vitest'
import { runInKernelVm, type KernelVmResult } from '../support/kernel-vm.js'

const MARKER = '@@kernel-agent-json@@'

const guestScript = String.raw`
set -u
umask 077
# The guest does not autoload modules on demand.
modprobe -a wireguard dummy veth

doc=/tmp/doc.json
printf '{' >$doc
put() { printf '"%s":%s,' "$1" "$2" >>$doc; }
# meshd NS ARGS…: the CLI against that namespace's agent.
meshd() { ns=$1; shift; ip netns exec $ns node bin/meshd.js "$@" --state-dir /tmp/state-$ns --socket /tmp/meshd-$ns.sock; }
# poll SECONDS COMMAND…: runs COMMAND every second until it succeeds; 1 on timeout.
poll() { n=$1; shift; while [ $n -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; n=$((n - 1)); sleep 1; done; echo "timed out: $*"; return 1; }
t0=$(date +%s)
step() { echo "+$(( $(date +%s) - t0 )) s: $*"; }
has_overlay() { test -n "$(overlay4 $1)"; }
status_or_null() { s=$(meshd $1 status --json 2>/dev/null) && printf '%s' "$s" || printf 'null'; }
overlay4() { ip -n $1 -j addr show dev md-self | grep -o '"local":"10\.80\.[0-9.]*"' | head -1 | cut -d'"' -f4; }
dump() {
  printf '{"links":%s,"addrs":%s,"routes4":%s,"routes6":%s,"rules4":%s,"rules6":%s}' \
    "$(ip -n $1 -j -d link show)" "$(ip -n $1 -j addr show)" \
    "$(ip -n $1 -j route show table all)" "$(ip -n $1 -j -6 route show table all)" \
    "$(ip -n $1 -j rule show)" "$(ip -n $1 -j -6 rule show)"
}

for ns in A B; do ip netns add $ns; ip -n $ns link set lo up; done
ip -n A link add eth0 type veth peer name eth0 netns B
ip -n A addr add 192.0.2.1/24 dev eth0
ip -n B addr add 192.0.2.2/24 dev eth0
ip -n A link set eth0 up
ip -n B link set eth0 up

ip netns exec A node bin/meshd.js init --name kvm --cidr 10.80.0.0/16 --foreground --state-dir /tmp/state-A --socket /tmp/meshd-A.sock --listen /ip4/192.0.2.1/tcp/7373 >/tmp/agent-A.log 2>&1 &
poll 400 test -S /tmp/meshd-A.sock
step agent A listening
token=$(meshd A token create --ttl 10m --uses 1 2>/tmp/token.err)
put tokenOk "$([ -n "$token" ] && echo true || echo false)"
ip netns exec B node bin/meshd.js join "$token" --foreground --state-dir /tmp/state-B --socket /tmp/meshd-B.sock --listen /ip4/192.0.2.2/tcp/7373 >/tmp/agent-B.log 2>&1 &

step join started
has_wg_link() { ip -n $1 -j -d link show | grep -q '"info_kind":"wireguard"'; }
poll 400 has_wg_link B
poll 200 has_wg_link A
step wireguard links
poll 30 has_overlay A
poll 30 has_overlay B
a4=$(overlay4 A)
b4=$(overlay4 B)
poll 30 ip netns exec B ping -c1 -W1 "$a4" && put pingBtoA true || put pingBtoA false
poll 30 ip netns exec A ping -c1 -W1 "$b4" && put pingAtoB true || put pingAtoB false
step pings
# Both agents report the peer up once the handshake is in (the pings made it).
up() { meshd $1 status --json 2>/dev/null | grep -q '"state":"up"'; }
poll 30 up A
poll 30 up B
step status up
put statusA "$(status_or_null A)"
put statusB "$(status_or_null B)"
put wireguardGo "$(pgrep -c wireguard-go || true)"
wgA=$(ip -n A -j link show | grep -o '"ifname":"md-[a-z0-9]*"' | grep -v md-self | head -1 | cut -d'"' -f4)
put wgPeersA "$(ip netns exec A wg show "$wgA" peers 2>/dev/null | wc -l)"
put before "$(dump B)"

# The user's route and rule, then down in B.
ip -n B route add 198.51.100.0/24 via 192.0.2.1 table 100
ip -n B rule add priority 1000 to 198.51.100.0/24 lookup 100
meshd B down >/tmp/down.out 2>&1 && put downOk true || put downOk false
put after "$(dump B)"

for ns in A B; do meshd $ns status --json >/dev/null 2>&1; done
printf '"complete":true}\n' >>$doc
echo '${MARKER}'
cat $doc
echo '${MARKER}'
echo '--- agent A'; tail -n 20 /tmp/agent-A.log
echo '--- agent B'; tail -n 20 /tmp/agent-B.log
`

interface Status {
  self: { id: string; addresses: string[]; wireguardBackend: string }
  peers: { id: string; state: string; interface: string | null }[]
}
interface Dump {
  links: { ifname: string; linkinfo?: { info_kind?: string } }[]
  addrs: { ifname: string; addr_info: { local: string; protocol?: string | number }[] }[]
  routes4: { dst: string; table?: string | number; protocol?: string | number }[]
  routes6: { dst: string; table?: string | number; protocol?: string | number }[]
  rules4: { priority: number; table?: string | number }[]
  rules6: { priority: number; table?: string | number }[]
}
interface Snapshot {
  tokenOk: boolean
  pingAtoB: boolean
  pingBtoA: boolean
  statusA: Status | null
  statusB: Status | null
  wireguardGo: number
  wgPeersA: number
  before: Dump
  downOk: boolean
  after: Dump
  complete: true
}

let result: KernelVmResult
let parsed: Snapshot | undefined

// Under TCG on a shared 2-core host (17–23 % steal measured on 2026-12-03) the whole guest run took 579 s of
// what was a 600 s budget; the deadlines are for a stuck guest, not a slow one.
beforeAll(async () => {
  result = await runInKernelVm(guestScript, { timeoutSeconds: 1200 })
  // How close the run came to its deadlines, for the next slow host.
  console.log(`kernel-tier agent steps: ${result.output.split('\n').filter((line) => /^\+\d+ s: /.test(line)).join('; ')}`)
}, 1_260_000)

function guestOutput(): string {
  return `guest status ${result.status}\n--- guest output ---\n${result.output}\n--- kernel-vm ---\n${result.stderr}`
}

function snapshot(): Snapshot {
  if (parsed) return parsed
  const parts = result.output.split(`${MARKER}\n`)
  const json = parts[1]
  if (result.status !== 0 || parts.length !== 3 || json === undefined) throw new Error(`the guest script did not complete\n${guestOutput()}`)
  try {
    parsed = JSON.parse(json) as Snapshot
  } catch (error) {
    throw new Error(`the guest printed malformed JSON (${String(error)})\n${guestOutput()}`)
  }
  return parsed
}

const inOwnedRange = (n: number): boolean => n >= 7300 && n <= 7399
const meshdProto = (p: string | number | undefined): boolean => p === 'meshd' || p === 73 || p === '73'

describe('two agents in Debian\'s kernel: kernel WireGuard and a real dummy', () => {
  it('joins with a token and pings the overlay both ways', () => {
    const s = snapshot()
    expect(s.tokenOk, guestOutput()).toBe(true)
    expect(s.pingBtoA, guestOutput()).toBe(true)
    expect(s.pingAtoB, guestOutput()).toBe(true)
  })

  it('status --json on each shows the other up, over kernel WireGuard', () => {
    const { statusA, statusB } = snapshot()
    expect(statusA?.self.wireguardBackend).toBe('kernel')
    expect(statusB?.self.wireguardBackend).toBe('kernel')
    expect(statusA?.peers.map((p) => [p.id, p.state])).toEqual([[statusB?.self.id, 'up']])
    expect(statusB?.peers.map((p) => [p.id, p.state])).toEqual([[statusA?.self.id, 'up']])
  })

  it('builds a kernel wireguard link and a dummy holding the overlay address; no wireguard-go runs', () => {
    const s = snapshot()
    const kinds = new Map(s.before.links.map((l) => [l.ifname, l.linkinfo?.info_kind]))
    const md = [...kinds].filter(([name]) => name.startsWith('md-'))
    expect(md.filter(([, kind]) => kind === 'wireguard')).toHaveLength(1)
    const dummies = md.filter(([, kind]) => kind === 'dummy').map(([name]) => name)
    expect(dummies).toHaveLength(1)
    const overlay = s.statusB?.self.addresses[0]
    expect(s.before.addrs.find((a) => a.ifname === dummies[0])?.addr_info.map((a) => a.local)).toContain(overlay)
    expect(s.wireguardGo).toBe(0)
    expect(s.wgPeersA).toBe(1)
  })

  it('down removes every meshd object in B, and the user\'s route and rule survive', () => {
    const { downOk, before, after } = snapshot()
    expect(downOk, guestOutput()).toBe(true)
    expect(before.links.some((l) => l.ifname.startsWith('md-'))).toBe(true)
    expect(after.links.filter((l) => l.ifname.startsWith('md-')).map((l) => l.ifname)).toEqual([])
    expect(after.addrs.flatMap((a) => a.addr_info).filter((a) => meshdProto(a.protocol) || a.local.startsWith('10.80.') || a.local.startsWith('169.254.'))).toEqual([])
    expect([...after.routes4, ...after.routes6].filter((r) => inOwnedRange(Number(r.table)) || meshdProto(r.protocol))).toEqual([])
    expect([...after.rules4, ...after.rules6].filter((r) => inOwnedRange(r.priority))).toEqual([])
    expect(after.routes4).toContainEqual(expect.objectContaining({ dst: '198.51.100.0/24', table: '100' }))
    expect(after.rules4).toContainEqual(expect.objectContaining({ priority: 1000, table: '100' }))
  })
})
