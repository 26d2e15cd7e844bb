/**
 * The replicated state machine the user provides. The node's FSM runner calls
 * it with committed `Command` entries, in log order, in batches when it can,
 * from a single fiber: an implementation needs no locking. What `apply`
 * returns is handed back to the caller of `Raft.apply` on the leader.
 *
 * `apply` cannot fail: a command the machine rejects should produce a response
 * that says so. A defect (a thrown exception, `Effect.die`) stops the node,
 * because a replica that skipped an entry would silently diverge.
 *
 * Snapshots (hashicorp's `FSMSnapshot`): `snapshot` runs on the FSM fiber,
 * between two applies, and must capture the state as it is then; the runtime
 * then reads the returned `data` stream into the snapshot store from another
 * fiber while `apply` goes on, and calls `release` when it is done (persisted
 * or abandoned). So `data` must not see later applies: copy, or use an
 * immutable structure. `restore` replaces the whole state with a snapshot's
 * bytes; it is called on the FSM fiber, with nothing applied concurrently.
 * Snapshot bytes are a stream end to end: neither side needs the whole state
 * in one buffer, nor its size up front.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import type { Log } from "./Log.js"
import { FsmError, type StorageError } from "./RaftError.js"

/** A point-in-time capture of the state, read once by the runtime. */
export interface FsmSnapshot {
  /** The state's bytes, in chunks. */
  readonly data: Stream.Stream<Uint8Array, FsmError>
  /** Frees what the capture holds; called once, after `data` was persisted or abandoned. */
  readonly release: Effect.Effect<void>
}

/** The state machine: what committed commands do. */
export interface Fsm {
  /** Applies one committed command; the result is the response of its `Raft.apply`. */
  readonly apply: (log: Log) => Effect.Effect<unknown>
  /** Applies committed commands in order; returns one response per entry. */
  readonly applyBatch: (logs: ReadonlyArray<Log>) => Effect.Effect<ReadonlyArray<unknown>>
  /** Captures the state as of the last applied entry. */
  readonly snapshot: Effect.Effect<FsmSnapshot, FsmError>
  /**
   * Replaces the whole state with the one `data` encodes (as `snapshot` wrote it). All or nothing: on failure the
   * state must be as it was, since the node then refuses the snapshot and goes on with its state. The stream fails
   * at its end when the stored bytes do not match their checksum: replace the state only once it has ended.
   */
  readonly restore: (data: Stream.Stream<Uint8Array, StorageError>) => Effect.Effect<void, FsmError | StorageError>
}

/** The tag of the user's state machine. */
export const Fsm: Context.Tag<Fsm, Fsm> = Context.GenericTag<Fsm>("effect-raft/Fsm")

const noSnapshots = Effect.fail(
  new FsmError({ operation: "snapshot", reason: "this state machine does not take snapshots" })
)
const noRestore = () =>
  Effect.fail(new FsmError({ operation: "restore", reason: "this state machine cannot restore snapshots" }))

/**
 * Builds an `Fsm`. Without `applyBatch`, batches are applied one entry after another. Without `snapshot` and
 * `restore`, snapshots fail with `FsmError`: the node keeps working but never compacts its log, and cannot be
 * brought up to date by InstallSnapshot.
 */
export const make = (impl: {
  readonly apply: (log: Log) => Effect.Effect<unknown>
  readonly applyBatch?: ((logs: ReadonlyArray<Log>) => Effect.Effect<ReadonlyArray<unknown>>) | undefined
  readonly snapshot?: Effect.Effect<FsmSnapshot, FsmError> | undefined
  readonly restore?:
    | ((data: Stream.Stream<Uint8Array, StorageError>) => Effect.Effect<void, FsmError | StorageError>)
    | undefined
}): Fsm => ({
  apply: impl.apply,
  applyBatch: impl.applyBatch ?? ((logs) => Effect.forEach(logs, impl.apply)),
  snapshot: impl.snapshot ?? noSnapshots,
  restore: impl.restore ?? noRestore
})

/** Collects a snapshot stream into one buffer (for small states, e.g. `fromFunction`'s). */
export const collect = <E>(data: Stream.Stream<Uint8Array, E>): Effect.Effect<Uint8Array, E> =>
  Stream.runFold(data, [] as Array<Uint8Array>, (chunks, chunk) => {
    chunks.push(chunk)
    return chunks
  }).pipe(Effect.map((chunks) => {
    let size = 0
    for (const chunk of chunks) size += chunk.length
    const out = new Uint8Array(size)
    let at = 0
    for (const chunk of chunks) {
      out.set(chunk, at)
      at += chunk.length
    }
    return out
  }))

/**
 * Builds an `Fsm` from a synchronous function, applied to a whole batch in one step. With `state`, it also takes
 * snapshots: `save` returns the whole state as bytes (called on the FSM fiber, so it sees a consistent state) and
 * `load` replaces the state with them.
 */
export const fromFunction = (
  apply: (log: Log) => unknown,
  state?: {
    readonly save: () => Uint8Array
    readonly load: (bytes: Uint8Array) => void
  }
): Fsm => ({
  apply: (log) => Effect.sync(() => apply(log)),
  applyBatch: (logs) =>
    Effect.sync(() => {
      const out = new Array<unknown>(logs.length)
      for (let i = 0; i < logs.length; i++) out[i] = apply(logs[i]!)
      return out
    }),
  snapshot: state === undefined ? noSnapshots : Effect.sync(() => {
    const bytes = state.save()
    return { data: Stream.succeed(bytes), release: Effect.void }
  }),
  restore: state === undefined
    ? noRestore
    : (data) =>
      Effect.flatMap(collect(data), (bytes) =>
        Effect.try({
          try: () => state.load(bytes),
          catch: (cause) =>
            new FsmError({ operation: "restore", reason: `the snapshot could not be loaded: ${String(cause)}`, cause })
        }))
})

/** Provides an `Fsm`. */
export const layer = (fsm: Fsm): Layer.Layer<Fsm> => Layer.succeed(Fsm, fsm)
