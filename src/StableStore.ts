/**
 * Small durable key/value state: the current term and the last vote. A store
 * must make a `set` durable before its effect succeeds, because a node answers
 * a vote only after the vote is stored (Raft §5.2, figure 2).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { StorageError } from "./RaftError.js"

/** Durable key/value state of a node. */
export interface StableStore {
  /** The value at `key`, if any. */
  readonly get: (key: string) => Effect.Effect<Option.Option<Uint8Array>, StorageError>
  /** Stores `value` at `key`, durably. */
  readonly set: (key: string, value: Uint8Array) => Effect.Effect<void, StorageError>
  /** The number at `key`, 0 when missing. */
  readonly getUint64: (key: string) => Effect.Effect<number, StorageError>
  /** Stores a non-negative integer at `key`, durably. */
  readonly setUint64: (key: string, value: number) => Effect.Effect<void, StorageError>
}

/** The tag of a node's stable store. */
export const StableStore: Context.Tag<StableStore, StableStore> = Context.GenericTag<StableStore>(
  "effect-raft/StableStore"
)

/** Stable state held in memory; the same instance survives a simulated node restart. */
export const makeMemory = (): StableStore => {
  const values = new Map<string, Uint8Array>()
  const numbers = new Map<string, number>()
  return {
    get: (key) => Effect.sync(() => Option.map(Option.fromNullable(values.get(key)), (value) => value.slice())),
    set: (key, value) => Effect.sync(() => void values.set(key, value.slice())),
    getUint64: (key) => Effect.sync(() => numbers.get(key) ?? 0),
    setUint64: (key, value) => Effect.sync(() => void numbers.set(key, value))
  }
}

/** A fresh in-memory stable store per layer build. */
export const layerMemory: Layer.Layer<StableStore> = Layer.sync(StableStore, makeMemory)
