/**
 * A leader's life, top to bottom. `becomeLeader` opens the term: a new role
 * scope, the term's `LeaderState` with its `Commitment` wired to commit.ts,
 * a replication per other server (replication.ts, each in a child scope),
 * the lease loop and the promotion loop, and the no-op that commits
 * everything before it (Raft §8). The term ends when the run loop handles a
 * `StepDown` (a higher term seen by a fiber, or the lease lost) or a
 * `WriteFailed` (the leader's own disk failed): `becomeFollower` (role.ts)
 * closes the role scope, interrupting every fiber of the term, and fails what
 * was in flight.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Configuration from "../Configuration.js"
import * as Log from "../Log.js"
import type { ApplyError, StorageError } from "../RaftError.js"
import { Commitment } from "./commitment.js"
import { onCommit } from "./commit.js"
import type { Event } from "./events.js"
import { Future } from "./future.js"
import { type ApplyFuture, DISPATCHED, type LeaderState } from "./leaderState.js"
import { dispatch } from "./leaderLog.js"
import { reportOldestLogAge } from "./logAge.js"
import { logEvent, logTrouble } from "./logs.js"
import { promotionLoop } from "./membership.js"
import { metrics } from "./metrics.js"
import { addReplication, countedVoters } from "./replication.js"
import { becomeFollower, changeState, followTerm, resetRoleScope, setLeader } from "./role.js"
import { emit, forkRole, type NodeState, quorumOf, sleepOrReload } from "./state.js"
import type { ApplyResult } from "./types.js"

/** Becomes the leader of the current term. Run loop, when a quorum voted for this node. */
export const becomeLeader = (node: NodeState): Effect.Effect<void, StorageError> =>
  Effect.gen(function*() {
    yield* resetRoleScope(node)
    node.preVoting = false
    yield* changeState(node, "Leader")
    yield* logEvent(node, `elected leader of term ${node.currentTerm}`)
    yield* setLeader(node, node.localId, node.localAddress)
    const configuration = node.latestConfiguration
    const voters = countedVoters(node, configuration)
    const myEpoch = node.epoch
    const term = node.currentTerm
    const ls: LeaderState = {
      term,
      commitment: new Commitment(
        voters,
        node.bugs.commitPreviousTermsByCounting ? 0 : node.lastLogIndex + 1,
        node.commitIndex,
        () => onCommit(node, ls, myEpoch),
        node.bugs.commitWithoutQuorum === true
      ),
      replications: new Map(),
      inflight: [],
      inflightHead: 0,
      verifiers: new Set(),
      openRound: undefined,
      roundInFlight: undefined,
      noopIndex: node.lastLogIndex + 1,
      transferred: false,
      commitPending: false,
      changes: [],
      promotions: new Map(),
      // A configuration appended by an earlier leader and not yet committed counts as in flight.
      changeInFlight: node.latestConfigurationIndex > node.commitIndex
        ? { index: node.latestConfigurationIndex, request: undefined }
        : undefined,
      transfer: undefined,
      storedIndex: node.lastLogIndex,
      storedTerm: node.lastLogTerm,
      unstored: [],
      recent: [],
      traced: [],
      writeFailure: undefined
    }
    node.leader = ls
    for (const server of configuration.servers) {
      if (server.id === node.localId) continue
      yield* addReplication(node, ls, server, myEpoch)
    }
    yield* forkRole(node, leaseLoop(node, ls, myEpoch))
    yield* forkRole(node, promotionLoop(node, ls, myEpoch))
    // Raft §8: a new leader commits an entry of its own term, which commits everything before it.
    const noop: ApplyFuture = {
      type: "Noop",
      data: Log.empty,
      deferred: new Future<ApplyResult, ApplyError>(),
      status: DISPATCHED,
      waiter: undefined,
      trace: undefined
    }
    yield* dispatch(node, [noop])
  })

/**
 * Whether a quorum of voters (this leader counting as one) answered within the lease, as of now; sets the
 * last-contact gauges when `report`.
 */
export const quorumInLease = (node: NodeState, ls: LeaderState, report: boolean): boolean => {
  const configuration = node.latestConfiguration
  const time = node.now()
  const lease = node.config.leaderLeaseTimeoutMillis
  let contacted = Configuration.isVoter(configuration, node.localId) ? 1 : 0
  for (const replication of ls.replications.values()) {
    if (report) metrics.lastContact.unsafeUpdate(time - replication.lastContact, replication.labels)
    if (!Configuration.isVoter(configuration, replication.peer.id)) continue
    if (time - replication.lastContact <= lease) contacted++
  }
  return contacted >= quorumOf(configuration)
}

/**
 * A lease check that woke more than half a lease late: the node itself did not run meanwhile (a long collection, a
 * starved process), so the followers' answers that arrived in that time still wait behind the check and prove
 * nothing missing. Such a check lets them be handled before it judges.
 */
export const checkedLate = (node: NodeState, sleptAt: number): boolean => {
  const lease = node.config.leaderLeaseTimeoutMillis
  return node.now() - sleptAt > lease + lease / 2
}

/** Checks the lease every leaderLeaseTimeout: without contact with a quorum of voters, step down. */
const leaseLoop = (node: NodeState, ls: LeaderState, myEpoch: number) =>
  Effect.gen(function*() {
    while (true) {
      const sleptAt = node.now()
      yield* sleepOrReload(node, node.config.leaderLeaseTimeoutMillis)
      if (node.leader !== ls) return
      reportOldestLogAge(node)
      if (quorumInLease(node, ls, true)) continue
      if (checkedLate(node, sleptAt)) {
        // One millisecond is a turn of the event loop: what was queued while the node stood still runs first.
        yield* Effect.sleep(1)
        if (node.leader !== ls) return
        if (quorumInLease(node, ls, false)) continue
      }
      metrics.leaseStepDowns.unsafeUpdate(1, node.nodeLabels)
      yield* logTrouble(node, "failed to contact a quorum of voters within the lease, stepping down")
      emit(node, { _tag: "StepDown", epoch: myEpoch, term: 0 })
      return
    }
  })

/**
 * The `StepDown` event of this term (a higher term seen by one of its fibers, or the lease lost): becomes a
 * follower. Run loop (a generator the loop delegates to).
 */
export function* handleStepDown(node: NodeState, event: Extract<Event, { readonly _tag: "StepDown" }>) {
  if (event.epoch !== node.epoch || node.role !== "Leader") return
  if (event.term > node.currentTerm) {
    yield* logEvent(node, `stepping down: a peer is at term ${event.term}`, { newTerm: event.term })
  }
  yield* setLeader(node, undefined, undefined)
  yield* followTerm(node, event.term)
}

/** The `WriteFailed` event: the leader's own write failed, it steps down. Run loop (a generator the loop delegates to). */
export function* handleWriteFailed(node: NodeState, event: Extract<Event, { readonly _tag: "WriteFailed" }>) {
  const ls = event.leader
  if (node.leader !== ls) return
  yield* Effect.logError("failed to store logs on the leader, stepping down", event.error)
  // Entries never written answer the store's error (followers may hold them: a later leader may commit
  // them, as after LeadershipLost), once this node has stepped down; the rest answer as any deposed
  // leader's do.
  let cut = ls.inflight.length
  while (cut > ls.inflightHead && ls.inflight[cut - 1]!.log.index > ls.storedIndex) cut--
  const unwritten = ls.inflight.splice(cut)
  yield* becomeFollower(node)
  const failed = Exit.fail(event.error)
  for (const item of unwritten) item.future?.deferred.done(failed)
}
