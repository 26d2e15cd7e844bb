/**
 * The `StableStore` beside the write-ahead log: term, vote and the like, a
 * handful of small keys written rarely (on elections). All of them live in
 * one file, `stable`, replaced atomically on every `set`: the new contents go
 * to `stable.tmp`, which is fdatasync'ed and renamed over `stable`, and then
 * the directory is fsync'ed. A crash leaves either the old file or the new
 * one, never a mix; a leftover `stable.tmp` is ignored and overwritten.
 *
 * The file is `EFRAFTST | version u32 | crc u32 | count u32 | (keyLength u32
 * key valueLength u32 value)*`, the CRC covering everything after it: a
 * damaged file fails the open with a `StorageError`, never returns wrong data.
 * Numbers are 8 bytes big-endian under their own namespace, as in the LMDB store.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import { join } from "node:path"
import { crc32 } from "node:zlib"
import { StorageError } from "../RaftError.js"
import type { StableStore } from "../StableStore.js"
import * as Codec from "./Codec.js"
import * as WalSegment from "./WalSegment.js"

/** The stable file's format version. */
export const FORMAT_VERSION: number = 1
const MAGIC = new TextEncoder().encode("EFRAFTST")
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

const encode = (values: ReadonlyMap<string, Uint8Array>): Uint8Array => {
  const keys = [...values.keys()].map((key) => textEncoder.encode(key))
  let total = 20
  let i = 0
  for (const value of values.values()) total += 8 + keys[i++]!.length + value.length
  const bytes = new Uint8Array(total)
  const view = new DataView(bytes.buffer)
  bytes.set(MAGIC)
  view.setUint32(8, FORMAT_VERSION)
  view.setUint32(16, values.size)
  let at = 20
  i = 0
  for (const value of values.values()) {
    const key = keys[i++]!
    view.setUint32(at, key.length)
    bytes.set(key, at + 4)
    at += 4 + key.length
    view.setUint32(at, value.length)
    bytes.set(value, at + 4)
    at += 4 + value.length
  }
  view.setUint32(12, crc32(bytes.subarray(16)))
  return bytes
}

/** The keys and values of a stable file, or why it cannot be trusted. */
const decode = (bytes: Uint8Array): Map<string, Uint8Array> | string => {
  if (bytes.length < 20) return `cut short (${bytes.length} bytes)`
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) return "not a stable file of this library (bad magic)"
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const version = view.getUint32(8)
  if (version !== FORMAT_VERSION) return `format version ${version}; this library reads version ${FORMAT_VERSION} only`
  if (view.getUint32(12) !== crc32(bytes.subarray(16))) return "fails its checksum"
  const values = new Map<string, Uint8Array>()
  const count = view.getUint32(16)
  let at = 20
  for (let n = 0; n < count; n++) {
    if (at + 4 > bytes.length) return "cut short"
    const keyLength = view.getUint32(at)
    if (at + 8 + keyLength > bytes.length) return "cut short"
    const key = textDecoder.decode(bytes.subarray(at + 4, at + 4 + keyLength))
    at += 4 + keyLength
    const valueLength = view.getUint32(at)
    if (at + 4 + valueLength > bytes.length) return "cut short"
    values.set(key, bytes.slice(at + 4, at + 4 + valueLength))
    at += 4 + valueLength
  }
  return values
}

const bytesKey = (key: string): string => `b:${key}`
const numberKey = (key: string): string => `u:${key}`

/** Writes `bytes` to `file` atomically: temp file, fdatasync, rename, fsync of the directory. */
const replace = (dir: string, file: string, bytes: Uint8Array): Effect.Effect<void, StorageError> =>
  Effect.gen(function*() {
    const temp = `${file}.tmp`
    const fd = yield* WalSegment.attempt("set", temp, () => fs.openSync(temp, "w"))
    yield* WalSegment.writeAll("set", temp, fd, [bytes], 0).pipe(
      Effect.zipRight(WalSegment.datasync("set", temp, fd)),
      Effect.ensuring(WalSegment.close(temp, fd))
    )
    yield* WalSegment.attempt("set", file, () => fs.renameSync(temp, file))
    yield* WalSegment.syncDirectory("set", dir)
  })

/**
 * Opens (or starts) the stable file in `dir`. `whenOpen` fails once the store is closed. Writes are serialised; a
 * `set` changes what `get` answers only once the new file is durable.
 */
export const make = (
  dir: string,
  whenOpen: (operation: string) => Effect.Effect<void, StorageError>
): Effect.Effect<StableStore, StorageError> =>
  Effect.gen(function*() {
    const file = join(dir, "stable")
    const raw = yield* WalSegment.attempt("open", file, () => fs.existsSync(file) ? fs.readFileSync(file) : undefined)
    const decoded = raw === undefined ? new Map<string, Uint8Array>() : decode(raw)
    if (typeof decoded === "string") {
      return yield* Effect.fail(new StorageError({ operation: "open", reason: `${file} is corrupt: ${decoded}` }))
    }
    let values: ReadonlyMap<string, Uint8Array> = decoded
    const lock = yield* Effect.makeSemaphore(1)
    const put = (operation: string, key: string, value: Uint8Array) =>
      Effect.zipRight(
        whenOpen(operation),
        lock.withPermits(1)(Effect.suspend(() => {
          const next = new Map(values)
          next.set(key, value.slice())
          return Effect.as(replace(dir, file, encode(next)), next)
        }).pipe(Effect.map((next) => {
          values = next
        })))
      )
    const get = (key: string) => Effect.sync(() => Option.fromNullable(values.get(key)).pipe(Option.map((v) => v.slice())))
    return {
      get: (key) => Effect.zipRight(whenOpen("get"), get(bytesKey(key))),
      set: (key, value) => put("set", bytesKey(key), value),
      getUint64: (key) =>
        Effect.flatMap(Effect.zipRight(whenOpen("getUint64"), get(numberKey(key))), (stored) => Codec.decodeUint64(key, stored)),
      setUint64: (key, value) => Effect.suspend(() => put("setUint64", numberKey(key), Codec.encodeUint64(value)))
    }
  })
