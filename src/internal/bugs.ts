/**
 * Deliberate bugs, for proving that the simulator catches them. Each switch
 * breaks one Raft rule; all are off unless a test provides `InjectedBugs`.
 * Never set them outside tests.
 * @internal
 */
import * as Context from "effect/Context"

/** Which rules to break. */
export interface Bugs {
  /** The leader commits what it alone stored, without waiting for a quorum. */
  readonly commitWithoutQuorum?: boolean | undefined
  /** A vote is granted but never written to the StableStore (so a restart forgets it). */
  readonly voteWithoutPersist?: boolean | undefined
  /** Entries of earlier terms are committed by counting replicas (breaks Raft §5.4.2). */
  readonly commitPreviousTermsByCounting?: boolean | undefined
  /** A follower overwrites conflicting entries but keeps the rest of its old suffix. */
  readonly keepConflictingSuffix?: boolean | undefined
  /** The leader counts itself toward commitment before its own write of the entries is durable. */
  readonly leaderCountsUnwritten?: boolean | undefined
}

/** The bugs a node is built with: none by default. */
export class InjectedBugs extends Context.Reference<InjectedBugs>()("effect-raft/InjectedBugs", {
  defaultValue: (): Bugs => ({})
}) {}
