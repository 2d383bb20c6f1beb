// Node ids and Ed25519 signatures.
//
// A node id is the libp2p PeerId string of the host's Ed25519 key
// ("12D3KooW…"): the identity multihash of the public key, so the key can be
// recovered from the id and a record signed by a node needs no separate key
// distribution. Signing and verification use node:crypto synchronously;
// Ed25519 signatures are deterministic, so they equal what libp2p would make.

import { createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { BoundedMap } from '../net/bounded-map.js'
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SIGNING_CONTEXT, concatBytes } from './codec.js'

declare const nodeIdBrand: unique symbol
/** A validated, canonical Ed25519 PeerId string. Obtain one from nodeIdFromPublicKey or parseNodeId. */
export type NodeId = string & { readonly [nodeIdBrand]: true }

/** Anything that can sign for a node: an Identity, or a test key. */
export interface Signer {
  readonly nodeId: NodeId
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  /** Ed25519 signature over SIGNING_CONTEXT ‖ body. */
  readonly signBody: (body: Uint8Array) => Uint8Array
}

/**
 * Both directions between a key and its id are base58 work, and every record
 * decode does them for each key it names (the signer, admissions, link RTTs):
 * about a tenth of an idle 20-peer agent's CPU. Members' keys repeat, so keep
 * recent ones. A pure memo: the answers do not depend on what is cached.
 */
const ID_CACHE_LIMIT = 4096
const idOfKey = new BoundedMap<string, NodeId>(ID_CACHE_LIMIT)
const keyOfId = new BoundedMap<string, Uint8Array>(ID_CACHE_LIMIT)

export function nodeIdFromPublicKey(publicKey: Uint8Array): NodeId {
  if (publicKey.length !== PUBLIC_KEY_BYTES) throw new RangeError(`an Ed25519 public key has ${PUBLIC_KEY_BYTES} bytes`)
  const cacheKey = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString('hex')
  const cached = idOfKey.get(cacheKey)
  if (cached !== undefined) return cached
  const nodeId = peerIdFromPublicKey(publicKeyFromRaw(publicKey)).toString() as NodeId
  idOfKey.set(cacheKey, nodeId)
  return nodeId
}

/** Accepts only the canonical text of an Ed25519 PeerId; undefined for anything else. */
export function parseNodeId(text: string): NodeId | undefined {
  if (typeof text !== 'string' || text.length > 128) return undefined
  try {
    const peerId = peerIdFromString(text)
    if (peerId.type !== 'Ed25519' || peerId.toString() !== text) return undefined
    return text as NodeId
  } catch {
    return undefined
  }
}

/** The raw public key inside a node id. */
export function publicKeyOfNodeId(nodeId: NodeId): Uint8Array {
  const cached = keyOfId.get(nodeId)
  // A copy: callers own what they get.
  if (cached !== undefined) return cached.slice()
  const peerId = peerIdFromString(nodeId)
  if (peerId.type !== 'Ed25519') throw new TypeError('node ids are Ed25519 PeerIds')
  const raw = peerId.publicKey.raw
  keyOfId.set(nodeId, raw.slice())
  return raw
}

// DER prefixes that wrap a raw 32-byte Ed25519 key for node:crypto.
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** node:crypto key object for a 32-byte Ed25519 seed; keep it inside closures, never on a logged object. */
export function privateKeyObjectFromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new RangeError('an Ed25519 seed has 32 bytes')
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' })
}

export function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  const der = createPublicKey(privateKeyObjectFromSeed(seed)).export({ format: 'der', type: 'spki' })
  return new Uint8Array(der.subarray(SPKI_ED25519_PREFIX.length))
}

/** A Signer over a raw seed. The seed lives only in this closure. */
export function signerFromSeed(seed: Uint8Array): Signer {
  const key = privateKeyObjectFromSeed(seed)
  const publicKey = publicKeyFromSeed(seed)
  return {
    nodeId: nodeIdFromPublicKey(publicKey),
    publicKey,
    signBody: (body) => new Uint8Array(cryptoSign(null, concatBytes(SIGNING_CONTEXT, body), key)),
  }
}

/** Verifies an Ed25519 signature over SIGNING_CONTEXT ‖ body; false for any malformed key or signature. */
export function verifyBody(publicKey: Uint8Array, body: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES) return false
  try {
    return cryptoVerify(null, concatBytes(SIGNING_CONTEXT, body), publicKeyObject(publicKey), signature)
  } catch {
    return false
  }
}

// Importing a key costs about half a verification; members' keys repeat, so keep recent ones.
const KEY_CACHE_LIMIT = 4096
const keyCache = new BoundedMap<string, KeyObject>(KEY_CACHE_LIMIT)

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const cacheKey = Buffer.from(publicKey).toString('hex')
  const cached = keyCache.get(cacheKey)
  if (cached !== undefined) return cached
  const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' })
  keyCache.set(cacheKey, key)
  return key
}
