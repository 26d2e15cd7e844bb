/**
 * Log stores whose writes are done when the call returns: the in-memory
 * store's, as durable as it gets, in one synchronous step. The engine's fast
 * path uses this to store a follower's entries in the fiber, or the socket
 * callback, that received them, instead of handing them to the run loop
 * (follower.ts `appendNow`).
 *
 * A store registers its synchronous write keyed by the store object, together
 * with the `storeLogs` it stands for, instead of carrying it as a property. A
 * wrapper made by spreading a store (`{ ...store, storeLogs: instrumented }`)
 * is another object, and a store whose `storeLogs` was replaced in place (a
 * test's injected disk failure) no longer has the registered one: neither gets
 * a way around its own `storeLogs`.
 * @internal
 */
import type * as Log from "../Log.js"

interface Registered {
  /** Stores `logs` as `storeLogs` does; nothing can fail. */
  readonly write: (logs: ReadonlyArray<Log.Log>) => void
  /** The `storeLogs` that `write` stands for. */
  readonly storeLogs: unknown
}

const registry = new WeakMap<object, Registered>()

/** Registers `write` as the synchronous form of `store.storeLogs`; returns `store`. */
export const registerSyncLog = <S extends { readonly storeLogs: unknown }>(
  store: S,
  write: (logs: ReadonlyArray<Log.Log>) => void
): S => {
  registry.set(store, { write, storeLogs: store.storeLogs })
  return store
}

/** The synchronous write of `store`, when it registered one and still has the `storeLogs` it stands for. */
export const syncWriteOf = (
  store: { readonly storeLogs: unknown }
): ((logs: ReadonlyArray<Log.Log>) => void) | undefined => {
  const registered = registry.get(store)
  return registered !== undefined && registered.storeLogs === store.storeLogs ? registered.write : undefined
}
