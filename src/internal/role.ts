/**
 * Changes of role. Each role has a scope: the follower's heartbeat timer, the
 * candidate's vote requests and election timer, the leader's replication and
 * lease fibers are forked into it, and a change of role closes it,
 * interrupting every one of them (hashicorp/raft's stopCh, done by
 * interruption). A new epoch goes with the new scope, so events a closed
 * role's fibers sent late are ignored. Becoming a candidate or a leader is in
 * election.ts and leader.ts; leaving the leader role is here.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as MetricLabel from "effect/MetricLabel"
import * as Random from "effect/Random"
import * as Scope from "effect/Scope"
import { LeadershipLost, LeadershipTransferFailed } from "../RaftError.js"
import { adoptCluster, setCurrentTerm } from "./hardState.js"
import { awaitLeaderWrites } from "./leaderLog.js"
import { logEvent } from "./logs.js"
import { reportOldestLogAge } from "./logAge.js"
import { metrics } from "./metrics.js"
import { forgetRecent } from "./recentEntries.js"
import { emit, forkRole, type NodeState, publish, reloadable } from "./state.js"
import { endSpan } from "./tracing.js"
import type { RaftState } from "./types.js"
import { settleVerify } from "./verify.js"

/** Records the leader this node knows of, and tells `observe` when it changed. Run loop. */
export const setLeader = (node: NodeState, id: string | undefined, address: string | undefined) =>
  Effect.suspend(() => {
    if (id === node.leaderId && address === node.leaderAddress) return Effect.void
    node.leaderId = id
    node.leaderAddress = address
    const published = publish(node, { _tag: "LeaderChange", leaderId: id, term: node.currentTerm })
    return id === undefined || id === node.localId
      ? published
      : Effect.zipRight(logEvent(node, `following leader ${id} of term ${node.currentTerm}`, { leader: id }), published)
  })

/** Ends the current role's fibers and starts a new epoch. Run loop. */
export const resetRoleScope = (node: NodeState) =>
  Effect.gen(function*() {
    node.epoch++
    const old = node.roleScope
    node.roleScope = yield* Scope.fork(node.nodeScope, ExecutionStrategy.sequential)
    yield* Scope.close(old, Exit.void)
  })

/** Sets the role, counting and publishing a change. Run loop. */
export const changeState = (node: NodeState, to: RaftState) =>
  Effect.suspend(() => {
    const from = node.role
    node.role = to
    if (from === to) return Effect.void
    if (from === "Candidate") node.lostElections = 0
    if (from === "Follower") forgetRecent(node)
    if (from === "Candidate" && node.electionSpan !== undefined) {
      node.electionSpan.attribute("raft.outcome", to === "Leader" ? "won" : "lost")
      endSpan(node, node.electionSpan)
      node.electionSpan = undefined
    }
    metrics.stateChanges.unsafeUpdate(1, [...node.nodeLabels, MetricLabel.make("state", to)])
    return publish(node, { _tag: "StateChange", from, to, term: node.currentTerm })
  })

/**
 * Leaves the leader role: fails what it had in flight. `term` is the term this node is moving to (a higher one means
 * it was deposed by a successor). Run loop, or shutdown.
 */
export const tearDownLeader = (node: NodeState, term = node.currentTerm) =>
  Effect.suspend(() => {
    const old = node.leader
    node.leader = undefined
    if (old === undefined) return Effect.void
    for (let i = old.inflightHead; i < old.inflight.length; i++) {
      const future = old.inflight[i]!.future
      if (future !== undefined) future.deferred.done(Exit.fail(new LeadershipLost()))
    }
    const lost = Exit.fail(new LeadershipLost())
    for (const verifier of [...old.verifiers]) settleVerify(verifier, lost)
    for (const request of old.changes) request.deferred.done(lost)
    for (const { request } of old.promotions.values()) request.deferred.done(lost)
    if (old.changeInFlight?.request !== undefined) old.changeInFlight.request.deferred.done(lost)
    if (old.transfer !== undefined) {
      // Deposed by a higher term: another server is taking over, which is what the transfer asked for.
      old.transfer.deferred.done(
        term > old.term
          ? Exit.void
          : Exit.fail(new LeadershipTransferFailed({ reason: "leadership lost without a successor" }))
      )
    }
    return Effect.void
  })

/**
 * A follower's heartbeat timer: a `Timer` event every one to two heartbeat timeouts, and one at once when the
 * configuration is reloaded (a lowered timeout may already have passed: as hashicorp's followerNotifyCh).
 */
const followerTimer = (node: NodeState, myEpoch: number) =>
  reloadable(node, (reloaded) =>
    Effect.gen(function*() {
      if (reloaded) tick(node, myEpoch)
      while (true) {
        const timeout = node.config.heartbeatTimeoutMillis
        yield* Effect.sleep(yield* Random.nextIntBetween(timeout, 2 * timeout))
        tick(node, myEpoch)
      }
    })
  )

/** What the follower's timer does when it fires: the run loop checks whether the leader was heard from. */
const tick = (node: NodeState, myEpoch: number) => {
  reportOldestLogAge(node)
  emit(node, { _tag: "Timer", epoch: myEpoch })
}

/** Becomes (or stays, in a new epoch) a follower, on its way to `term` (the current one by default). Run loop. */
export const becomeFollower = (node: NodeState, term = node.currentTerm) =>
  Effect.gen(function*() {
    const wasLeader = node.role === "Leader"
    const old = node.leader
    if (old !== undefined) {
      // A write of ours landing later could overwrite what the next leader sends: let every one finish first.
      yield* awaitLeaderWrites(node)
      // After a failed write, the log ends where the store's does.
      if (node.lastLogIndex !== old.storedIndex) {
        node.lastLogIndex = old.storedIndex
        node.lastLogTerm = old.storedTerm
        if (node.latestConfigurationIndex > node.lastLogIndex) {
          node.latestConfiguration = node.committedConfiguration
          node.latestConfigurationIndex = node.committedConfigurationIndex
        }
      }
    }
    yield* resetRoleScope(node)
    node.preVoting = false
    if (wasLeader) yield* logEvent(node, `no longer leader of term ${old?.term ?? node.currentTerm}, now a follower`)
    if (wasLeader) {
      yield* tearDownLeader(node, term)
      yield* setLeader(node, undefined, undefined)
    }
    yield* changeState(node, "Follower")
    yield* forkRole(node, followerTimer(node, node.epoch))
  })

/**
 * Takes `term` (when above this node's) and becomes a follower if this node is not one. The role changes first: a
 * leader stepping down awaits its own writes, and until it is a follower it still shows its old term, never a leader
 * in the new one. Run loop.
 */
export const followTerm = (node: NodeState, term: number) =>
  Effect.gen(function*() {
    if (node.role !== "Follower") yield* becomeFollower(node, term)
    if (term > node.currentTerm) yield* setCurrentTerm(node, term)
  })

/**
 * A request of a leader whose term is at least this node's (AppendEntries, InstallSnapshot): take its term (stepping
 * down if this node is not a follower), its cluster id when this node has none yet, and it as the leader heard from
 * now. Run loop.
 */
export const followLeader = (
  node: NodeState,
  request: { readonly term: number; readonly leaderId: string; readonly leaderAddress: string; readonly clusterId?: string | undefined }
) =>
  Effect.gen(function*() {
    if (request.term > node.currentTerm || node.role !== "Follower") yield* followTerm(node, request.term)
    if (node.clusterId === undefined && request.clusterId !== undefined) yield* adoptCluster(node, request.clusterId)
    yield* setLeader(node, request.leaderId, request.leaderAddress)
    node.lastContact = node.now()
  })
