/**
 * The replicated state machine the user provides. The node's FSM runner calls
 * it with committed `Command` entries, in log order, in batches when it can,
 * from a single fiber: an implementation needs no locking. What `apply`
 * returns is handed back to the caller of `Raft.apply` on the leader.
 *
 * `apply` cannot fail: a command the machine rejects should produce a response
 * that says so. A defect (a thrown exception, `Effect.die`) stops the node,
 * because a replica that skipped an entry would silently diverge.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Log } from "./Log.js"

/** The state machine: what committed commands do. */
export interface Fsm {
  /** Applies one committed command; the result is the response of its `Raft.apply`. */
  readonly apply: (log: Log) => Effect.Effect<unknown>
  /** Applies committed commands in order; returns one response per entry. */
  readonly applyBatch: (logs: ReadonlyArray<Log>) => Effect.Effect<ReadonlyArray<unknown>>
}

/** The tag of the user's state machine. */
export const Fsm: Context.Tag<Fsm, Fsm> = Context.GenericTag<Fsm>("effect-raft/Fsm")

/** Builds an `Fsm`; without `applyBatch`, batches are applied one entry after another. */
export const make = (impl: {
  readonly apply: (log: Log) => Effect.Effect<unknown>
  readonly applyBatch?: ((logs: ReadonlyArray<Log>) => Effect.Effect<ReadonlyArray<unknown>>) | undefined
}): Fsm => ({
  apply: impl.apply,
  applyBatch: impl.applyBatch ?? ((logs) => Effect.forEach(logs, impl.apply))
})

/** Builds an `Fsm` from a synchronous function, applied to a whole batch in one step. */
export const fromFunction = (apply: (log: Log) => unknown): Fsm => ({
  apply: (log) => Effect.sync(() => apply(log)),
  applyBatch: (logs) =>
    Effect.sync(() => {
      const out = new Array<unknown>(logs.length)
      for (let i = 0; i < logs.length; i++) out[i] = apply(logs[i]!)
      return out
    })
})

/** Provides an `Fsm`. */
export const layer = (fsm: Fsm): Layer.Layer<Fsm> => Layer.succeed(Fsm, fsm)
