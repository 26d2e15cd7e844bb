/**
 * Byte helpers shared by the durable stores (`LmdbStore.ts`, `WalRecord.ts`,
 * `WalStable.ts`): the one-byte codes of the log types, integers up to 2^53
 * as big-endian u64 in two u32s (a DataView has no safe-integer u64), and
 * the stable stores' `setUint64`/`getUint64` values.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { LogType } from "../Log.js"
import { StorageError } from "../RaftError.js"

/** The log type of each one-byte code. */
export const LOG_TYPES: ReadonlyArray<LogType> = ["Command", "Noop", "Barrier", "Configuration"]
/** The one-byte code of each log type. */
export const LOG_TYPE_CODE: Record<LogType, number> = { Command: 0, Noop: 1, Barrier: 2, Configuration: 3 }

const TWO_32 = 0x1_0000_0000

/** Writes a non-negative safe integer as a big-endian u64 at `offset`. */
export const writeUint64 = (view: DataView, offset: number, value: number): void => {
  view.setUint32(offset, Math.floor(value / TWO_32))
  view.setUint32(offset + 4, value >>> 0)
}

/** Reads a big-endian u64 at `offset` (exact up to 2^53). */
export const readUint64 = (view: DataView, offset: number): number =>
  view.getUint32(offset) * TWO_32 + view.getUint32(offset + 4)

/** The 8 bytes a stable store keeps for `setUint64(key, value)`. */
export const encodeUint64 = (value: number): Uint8Array => {
  const bytes = new Uint8Array(8)
  writeUint64(new DataView(bytes.buffer), 0, value)
  return bytes
}

/** What `getUint64(key)` answers for the stored bytes: 0 when missing, a `StorageError` when not 8 bytes. */
export const decodeUint64 = (key: string, stored: Option.Option<Uint8Array>): Effect.Effect<number, StorageError> => {
  if (Option.isNone(stored)) return Effect.succeed(0)
  if (stored.value.length !== 8) {
    return Effect.fail(new StorageError({ operation: "getUint64", reason: `value of ${key} is not 8 bytes` }))
  }
  return Effect.succeed(readUint64(new DataView(stored.value.buffer, stored.value.byteOffset), 0))
}
