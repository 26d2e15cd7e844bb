/**
 * `verifyLeader` (hashicorp's verifyLeader): a leader confirms it still leads
 * by a round of heartbeats answered by a quorum of voters. Each verification
 * waits on the replications of the voters; only an answer to a heartbeat sent
 * after it began may confirm it (replication.ts's heartbeat fiber takes the
 * waiting verifications when it sends).
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Configuration from "../Configuration.js"
import { LeadershipLost, type NotLeader, type RaftShutdown } from "../RaftError.js"
import type { Future } from "./future.js"
import type { Replication, VerifyFuture } from "./leaderState.js"
import { type NodeState, notLeaderError, quorumOf } from "./state.js"

/** Completes a verification once, and forgets it. */
export const settleVerify = (
  verifier: VerifyFuture,
  exit: Exit.Exit<void, NotLeader | LeadershipLost | RaftShutdown>
): void => {
  if (verifier.done) return
  verifier.done = true
  verifier.pending.delete(verifier)
  verifier.deferred.done(exit)
}

/** Fails every verification waiting on `replication` (its leader stepped down). */
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

/** The `Verify` event: starts a verification and asks every voter's heartbeat fiber to send now. Run loop. */
export const handleVerify = (node: NodeState, deferred: Future<void, NotLeader | LeadershipLost | RaftShutdown>) =>
  Effect.sync(() => {
    const ls = node.leader
    if (ls === undefined) {
      deferred.done(Exit.fail(notLeaderError(node)))
      return
    }
    const configuration = node.latestConfiguration
    const verifier: VerifyFuture = {
      deferred,
      quorum: quorumOf(configuration),
      pending: ls.verifiers,
      votes: Configuration.isVoter(configuration, node.localId) ? 1 : 0,
      done: false
    }
    if (verifier.votes >= verifier.quorum) {
      deferred.done(Exit.void)
      return
    }
    ls.verifiers.add(verifier)
    for (const replication of ls.replications.values()) {
      if (!Configuration.isVoter(configuration, replication.peer.id)) continue
      replication.verifiers.add(verifier)
      replication.heartbeatNow.unsafeOpen()
    }
  })
