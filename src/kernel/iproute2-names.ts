// Registers meshd's route protocol and table with iproute2, so that `ip route`
// prints "proto meshd" and "table meshd" instead of bare numbers.

import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { RTPROT_MESHD, TABLE_OVERLAY } from './types.js'

export const IPROUTE2_FILES = {
  protocols: { path: 'rt_protos.d/meshd.conf', text: `# written by meshd\n${RTPROT_MESHD}\tmeshd\n` },
  tables: { path: 'rt_tables.d/meshd.conf', text: `# written by meshd\n${TABLE_OVERLAY}\tmeshd\n` },
} as const

/** Writes the two files if they differ; returns the paths written. Needs a writable /etc (the installer runs it). */
export async function registerIproute2Names(root = '/etc/iproute2'): Promise<string[]> {
  const written: string[] = []
  for (const { path, text } of Object.values(IPROUTE2_FILES)) {
    const full = `${root}/${path}`
    const current = await readFile(full, 'utf8').catch(() => undefined)
    if (current === text) continue
    await mkdir(full.slice(0, full.lastIndexOf('/')), { recursive: true })
    await writeFile(full, text, { mode: 0o644 })
    written.push(full)
  }
  return written
}
