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
  /** A restarted node forgets the vote it stored, so it may vote twice in one term. */
  readonly forgetVoteAtStart?: boolean | undefined
  /** The vote's up-to-date check compares only the last indexes, not the last terms first. */
  readonly voteUpToDateByIndexOnly?: boolean | undefined
  /** The vote's up-to-date check compares only the last terms, not the indexes when they are equal. */
  readonly voteUpToDateByTermOnly?: boolean | undefined
  /** A follower told its leader's connection closed stops counting on that leader at once, not after a lease. */
  readonly leaderLostAtOnce?: boolean | undefined
  /** A vote is granted to a candidate of a term older than the voter's. */
  readonly voteInStaleTerm?: boolean | undefined
  /** A follower accepts AppendEntries from a leader of a term older than its own. */
  readonly acceptStaleAppend?: boolean | undefined
  /** A follower accepts entries whose previous entry it holds with another term. */
  readonly skipPrevTermCheck?: boolean | undefined
  /**
   * A follower's AppendEntries handled at once, into a store that writes synchronously (follower.ts `appendNow`),
   * is accepted without comparing the previous entry's term.
   */
  readonly appendNowSkipsPrevTermCheck?: boolean | undefined
  /**
   * Committed entries applied at once by whoever committed them, when the state machine's apply is synchronous (fsm.ts
   * `handToFsm`), leave the applied configuration as it was: snapshots then record an older configuration.
   */
  readonly fsmNowSkipsConfiguration?: boolean | undefined
  /** A follower accepts entries that start past the end of its log. */
  readonly acceptPastLogEnd?: boolean | undefined
  /**
   * A follower takes the leader's commit index (up to its own last entry) before it checks its log against the
   * leader's: also from an AppendEntries it then refuses, and over a suffix it is about to truncate.
   */
  readonly commitBeforeLogCheck?: boolean | undefined
  /** The leader records a follower's acknowledgement as a match of its whole log, not of what it sent. */
  readonly matchBeyondAcknowledged?: boolean | undefined
  /** The leader counts non-voters toward commitment. */
  readonly countNonVoters?: boolean | undefined
  /** The leader keeps counting voters removed from the configuration toward commitment. */
  readonly countRemovedVoters?: boolean | undefined
  /** A follower installs a leader's snapshot older than what it has already applied. */
  readonly installOverNewer?: boolean | undefined
  /** Compaction deletes entries up to the trailing window whether or not a snapshot covers them. */
  readonly compactPastSnapshot?: boolean | undefined
  /** The leader starts a membership change before the previous one committed. */
  readonly concurrentMembershipChanges?: boolean | undefined
  /** Leadership transfer sends TimeoutNow without waiting for the target to catch up. */
  readonly transferToLaggard?: boolean | undefined
  /** The leader's lease is not shortened by the clock drift margin (`maxClockDrift`). */
  readonly leaseIgnoresDrift?: boolean | undefined
  /** The leader answers a read index without confirming its leadership (no heartbeat round, no lease). */
  readonly readWithoutConfirm?: boolean | undefined
  /** A follower serves a read at the read index its leader gave without waiting until its FSM has applied it. */
  readonly followerReadWithoutApply?: boolean | undefined
}

/** The bugs a node is built with: none by default. */
export class InjectedBugs extends Context.Reference<InjectedBugs>()("effect-raft/InjectedBugs", {
  defaultValue: (): Bugs => ({})
}) {}
