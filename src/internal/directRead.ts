/**
 * Reads without a fiber, for the key-value service this package ships (`src/kv/HttpFront.ts`), whose GET would
 * otherwise pay a fiber, its scheduling and an asynchronous resume per read around a few synchronous steps. The
 * `Raft` service of `Raft.make` carries them under a symbol its public type does not show; a `Raft` built another way
 * (a test double, a wrapper) has none, and its callers take the public `readIndex`.
 * @internal
 */
import type * as Exit from "effect/Exit"
import * as Predicate from "effect/Predicate"
import type { ReadMode } from "../RaftConfig.js"
import type { ReadError } from "../RaftError.js"

export const DirectReadId: unique symbol = Symbol.for("effect-raft/internal/DirectRead")

export interface DirectRead {
  /** Whether the node has shut down (its state is no longer kept current). */
  readonly isShutdown: () => boolean
  /**
   * A linearizable read: `read.ts`'s `leaderReadListen` on the leader, `followerReadListen` on a follower with a
   * ReadIndex request in flight; undefined, having done nothing, otherwise (the caller takes `readIndex`).
   */
  readonly read: (
    mode: ReadMode | undefined,
    callback: (exit: Exit.Exit<number, ReadError>) => void
  ) => (() => void) | undefined
}

/** The direct reads `raft` carries, if it was built by `Raft.make`. */
export const directReadOf = (raft: object): DirectRead | undefined =>
  Predicate.hasProperty(raft, DirectReadId) ? raft[DirectReadId] as DirectRead : undefined

/** Gives `raft` the direct reads `read`, hidden from enumeration and from its type. */
export const attachDirectRead = <A extends object>(raft: A, read: DirectRead): A =>
  Object.defineProperty(raft, DirectReadId, { value: read, enumerable: false })
