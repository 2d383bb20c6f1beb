// The sysctls meshd relies on, read and written through /proc/sys of the
// calling process's network namespace.

import { readFile, writeFile } from 'node:fs/promises'

export interface SysctlPort {
  /** The value, trimmed; undefined when the key does not exist (e.g. a link not created yet). */
  read(key: string): Promise<string | undefined>
  write(key: string, value: string): Promise<void>
}

/**
 * "net.ipv4.conf.md-a.b.rp_filter" → "/proc/sys/net/ipv4/conf/md-a.b/rp_filter".
 * Interface names may hold dots, so per-interface keys keep the middle part whole.
 */
export function sysctlPath(key: string, root = '/proc/sys'): string {
  const perInterface = /^net\.(ipv[46])\.(conf|neigh)\.(.+)\.([a-z_]+)$/.exec(key)
  if (perInterface) {
    const [, family = '', group = '', ifname = '', parameter = ''] = perInterface
    return `${root}/net/${family}/${group}/${ifname}/${parameter}`
  }
  return `${root}/${key.split('.').join('/')}`
}

export function createProcSysctl(root = '/proc/sys'): SysctlPort {
  return {
    async read(key) {
      try {
        return (await readFile(sysctlPath(key, root), 'utf8')).trim()
      } catch {
        return undefined
      }
    },
    async write(key, value) {
      await writeFile(sysctlPath(key, root), value)
    },
  }
}

/** The sysctls a mesh link needs: forwarding on, and loose reverse-path filtering so asymmetric paths are not dropped. */
export function meshSysctls(meshLinks: readonly string[]): { key: string; value: string }[] {
  return [
    { key: 'net.ipv4.ip_forward', value: '1' },
    { key: 'net.ipv6.conf.all.forwarding', value: '1' },
    ...meshLinks.map((name) => ({ key: `net.ipv4.conf.${name}.rp_filter`, value: '2' })),
  ]
}
