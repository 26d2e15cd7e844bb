/**
 * Membership changes on a leader, one at a time (as hashicorp/raft): a change
 * waits until the leader's no-op and the previous change have committed, is
 * appended as a configuration entry that takes effect at once, and completes
 * when that entry commits. `addVoter` of a server that is not caught up adds
 * it as a non-voter first; the promotion loop promotes it once it is.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Configuration from "../Configuration.js"
import {
  type ApplyError,
  ConfigurationChanged,
  InvalidOperation,
  LeadershipTransferInProgress
} from "../RaftError.js"
import { Future } from "./future.js"
import { type ApplyFuture, DISPATCHED, type LeaderState, type MembershipRequest } from "./leaderState.js"
import { dispatch } from "./leaderLog.js"
import { reconfigureLeader } from "./replication.js"
import { logEvent } from "./logs.js"
import { emit, type NodeState, notLeaderError } from "./state.js"
import type { ApplyResult } from "./types.js"

/** Appends a configuration entry; it takes effect at once (hashicorp/raft), and commits like any entry. Run loop. */
const appendConfiguration = (
  node: NodeState,
  ls: LeaderState,
  configuration: Configuration.Configuration,
  request: MembershipRequest | undefined
) =>
  Effect.gen(function*() {
    const future: ApplyFuture = {
      type: "Configuration",
      data: Configuration.encode(configuration),
      deferred: new Future<ApplyResult, ApplyError>(),
      status: DISPATCHED,
      waiter: undefined,
      trace: request?.span === undefined ? undefined : { span: request.span, commit: undefined }
    }
    yield* dispatch(node, [future])
    if (node.leader !== ls || future.deferred.isDone) {
      // The store failed (the leader stepped down and failed the future): tell the requester.
      future.deferred.listen((exit) => {
        if (request !== undefined && Exit.isFailure(exit)) request.deferred.done(Exit.failCause(exit.cause))
      })
      return
    }
    node.latestConfiguration = configuration
    node.latestConfigurationIndex = node.lastLogIndex
    ls.changeInFlight = { index: node.lastLogIndex, request }
    yield* logEvent(node, `configuration change appended: ${describeChange(request)} -> ${describe(configuration)}`, {
      configurationIndex: node.lastLogIndex
    })
    // The requester hears when the entry is applied (committed), or why it never will be.
    future.deferred.listen((exit) => {
      if (request === undefined) return
      request.deferred.done(
        Exit.isSuccess(exit) ? Exit.succeed(exit.value.index) : Exit.failCause(exit.cause)
      )
    })
    yield* reconfigureLeader(node, ls, configuration)
  })

/** A configuration as `a (voter), b (nonvoter)`, for the log. */
export const describe = (configuration: Configuration.Configuration): string =>
  configuration.servers.map((server) => `${server.id} (${server.suffrage.toLowerCase()})`).join(", ")

const describeChange = (request: MembershipRequest | undefined): string =>
  request === undefined ? "promotion" : `${request.change._tag} ${request.change.id}`

/**
 * Starts the next membership change once the leader is stable: its no-op and the previous change committed
 * (one change at a time, as hashicorp/raft). Changes that leave the configuration as it is append nothing.
 * Run loop.
 */
export const processMembership = (node: NodeState) =>
  Effect.gen(function*() {
    while (true) {
      const ls = node.leader
      if (ls === undefined || ls.transfer !== undefined || ls.changes.length === 0) return
      if (
        ls.changeInFlight !== undefined && ls.changeInFlight.index > node.commitIndex &&
        node.bugs.concurrentMembershipChanges !== true
      ) return
      ls.changeInFlight = undefined
      if (node.commitIndex < ls.commitment.startIndex) return
      const request = ls.changes.shift()!
      if (request.cancelled || request.deferred.isDone) continue
      if (request.prevIndex !== 0 && request.prevIndex !== node.latestConfigurationIndex) {
        request.deferred.done(
          Exit.fail(
            new ConfigurationChanged({ prevIndex: request.prevIndex, latestIndex: node.latestConfigurationIndex })
          )
        )
        continue
      }
      let change = request.change
      if (
        change._tag === "AddVoter" && !request.promotion && !Configuration.isVoter(node.latestConfiguration, change.id)
      ) {
        // Not caught up: join as a non-voter first; promoted once it is (the request completes then).
        const match = ls.replications.get(change.id)?.matchIndex ?? 0
        if (node.lastLogIndex - match > node.config.maxAppendEntries) {
          ls.promotions.set(change.id, { request, round: undefined })
          change = { _tag: "AddNonvoter", id: change.id, address: change.address }
        }
      }
      const next = Configuration.applyChange(node.latestConfiguration, change)
      if (typeof next === "string") {
        ls.promotions.delete(change.id)
        request.deferred.done(Exit.fail(new InvalidOperation({ reason: next })))
        continue
      }
      const awaited = ls.promotions.get(change.id)?.request === request ? undefined : request
      if (Configuration.equals(next, node.latestConfiguration)) {
        awaited?.deferred.done(Exit.succeed(node.latestConfigurationIndex))
        continue
      }
      if (change._tag === "RemoveServer" || change._tag === "DemoteVoter") {
        const waiting = ls.promotions.get(change.id)
        if (waiting !== undefined) {
          ls.promotions.delete(change.id)
          waiting.request.deferred.done(
            Exit.fail(new InvalidOperation({ reason: `${change.id} was removed or demoted before its promotion` }))
          )
        }
      }
      yield* appendConfiguration(node, ls, next, awaited)
      return
    }
  })

/** The `Membership` event: queues a change on the leader. Run loop. */
export const handleMembership = (node: NodeState, request: MembershipRequest) =>
  Effect.gen(function*() {
    const ls = node.leader
    if (ls === undefined) return request.deferred.done(Exit.fail(notLeaderError(node)))
    if (ls.transfer !== undefined) return request.deferred.done(Exit.fail(new LeadershipTransferInProgress()))
    ls.changes.push(request)
    yield* processMembership(node)
  })

/** The `Promote` event: a non-voter added by `addVoter` caught up; its promotion goes first in line. Run loop. */
export const handlePromote = (node: NodeState, id: string) =>
  Effect.gen(function*() {
    const ls = node.leader
    const promotion = ls?.promotions.get(id)
    if (ls === undefined || promotion === undefined) return
    ls.promotions.delete(id)
    const server = Configuration.find(node.latestConfiguration, id)
    if (server === undefined) {
      promotion.request.deferred.done(Exit.fail(new InvalidOperation({ reason: `${id} left before its promotion` })))
      return
    }
    yield* logEvent(node, `${id} caught up, promoting it to voter`, { peer: id })
    ls.changes.unshift({
      change: { _tag: "AddVoter", id, address: server.address },
      prevIndex: 0,
      deferred: promotion.request.deferred,
      promotion: true,
      cancelled: false,
      span: promotion.request.span
    })
    yield* processMembership(node)
  })

/**
 * Promotes non-voters added by `addVoter` once caught up, in rounds (Ongaro's thesis, §4.2.1): a round replicates
 * what the leader's log held when it began, and a non-voter whose round ended within an election timeout keeps pace
 * with the leader, however fast entries come; a longer round (a backlog, a snapshot, a cut link) starts another.
 * Within `maxAppendEntries` of the leader's last index would say "caught up" only if writes paused: under a steady
 * stream of them a non-voter that keeps pace can stay further behind than that, and would never be promoted. Checked
 * every tenth of a heartbeat timeout. A fiber of the leader's term.
 */
export const promotionLoop = (node: NodeState, ls: LeaderState, myEpoch: number) =>
  Effect.gen(function*() {
    const tick = Math.max(1, Math.floor(node.config.heartbeatTimeoutMillis / 10))
    while (true) {
      yield* Effect.sleep(tick)
      if (node.leader !== ls) return
      if (ls.promotions.size === 0) continue
      const time = node.now()
      for (const [id, promotion] of ls.promotions) {
        const replication = ls.replications.get(id)
        if (replication === undefined) continue
        const round = promotion.round
        if (round !== undefined && replication.matchIndex < round.target) continue
        if (round !== undefined && time - round.startedAt <= node.config.electionTimeoutMillis) {
          emit(node, { _tag: "Promote", epoch: myEpoch, id })
          continue
        }
        promotion.round = { target: node.lastLogIndex, startedAt: time }
      }
    }
  })
