import { chmod, lstat, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { IDENTITY_FILE_NAME, IdentityError, identityFromSeed, loadOrCreateIdentity } from '../../src/membership/identity.js'
import { nodeIdFromPublicKey, parseNodeId, publicKeyOfNodeId, verifyBody } from '../../src/membership/keys.js'
import { seededSigner } from './membership-fixtures.js'

let stateDir: string
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'meshd-identity-'))
})
afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true })
})

describe('identity', () => {
  it('creates a 0600 key on first use and loads the same one afterwards', async () => {
    const dir = join(stateDir, 'nested', 'state')
    const first = await loadOrCreateIdentity({ stateDir: dir })
    expect(first.created).toBe(true)
    expect((await lstat(first.path)).mode & 0o777).toBe(0o600)
    expect((await lstat(dir)).mode & 0o777).toBe(0o700)
    const second = await loadOrCreateIdentity({ stateDir: dir })
    expect(second.created).toBe(false)
    expect(second.identity.nodeId).toBe(first.identity.nodeId)
  })

  it('two processes starting at once end up with one key', async () => {
    const results = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateIdentity({ stateDir })))
    expect(new Set(results.map((r) => r.identity.nodeId)).size).toBe(1)
    const again = await loadOrCreateIdentity({ stateDir })
    expect(again.identity.nodeId).toBe(results[0]?.identity.nodeId)
  })

  it('uses the libp2p PeerId of the key as node id', async () => {
    const { identity } = await loadOrCreateIdentity({ stateDir })
    expect(identity.nodeId).toBe(peerIdFromPrivateKey(identity.privateKey.reveal()).toString())
    expect(identity.nodeId).toMatch(/^12D3KooW/)
    expect(nodeIdFromPublicKey(identity.publicKey)).toBe(identity.nodeId)
    expect(publicKeyOfNodeId(identity.nodeId)).toEqual(identity.publicKey)
  })

  it('signs with the stored key', async () => {
    const { identity } = await loadOrCreateIdentity({ stateDir })
    const body = new TextEncoder().encode('hello')
    expect(verifyBody(identity.publicKey, body, identity.signBody(body))).toBe(true)
    expect(verifyBody(identity.publicKey, new TextEncoder().encode('hellO'), identity.signBody(body))).toBe(false)
  })

  it('pins the node id of a seeded key, and the libp2p and node:crypto paths agree', async () => {
    const identity = await identityFromSeed(new Uint8Array(32).fill(1))
    expect(identity.nodeId).toBe('12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5')
    expect(seededSigner(1).nodeId).toBe(identity.nodeId)
    const body = Uint8Array.of(1, 2, 3)
    expect(identity.signBody(body)).toEqual(seededSigner(1).signBody(body))
  })

  it('refuses a key file readable by others, naming the file and the fix', async () => {
    const { path } = await loadOrCreateIdentity({ stateDir })
    await chmod(path, 0o644)
    const error = await loadOrCreateIdentity({ stateDir }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(IdentityError)
    expect((error as IdentityError).code).toBe('insecure-permissions')
    expect((error as IdentityError).message).toBe(`identity key ${path} has mode 0644, readable or writable by others; run: chmod 600 ${path}`)
  })

  it('refuses a group-writable key file too', async () => {
    const { path } = await loadOrCreateIdentity({ stateDir })
    await chmod(path, 0o620)
    await expect(loadOrCreateIdentity({ stateDir })).rejects.toMatchObject({ code: 'insecure-permissions' })
  })

  it('refuses a symlink and a corrupt file without echoing the contents', async () => {
    const elsewhere = join(stateDir, 'elsewhere.key')
    await writeFile(elsewhere, 'x', { mode: 0o600 })
    await symlink(elsewhere, join(stateDir, IDENTITY_FILE_NAME))
    await expect(loadOrCreateIdentity({ stateDir })).rejects.toMatchObject({ code: 'not-a-file' })

    await rm(join(stateDir, IDENTITY_FILE_NAME))
    await writeFile(join(stateDir, IDENTITY_FILE_NAME), 'not-a-key-SECRETSTUFF', { mode: 0o600 })
    const error = await loadOrCreateIdentity({ stateDir }).catch((e: unknown) => e)
    expect(error).toMatchObject({ name: 'IdentityError', code: 'corrupt' })
    expect(String(error)).not.toContain('SECRETSTUFF')
  })

  it('never prints the private key', async () => {
    const { identity, path } = await loadOrCreateIdentity({ stateDir })
    const fileBytes = await readFile(path)
    const rawKey = Buffer.from(identity.privateKey.reveal().raw)
    for (const text of [JSON.stringify(identity), inspect(identity, { depth: 10 }), String(identity.privateKey)]) {
      expect(text).not.toContain(rawKey.toString('hex'))
      expect(text).not.toContain(rawKey.toString('base64'))
      expect(text).not.toContain(fileBytes.toString('base64'))
    }
    expect(JSON.stringify(identity)).toContain('[redacted]')
  })
})

describe('node ids', () => {
  it('parses only canonical Ed25519 PeerIds', () => {
    const id = seededSigner(1).nodeId
    expect(parseNodeId(id)).toBe(id)
    expect(parseNodeId(id.slice(0, -1))).toBeUndefined()
    expect(parseNodeId('QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N')).toBeUndefined() // RSA-style (sha256) id
    expect(parseNodeId('')).toBeUndefined()
    expect(parseNodeId('hello world')).toBeUndefined()
  })

  it('maps keys and ids both ways, the same on every call, and hands out copies', () => {
    for (const n of [2, 3]) {
      const signer = seededSigner(n)
      expect(nodeIdFromPublicKey(signer.publicKey)).toBe(signer.nodeId)
      expect(nodeIdFromPublicKey(new Uint8Array(signer.publicKey))).toBe(signer.nodeId)
      const key = publicKeyOfNodeId(signer.nodeId)
      expect(key).toEqual(signer.publicKey)
      key.fill(0)
      expect(publicKeyOfNodeId(signer.nodeId)).toEqual(signer.publicKey)
      expect(publicKeyOfNodeId(signer.nodeId)).toEqual(signer.publicKey)
    }
    // A key inside a larger buffer is read at its offset.
    const framed = new Uint8Array(40)
    framed.set(seededSigner(2).publicKey, 4)
    expect(nodeIdFromPublicKey(framed.subarray(4, 36))).toBe(seededSigner(2).nodeId)
  })
})
