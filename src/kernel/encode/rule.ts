// RTM_*RULE messages: struct fib_rule_hdr followed by FRA_* attributes
// (include/uapi/linux/fib_rules.h), laid out as iproute2 6.1 sends
// `ip rule add priority P [from F] [to T] [iif I] [oif O] [fwmark V/M] lookup T [suppress_prefixlength N] protocol P`.

import type { Family, ObservedRule, Rule } from '../types.js'
import { afOf, familyOfAf, formatPrefix, parsePrefix, type Prefix } from './inet.js'
import { attr, attrMap, getStr, getU32, getU8, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, str, u32, u8, type NlRequest } from './nlattr.js'

export const RTM_NEWRULE = 32
export const RTM_DELRULE = 33
export const RTM_GETRULE = 34

const FRA_DST = 1
const FRA_SRC = 2
const FRA_IIFNAME = 3
const FRA_PRIORITY = 6
const FRA_FWMARK = 10
const FRA_SUPPRESS_PREFIXLEN = 14
const FRA_TABLE = 15
const FRA_FWMASK = 16
const FRA_OIFNAME = 17
const FRA_PROTOCOL = 21

const FR_ACT_UNSPEC = 0
const FR_ACT_TO_TBL = 1
const FR_ACTIONS: Record<number, string> = { 0: 'unspec', 1: 'lookup', 2: 'goto', 3: 'nop', 6: 'blackhole', 7: 'unreachable', 8: 'prohibit' }
const FIB_RULE_INVERT = 0x2
/** The kernel's "unset" suppress_prefixlength (-1 as u32). */
const SUPPRESS_UNSET = 0xffffffff

export const FIB_RULE_HDR_SIZE = 12

function fibRuleHdr(fields: { family: number; dstLen: number; srcLen: number; table: number; action: number }): Buffer {
  const b = Buffer.alloc(FIB_RULE_HDR_SIZE)
  b.writeUInt8(fields.family, 0)
  b.writeUInt8(fields.dstLen, 1)
  b.writeUInt8(fields.srcLen, 2)
  // tos (3) stays 0; tables above 255 travel in FRA_TABLE with RT_TABLE_UNSPEC here.
  b.writeUInt8(fields.table > 255 ? 0 : fields.table, 4)
  // res1, res2 (5, 6) stay 0
  b.writeUInt8(fields.action, 7)
  // flags (8..11) stay 0
  return b
}

function selector(rule: Rule, text: string | undefined, what: string): Prefix | undefined {
  if (text === undefined) return undefined
  const prefix = parsePrefix(text)
  if (prefix.family !== rule.family) throw new TypeError(`rule ${rule.priority}: ${what} ${text} is not IPv${rule.family}`)
  return prefix
}

function ruleBody(rule: Rule, protocol: number, action: number): Buffer {
  const from = selector(rule, rule.from, 'from')
  const to = selector(rule, rule.to, 'to')
  const attrs = [attr(FRA_PRIORITY, u32(rule.priority))]
  if (from) attrs.push(attr(FRA_SRC, from.bytes))
  if (to) attrs.push(attr(FRA_DST, to.bytes))
  if (rule.iif !== undefined) attrs.push(attr(FRA_IIFNAME, str(rule.iif)))
  if (rule.oif !== undefined) attrs.push(attr(FRA_OIFNAME, str(rule.oif)))
  if (rule.fwmark) attrs.push(attr(FRA_FWMARK, u32(rule.fwmark.value)), attr(FRA_FWMASK, u32(rule.fwmark.mask)))
  if (rule.table > 255) attrs.push(attr(FRA_TABLE, u32(rule.table)))
  if (rule.suppressPrefixLength !== undefined) attrs.push(attr(FRA_SUPPRESS_PREFIXLEN, u32(rule.suppressPrefixLength)))
  attrs.push(attr(FRA_PROTOCOL, u8(protocol)))
  const header = fibRuleHdr({ family: afOf(rule.family), dstLen: to?.length ?? 0, srcLen: from?.length ?? 0, table: rule.table, action })
  return Buffer.concat([header, ...attrs])
}

/** `ip rule add priority P … lookup T … protocol PROTOCOL` (NLM_F_CREATE|NLM_F_EXCL) */
export function encodeRuleAdd(rule: Rule, protocol: number): NlRequest {
  return { type: RTM_NEWRULE, flags: NLM_F_CREATE | NLM_F_EXCL, payload: ruleBody(rule, protocol, FR_ACT_TO_TBL) }
}

/** `ip rule del priority P … lookup T … protocol PROTOCOL`: iproute2 leaves the action unspecified on delete. */
export function encodeRuleDel(rule: Rule, protocol: number): NlRequest {
  return { type: RTM_DELRULE, flags: 0, payload: ruleBody(rule, protocol, FR_ACT_UNSPEC) }
}

/** `ip [-6] rule show` */
export function encodeRuleDump(family: Family | 'all'): NlRequest {
  // AF_UNSPEC (0): every family's rules in one dump.
  return { type: RTM_GETRULE, flags: NLM_F_DUMP, payload: fibRuleHdr({ family: family === 'all' ? 0 : afOf(family), dstLen: 0, srcLen: 0, table: 0, action: 0 }) }
}

/** Decodes one RTM_NEWRULE message of a dump; undefined for families other than IPv4/IPv6. */
export function decodeRule(payload: Buffer): ObservedRule | undefined {
  const family = familyOfAf(payload.readUInt8(0))
  if (family === undefined) return undefined
  const dstLen = payload.readUInt8(1)
  const srcLen = payload.readUInt8(2)
  const action = payload.readUInt8(7)
  const flags = payload.readUInt32LE(8)
  const attrs = attrMap(payload.subarray(FIB_RULE_HDR_SIZE))
  const rule: ObservedRule = {
    family,
    priority: getU32(attrs.get(FRA_PRIORITY)) ?? 0,
    table: getU32(attrs.get(FRA_TABLE)) ?? payload.readUInt8(4),
    protocol: getU8(attrs.get(FRA_PROTOCOL)) ?? 0,
  }
  const src = attrs.get(FRA_SRC)
  if (src) rule.from = formatPrefix(src, srcLen)
  const dst = attrs.get(FRA_DST)
  if (dst) rule.to = formatPrefix(dst, dstLen)
  const iif = getStr(attrs.get(FRA_IIFNAME))
  if (iif !== undefined) rule.iif = iif
  const oif = getStr(attrs.get(FRA_OIFNAME))
  if (oif !== undefined) rule.oif = oif
  const mark = getU32(attrs.get(FRA_FWMARK))
  const mask = getU32(attrs.get(FRA_FWMASK))
  if (mark !== undefined || mask !== undefined) rule.fwmark = { value: mark ?? 0, mask: mask ?? 0xffffffff }
  const suppress = getU32(attrs.get(FRA_SUPPRESS_PREFIXLEN))
  if (suppress !== undefined && suppress !== SUPPRESS_UNSET) rule.suppressPrefixLength = suppress
  if (action !== FR_ACT_TO_TBL) rule.action = FR_ACTIONS[action] ?? String(action)
  if (flags & FIB_RULE_INVERT) rule.invert = true
  return rule
}
