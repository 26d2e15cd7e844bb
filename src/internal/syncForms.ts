/**
 * The synchronous forms of two effectful calls, for the engine's fast paths:
 * a log store's `storeLogs` whose writes are done when the call returns (the
 * in-memory store's), and a state machine's `applyBatch` that is a plain
 * function (`Fsm.fromFunction`'s). With them a follower's entries are stored
 * by the fiber, or the socket callback, that received them (follower.ts
 * `appendNow`), and committed entries are applied by whoever committed them
 * while the FSM runner waits (fsm.ts `handToFsm`), without a hand-off.
 *
 * The form is registered keyed by the object, together with the effectful
 * call it stands for, instead of carried as a property. A wrapper made by
 * spreading (`{ ...store, storeLogs: instrumented }`, `{ ...fsm, applyBatch:
 * recording }`) is another object, and one whose call was replaced in place (a
 * test's injected disk failure) no longer has the registered one: neither gets
 * a way around its own call.
 * @internal
 */
import type * as Log from "../Log.js"

/** A registry of one call's synchronous form, keyed by the object that has the call as its `key`. */
const registryOf = <K extends string, F>(key: K) => {
  const registry = new WeakMap<object, { readonly run: F; readonly standsFor: unknown }>()
  return {
    /** Registers `run` as the synchronous form of `owner[key]`; returns `owner`. */
    register: <S extends { readonly [k in K]: unknown }>(owner: S, run: F): S => {
      registry.set(owner, { run, standsFor: owner[key] })
      return owner
    },
    /** The synchronous form of `owner[key]`, when one was registered and `owner` still has the call it stands for. */
    of: (owner: { readonly [k in K]: unknown }): F | undefined => {
      const registered = registry.get(owner)
      return registered !== undefined && registered.standsFor === owner[key] ? registered.run : undefined
    }
  }
}

/** Stores `logs` as `storeLogs` does; nothing can fail. */
export type SyncWrite = (logs: ReadonlyArray<Log.Log>) => void

/**
 * Applies committed commands as `applyBatch` does, one response per entry, in order. It may throw (the user's
 * function): the caller treats that as the FSM runner treats a defect.
 */
export type SyncApply = (logs: ReadonlyArray<Log.Log>) => ReadonlyArray<unknown>

const writes = registryOf<"storeLogs", SyncWrite>("storeLogs")
const applies = registryOf<"applyBatch", SyncApply>("applyBatch")

/** Registers `write` as the synchronous form of `store.storeLogs`; returns `store`. */
export const registerSyncLog = writes.register
/** The synchronous write of `store`, when it registered one and still has the `storeLogs` it stands for. */
export const syncWriteOf = writes.of
/** Registers `apply` as the synchronous form of `fsm.applyBatch`; returns `fsm`. */
export const registerSyncApply = applies.register
/** The synchronous apply of `fsm`, when it registered one and still has the `applyBatch` it stands for. */
export const syncApplyOf = applies.of
