// Where `meshd init` / `meshd join` install meshd and its service.
//
// Paths are the ones the running system sees (what the unit's ExecStart and
// the /usr/local/bin/meshd symlink name). `root` is prepended to every path
// the installer reads or writes, like DESTDIR: "/" in production; tests set
// MESHD_INSTALL_ROOT to a temporary directory so that nothing outside it is
// touched (the no-systemd check looks under the root too).

import { join } from 'node:path'

export interface InstallLayout {
  /** Prepended to every path the installer touches; "/" except in tests. */
  readonly root: string
  /** The installed package: bin/, dist/, systemd/, package.json, node_modules/ (with the bundled Node). */
  readonly prefix: string
  /** Symlink to `${prefix}/bin/meshd.js`, so `meshd` is on PATH. */
  readonly binLink: string
  readonly unitDir: string
  readonly unitName: string
  /** Exists when systemd is the running init (what sd_booted(3) checks). */
  readonly systemdRunDir: string
  /** What the unit's StateDirectory= and RuntimeDirectory= give the agent. */
  readonly stateDir: string
  readonly socketPath: string
}

export const DEFAULT_LAYOUT: InstallLayout = {
  root: '/',
  prefix: '/usr/local/lib/meshd',
  binLink: '/usr/local/bin/meshd',
  unitDir: '/etc/systemd/system',
  unitName: 'meshd.service',
  systemdRunDir: '/run/systemd/system',
  stateDir: '/var/lib/meshd',
  socketPath: '/run/meshd/meshd.sock',
}

/** The layout for this process: DEFAULT_LAYOUT, under MESHD_INSTALL_ROOT when tests set it. */
export function layoutFromEnv(env: Readonly<Record<string, string | undefined>>): InstallLayout {
  const root = env.MESHD_INSTALL_ROOT
  return root === undefined || root === '' ? DEFAULT_LAYOUT : { ...DEFAULT_LAYOUT, root }
}

/** A layout path as the installer touches it (under the root). */
export function onHost(layout: InstallLayout, path: string): string {
  return layout.root === '/' ? path : join(layout.root, path)
}

export function unitPath(layout: InstallLayout): string {
  return join(layout.unitDir, layout.unitName)
}

/** The bundled Node.js binary the unit runs the agent with (from the `node` npm package). */
export function bundledNodePath(prefix: string): string {
  return join(prefix, 'node_modules', 'node', 'bin', 'node')
}
