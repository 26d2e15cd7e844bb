/**
 * Linearizable reads without a log write per read: the ReadIndex of the Raft
 * thesis (§6.4). Before a leader serves a read from its local state machine it
 * 1. makes sure it has committed an entry of its own term (a new leader's
 *    commit index may lag behind what earlier leaders committed until its
 *    no-op commits): once per term, with a `barrier`;
 * 2. records its commit index as the read index;
 * 3. confirms it is still the leader with a heartbeat round (`verifyLeader`)
 *    started after that, and that its term has not changed meanwhile;
 * 4. waits until its applied index reaches the read index.
 * The state it then reads reflects every write acknowledged before the read
 * began, so the read may be placed at the moment the heartbeat round
 * confirmed leadership.
 *
 * `verifyLeader` counts only answers to heartbeats sent after it began, so an
 * answer that predates a newer leader cannot confirm a deposed one.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Raft from "../Raft.js"
import { ApplyTimeout, LeadershipLost, NotLeader, type RaftShutdown } from "../RaftError.js"

/** What can stop a linearizable read; none of them has side effects. */
export type ReadIndexError = Raft.ApplyError | NotLeader | LeadershipLost | RaftShutdown | ApplyTimeout

/** A read fence over one node. */
export interface ReadIndex {
  /**
   * Succeeds, with the read index, once this node is a confirmed leader whose state machine has applied every
   * entry committed before the call; fails with `NotLeader` (and who leads) on a follower.
   */
  readonly fence: Effect.Effect<number, ReadIndexError>
}

/** Options of a read fence. */
export interface Options {
  /** How long a fence may take in all (barrier, heartbeat round, apply wait). Default 5 s. */
  readonly timeout?: Duration.DurationInput | undefined
}

const notLeader = (raft: Raft.Raft) =>
  Effect.flatMap(raft.leader, (leader) =>
    Effect.fail(
      leader._tag === "Some"
        ? new NotLeader({ leaderId: leader.value.id, leaderAddress: leader.value.address })
        : new NotLeader({})
    ))

/** Waits (polling every millisecond) until `raft` has applied up to `index`. */
const awaitApplied = (raft: Raft.Raft, index: number): Effect.Effect<void> =>
  Effect.flatMap(raft.appliedIndex, (applied) =>
    applied >= index ? Effect.void : raft.appliedIndex.pipe(
      Effect.repeat({ schedule: Schedule.spaced("1 millis"), until: (now) => now >= index }),
      Effect.asVoid
    ))

/** A read fence over `raft`. */
export const make = (raft: Raft.Raft, options: Options = {}): ReadIndex => {
  const timeoutMillis = Duration.toMillis(Duration.decode(options.timeout ?? "5 seconds"))
  /** The term in which this node, as leader, has seen an entry of its own term commit. */
  let readyTerm = -1
  const fence: Effect.Effect<number, ReadIndexError> = Effect.gen(function*() {
    let stats = yield* raft.stats
    if (stats.state !== "Leader") return yield* notLeader(raft)
    const term = stats.term
    if (readyTerm !== term) {
      yield* raft.barrier({ timeout: Duration.millis(timeoutMillis) })
      stats = yield* raft.stats
      // The barrier committed in `term` only if the node still leads in it.
      if (stats.term !== term || stats.state !== "Leader") return yield* new LeadershipLost()
      readyTerm = term
    }
    const readIndex = stats.commitIndex
    yield* raft.verifyLeader
    const after = yield* raft.stats
    if (after.term !== term || after.state !== "Leader") return yield* new LeadershipLost()
    yield* awaitApplied(raft, readIndex)
    return readIndex
  }).pipe(
    Effect.timeoutFail({ duration: Duration.millis(timeoutMillis), onTimeout: () => new ApplyTimeout({ timeoutMillis }) })
  )
  return { fence }
}
