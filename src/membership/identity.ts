// The host identity: one Ed25519 key per host, created on first use and kept
// in the state directory with mode 0600. The file holds the key in libp2p's
// protobuf form (what libp2p's own key tooling reads and writes), so the same
// key can be handed to createLibp2p({ privateKey }) and the node id here is
// exactly the PeerId libp2p will announce.

import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { link, lstat, mkdir, open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, generateKeyPairFromSeed, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { Secret } from '../logging/secret.js'
import { nodeIdFromPublicKey, signerFromSeed, type NodeId, type Signer } from './keys.js'

export const IDENTITY_FILE_NAME = 'identity.key'
/** Owner read/write only. Anything looser is refused. */
export const IDENTITY_FILE_MODE = 0o600

export interface Identity extends Signer {
  readonly nodeId: NodeId
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  /** For libp2p; prints as "[redacted]". */
  readonly privateKey: Secret<Ed25519PrivateKey>
}

export type IdentityErrorCode = 'insecure-permissions' | 'wrong-owner' | 'not-a-file' | 'corrupt'

/** A problem with the identity file. Messages name the file and the fix, never key material. */
export class IdentityError extends Error {
  override readonly name = 'IdentityError'
  readonly code: IdentityErrorCode
  constructor(code: IdentityErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

export interface LoadOrCreateIdentityInit {
  stateDir: string
}

export interface LoadedIdentity {
  identity: Identity
  /** True when this call generated the key (first start on this host). */
  created: boolean
  path: string
}

/** Loads the host key from `stateDir`, creating it (and the directory, 0700) on first use. */
export async function loadOrCreateIdentity(init: LoadOrCreateIdentityInit): Promise<LoadedIdentity> {
  const path = join(init.stateDir, IDENTITY_FILE_NAME)
  const existing = await readIdentityFile(path)
  if (existing !== undefined) return { identity: identityFromKey(existing), created: false, path }

  await mkdir(init.stateDir, { recursive: true, mode: 0o700 })
  const key = await generateKeyPair('Ed25519')
  const won = await writeNewFileAtomically(path, privateKeyToProtobuf(key))
  if (won) return { identity: identityFromKey(key), created: true, path }
  // Another process created it between our read and our write: use theirs.
  const theirs = await readIdentityFile(path)
  if (theirs === undefined) throw new IdentityError('corrupt', `identity key ${path} vanished while being created`)
  return { identity: identityFromKey(theirs), created: false, path }
}

/** A deterministic identity for tests and simulations. */
export async function identityFromSeed(seed: Uint8Array): Promise<Identity> {
  return identityFromKey(await generateKeyPairFromSeed('Ed25519', seed))
}

export function identityFromKey(key: Ed25519PrivateKey): Identity {
  // libp2p's raw Ed25519 private key is seed ‖ public key.
  const signer = signerFromSeed(key.raw.subarray(0, 32))
  const publicKey = key.publicKey.raw
  return {
    nodeId: nodeIdFromPublicKey(publicKey),
    publicKey,
    privateKey: new Secret(key),
    signBody: signer.signBody,
  }
}

async function readIdentityFile(path: string): Promise<Ed25519PrivateKey | undefined> {
  let stats
  try {
    stats = await lstat(path)
  } catch (error) {
    if (isErrnoCode(error, 'ENOENT')) return undefined
    throw error
  }
  if (!stats.isFile()) throw new IdentityError('not-a-file', `identity key ${path} is not a regular file (symlinks are refused)`)
  const uid = process.getuid?.()
  if (uid !== undefined && stats.uid !== uid) {
    throw new IdentityError('wrong-owner', `identity key ${path} is owned by uid ${stats.uid}, not by this process (uid ${uid}); run: chown ${uid} ${path}`)
  }
  const mode = stats.mode & 0o777
  if ((mode & 0o077) !== 0) {
    throw new IdentityError(
      'insecure-permissions',
      `identity key ${path} has mode ${mode.toString(8).padStart(4, '0')}, readable or writable by others; run: chmod 600 ${path}`,
    )
  }
  const bytes = await readFile(path)
  let key
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch {
    throw new IdentityError('corrupt', `identity key ${path} is not a libp2p private key; move it away to create a new identity`)
  }
  if (key.type !== 'Ed25519') throw new IdentityError('corrupt', `identity key ${path} holds a ${key.type} key; meshd needs Ed25519`)
  return key
}

/**
 * Writes `bytes` to a temporary 0600 file, then hard-links it into place: the
 * final name appears complete or not at all, and never replaces a key another
 * process wrote first. Returns false when `path` already existed.
 */
async function writeNewFileAtomically(path: string, bytes: Uint8Array): Promise<boolean> {
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, IDENTITY_FILE_MODE)
  try {
    await handle.chmod(IDENTITY_FILE_MODE)
    await handle.writeFile(bytes)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await link(temporary, path)
    return true
  } catch (error) {
    if (isErrnoCode(error, 'EEXIST')) return false
    throw error
  } finally {
    await unlink(temporary)
  }
}

function isErrnoCode(error: unknown, code: string): boolean {
  return error instanceof Error && 'code' in error && error.code === code
}
