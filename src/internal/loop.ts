/**
 * The run loop: the one fiber that owns a node's Raft state. It drains the
 * mailbox with `takeAll` and routes each event to the module that handles
 * it; consecutive applies on a leader become one `dispatch` (one
 * `storeLogs` of up to `maxAppendEntries` entries). While it waits for
 * events with none queued (`loopWaiting`), four fast paths act for it
 * (state.ts).
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Tracer from "effect/Tracer"
import { LeadershipTransferInProgress, RaftShutdown, type StorageError } from "../RaftError.js"
import type { AppendEntriesResponse } from "../Rpc.js"
import { handleBootstrap } from "./bootstrap.js"
import { processCommit } from "./commit.js"
import { handleLeaderLost } from "./leaderLost.js"
import { handlePreVote, handleRequestPreVote, handleRequestVote, handleTimer, handleVote } from "./election.js"
import type { Event } from "./events.js"
import { handleAppendEntries, handleFsmBehind } from "./follower.js"
import type { Future } from "./future.js"
import { handleStepDown, handleWriteFailed } from "./leader.js"
import { abandoned, type ApplyFuture, CANCELLED, DISPATCHED } from "./leaderState.js"
import { dispatch } from "./leaderLog.js"
import { handleMembership, handlePromote } from "./membership.js"
import { becomeFollower } from "./role.js"
import { handleCompact, handleInstallCheck, handleInstallStored, handleUserRestore } from "./snapshot.js"
import { handleRead } from "./read.js"
import { handleReload } from "./reload.js"
import { type NodeState, notLeaderError } from "./state.js"
import { handleTimeoutNow, handleTransfer, handleTransferTimeout } from "./transfer.js"
import { COMMIT_INDEX, endSpan, FIRST_INDEX, LAST_INDEX, PEER, remoteParent, startSpan, TERM } from "./tracing.js"
import { handleVerify } from "./verify.js"

/** Handles one drained chunk of events; consecutive applies on a leader are stored together. */
const handleEvents = (node: NodeState, events: Iterable<Event>) =>
  Effect.gen(function*() {
    let pending: Array<ApplyFuture> = []
    const flush = Effect.suspend(() => {
      if (pending.length === 0) return Effect.void
      const batch = pending
      pending = []
      return dispatch(node, batch)
    })
    for (const event of events) {
      if (event._tag === "Apply") {
        const future = event.future
        if (abandoned(future)) {
          // Its one waiter ended (interrupted): nobody can learn the outcome; a later wait learns of the interruption.
          if (future.status !== CANCELLED) {
            future.status = CANCELLED
            future.deferred.done(Exit.interrupt(future.waiter!.id()))
          }
          continue
        }
        if (node.role !== "Leader") {
          future.deferred.done(Exit.fail(notLeaderError(node)))
          continue
        }
        if (node.leader?.transfer !== undefined) {
          future.deferred.done(Exit.fail(new LeadershipTransferInProgress()))
          continue
        }
        future.status = DISPATCHED
        pending.push(future)
        if (pending.length >= node.config.maxAppendEntries) yield* flush
        continue
      }
      yield* flush
      yield* Effect.catchTag(handleEvent(node, event), "StorageError", (error) => refuse(node, event, error))
    }
    yield* flush
  })

/** Handles one event other than an apply, answering its future when it has one. */
const handleEvent = (node: NodeState, event: Exclude<Event, { readonly _tag: "Apply" }>) =>
  Effect.gen(function*() {
    switch (event._tag) {
      case "AppendEntries": {
        yield* answerAppend(node, event)
        break
      }
      case "RequestVote": {
        const span = remoteSpan(node, "raft.follower.request_vote", event.request.traceparent, event.request)
        const response = yield* handleRequestVote(node, event.request)
        if (span !== undefined) endVoteSpan(node, span, response.granted)
        event.deferred.done(Exit.succeed(response))
        break
      }
      case "Timer": {
        if (event.epoch === node.epoch) yield* handleTimer(node)
        break
      }
      case "LeaderLost": {
        yield* handleLeaderLost(node, event.from)
        break
      }
      case "Vote": {
        if (event.epoch === node.epoch) yield* handleVote(node, event.from, event.response)
        break
      }
      case "StepDown": {
        yield* handleStepDown(node, event)
        break
      }
      case "Commit": {
        if (event.epoch === node.epoch) yield* processCommit(node)
        break
      }
      case "FsmBehind": {
        yield* handleFsmBehind(node)
        break
      }
      case "Verify": {
        yield* handleVerify(node, event.deferred)
        break
      }
      case "Read": {
        handleRead(node, event.lease, event.deferred)
        break
      }
      case "Reload": {
        yield* handleReload(node, event.changes, event.deferred)
        break
      }
      case "Bootstrap": {
        yield* handleBootstrap(node, event.configuration, event.deferred)
        break
      }
      case "RequestPreVote": {
        const span = remoteSpan(node, "raft.follower.request_pre_vote", event.request.traceparent, event.request)
        const response = handleRequestPreVote(node, event.request)
        if (span !== undefined) endVoteSpan(node, span, response.granted)
        event.deferred.done(Exit.succeed(response))
        break
      }
      case "PreVote": {
        if (event.epoch === node.epoch) yield* handlePreVote(node, event.from, event.response)
        break
      }
      case "TimeoutNow": {
        event.deferred.done(Exit.succeed(yield* handleTimeoutNow(node, event.request)))
        break
      }
      case "InstallCheck": {
        event.deferred.done(Exit.succeed(yield* handleInstallCheck(node, event.request)))
        break
      }
      case "InstallStored": {
        event.deferred.done(Exit.succeed(yield* handleInstallStored(node, event.request, event.meta)))
        break
      }
      case "Compact": {
        yield* handleCompact(node, event.meta)
        event.deferred.done(Exit.void)
        break
      }
      case "Membership": {
        yield* handleMembership(node, event.request)
        break
      }
      case "Promote": {
        if (event.epoch === node.epoch) yield* handlePromote(node, event.id)
        break
      }
      case "Transfer": {
        yield* handleTransfer(node, event.target, event.deferred)
        break
      }
      case "TransferTimeout": {
        if (event.epoch === node.epoch) yield* handleTransferTimeout(node)
        break
      }
      case "WriteFailed": {
        yield* handleWriteFailed(node, event)
        break
      }
      case "UserRestore": {
        yield* handleUserRestore(node, event.meta, event.data, event.deferred)
        break
      }
    }
  })

/**
 * A storage operation failed while the run loop handled `event`: the node degrades, it does not stop (a disk
 * that filled up or failed once may work again). A request is refused (an AppendEntries answers failure, and
 * its leader backs off and retries; a vote is not granted); the in-memory state moved only past writes that
 * succeeded; a candidate or a leader steps down to follower, whose timer retries an election later.
 */
const refuse = (node: NodeState, event: Exclude<Event, { readonly _tag: "Apply" }>, error: StorageError) =>
  Effect.gen(function*() {
    yield* Effect.logError(`storage failed while handling ${event._tag}; this node stays up and retries later`, error)
    switch (event._tag) {
      case "AppendEntries":
        event.deferred.done(Exit.succeed(refusedAppend(node)))
        break
      case "RequestVote":
        event.deferred.done(Exit.succeed({ _tag: "RequestVoteResponse", term: node.currentTerm, granted: false }))
        break
      case "TimeoutNow":
        event.deferred.done(Exit.succeed({ _tag: "TimeoutNowResponse", term: node.currentTerm, success: false }))
        break
      case "InstallCheck":
        event.deferred.done(Exit.succeed({
          accept: false,
          response: { _tag: "InstallSnapshotResponse", term: node.currentTerm, success: false }
        }))
        break
      case "InstallStored":
        event.deferred.done(
          Exit.succeed({ _tag: "InstallSnapshotResponse", term: node.currentTerm, success: false })
        )
        break
      case "Compact":
        event.deferred.done(Exit.void)
        break
      case "Membership":
        event.request.deferred.done(Exit.fail(error))
        break
      case "UserRestore":
        event.deferred.done(Exit.fail(error))
        break
      default:
        break
    }
    if (node.role === "Candidate" || node.role === "Leader") yield* becomeFollower(node)
  })

/** The answer to an AppendEntries this node could not store: the leader backs off and sends it again. */
const refusedAppend = (node: NodeState): AppendEntriesResponse => ({
  _tag: "AppendEntriesResponse",
  term: node.currentTerm,
  lastLog: node.lastLogIndex,
  success: false,
  noRetryBackoff: false
})

/** A span of this node for a request that carries its sender's trace context (tracing nodes only). */
const remoteSpan = (
  node: NodeState,
  name: string,
  context: string | undefined,
  request: { readonly term: number; readonly candidateId: string }
): Tracer.Span | undefined =>
  node.tracing === undefined || context === undefined ? undefined : startSpan(
    node,
    node.tracing,
    name,
    remoteParent(context),
    { [TERM]: request.term, [PEER]: request.candidateId },
    "server"
  )

const endVoteSpan = (node: NodeState, span: Tracer.Span, granted: boolean) => {
  span.attribute("raft.granted", granted)
  endSpan(node, span)
}

/** One AppendEntries, answered; traced as a child of the leader's span when the request carries its context. */
const answerAppend = (node: NodeState, event: Extract<Event, { readonly _tag: "AppendEntries" }>) => {
  const request = event.request
  const tracing = node.tracing
  if (tracing === undefined || request.traceparent === undefined) {
    return Effect.map(handleAppendEntries(node, request), (response) => void event.deferred.done(Exit.succeed(response)))
  }
  const span = startSpan(node, tracing, "raft.follower.append_entries", remoteParent(request.traceparent), {
    [TERM]: request.term,
    [PEER]: request.leaderId,
    [FIRST_INDEX]: request.prevLogIndex + 1,
    [LAST_INDEX]: request.prevLogIndex + request.entries.length,
    "raft.entries": request.entries.length,
    [COMMIT_INDEX]: request.leaderCommitIndex
  }, "server")
  return Effect.onExit(handleAppendEntries(node, request), (exit) =>
    Effect.sync(() => {
      if (Exit.isSuccess(exit)) {
        span.attribute("raft.success", exit.value.success)
        event.deferred.done(Exit.succeed(exit.value))
      }
      endSpan(node, span, exit)
    }))
}

/** A run loop's chunk of one AppendEntries (a follower's usual one): answered, a storage failure refused. */
const handleOneAppend = (node: NodeState, event: Extract<Event, { readonly _tag: "AppendEntries" }>) =>
  Effect.catchTag(answerAppend(node, event), "StorageError", (error) => refuse(node, event, error))

/** The run loop's fiber body: starts as a follower, then handles events until the mailbox ends. */
export const runLoop = (node: NodeState) =>
  Effect.gen(function*() {
    yield* becomeFollower(node)
    while (true) {
      const [events, done] = yield* node.mailbox.takeAll
      node.current = events
      // A follower's usual batch, one AppendEntries, skips the general handler's generator.
      const only = events.length === 1 ? events[0] : undefined
      yield* Effect.uninterruptible(
        only?._tag === "AppendEntries" ? handleOneAppend(node, only) : handleEvents(node, node.current)
      )
      node.current = []
      if (done) return
    }
  })

/** Answers an event the run loop will never handle: the node shut down. */
export const failEvent = (event: Event) => {
  const shutdownExit = Exit.fail(new RaftShutdown())
  switch (event._tag) {
    case "Apply":
      event.future.deferred.done(shutdownExit)
      break
    case "AppendEntries":
    case "RequestVote":
    case "RequestPreVote":
    case "TimeoutNow":
    case "InstallCheck":
    case "InstallStored":
    case "Verify":
    case "Read":
    case "Reload":
    case "Bootstrap":
    case "Transfer":
    case "UserRestore":
      ;(event.deferred as Future<unknown, RaftShutdown>).done(shutdownExit)
      break
    case "Membership":
      event.request.deferred.done(shutdownExit)
      break
    case "Compact":
      event.deferred.done(Exit.void)
      break
    default:
      break
  }
}
