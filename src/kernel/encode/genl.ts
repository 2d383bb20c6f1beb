// Generic netlink: struct genlmsghdr and the controller's CTRL_CMD_GETFAMILY,
// which turns a family name ("wireguard") into the message type to use
// (include/uapi/linux/genetlink.h).

import { attr, attrMap, getU16, getU32, str, type NlRequest } from './nlattr.js'

export const GENL_HDRLEN = 4
/** The controller's fixed message type. */
export const GENL_ID_CTRL = 0x10

const CTRL_CMD_GETFAMILY = 3
const CTRL_ATTR_FAMILY_ID = 1
const CTRL_ATTR_FAMILY_NAME = 2
const CTRL_ATTR_VERSION = 3

export function genlmsghdr(cmd: number, version: number): Buffer {
  const b = Buffer.alloc(GENL_HDRLEN)
  b.writeUInt8(cmd, 0)
  b.writeUInt8(version, 1)
  return b
}

/** The attributes after a genlmsghdr. */
export function genlAttrs(payload: Buffer): Buffer {
  return payload.subarray(GENL_HDRLEN)
}

/** `genl ctrl get name NAME` */
export function encodeGetFamily(name: string): NlRequest {
  return { type: GENL_ID_CTRL, flags: 0, payload: Buffer.concat([genlmsghdr(CTRL_CMD_GETFAMILY, 1), attr(CTRL_ATTR_FAMILY_NAME, str(name))]) }
}

export interface GenlFamily {
  id: number
  version: number
}

/** Decodes the controller's CTRL_CMD_NEWFAMILY reply. */
export function decodeFamily(payload: Buffer): GenlFamily {
  const attrs = attrMap(genlAttrs(payload))
  const id = getU16(attrs.get(CTRL_ATTR_FAMILY_ID))
  if (id === undefined) throw new Error('generic netlink controller reply without CTRL_ATTR_FAMILY_ID')
  return { id, version: getU32(attrs.get(CTRL_ATTR_VERSION)) ?? 0 }
}
