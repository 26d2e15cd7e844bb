/**
 * The record format of the write-ahead log (`WalStore.ts`): how log entries,
 * deletions and batch commits are laid out in a segment file, and how they are
 * checked when read back. Pure functions over bytes; no file access here.
 *
 * Every record is a frame:
 *
 *     length u32 | crc u32 | body (length bytes)
 *
 * big-endian, the CRC-32 covering the length field and the body, so a damaged
 * length is caught as surely as damaged data. The body starts with a kind:
 *
 *     1 entry   index u64 | term u64 | type u8 | data
 *     2 delete  min u64 | max u64          (the entries min..max are gone)
 *     3 commit  (nothing)                  (ends one durable batch)
 *
 * A batch is the records of one write followed by one commit record; the store
 * writes it with one `writev` and makes it durable with one `fdatasync`.
 * Recovery applies a batch only once it has read its commit record.
 */
import { crc32 } from "node:zlib"
import type { Log, LogType } from "../Log.js"
import { LOG_TYPE_CODE, LOG_TYPES, readUint64, writeUint64 } from "./Codec.js"

/** Bytes of a frame's header: length and CRC. */
export const FRAME_HEADER: number = 8
/** Bytes before an entry's data: kind, index, term, type. */
const ENTRY_HEAD = 18
/** Largest body a frame may declare; anything larger is damage, not data (lengths are u32). */
export const MAX_BODY: number = 0xffff_ffff - FRAME_HEADER

const KIND_ENTRY = 1
const KIND_DELETE = 2
const KIND_COMMIT = 3


/** Fills in the CRC of the frame at `at` whose length field is already written. */
const seal = (bytes: Uint8Array, view: DataView, at: number, end: number): void => {
  view.setUint32(at + 4, crc32(bytes.subarray(at + FRAME_HEADER, end), crc32(bytes.subarray(at, at + 4))))
}

/** The frames of a `storeLogs` batch, encoded into one buffer; `offsets[i]` is where entry i's frame starts. */
export interface EncodedEntries {
  readonly bytes: Uint8Array
  readonly offsets: ReadonlyArray<number>
}

/** Encodes entries as frames, one after the other, in the order given. */
export const encodeEntries = (logs: ReadonlyArray<Log>): EncodedEntries => {
  let total = 0
  for (const log of logs) total += FRAME_HEADER + ENTRY_HEAD + log.data.length
  const bytes = new Uint8Array(total)
  const view = new DataView(bytes.buffer)
  const offsets = new Array<number>(logs.length)
  let at = 0
  for (let i = 0; i < logs.length; i++) {
    const log = logs[i]!
    const body = ENTRY_HEAD + log.data.length
    const end = at + FRAME_HEADER + body
    offsets[i] = at
    view.setUint32(at, body)
    bytes[at + 8] = KIND_ENTRY
    writeUint64(view, at + 9, log.index)
    writeUint64(view, at + 17, log.term)
    bytes[at + 25] = LOG_TYPE_CODE[log.type]
    bytes.set(log.data, at + FRAME_HEADER + ENTRY_HEAD)
    seal(bytes, view, at, end)
    at = end
  }
  return { bytes, offsets }
}

/** The frame saying that the entries `min..max` are deleted. */
export const encodeDelete = (min: number, max: number): Uint8Array => {
  const bytes = new Uint8Array(FRAME_HEADER + 17)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, 17)
  bytes[8] = KIND_DELETE
  writeUint64(view, 9, min)
  writeUint64(view, 17, max)
  seal(bytes, view, 0, bytes.length)
  return bytes
}

/** The frame that ends a batch (the same bytes every time). */
export const COMMIT: Uint8Array = (() => {
  const bytes = new Uint8Array(FRAME_HEADER + 1)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, 1)
  bytes[8] = KIND_COMMIT
  seal(bytes, view, 0, bytes.length)
  return bytes
})()

/** A frame read back and checked; `end` is the offset just past it. */
export type Frame =
  | { readonly kind: "entry"; readonly end: number; readonly index: number; readonly term: number; readonly type: LogType; readonly data: Uint8Array }
  | { readonly kind: "delete"; readonly end: number; readonly min: number; readonly max: number }
  | { readonly kind: "commit"; readonly end: number }

/**
 * Why the bytes at an offset are not a frame. `declaredEnd` is where the frame would end by its length field (which
 * may itself be the damage), or undefined when not even the header is there.
 */
export interface Bad {
  readonly kind: "bad"
  readonly reason: string
  readonly declaredEnd: number | undefined
}

const bad = (reason: string, declaredEnd: number | undefined): Bad => ({ kind: "bad", reason, declaredEnd })

/**
 * Decodes and checks the frame at `at` of `bytes` (which ends at `end`). An entry's data is a view of `bytes`, not a
 * copy. Never throws: anything short, damaged or unknown is a `Bad` saying why.
 */
export const decodeFrame = (bytes: Uint8Array, at: number, end: number): Frame | Bad => {
  if (end - at < FRAME_HEADER) return bad(`a frame header is cut short (${end - at} of ${FRAME_HEADER} bytes)`, undefined)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const length = view.getUint32(at)
  const frameEnd = at + FRAME_HEADER + length
  if (length === 0) return bad("a frame declares an empty body", frameEnd)
  if (frameEnd > end) return bad(`a frame of ${length} bytes runs past the end (${end - at - FRAME_HEADER} left)`, frameEnd)
  const body = bytes.subarray(at + FRAME_HEADER, frameEnd)
  if (view.getUint32(at + 4) !== crc32(body, crc32(bytes.subarray(at, at + 4)))) {
    return bad("a frame fails its checksum", frameEnd)
  }
  const kind = body[0]
  const b = at + FRAME_HEADER
  if (kind === KIND_ENTRY && length >= ENTRY_HEAD) {
    const type = LOG_TYPES[bytes[b + 17]!]
    if (type === undefined) return bad(`an entry has unknown type ${bytes[b + 17]}`, frameEnd)
    return {
      kind: "entry",
      end: frameEnd,
      index: readUint64(view, b + 1),
      term: readUint64(view, b + 9),
      type,
      data: new Uint8Array(bytes.buffer, bytes.byteOffset + b + ENTRY_HEAD, length - ENTRY_HEAD)
    }
  }
  if (kind === KIND_DELETE && length === 17) {
    return { kind: "delete", end: frameEnd, min: readUint64(view, b + 1), max: readUint64(view, b + 9) }
  }
  if (kind === KIND_COMMIT && length === 1) return { kind: "commit", end: frameEnd }
  return bad(`a frame of kind ${kind} and ${length} bytes is not one this library writes`, frameEnd)
}
