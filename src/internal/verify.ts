/**
 * Heartbeat rounds (hashicorp's verifyLeader): a leader confirms it still
 * leads by a round of heartbeats answered by a quorum of voters. Everything
 * that needs a confirmation while the leader's round is open joins it —
 * `verifyLeader` calls and linearizable reads (read.ts) — so concurrent
 * callers share one round. A round waits on the replications of the voters;
 * the first heartbeat fiber that sends it closes it (replication.ts takes it
 * with `takeVerifiers`): only an answer to a heartbeat sent after a caller
 * arrived may confirm that caller, so one arriving later joins the next round.
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
  if (ls.openRound !== undefined && taken.includes(ls.openRound)) ls.openRound = undefined
  return taken
}

/**
 * The outcome of the open heartbeat round of `ls`, which the caller joins; when none is open, a round starts now
 * and every voter's heartbeat fiber is asked to send at once. Synchronous: run loop, or a reader while it waits.
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
    done: false
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
    if (!Configuration.isVoter(configuration, replication.peer.id)) continue
    replication.verifiers.add(round)
    replication.heartbeatNow.unsafeOpen()
  }
  return round.deferred
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
