/**
 * Leadership transfer (hashicorp's leadershipTransfer). On the leader: stop
 * taking entries, bring the target up to date, send it TimeoutNow; the
 * transfer ends when this leader is deposed (role.ts completes it), or fails
 * after an election timeout. On the target: campaign at once, with the
 * transfer flag that makes voters grant despite a live leader.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Configuration from "../Configuration.js"
import { LeadershipTransferFailed, LeadershipTransferInProgress, type TransferError } from "../RaftError.js"
import type { TimeoutNowRequest } from "../Rpc.js"
import { becomeCandidate } from "./election.js"
import type { Future } from "./future.js"
import { setCurrentTerm } from "./hardState.js"
import type { Replication } from "./leaderState.js"
import { logEvent } from "./logs.js"
import { processMembership } from "./membership.js"
import { followTerm } from "./role.js"
import { emit, forkRole, type NodeState, notLeaderError } from "./state.js"

/** The `Transfer` event: starts a transfer to `target`, or to the most up-to-date voter. Run loop. */
export const handleTransfer = (
  node: NodeState,
  target: { readonly id: string; readonly address: string } | undefined,
  deferred: Future<void, TransferError>
) =>
  Effect.gen(function*() {
    const ls = node.leader
    if (ls === undefined) return deferred.done(Exit.fail(notLeaderError(node)))
    if (ls.transfer !== undefined) return deferred.done(Exit.fail(new LeadershipTransferInProgress()))
    let replication: Replication | undefined
    if (target !== undefined) {
      if (target.id === node.localId) {
        return deferred.done(Exit.fail(new LeadershipTransferFailed({ reason: "the target is this leader" })))
      }
      replication = ls.replications.get(target.id)
      if (replication === undefined || !Configuration.isVoter(node.latestConfiguration, target.id)) {
        return deferred.done(
          Exit.fail(new LeadershipTransferFailed({ reason: `${target.id} is not a voter of the configuration` }))
        )
      }
    } else {
      for (const candidate of ls.replications.values()) {
        if (!Configuration.isVoter(node.latestConfiguration, candidate.peer.id)) continue
        if (replication === undefined || candidate.matchIndex > replication.matchIndex) replication = candidate
      }
      if (replication === undefined) {
        return deferred.done(Exit.fail(new LeadershipTransferFailed({ reason: "no other voter to transfer to" })))
      }
    }
    const chosen = replication
    // The address the caller gave, as hashicorp's leadershipTransferToServer uses it; else the configuration's.
    const address = target?.address ?? chosen.peer.address
    ls.transfer = { target: chosen.peer.id, deferred }
    // The target's voters will grant it votes despite hearing from this leader: its lease means nothing now.
    ls.transferred = true
    const myEpoch = node.epoch
    const term = node.currentTerm
    yield* logEvent(node, `transferring leadership to ${chosen.peer.id}`, { peer: chosen.peer.id })
    const tick = Math.max(1, Math.floor(node.config.commitTimeoutMillis / 5))
    yield* forkRole(
      node,
      Effect.gen(function*() {
        while (chosen.matchIndex < node.lastLogIndex && node.bugs.transferToLaggard !== true) {
          chosen.trigger.unsafeOpen()
          yield* Effect.sleep(tick)
        }
        const response = yield* node.transport.timeoutNow(chosen.peer.id, address, {
          _tag: "TimeoutNowRequest",
          term,
          leaderId: node.localId,
          leaderAddress: node.localAddress,
          clusterId: node.clusterId
        })
        if (!response.success) yield* Effect.logWarning(`${chosen.peer.id} refused to take over`)
        if (response.term > term) emit(node, { _tag: "StepDown", epoch: myEpoch, term: response.term })
        yield* Effect.never
      }).pipe(
        Effect.catchAll((error) => Effect.logWarning("leadership transfer failed", error)),
        Effect.timeout(node.config.electionTimeoutMillis),
        Effect.ignore,
        Effect.andThen(Effect.sync(() => emit(node, { _tag: "TransferTimeout", epoch: myEpoch })))
      )
    )
  })

/** The `TransferTimeout` event: no new leader in time; this one keeps leading and takes entries again. Run loop. */
export const handleTransferTimeout = (node: NodeState) =>
  Effect.gen(function*() {
    const ls = node.leader
    if (ls === undefined || ls.transfer === undefined) return
    const transfer = ls.transfer
    ls.transfer = undefined
    yield* Effect.logWarning(`no new leader within the election timeout, leadership stays here`)
    transfer.deferred.done(
      Exit.fail(new LeadershipTransferFailed({ reason: `${transfer.target} did not take over in time` }))
    )
    yield* processMembership(node)
  })

/** The `TimeoutNow` event, target side: campaign at once; voters grant despite a live leader. Run loop. */
export const handleTimeoutNow = (node: NodeState, request: TimeoutNowRequest) =>
  Effect.gen(function*() {
    const response = { _tag: "TimeoutNowResponse" as const, term: node.currentTerm, success: false }
    if (request.term < node.currentTerm) return response
    if (!Configuration.isVoter(node.latestConfiguration, node.localId)) return response
    yield* logEvent(node, `asked by ${request.leaderId} to take over leadership, campaigning`, { leader: request.leaderId })
    // A (stale) leader asked to campaign leaves its leadership properly first: its writes end, its futures fail.
    if (node.role === "Leader") yield* followTerm(node, request.term)
    else if (request.term > node.currentTerm) yield* setCurrentTerm(node, request.term)
    yield* becomeCandidate(node, true)
    return { ...response, success: true }
  })
