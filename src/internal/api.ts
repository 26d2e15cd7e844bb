/**
 * What `src/Raft.ts` calls on a running node: the `Node` interface. Each
 * operation is an event for the run loop with a future for its answer, but
 * for two shortcuts: the getters read the record, and `enqueue` appends in
 * the client's fiber while the run loop waits with nothing queued.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as Stream from "effect/Stream"
import type * as Configuration from "../Configuration.js"
import * as Log from "../Log.js"
import type { RaftConfig, ReadMode, Reloadable } from "../RaftConfig.js"
import {
  type ApplyError,
  ApplyTimeout,
  type CantBootstrap,
  type NotVoter,
  type LeadershipLost,
  LeadershipTransferInProgress,
  type MembershipError,
  type NotLeader,
  type RaftConfigError,
  RaftShutdown,
  type ReadError,
  type RestoreError,
  type SnapshotError,
  StorageError,
  type TransferError
} from "../RaftError.js"
import type { SnapshotMeta } from "../SnapshotStore.js"
import { Future } from "./future.js"
import { type ApplyFuture, CANCELLED, type MembershipRequest, QUEUED } from "./leaderState.js"
import { appendNow } from "./leaderLog.js"
import { peerReplication } from "./replication.js"
import type { DirectRead } from "./directRead.js"
import { followerReadListen, leaderReadListen, readIndex } from "./read.js"
import { takeSnapshot } from "./snapshot.js"
import { verifyNow } from "./verify.js"
import { emit, loopWaiting, type NodeState, notLeaderError } from "./state.js"
import { type ApplyTrace, endSpan, INDEX, NODE, PEER, sample, spanned, TERM } from "./tracing.js"
import type { ApplyResult, Observation, RaftState, RaftStats } from "./types.js"

/** The running node, as the `Raft` service exposes it. */
export interface Node {
  readonly enqueue: (
    type: Log.LogType,
    data: Uint8Array,
    timeoutMillis: number | undefined
  ) => Effect.Effect<Effect.Effect<ApplyResult, ApplyError>>
  readonly verifyLeader: Effect.Effect<void, NotLeader | LeadershipLost | RaftShutdown>
  readonly readIndex: (mode: ReadMode | undefined, timeoutMillis: number | undefined) => Effect.Effect<number, ReadError>
  /** Reads without a fiber (`directRead.ts`). */
  readonly direct: DirectRead
  readonly reloadConfig: (changes: Reloadable) => Effect.Effect<void, RaftConfigError | RaftShutdown>
  readonly config: Effect.Effect<RaftConfig>
  readonly bootstrap: (
    configuration: Configuration.Configuration
  ) => Effect.Effect<void, CantBootstrap | NotVoter | StorageError | RaftShutdown>
  readonly stats: Effect.Effect<RaftStats>
  readonly state: Effect.Effect<RaftState>
  readonly leader: Effect.Effect<Option.Option<{ readonly id: string; readonly address: string }>>
  readonly lastContact: Effect.Effect<Option.Option<number>>
  readonly appliedIndex: Effect.Effect<number>
  readonly lastIndex: Effect.Effect<number>
  readonly commitIndex: Effect.Effect<number>
  readonly currentTerm: Effect.Effect<number>
  readonly configuration: Effect.Effect<{ readonly configuration: Configuration.Configuration; readonly index: number }>
  readonly observe: Stream.Stream<Observation>
  readonly shutdown: Effect.Effect<void>
  readonly changeMembership: (
    change: Configuration.Change,
    prevIndex: number,
    timeoutMillis: number | undefined
  ) => Effect.Effect<number, MembershipError>
  readonly userSnapshot: Effect.Effect<SnapshotMeta, SnapshotError>
  readonly userRestore: (
    meta: SnapshotMeta,
    data: Stream.Stream<Uint8Array, StorageError>,
    timeoutMillis: number | undefined
  ) => Effect.Effect<void, RestoreError>
  readonly leadershipTransfer: (
    target: { readonly id: string; readonly address: string } | undefined
  ) => Effect.Effect<void, TransferError>
}

/**
 * Waits for `future` within the caller's timeout, covering the whole wait (hashicorp #145, #498): on expiry
 * the caller gets `ApplyTimeout` and its waiter is dropped; `onAbandon` releases what the caller held (an
 * entry not yet taken off the queue is never appended). The node's deadline keeper expires it (deadlines.ts), no
 * fiber per call. Without a timeout the wait is interruptible, with the same release.
 */
const awaitWithin = <A, E>(
  node: NodeState,
  future: Future<A, E>,
  timeoutMillis: number | undefined,
  onAbandon: () => void
): Effect.Effect<A, E | ApplyTimeout> => {
  if (timeoutMillis === undefined) return future.awaitOr(onAbandon)
  // The deadline is fixed now: an ApplyFuture awaited later, or twice, keeps the caller's budget.
  const deadline = node.now() + timeoutMillis
  return future.awaitUntil(node.deadlines, deadline, onAbandon, () => new ApplyTimeout({ timeoutMillis }))
}

/**
 * Waits for an apply's outcome as `awaitWithin` does, without a canceler on the wait (Effect runs one through
 * `onInterrupt`, a fifth of an apply's CPU at 64 clients in memory). A wait that begins while the entry is still
 * queued, and that can be interrupted, notes its fiber; the run loop drops the entry unsent once that fiber has
 * ended (`abandoned`, leaderState.ts). On expiry the deadline keeper cancels a queued entry as before. An
 * interrupted waiter stays on the future until it completes, where calling it does nothing.
 */
const awaitApply = (
  node: NodeState,
  future: ApplyFuture,
  timeoutMillis: number | undefined
): Effect.Effect<ApplyResult, ApplyError> => {
  // The deadline is fixed now: an ApplyFuture awaited later, or twice, keeps the caller's budget.
  const wait = timeoutMillis === undefined ? future.deferred.awaitSole : future.deferred.awaitUntilSole(
    node.deadlines,
    node.now() + timeoutMillis,
    () => {
      if (future.status === QUEUED) future.status = CANCELLED
    },
    () => new ApplyTimeout({ timeoutMillis })
  )
  return Effect.withFiberRuntime<ApplyResult, ApplyError>((fiber, status) => {
    if (future.status === QUEUED && RuntimeFlags.interruptible(status.runtimeFlags)) {
      future.waiter = future.waiter === undefined ? fiber : null
    }
    return wait
  })
}

/** The node's interface over its record. */
export const makeApi = (node: NodeState): Node => {
  /** Enqueues an entry, traced by `span` when given; the effect returned waits for its outcome. */
  const enqueueNow = (
    type: Log.LogType,
    data: Uint8Array,
    timeoutMillis: number | undefined,
    trace: ApplyTrace | undefined
  ): Effect.Effect<ApplyResult, ApplyError> => {
    if (node.isShutdown) return Effect.fail(new RaftShutdown())
    if (node.role !== "Leader") return Effect.fail(notLeaderError(node))
    if (node.leader?.transfer !== undefined) return Effect.fail(new LeadershipTransferInProgress())
    const future: ApplyFuture = {
      type,
      data,
      deferred: new Future<ApplyResult, ApplyError>(),
      status: QUEUED,
      waiter: undefined,
      trace
    }
    // The run loop idle with nothing queued would append it at once: done here instead, saving the hop.
    if (loopWaiting(node) && node.writesPending < node.maxUnwritten) appendNow(node, [future])
    else if (!emit(node, { _tag: "Apply", future })) return Effect.fail(new RaftShutdown())
    return awaitApply(node, future, timeoutMillis)
  }

  /** Enqueues an entry; the effect returned waits for its outcome (hashicorp's ApplyFuture). */
  const enqueue = (type: Log.LogType, data: Uint8Array, timeoutMillis: number | undefined) =>
    node.tracing === undefined
      ? Effect.sync(() => enqueueNow(type, data, timeoutMillis, undefined))
      : Effect.suspend(() =>
        node.tracing === undefined || !sample(node.tracing)
          ? Effect.sync(() => enqueueNow(type, data, timeoutMillis, undefined))
          : Effect.map(
            Effect.makeSpan("raft.apply", {
              attributes: { [NODE]: node.localId, [TERM]: node.currentTerm, "raft.type": type },
              kind: "producer",
              captureStackTrace: false
            }),
            (span) => {
              const trace: ApplyTrace = { span, commit: undefined }
              return traceApply(trace, enqueueNow(type, data, timeoutMillis, trace))
            }
          )
      )

  /** Ends a traced apply's span (and its commit span if the commit never came) with the apply's outcome. */
  const traceApply = (trace: ApplyTrace, outcome: Effect.Effect<ApplyResult, ApplyError>) =>
    Effect.onExit(outcome, (exit) =>
      Effect.sync(() => {
        if (trace.commit !== undefined) endSpan(node, trace.commit, exit)
        trace.commit = undefined
        if (Exit.isSuccess(exit)) trace.span.attribute(INDEX, exit.value.index)
        endSpan(node, trace.span, exit)
      }))

  const changeMembership = (
    change: Configuration.Change,
    prevIndex: number,
    timeoutMillis: number | undefined
  ): Effect.Effect<number, MembershipError> =>
    Effect.suspend(() => {
      if (node.isShutdown) return Effect.fail(new RaftShutdown())
      return spanned(node, "raft.membership", { "raft.change": change._tag, [PEER]: change.id }, (span) => {
        const request: MembershipRequest = {
          change,
          prevIndex,
          deferred: new Future<number, MembershipError>(),
          promotion: false,
          cancelled: false,
          span
        }
        if (!emit(node, { _tag: "Membership", request })) return Effect.fail(new RaftShutdown())
        return awaitWithin(node, request.deferred, timeoutMillis, () => {
          request.cancelled = true
        })
      })
    })

  const userRestore = (
    meta: SnapshotMeta,
    data: Stream.Stream<Uint8Array, StorageError>,
    timeoutMillis: number | undefined
  ): Effect.Effect<void, RestoreError> =>
    spanned(node, "raft.restore", { [INDEX]: meta.index }, () => userRestoreUntraced(meta, data, timeoutMillis))

  const userRestoreUntraced = (
    meta: SnapshotMeta,
    data: Stream.Stream<Uint8Array, StorageError>,
    timeoutMillis: number | undefined
  ): Effect.Effect<void, RestoreError> =>
    Effect.gen(function*() {
      const started = node.now()
      const remaining = () =>
        timeoutMillis === undefined ? undefined : Math.max(0, timeoutMillis - (node.now() - started))
      yield* node.snapshotLock.withPermits(1)(
        Effect.gen(function*() {
          const deferred = new Future<void, RestoreError>()
          if (node.isShutdown || !emit(node, { _tag: "UserRestore", meta, data, deferred })) {
            return yield* new RaftShutdown()
          }
          // The run loop streams the data into the store and the FSM restores it: not abandoned half-way.
          return yield* deferred.await
        })
      )
      // Done once a quorum holds it: a barrier after the snapshot commits only when followers installed it.
      yield* Effect.flatten(enqueue("Barrier", Log.empty, remaining()))
    })

  const leadershipTransfer = (
    target: { readonly id: string; readonly address: string } | undefined
  ): Effect.Effect<void, TransferError> =>
    spanned(node, "raft.leadership_transfer", target === undefined ? {} : { [PEER]: target.id }, () =>
      Effect.suspend(() => {
        if (node.isShutdown) return Effect.fail(new RaftShutdown())
        const deferred = new Future<void, TransferError>()
        if (!emit(node, { _tag: "Transfer", target, deferred })) return Effect.fail(new RaftShutdown())
        return deferred.await
      }))

  return {
    enqueue,
    readIndex: (mode, timeoutMillis) => readIndex(node, mode, timeoutMillis),
    direct: {
      isShutdown: () => node.isShutdown,
      read: (mode, callback) => leaderReadListen(node, mode, callback) ?? followerReadListen(node, mode, callback)
    },
    config: Effect.sync(() => node.config),
    reloadConfig: (changes) =>
      Effect.suspend(() => {
        if (node.isShutdown) return Effect.fail(new RaftShutdown())
        const deferred = new Future<void, RaftConfigError | RaftShutdown>()
        if (!emit(node, { _tag: "Reload", changes, deferred })) return Effect.fail(new RaftShutdown())
        return deferred.await
      }),
    verifyLeader: Effect.suspend(() => {
      if (node.isShutdown) return Effect.fail(new RaftShutdown())
      const deferred = new Future<void, NotLeader | LeadershipLost | RaftShutdown>()
      // As a read: joined at once while the run loop waits with nothing queued.
      if (loopWaiting(node)) verifyNow(node, deferred)
      else if (!emit(node, { _tag: "Verify", deferred })) return Effect.fail(new RaftShutdown())
      return deferred.await
    }),
    bootstrap: (configuration) =>
      Effect.suspend(() => {
        if (node.isShutdown) return Effect.fail(new RaftShutdown())
        const deferred = new Future<void, CantBootstrap | NotVoter | StorageError | RaftShutdown>()
        if (!emit(node, { _tag: "Bootstrap", configuration, deferred })) return Effect.fail(new RaftShutdown())
        return deferred.await
      }),
    stats: Effect.sync(() => ({
      id: node.localId,
      state: node.role,
      term: node.currentTerm,
      lastLogIndex: node.lastLogIndex,
      lastLogTerm: node.lastLogTerm,
      commitIndex: node.commitIndex,
      appliedIndex: node.appliedIndex,
      fsmPending: node.fsmPending,
      lastSnapshotIndex: node.lastSnapshotIndex,
      lastSnapshotTerm: node.lastSnapshotTerm,
      leaderId: node.leaderId,
      lastContactMillis: node.lastContact,
      latestConfiguration: node.latestConfiguration,
      latestConfigurationIndex: node.latestConfigurationIndex,
      numPeers: node.latestConfiguration.servers.filter((server) => server.id !== node.localId).length,
      replication: node.leader === undefined ? [] : peerReplication(node, node.leader)
    })),
    state: Effect.sync(() => node.role),
    leader: Effect.sync(() =>
      node.leaderId === undefined || node.leaderAddress === undefined
        ? Option.none()
        : Option.some({ id: node.leaderId, address: node.leaderAddress })
    ),
    lastContact: Effect.sync(() => Option.fromNullable(node.lastContact)),
    appliedIndex: Effect.sync(() => node.appliedIndex),
    lastIndex: Effect.sync(() => node.lastLogIndex),
    commitIndex: Effect.sync(() => node.commitIndex),
    currentTerm: Effect.sync(() => node.currentTerm),
    configuration: Effect.sync(() => ({
      configuration: node.latestConfiguration,
      index: node.latestConfigurationIndex
    })),
    observe: Stream.fromPubSub(node.observations),
    shutdown: node.shutdown,
    changeMembership,
    userSnapshot: takeSnapshot(node),
    userRestore,
    leadershipTransfer
  }
}
