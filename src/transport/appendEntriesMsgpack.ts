/**
 * The msgpack bodies of the two frames every apply crosses on the TCP transport, AppendEntries and its answer,
 * written and read directly as bytes (internal). The bytes are the msgpack map the general path (msgpackr and
 * `appendEntriesWire.ts`' checks) writes and reads, so either side may use either path: a writer here returns
 * `undefined` for a message it does not handle (a string that is not ASCII, a number that is not a non-negative
 * safe integer) and a reader returns `undefined` for a body outside the plain form it reads (another msgpack type
 * for a field, an unknown or repeated key, trailing bytes); the codec then takes the general path, which decides.
 * Property tests in test/transport/appendEntriesMsgpack.test.ts hold both directions to the general path.
 *
 * Why: at one client over TCP, msgpackr's general encoder and decoder (and the map they decode into, checked key by
 * key) were about a tenth of the thread's time, and every frame's header and body were copied into a buffer of
 * their own. Here a frame is written once, into one buffer from Node's pool.
 * @internal
 */
import type * as Types from "effect/Types"
import type { Log } from "../Log.js"
import type * as Rpc from "../Rpc.js"
import { isNonNegativeInt, logTypeCode, logTypes } from "./appendEntriesWire.js"

// ---------------------------------------------------------------- writing

/** Whether every character of `s` is ASCII (one byte each in UTF-8, and the same string read back). */
const isAscii = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false
  return true
}

/** Bytes msgpackr writes for a non-negative safe integer: the smallest unsigned form up to 32 bits, else float64. */
const uintBytes = (n: number): number => n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9

const strBytes = (length: number): number => (length < 0x20 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : 5) + length

const binBytes = (length: number): number => (length < 0x100 ? 2 : length < 0x10000 ? 3 : 5) + length

/** A cursor over a buffer being written. */
class Writer {
  at: number
  constructor(readonly out: Buffer, at: number) {
    this.at = at
  }

  /**
   * A length or value `n` that does not fit its type's one-byte form: the first of `code8` (a byte follows; 0 when
   * the type has no such form), `code16` and `code32` whose size holds `n`, then `n` big-endian.
   */
  private sized(n: number, code8: number, code16: number, code32: number): void {
    const out = this.out
    if (n < 0x100 && code8 !== 0) {
      out[this.at++] = code8
      out[this.at++] = n
    } else if (n < 0x10000) {
      out[this.at++] = code16
      out.writeUInt16BE(n, this.at)
      this.at += 2
    } else {
      out[this.at++] = code32
      out.writeUInt32BE(n, this.at)
      this.at += 4
    }
  }

  uint(n: number): void {
    if (n < 0x80) this.out[this.at++] = n
    else if (n < 0x100000000) this.sized(n, 0xcc, 0xcd, 0xce)
    else {
      this.out[this.at++] = 0xcb
      this.out.writeDoubleBE(n, this.at)
      this.at += 8
    }
  }

  /** An ASCII string (checked by the caller). */
  str(s: string): void {
    const n = s.length
    if (n < 0x20) this.out[this.at++] = 0xa0 | n
    else this.sized(n, 0xd9, 0xda, 0xdb)
    const out = this.out
    for (let i = 0; i < n; i++) out[this.at++] = s.charCodeAt(i)
  }

  /** A key: a short ASCII string. */
  key(bytes: Uint8Array): void {
    this.out[this.at++] = 0xa0 | bytes.length
    this.out.set(bytes, this.at)
    this.at += bytes.length
  }

  keyUint(key: Uint8Array, n: number): void {
    this.key(key)
    this.uint(n)
  }

  keyStr(key: Uint8Array, s: string): void {
    this.key(key)
    this.str(s)
  }

  bin(data: Uint8Array): void {
    this.sized(data.length, 0xc4, 0xc5, 0xc6)
    this.out.set(data, this.at)
    this.at += data.length
  }

  arrayHeader(n: number): void {
    if (n < 0x10) this.out[this.at++] = 0x90 | n
    else this.sized(n, 0, 0xdc, 0xdd)
  }
}

const keyBytes = (name: string): Uint8Array => new TextEncoder().encode(name)
const K = {
  term: keyBytes("term"),
  leaderId: keyBytes("leaderId"),
  leaderAddress: keyBytes("leaderAddress"),
  prevLogIndex: keyBytes("prevLogIndex"),
  prevLogTerm: keyBytes("prevLogTerm"),
  entries: keyBytes("entries"),
  leaderCommitIndex: keyBytes("leaderCommitIndex"),
  traceparent: keyBytes("traceparent"),
  clusterId: keyBytes("clusterId"),
  lastLog: keyBytes("lastLog"),
  success: keyBytes("success"),
  noRetryBackoff: keyBytes("noRetryBackoff")
}

/**
 * The body of `request` written after `reserve` bytes of a new buffer (the caller's frame header), or `undefined`
 * when the request is one for the general path. The map's keys are in the general path's order.
 */
export const writeAppendEntries = (request: Rpc.AppendEntriesRequest, reserve: number): Buffer | undefined => {
  const { entries, traceparent, clusterId } = request
  if (
    !isNonNegativeInt(request.term) || !isNonNegativeInt(request.prevLogIndex) ||
    !isNonNegativeInt(request.prevLogTerm) || !isNonNegativeInt(request.leaderCommitIndex) ||
    !isAscii(request.leaderId) || !isAscii(request.leaderAddress) ||
    (traceparent !== undefined && !isAscii(traceparent)) || (clusterId !== undefined && !isAscii(clusterId))
  ) return undefined
  let size = reserve + 1 +
    1 + K.term.length + uintBytes(request.term) +
    1 + K.leaderId.length + strBytes(request.leaderId.length) +
    1 + K.leaderAddress.length + strBytes(request.leaderAddress.length) +
    1 + K.prevLogIndex.length + uintBytes(request.prevLogIndex) +
    1 + K.prevLogTerm.length + uintBytes(request.prevLogTerm) +
    1 + K.entries.length + (entries.length < 0x10 ? 1 : entries.length < 0x10000 ? 3 : 5) +
    1 + K.leaderCommitIndex.length + uintBytes(request.leaderCommitIndex)
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    if (!isNonNegativeInt(e.index) || !isNonNegativeInt(e.term)) return undefined
    size += 1 + uintBytes(e.index) + uintBytes(e.term) + 1 + binBytes(e.data.length)
  }
  if (traceparent !== undefined) size += 1 + K.traceparent.length + strBytes(traceparent.length)
  if (clusterId !== undefined) size += 1 + K.clusterId.length + strBytes(clusterId.length)
  const w = new Writer(Buffer.allocUnsafe(size), reserve)
  w.out[w.at++] = 0x80 | (7 + (traceparent !== undefined ? 1 : 0) + (clusterId !== undefined ? 1 : 0))
  w.keyUint(K.term, request.term)
  w.keyStr(K.leaderId, request.leaderId)
  w.keyStr(K.leaderAddress, request.leaderAddress)
  w.keyUint(K.prevLogIndex, request.prevLogIndex)
  w.keyUint(K.prevLogTerm, request.prevLogTerm)
  w.key(K.entries)
  w.arrayHeader(entries.length)
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    w.out[w.at++] = 0x94
    w.uint(e.index)
    w.uint(e.term)
    w.out[w.at++] = logTypeCode(e.type)
    w.bin(e.data)
  }
  w.keyUint(K.leaderCommitIndex, request.leaderCommitIndex)
  if (traceparent !== undefined) w.keyStr(K.traceparent, traceparent)
  if (clusterId !== undefined) w.keyStr(K.clusterId, clusterId)
  return w.out
}

/** The body of `response` after `reserve` bytes of a new buffer, or `undefined` for the general path. */
export const writeAppendEntriesResponse = (response: Rpc.AppendEntriesResponse, reserve: number): Buffer | undefined => {
  if (!isNonNegativeInt(response.term) || !isNonNegativeInt(response.lastLog)) return undefined
  const size = reserve + 1 +
    1 + K.term.length + uintBytes(response.term) +
    1 + K.lastLog.length + uintBytes(response.lastLog) +
    1 + K.success.length + 1 +
    1 + K.noRetryBackoff.length + 1
  const w = new Writer(Buffer.allocUnsafe(size), reserve)
  w.out[w.at++] = 0x84
  w.keyUint(K.term, response.term)
  w.keyUint(K.lastLog, response.lastLog)
  w.key(K.success)
  w.out[w.at++] = response.success ? 0xc3 : 0xc2
  w.key(K.noRetryBackoff)
  w.out[w.at++] = response.noRetryBackoff ? 0xc3 : 0xc2
  return w.out
}

// ---------------------------------------------------------------- reading

/** A cursor over a body being read; every read returns `undefined` (or -1) for a form it does not take. */
class Reader {
  at = 0
  constructor(readonly bytes: Uint8Array) {}

  private u16(): number {
    const b = this.bytes
    const v = (b[this.at]! << 8) | b[this.at + 1]!
    this.at += 2
    return v
  }

  private u32(): number {
    const b = this.bytes
    const v = b[this.at]! * 0x1000000 + ((b[this.at + 1]! << 16) | (b[this.at + 2]! << 8) | b[this.at + 3]!)
    this.at += 4
    return v
  }

  /** Whether `n` more bytes are there. */
  has(n: number): boolean {
    return this.at + n <= this.bytes.length
  }

  /** A non-negative safe integer, or -1. */
  uint(): number {
    if (!this.has(1)) return -1
    const t = this.bytes[this.at++]!
    if (t < 0x80) return t
    switch (t) {
      case 0xcc:
        return this.has(1) ? this.bytes[this.at++]! : -1
      case 0xcd:
        return this.has(2) ? this.u16() : -1
      case 0xce:
        return this.has(4) ? this.u32() : -1
      case 0xcb: {
        if (!this.has(8)) return -1
        const b = this.bytes
        const v = new DataView(b.buffer, b.byteOffset + this.at, 8).getFloat64(0)
        this.at += 8
        return Number.isSafeInteger(v) && v >= 0 && !Object.is(v, -0) ? v : -1
      }
      default:
        return -1
    }
  }

  /** An ASCII string, or `undefined`. */
  str(): string | undefined {
    if (!this.has(1)) return undefined
    const t = this.bytes[this.at++]!
    let n: number
    if (t >= 0xa0 && t <= 0xbf) n = t & 0x1f
    else if (t === 0xd9 && this.has(1)) n = this.bytes[this.at++]!
    else if (t === 0xda && this.has(2)) n = this.u16()
    else if (t === 0xdb && this.has(4)) n = this.u32()
    else return undefined
    // Longer strings (none of the fields' usual values) are left to the general path.
    if (n > 1024 || !this.has(n)) return undefined
    const b = this.bytes
    const end = this.at + n
    for (let i = this.at; i < end; i++) if (b[i]! > 0x7f) return undefined
    const s = String.fromCharCode.apply(null, b.subarray(this.at, end) as unknown as Array<number>)
    this.at = end
    return s
  }

  /** A boolean as 1 or 0, or -1. */
  bool(): number {
    if (!this.has(1)) return -1
    const t = this.bytes[this.at++]!
    return t === 0xc3 ? 1 : t === 0xc2 ? 0 : -1
  }

  /** A fixmap's or map16's entry count, or -1. */
  mapHeader(): number {
    if (!this.has(1)) return -1
    const t = this.bytes[this.at++]!
    if (t >= 0x80 && t <= 0x8f) return t & 0x0f
    return t === 0xde && this.has(2) ? this.u16() : -1
  }

  /** The index in `names` of the next key (a fixstr), or -1. */
  key(names: ReadonlyArray<Uint8Array>): number {
    if (!this.has(1)) return -1
    const t = this.bytes[this.at]!
    if (t < 0xa0 || t > 0xbf) return -1
    const n = t & 0x1f
    if (!this.has(1 + n)) return -1
    const b = this.bytes
    const from = this.at + 1
    outer: for (let k = 0; k < names.length; k++) {
      const name = names[k]!
      if (name.length !== n) continue
      for (let i = 0; i < n; i++) if (b[from + i] !== name[i]) continue outer
      this.at = from + n
      return k
    }
    return -1
  }

  /** Log entries as 4-tuples, or `undefined`. */
  entries(): Array<Log> | undefined {
    if (!this.has(1)) return undefined
    const t = this.bytes[this.at++]!
    let n: number
    if (t >= 0x90 && t <= 0x9f) n = t & 0x0f
    else if (t === 0xdc && this.has(2)) n = this.u16()
    else if (t === 0xdd && this.has(4)) n = this.u32()
    else return undefined
    // Each entry takes at least six bytes: refuse a count the body cannot hold before allocating for it.
    if (!this.has(n * 6)) return undefined
    const out = new Array<Log>(n)
    const b = this.bytes
    for (let i = 0; i < n; i++) {
      if (!this.has(1) || b[this.at++] !== 0x94) return undefined
      const index = this.uint()
      const term = this.uint()
      if (index < 0 || term < 0 || !this.has(1)) return undefined
      const code = b[this.at++]!
      if (code > 3 || !this.has(1)) return undefined
      const bt = b[this.at++]!
      let length: number
      if (bt === 0xc4 && this.has(1)) length = b[this.at++]!
      else if (bt === 0xc5 && this.has(2)) length = this.u16()
      else if (bt === 0xc6 && this.has(4)) length = this.u32()
      else return undefined
      if (!this.has(length)) return undefined
      out[i] = { index, term, type: logTypes[code]!, data: b.subarray(this.at, this.at + length) }
      this.at += length
    }
    return out
  }
}

/** How one field's value is read: the value, or `undefined` for a form the direct path does not take. */
type Field = (r: Reader) => unknown

const uintField: Field = (r) => {
  const n = r.uint()
  return n < 0 ? undefined : n
}
const strField: Field = (r) => r.str()
/** What `Rpc.TraceParent` takes: at most 128 characters (a longer one is the general path's error to report). */
const traceField: Field = (r) => {
  const s = r.str()
  return s !== undefined && s.length <= 128 ? s : undefined
}
const boolField: Field = (r) => {
  const b = r.bool()
  return b < 0 ? undefined : b === 1
}

/**
 * Reads a map of `count` entries whose keys are among `keys`, each at most once, the value of `keys[k]` read by
 * `fields[k]` into `values[k]`: the bit set of the keys read, or -1 where the direct path does not take the map.
 */
const readMap = (
  r: Reader,
  count: number,
  keys: ReadonlyArray<Uint8Array>,
  fields: ReadonlyArray<Field>,
  values: Array<unknown>
): number => {
  let seen = 0
  for (let i = 0; i < count; i++) {
    const k = r.key(keys)
    if (k < 0 || (seen & (1 << k)) !== 0) return -1
    seen |= 1 << k
    const value = fields[k]!(r)
    if (value === undefined) return -1
    values[k] = value
  }
  return seen
}

// The keys in the general path's order, and how each value is read.
const appendEntriesKeys = [
  K.term,
  K.leaderId,
  K.leaderAddress,
  K.prevLogIndex,
  K.prevLogTerm,
  K.entries,
  K.leaderCommitIndex,
  K.traceparent,
  K.clusterId
]
const appendEntriesFields: ReadonlyArray<Field> = [
  uintField,
  strField,
  strField,
  uintField,
  uintField,
  (r) => r.entries(),
  uintField,
  traceField,
  strField
]

/** An AppendEntries body in the plain form, or `undefined` for the general path (which also finds the errors). */
export const readAppendEntries = (body: Uint8Array): Rpc.AppendEntriesRequest | undefined => {
  const r = new Reader(body)
  const count = r.mapHeader()
  if (count < 7 || count > 9) return undefined
  const values = new Array<unknown>(9)
  const seen = readMap(r, count, appendEntriesKeys, appendEntriesFields, values)
  // All seven required fields, and nothing after the map.
  if (seen < 0 || (seen & 0x7f) !== 0x7f || r.at !== body.length) return undefined
  const request: Types.Mutable<Rpc.AppendEntriesRequest> = {
    _tag: "AppendEntriesRequest",
    term: values[0] as number,
    leaderId: values[1] as string,
    leaderAddress: values[2] as string,
    prevLogIndex: values[3] as number,
    prevLogTerm: values[4] as number,
    entries: values[5] as Array<Log>,
    leaderCommitIndex: values[6] as number
  }
  if (values[7] !== undefined) request.traceparent = values[7] as string
  if (values[8] !== undefined) request.clusterId = values[8] as string
  return request
}

const responseKeys = [K.term, K.lastLog, K.success, K.noRetryBackoff]
const responseFields: ReadonlyArray<Field> = [uintField, uintField, boolField, boolField]

/** An AppendEntries answer in the plain form, or `undefined` for the general path. */
export const readAppendEntriesResponse = (body: Uint8Array): Rpc.AppendEntriesResponse | undefined => {
  const r = new Reader(body)
  if (r.mapHeader() !== 4) return undefined
  const values = new Array<unknown>(4)
  if (readMap(r, 4, responseKeys, responseFields, values) !== 0xf || r.at !== body.length) return undefined
  return {
    _tag: "AppendEntriesResponse",
    term: values[0] as number,
    lastLog: values[1] as number,
    success: values[2] as boolean,
    noRetryBackoff: values[3] as boolean
  }
}
