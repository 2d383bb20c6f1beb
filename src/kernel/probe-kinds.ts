// Run by ./capabilities.ts as `unshare --net node probe-kinds.js`: tries to
// create one link of every kind in this throw-away namespace and prints the
// kinds the kernel accepted as a JSON array. The namespace dies with us.

import { openRtnetlink } from './netlink.js'
import { LINK_KINDS, type Link, type LinkKind } from './types.js'

function sample(kind: LinkKind): Link {
  const name = `md-probe-${kind}`.slice(0, 15)
  switch (kind) {
    case 'gre':
    case 'gretap':
      return { kind, name, up: false, local: '127.0.0.1', remote: '127.0.0.2' }
    case 'bond':
      return { kind, name, up: false, mode: 'active-backup' }
    case 'vxlan':
      return { kind, name, up: false, vni: 1, port: 4789, learning: false }
    default:
      return { kind, name, up: false }
  }
}

const rtnl = openRtnetlink({ timeoutMs: 5000 })
const signal = AbortSignal.timeout(20_000)
const accepted: LinkKind[] = []
for (const kind of LINK_KINDS) {
  try {
    await rtnl.linkAdd(sample(kind), { signal })
    accepted.push(kind)
  } catch {
    // EOPNOTSUPP (module missing) or anything else: not available.
  }
}
rtnl.close()
process.stdout.write(JSON.stringify(accepted) + '\n')
