/**
 * Heartbeat rounds (hashicorp's verifyLeader): a leader confirms it still
 * leads by a round of heartbeats answered by a quorum of voters. Everything
 * that needs a confirmation while the leader's round is open joins it —
 * `verifyLeader` calls and linearizable reads (read.ts) — so concurrent
 * callers share one round. A round waits on the replications of the voters;
 * the first heartbeat fiber that sends it closes it (replication.ts takes it
 * with `takeVerifiers`): only an answer to a heartbeat sent after a caller
 * arrived may confirm that caller, so one arriving later joins the next round.
 *
 * One round is out at a time, and it asks only as many voters as its quorum
 * needs (those idle and heard from most recently first): under a stream of
 * reads each round then carries more of them, and a 3-node leader sends one
 * heartbeat per round, not two. The round is every voter's to answer, so a
 * voter that was not asked takes it with its next heartbeat (its ticker fires
 * every tenth to fifth of a heartbeat timeout) if the ones asked are slow.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Configuration from "../Configuration.js"
import { LeadershipLost, type NotLeader, type RaftShutdown } from "../RaftError.js"
import { Future } from "./future.js"
import type { LeaderState, Replication, RoundFuture, VerifyFuture } from "./leaderState.js"
import { type NodeState, notLeaderError, quorumOf } from "./state.js"

/** Completes a round once, and forgets it. */
export const settleVerify = (
  verifier: VerifyFuture,
  exit: Exit.Exit<void, NotLeader | LeadershipLost | RaftShutdown>
): void => {
  if (verifier.done) return
  verifier.done = true
  verifier.pending.delete(verifier)
  verifier.deferred.done(exit)
  verifier.onSettle?.()
}

/** Fails every round waiting on `replication` (its leader stepped down). */
export const notifyVerifiers = (replication: Replication, stillLeader: boolean) => {
  if (replication.verifiers.size === 0) return
  const waiting = [...replication.verifiers]
  replication.verifiers.clear()
  voteVerifiers(waiting, stillLeader)
}

/** Counts one voter's answer toward each of `waiting`; a deposed leader fails them all. */
export const voteVerifiers = (waiting: ReadonlyArray<VerifyFuture>, stillLeader: boolean) => {
  for (const verifier of waiting) {
    if (verifier.done) continue
    if (!stillLeader) {
      settleVerify(verifier, Exit.fail(new LeadershipLost()))
    } else if (++verifier.votes >= verifier.quorum) {
      settleVerify(verifier, Exit.void)
    }
  }
}

/**
 * The rounds a heartbeat about to be sent to `replication` answers. The open round closes with it: a caller that
 * arrives from now on waits for the next round. A heartbeat fiber, right before it sends.
 */
export const takeVerifiers = (ls: LeaderState, replication: Replication): ReadonlyArray<VerifyFuture> | undefined => {
  if (replication.verifiers.size === 0) return undefined
  const taken = [...replication.verifiers]
  replication.verifiers.clear()
  if (ls.openRound !== undefined && taken.includes(ls.openRound)) {
    ls.roundInFlight = ls.openRound
    ls.openRound = undefined
  }
  return taken
}

/**
 * The outcome of the open heartbeat round of `ls`, which the caller joins; when none is open, a round starts, and
 * its heartbeats go out now, or when the round already out settles. Synchronous: run loop, or a reader while it waits.
 */
export const joinRound = (node: NodeState, ls: LeaderState): RoundFuture => {
  const open = ls.openRound
  if (open !== undefined && !open.done) return open.deferred
  const configuration = node.latestConfiguration
  const round: VerifyFuture = {
    deferred: new Future(),
    quorum: quorumOf(configuration),
    pending: ls.verifiers,
    votes: Configuration.isVoter(configuration, node.localId) ? 1 : 0,
    done: false,
    onSettle: undefined
  }
  if (round.votes >= round.quorum) {
    // Alone in the configuration: nobody else can lead.
    round.done = true
    round.deferred.done(Exit.void)
    return round.deferred
  }
  ls.openRound = round
  ls.verifiers.add(round)
  for (const replication of ls.replications.values()) {
    if (Configuration.isVoter(configuration, replication.peer.id)) replication.verifiers.add(round)
  }
  round.onSettle = () => {
    if (ls.roundInFlight === round) ls.roundInFlight = undefined
    const next = ls.openRound
    if (next !== undefined && !next.done && ls.roundInFlight === undefined) sendRound(node, ls, next)
  }
  if (ls.roundInFlight === undefined || ls.roundInFlight.done) sendRound(node, ls, round)
  return round.deferred
}

/**
 * Asks for `round`'s heartbeats: from as many voters as its quorum still needs, those idle and heard from most
 * recently first. The others have the round too, and take it with their next heartbeat (at most a tenth to a fifth
 * of a heartbeat timeout away), should these be slow to answer.
 */
const sendRound = (node: NodeState, ls: LeaderState, round: VerifyFuture): void => {
  const configuration = node.latestConfiguration
  const voters = [...ls.replications.values()].filter((replication) =>
    Configuration.isVoter(configuration, replication.peer.id) && replication.verifiers.has(round)
  )
  voters.sort((a, b) => (a.heartbeating === b.heartbeating ? b.lastContact - a.lastContact : a.heartbeating ? 1 : -1))
  for (const replication of voters.slice(0, Math.max(0, round.quorum - round.votes))) replication.heartbeatNow.unsafeOpen()
}

/** `verifyLeader`: joins the leader's heartbeat round. Synchronous: run loop, or the caller while it waits. */
export const verifyNow = (node: NodeState, deferred: Future<void, NotLeader | LeadershipLost | RaftShutdown>): void => {
  const ls = node.leader
  if (ls === undefined) deferred.done(Exit.fail(notLeaderError(node)))
  else joinRound(node, ls).listen((exit) => deferred.done(exit))
}

/** The `Verify` event. Run loop. */
export const handleVerify = (node: NodeState, deferred: Future<void, NotLeader | LeadershipLost | RaftShutdown>) =>
  Effect.sync(() => verifyNow(node, deferred))
