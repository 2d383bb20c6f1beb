// The agent's state directory (0700): the host identity (membership/identity.ts),
// the WireGuard private key, the network (id, name, secret, overlay, founder),
// the admission chain, the negotiated links (./link-store.ts), and — between
// `meshd join` and admission — the token.
// Every file holding a secret is written 0600, atomically (temporary file,
// then rename). Loading validates into typed values; a problem is one line
// naming the file and never its contents.

import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { chmod, lstat, mkdir, open, readFile, rename, rm, rmdir, unlink } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { Secret } from '../logging/secret.js'
import { publicKeyFromPrivate } from '../kernel/wireguard/uapi.js'
import { IDENTITY_FILE_NAME, loadOrCreateIdentity, type Identity } from '../membership/identity.js'
import { parseNodeId } from '../membership/keys.js'
import { NETWORK_NAME_PATTERN, NETWORK_SECRET_BYTES, networkIdFor, parseNetworkId, ulaForNetwork, type Network } from '../membership/network.js'
import { decodeAdmission, type Admission } from '../membership/records.js'

export const STATE_DIR_MODE = 0o700
export const SECRET_FILE_MODE = 0o600
export const WIREGUARD_KEY_FILE = 'wireguard.key'
export const NETWORK_FILE = 'network.json'
export const ADMISSIONS_FILE = 'admissions.json'
export const PENDING_TOKEN_FILE = 'join.token'
/** Negotiated links and members' addresses, for adoption after a restart (./link-store.ts). */
export const LINKS_FILE = 'links.json'
const NETWORK_FILE_VERSION = 1

export type StateErrorCode = 'corrupt' | 'insecure-permissions' | 'not-a-file' | 'missing'

/** A problem with a state file: one line naming the file and the fix, never its contents. */
export class StateError extends Error {
  override readonly name = 'StateError'
  constructor(
    readonly code: StateErrorCode,
    message: string,
  ) {
    super(message)
  }
}

export interface WireguardKeys {
  readonly privateKey: Secret<string>
  /** Base64, as `wg pubkey` prints it. */
  readonly publicKey: string
}

/** Creates the directory (0700) if needed and tightens its mode. */
export async function ensureStateDir(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: STATE_DIR_MODE })
  await chmod(stateDir, STATE_DIR_MODE)
}

/** Whether the directory holds a network (this host has run init or join). */
export async function hasNetwork(stateDir: string): Promise<boolean> {
  return (await readStateFile(join(stateDir, NETWORK_FILE))) !== undefined
}

export async function loadIdentity(stateDir: string): Promise<Identity> {
  await ensureStateDir(stateDir)
  return (await loadOrCreateIdentity({ stateDir })).identity
}

/** A fresh Curve25519 private key, base64 of the raw 32 bytes (what `wg genkey` prints). */
export function generateWireguardPrivateKey(): Secret<string> {
  const jwk = generateKeyPairSync('x25519').privateKey.export({ format: 'jwk' })
  if (typeof jwk.d !== 'string') throw new Error('node:crypto gave an X25519 key without a private part')
  return new Secret(Buffer.from(jwk.d, 'base64url').toString('base64'))
}

/** Parses a base64 key file's text into keys; undefined when it is not 32 bytes of base64. */
export function parseWireguardKey(text: string): WireguardKeys | undefined {
  const trimmed = text.trim()
  if (!/^[A-Za-z0-9+/]{43}=$/.test(trimmed)) return undefined
  if (Buffer.from(trimmed, 'base64').length !== 32) return undefined
  return { privateKey: new Secret(trimmed), publicKey: publicKeyFromPrivate(trimmed) }
}

export async function loadOrCreateWireguardKey(stateDir: string): Promise<WireguardKeys> {
  const path = join(stateDir, WIREGUARD_KEY_FILE)
  const existing = await readStateFile(path)
  if (existing !== undefined) {
    const keys = parseWireguardKey(existing.toString('utf8'))
    if (keys === undefined) throw new StateError('corrupt', `WireGuard key ${path} is not a base64 Curve25519 key; move it away to create a new one`)
    return keys
  }
  await ensureStateDir(stateDir)
  const privateKey = generateWireguardPrivateKey()
  await writeStateFile(path, `${privateKey.reveal()}\n`)
  return { privateKey, publicKey: publicKeyFromPrivate(privateKey.reveal()) }
}

// ── Network ──────────────────────────────────────────────────────────────────

export function encodeNetwork(network: Network): string {
  return (
    JSON.stringify({
      version: NETWORK_FILE_VERSION,
      id: network.id,
      name: network.name,
      founder: network.founder,
      secret: Buffer.from(network.secret.reveal()).toString('base64'),
      ipv4Cidr: network.ipv4Cidr,
      ipv6Ula: network.ipv6Ula,
    }) + '\n'
  )
}

/** Validates a network file's text; `where` names the file in the one-line error. */
export function decodeNetwork(text: string, where: string): Network {
  const fail = (what: string): never => {
    throw new StateError('corrupt', `network file ${where} is invalid (${what}); restore it or run "meshd leave" and join again`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return fail('not JSON')
  }
  if (typeof value !== 'object' || value === null) return fail('not an object')
  const v = value as Record<string, unknown>
  if (v.version !== NETWORK_FILE_VERSION) return fail('unknown version')
  const id = typeof v.id === 'string' ? parseNetworkId(v.id) : undefined
  if (id === undefined) return fail('id')
  if (typeof v.name !== 'string' || !NETWORK_NAME_PATTERN.test(v.name)) return fail('name')
  const founder = typeof v.founder === 'string' ? parseNodeId(v.founder) : undefined
  if (founder === undefined) return fail('founder')
  if (typeof v.secret !== 'string') return fail('secret')
  const secretBytes = new Uint8Array(Buffer.from(v.secret, 'base64'))
  if (secretBytes.length !== NETWORK_SECRET_BYTES) return fail('secret')
  if (typeof v.ipv4Cidr !== 'string' || typeof v.ipv6Ula !== 'string') return fail('overlay')
  const secret = new Secret(secretBytes)
  let expected
  try {
    expected = networkIdFor({ secret, founder, name: v.name, ipv4Cidr: v.ipv4Cidr })
  } catch {
    return fail('overlay')
  }
  if (expected !== id) return fail('id does not match its secret, founder, name and overlay')
  if (v.ipv6Ula !== ulaForNetwork(id)) return fail('IPv6 overlay')
  return { id, name: v.name, founder, secret, ipv4Cidr: v.ipv4Cidr, ipv6Ula: v.ipv6Ula }
}

export async function saveNetwork(stateDir: string, network: Network): Promise<void> {
  await ensureStateDir(stateDir)
  await writeStateFile(join(stateDir, NETWORK_FILE), encodeNetwork(network))
}

export async function loadNetwork(stateDir: string): Promise<Network | undefined> {
  const path = join(stateDir, NETWORK_FILE)
  const bytes = await readStateFile(path)
  return bytes === undefined ? undefined : decodeNetwork(bytes.toString('utf8'), path)
}

// ── Admission chain ──────────────────────────────────────────────────────────

export function encodeAdmissions(admissions: readonly Admission[]): string {
  return JSON.stringify(admissions.map((a) => Buffer.from(a.bytes).toString('base64'))) + '\n'
}

export function decodeAdmissions(text: string, where: string): Admission[] {
  const fail = (what: string): never => {
    throw new StateError('corrupt', `admission chain ${where} is invalid (${what}); run "meshd leave" and join again`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return fail('not JSON')
  }
  if (!Array.isArray(value)) return fail('not a list')
  return value.map((item, i) => {
    if (typeof item !== 'string') return fail(`entry ${i}`)
    const decoded = decodeAdmission(new Uint8Array(Buffer.from(item, 'base64')))
    return decoded.ok ? decoded.value : fail(`entry ${i}: ${decoded.reason}`)
  })
}

export async function saveAdmissions(stateDir: string, admissions: readonly Admission[]): Promise<void> {
  await writeStateFile(join(stateDir, ADMISSIONS_FILE), encodeAdmissions(admissions))
}

/** undefined: not admitted yet (a join is pending). */
export async function loadAdmissions(stateDir: string): Promise<Admission[] | undefined> {
  const path = join(stateDir, ADMISSIONS_FILE)
  const bytes = await readStateFile(path)
  return bytes === undefined ? undefined : decodeAdmissions(bytes.toString('utf8'), path)
}

// ── Pending join ─────────────────────────────────────────────────────────────

export async function savePendingToken(stateDir: string, token: Secret<string>): Promise<void> {
  await writeStateFile(join(stateDir, PENDING_TOKEN_FILE), `${token.reveal()}\n`)
}

export async function loadPendingToken(stateDir: string): Promise<Secret<string> | undefined> {
  const bytes = await readStateFile(join(stateDir, PENDING_TOKEN_FILE))
  return bytes === undefined ? undefined : new Secret(bytes.toString('utf8').trim())
}

export async function removePendingToken(stateDir: string): Promise<void> {
  await rm(join(stateDir, PENDING_TOKEN_FILE), { force: true })
}

// ── Transactions ─────────────────────────────────────────────────────────────

/** Every file meshd keeps in the state directory. */
export const STATE_FILES = [LINKS_FILE, PENDING_TOKEN_FILE, ADMISSIONS_FILE, NETWORK_FILE, WIREGUARD_KEY_FILE, IDENTITY_FILE_NAME] as const

/**
 * A change to the state directory that can be undone: `init` and `join`
 * write the identity, keys, network and token before the agent has joined;
 * when the join fails, rollback() removes exactly what this run created (the
 * files that did not exist at begin, and the directory if it did not), so a
 * failed join leaves the host as it found it. Files that existed before are
 * never touched.
 */
export interface StateTransaction {
  /** The join or init succeeded: keep everything (safe twice). */
  commit(): void
  /** Removes the files, and the directory, this run created (safe twice; no-op after commit). */
  rollback(): Promise<void>
}

export async function beginStateChange(stateDir: string): Promise<StateTransaction> {
  // The directories this run may create: the state directory and any missing parents.
  const missingDirs: string[] = []
  for (let dir = resolve(stateDir); !(await pathExists(dir)); dir = dirname(dir)) {
    missingDirs.push(dir)
    if (dirname(dir) === dir) break
  }
  const existed = new Set<string>()
  for (const name of STATE_FILES) if (await pathExists(join(stateDir, name))) existed.add(name)
  let done = false
  return {
    commit() {
      done = true
    },
    async rollback() {
      if (done) return
      done = true
      for (const name of STATE_FILES) if (!existed.has(name)) await rm(join(stateDir, name), { force: true })
      // Innermost first; a directory someone else wrote into meanwhile stays.
      for (const dir of missingDirs) await rmdir(dir).catch(() => undefined)
    },
  }
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }
}

/** Removes everything meshd keeps in the directory (after a leave), then the directory if it is empty. */
export async function wipeState(stateDir: string): Promise<void> {
  for (const name of STATE_FILES) {
    await rm(join(stateDir, name), { force: true })
  }
  await rmdir(stateDir).catch(() => undefined)
}

// ── Files ────────────────────────────────────────────────────────────────────

/** Reads a state file; undefined when absent. Refuses symlinks and files readable by others. */
export async function readStateFile(path: string): Promise<Buffer | undefined> {
  let stats
  try {
    stats = await lstat(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  if (!stats.isFile()) throw new StateError('not-a-file', `${path} is not a regular file (symlinks are refused)`)
  const mode = stats.mode & 0o777
  if ((mode & 0o077) !== 0) throw new StateError('insecure-permissions', `${path} has mode ${mode.toString(8).padStart(4, '0')}, readable or writable by others; run: chmod 600 ${path}`)
  return readFile(path)
}

/** Writes a 0600 file atomically: a temporary file in the same directory, synced, then renamed over. */
export async function writeStateFile(path: string, text: string): Promise<void> {
  await writeFileAtomically(path, text, SECRET_FILE_MODE)
}

/** Writes a file with `mode` atomically: a temporary file in the same directory, synced, then renamed over. */
export async function writeFileAtomically(path: string, text: string, mode: number): Promise<void> {
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode)
  try {
    await handle.chmod(mode)
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await rename(temporary, path)
  } catch (error) {
    await unlink(temporary).catch(() => undefined)
    throw error
  }
}
