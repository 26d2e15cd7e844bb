/**
 * Stores whose writes can be made to fail, for tests of what a node does when
 * its disk refuses a write (full, read-only, failing): wrap a node's
 * `LogStore`, `StableStore` or `SnapshotStore` over a shared `WriteFaults`
 * switch, then arm it with `failNext(n)`: the next `n` writes through any
 * store on that switch fail with a `StorageError` (operation named, reason
 * "injected write failure") without reaching the store beneath, and later
 * writes go through again. Reads always go through.
 *
 * ```ts
 * const faults = yield* FaultyStores.makeWriteFaults()
 * const logs = FaultyStores.logStore(LogStore.makeMemory(), faults)
 * yield* faults.failNext(1)        // the follower's next storeLogs fails
 * ```
 *
 * Writes are `storeLogs` and `deleteRange` of a log store, `set` and
 * `setUint64` of a stable store, and `create` and `delete` of a snapshot store.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Sink from "effect/Sink"
import { LogStore } from "../LogStore.js"
import { StorageError } from "../RaftError.js"
import { SnapshotStore } from "../SnapshotStore.js"
import { StableStore } from "../StableStore.js"

/** The switch of one or more faulty stores. */
export interface WriteFaults {
  /** The next `n` writes fail (replacing what was armed before); 0 disarms. */
  readonly failNext: (n: number) => Effect.Effect<void>
  /** How many writes are still to fail. */
  readonly armed: Effect.Effect<number>
  /** How many writes failed so far, and the operations they were. */
  readonly failed: Effect.Effect<ReadonlyArray<string>>
  /** Fails with the injected error if armed (and counts it down), otherwise succeeds. */
  readonly gate: (operation: string) => Effect.Effect<void, StorageError>
}

/** A switch with `initial` writes armed to fail. */
export const makeWriteFaults = (initial = 0): Effect.Effect<WriteFaults> =>
  Effect.gen(function*() {
    const armed = yield* Ref.make(Math.max(0, initial))
    const failed = yield* Ref.make<ReadonlyArray<string>>([])
    return {
      failNext: (n) => Ref.set(armed, Math.max(0, n)),
      armed: Ref.get(armed),
      failed: Ref.get(failed),
      gate: (operation) =>
        Effect.flatMap(
          Ref.modify(armed, (n): readonly [boolean, number] => n > 0 ? [true, n - 1] : [false, 0]),
          (fail) =>
            fail
              ? Effect.zipRight(
                Ref.update(failed, (list) => [...list, operation]),
                Effect.fail(new StorageError({ operation, reason: "injected write failure" }))
              )
              : Effect.void
        )
    }
  })

/** `store` with its writes behind `faults`. */
export const logStore = (store: LogStore, faults: WriteFaults): LogStore => ({
  ...store,
  storeLogs: (logs) => Effect.zipRight(faults.gate("storeLogs"), store.storeLogs(logs)),
  deleteRange: (min, max) => Effect.zipRight(faults.gate("deleteRange"), store.deleteRange(min, max))
})

/** `store` with its writes behind `faults`. */
export const stableStore = (store: StableStore, faults: WriteFaults): StableStore => ({
  ...store,
  set: (key, value) => Effect.zipRight(faults.gate("set"), store.set(key, value)),
  setUint64: (key, value) => Effect.zipRight(faults.gate("setUint64"), store.setUint64(key, value))
})

/** `store` with `create` and `delete` behind `faults`: an armed create fails before it stores anything. */
export const snapshotStore = (store: SnapshotStore, faults: WriteFaults): SnapshotStore => ({
  ...store,
  // The gate runs when the sink starts, so an armed create fails before it takes any data.
  create: (meta) => Sink.unwrap(Effect.as(faults.gate("create snapshot"), store.create(meta))),
  delete: (id) => Effect.zipRight(faults.gate("delete snapshot"), store.delete(id))
})

/** A log store and a stable store whose next `n` writes (counted together) fail; `faults` re-arms them. */
export const failing = (
  stores: { readonly logs: LogStore; readonly stable: StableStore },
  n: number
): Effect.Effect<{ readonly logs: LogStore; readonly stable: StableStore; readonly faults: WriteFaults }> =>
  Effect.map(makeWriteFaults(n), (faults) => ({
    logs: logStore(stores.logs, faults),
    stable: stableStore(stores.stable, faults),
    faults
  }))

/**
 * Wraps the `LogStore`, `StableStore` and `SnapshotStore` a layer provides behind `faults`: put it between a node
 * and its storage layer (`Layer.provide(FaultyStores.layer(faults))` over the storage).
 */
export const layer = (
  faults: WriteFaults
): Layer.Layer<LogStore | StableStore | SnapshotStore, never, LogStore | StableStore | SnapshotStore> =>
  Layer.effectContext(Effect.gen(function*() {
    const logs = yield* LogStore
    const stable = yield* StableStore
    const snapshots = yield* SnapshotStore
    return Context.make(LogStore, logStore(logs, faults)).pipe(
      Context.add(StableStore, stableStore(stable, faults)),
      Context.add(SnapshotStore, snapshotStore(snapshots, faults))
    )
  }))
