/**
 * Snapshots: taken by this node, installed from a leader, restored by the
 * user. A snapshot is taken between two FSM batches (hashicorp's
 * takeSnapshot), streamed into the snapshot store while applies go on, and
 * then the log is compacted, keeping `trailingLogs` behind. A follower
 * receives a leader's snapshot in two halves: the run loop checks it is news
 * (`InstallCheck`), the bytes are stored outside the loop, and the loop
 * installs it (`InstallStored`, Raft figure 13). The snapshot lock keeps
 * taking, installing and restoring from overlapping, so the newest snapshot
 * is always the latest state.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import {
  type FsmError,
  InvalidOperation,
  LeadershipLost,
  LeadershipTransferInProgress,
  type NothingNewToSnapshot,
  RaftShutdown,
  type RestoreError,
  type SnapshotError,
  type SnapshotNotFound,
  StorageError,
  type TransportError
} from "../RaftError.js"
import type { InstallSnapshotRequest, InstallSnapshotResponse } from "../Rpc.js"
import type { SnapshotMeta } from "../SnapshotStore.js"
import type { Captured, InstallVerdict } from "./events.js"
import { Future } from "./future.js"
import { awaitLeaderWrites } from "./leaderLog.js"
import { noteCompacted, noteLogReplaced } from "./logAge.js"
import { logEvent } from "./logs.js"
import { metrics } from "./metrics.js"
import { followLeader } from "./role.js"
import { forgetRecent } from "./recentEntries.js"
import { ask, emit, type NodeState, notLeaderError, sleepOrReload } from "./state.js"
import { INDEX, PEER, remoteParent, spanned, TERM } from "./tracing.js"

/** Deletes log entries a snapshot at `index` covers, keeping `trailingLogs` behind the last (hashicorp's compactLogs). */
const compactLogs = (node: NodeState, index: number) =>
  Effect.gen(function*() {
    if (node.lastLogIndex <= node.config.trailingLogs) return
    const first = yield* node.logs.firstIndex
    const max = node.bugs.compactPastSnapshot === true
      ? node.lastLogIndex - node.config.trailingLogs
      : Math.min(index, node.lastLogIndex - node.config.trailingLogs)
    if (first === 0 || first > max) return
    yield* node.logs.deleteRange(first, max)
    noteCompacted(node, max + 1)
  })

/** The `Compact` event: a snapshot of ours was persisted; record it and compact the log. Run loop. */
export const handleCompact = (node: NodeState, meta: SnapshotMeta) =>
  Effect.gen(function*() {
    if (meta.index < node.lastSnapshotIndex) return
    node.lastSnapshotIndex = meta.index
    node.lastSnapshotTerm = meta.term
    yield* compactLogs(node, meta.index).pipe(
      Effect.catchAll((error) => Effect.logWarning("failed to compact the log", error))
    )
  })

/** Whether what a snapshot up to `index` holds is already handed to the FSM here (or in a snapshot). */
const alreadyHeld = (node: NodeState, index: number): boolean =>
  node.bugs.installOverNewer !== true && (index <= node.dispatchedToFsm || index <= node.lastSnapshotIndex)

/** Is the incoming snapshot from a current leader, and news to us? (Decided before its bytes are stored.) Run loop. */
export const handleInstallCheck = (node: NodeState, request: InstallSnapshotRequest) =>
  Effect.gen(function*() {
    const response = { _tag: "InstallSnapshotResponse" as const, term: node.currentTerm, success: false }
    if (request.term < node.currentTerm) return { accept: false, response } satisfies InstallVerdict
    yield* followLeader(node, request)
    response.term = node.currentTerm
    // Everything it holds is already applied here: nothing to install, and the leader may go on from it.
    if (alreadyHeld(node, request.lastLogIndex)) {
      return { accept: false, response: { ...response, success: true } }
    }
    return { accept: true, response }
  })

/**
 * Installs a stored snapshot (Raft figure 13). The FSM takes it first: a snapshot it cannot restore (corrupt, or
 * refused by the user's `restore`) is answered with failure and changes nothing here, and the leader backs off
 * and sends it again. Then the log is kept only if it holds the snapshot's last entry with its term; otherwise it
 * is discarded whole, conflicting suffix included (the bug of hashicorp/raft #697 was to keep it). Run loop.
 */
export const handleInstallStored = (node: NodeState, request: InstallSnapshotRequest, meta: SnapshotMeta) =>
  Effect.gen(function*() {
    const { logs } = node
    const response = { _tag: "InstallSnapshotResponse" as const, term: node.currentTerm, success: true }
    // The term moved on while the bytes arrived: the snapshot stays stored (it is committed state, and the
    // start-up check reconciles it with the log), but this node's role is no longer the sender's follower.
    if (request.term !== node.currentTerm || node.role !== "Follower") return { ...response, success: false }
    node.lastContact = node.now()
    if (alreadyHeld(node, meta.index)) {
      if (meta.index > node.lastSnapshotIndex) {
        node.lastSnapshotIndex = meta.index
        node.lastSnapshotTerm = meta.term
      }
      return response
    }
    const first = yield* logs.firstIndex
    let keep = false
    if (meta.index < node.lastLogIndex && first > 0 && first <= meta.index) {
      const held = yield* Effect.option(logs.getLog(meta.index))
      keep = Option.isSome(held) && held.value.term === meta.term
    }
    const restored = yield* restoreFsm(node, meta)
    if (restored._tag === "Left") {
      yield* Effect.logError(`refused snapshot ${meta.id} (index ${meta.index}): the state machine could not restore it`, restored.left)
      return { ...response, success: false }
    }
    // The FSM holds the snapshot's state now: what it covers is committed and applied here. The leader was
    // heard from while it was restored (its heartbeats wait in the mailbox).
    node.lastContact = node.now()
    if (!keep || node.latestConfigurationIndex < meta.configurationIndex) {
      node.latestConfiguration = meta.configuration
      node.latestConfigurationIndex = meta.configurationIndex
    }
    if (node.committedConfigurationIndex < meta.configurationIndex) {
      node.committedConfiguration = meta.configuration
      node.committedConfigurationIndex = meta.configurationIndex
    }
    node.lastSnapshotIndex = meta.index
    node.lastSnapshotTerm = meta.term
    if (node.commitIndex < meta.index) node.commitIndex = meta.index
    node.dispatchedToFsm = meta.index
    if (keep) {
      yield* compactLogs(node, meta.index).pipe(
        Effect.catchAll((error) => Effect.logWarning("failed to compact the log", error))
      )
    } else {
      if (first > 0) {
        yield* logEvent(node, `discarding the log ${first}..${node.lastLogIndex}, superseded by snapshot ${meta.id}`)
        yield* logs.deleteRange(first, Math.max(node.lastLogIndex, first))
      }
      noteLogReplaced(node)
      forgetRecent(node)
      node.lastLogIndex = meta.index
      node.lastLogTerm = meta.term
    }
    yield* logEvent(node, `installed snapshot ${meta.id} from ${request.leaderId} (index ${meta.index}, term ${meta.term})`, {
      snapshotIndex: meta.index
    })
    return response
  })

/**
 * Has the FSM runner replace the FSM's state with snapshot `meta`, after the batches before it, and waits for
 * the outcome; the run loop waits too, so nothing is handed to the FSM meanwhile. A snapshot that fails (its
 * data corrupt, or refused by the user's `restore`) is deleted from the store, so neither a restart nor a
 * leader sending it on picks it up, and the FSM keeps its state (as `Fsm.restore` promises on failure).
 */
const restoreFsm = (node: NodeState, meta: SnapshotMeta) =>
  Effect.gen(function*() {
    const restored = new Future<void, FsmError | StorageError | SnapshotNotFound | RaftShutdown>()
    node.fsmMailbox.unsafeOffer({ _tag: "Restore", meta, deferred: restored })
    const outcome = yield* Effect.either(restored.await)
    if (outcome._tag === "Left") {
      yield* node.snapshots.delete(meta.id).pipe(
        Effect.catchAll((error) => Effect.logWarning(`failed to delete refused snapshot ${meta.id}`, error))
      )
    }
    return outcome
  })

/**
 * The InstallSnapshot RPC of a follower: asks the run loop whether to take it, streams the bytes into the
 * snapshot store outside the loop, then asks the loop to install it. Under the snapshot lock. A transport's
 * handler fiber.
 */
export const receiveSnapshot = (
  node: NodeState,
  request: InstallSnapshotRequest,
  data: Stream.Stream<Uint8Array, TransportError>
) =>
  spanned(node, "raft.follower.install_snapshot", {
    [TERM]: request.term,
    [PEER]: request.leaderId,
    [INDEX]: request.lastLogIndex
  }, () => receiveSnapshotUntraced(node, request, data), {
    parent: remoteParent(request.traceparent),
    kind: "server"
  })

const receiveSnapshotUntraced = (
  node: NodeState,
  request: InstallSnapshotRequest,
  data: Stream.Stream<Uint8Array, TransportError>
) =>
  Effect.gen(function*() {
    // The snapshot lock keeps this from overlapping a snapshot of our own (see takeSnapshot).
    const verdict = yield* ask<InstallVerdict>(node, (deferred) => ({ _tag: "InstallCheck", request, deferred }))
    if (!verdict.accept) {
      yield* Stream.runDrain(data).pipe(Effect.ignore)
      return verdict.response
    }
    const stored = yield* Effect.either(Stream.run(
      data,
      node.snapshots.create({
        index: request.lastLogIndex,
        term: request.lastLogTerm,
        configuration: request.configuration,
        configurationIndex: request.configurationIndex
      })
    ))
    if (stored._tag === "Left") {
      yield* Effect.logWarning("failed to receive a snapshot", stored.left)
      return { ...verdict.response, success: false }
    }
    return yield* ask<InstallSnapshotResponse>(node, (deferred) => ({
      _tag: "InstallStored",
      request,
      meta: stored.right,
      deferred
    }))
  }).pipe(node.snapshotLock.withPermits(1))

/**
 * A user restore (hashicorp's Restore): the snapshot is stored at an index past the whole log and past its own
 * (`max(lastIndex, meta.index) + 1`, so the FSM never sees an index go backwards), and every follower needs it.
 * The FSM takes it first; if it cannot, the snapshot is deleted and nothing changes. Then the log is dropped,
 * and what was in flight is failed. Run loop.
 */
export const handleUserRestore = (
  node: NodeState,
  userMeta: SnapshotMeta,
  data: Stream.Stream<Uint8Array, StorageError>,
  deferred: Future<void, RestoreError>
) =>
  Effect.gen(function*() {
    const { logs } = node
    const ls = node.leader
    if (ls === undefined) return deferred.done(Exit.fail(notLeaderError(node)))
    if (ls.transfer !== undefined) return deferred.done(Exit.fail(new LeadershipTransferInProgress()))
    if (node.latestConfigurationIndex > node.commitIndex) {
      return deferred.done(Exit.fail(
        new StorageError({ operation: "restore", reason: "a configuration change is not yet committed; retry" })
      ))
    }
    const index = Math.max(node.lastLogIndex, userMeta.index) + 1
    const term = node.currentTerm
    const stored = yield* Effect.either(Stream.run(
      data,
      node.snapshots.create({
        index,
        term,
        configuration: node.latestConfiguration,
        configurationIndex: node.latestConfigurationIndex
      })
    ))
    if (stored._tag === "Left") return deferred.done(Exit.fail(stored.left))
    if (node.leader !== ls) return deferred.done(Exit.fail(new LeadershipLost()))
    // The log is about to be replaced: no write of ours may land after that.
    yield* awaitLeaderWrites(node)
    if (ls.writeFailure !== undefined) return deferred.done(Exit.fail(ls.writeFailure))
    const meta = stored.right
    const restored = yield* restoreFsm(node, meta)
    if (restored._tag === "Left") {
      return deferred.done(Exit.fail(
        restored.left._tag === "SnapshotNotFound"
          ? new StorageError({ operation: "restore", reason: restored.left.reason })
          : restored.left
      ))
    }
    // Entries not yet committed never will be: the snapshot supersedes them.
    const lost = Exit.fail(new LeadershipLost())
    for (let i = ls.inflightHead; i < ls.inflight.length; i++) ls.inflight[i]!.future?.deferred.done(lost)
    ls.inflight = []
    ls.inflightHead = 0
    const dropped = node.lastLogIndex
    node.lastSnapshotIndex = index
    node.lastSnapshotTerm = term
    node.commitIndex = index
    node.dispatchedToFsm = index
    node.lastLogIndex = index
    node.lastLogTerm = term
    ls.storedIndex = index
    ls.storedTerm = term
    ls.unstored = []
    ls.recent = []
    ls.commitment.commitIndex = index
    ls.commitment.match(node.localId, index)
    for (const replication of ls.replications.values()) replication.trigger.unsafeOpen()
    // What the log held is covered by the snapshot now; were the delete to fail, a restart would drop it.
    const first = yield* logs.firstIndex
    if (first > 0) yield* logs.deleteRange(first, dropped)
    noteLogReplaced(node)
    forgetRecent(node)
    yield* logEvent(node, `restored user snapshot ${meta.id} at index ${index}`, { snapshotIndex: index })
    deferred.done(Exit.void)
  })

/**
 * Takes a snapshot (hashicorp's takeSnapshot): the FSM captures its state between two batches, the capture
 * is streamed into the snapshot store while applies go on, and the run loop then compacts the log. Any fiber.
 */
export const takeSnapshot = (node: NodeState): Effect.Effect<SnapshotMeta, SnapshotError | InvalidOperation> =>
  spanned(node, "raft.snapshot", {}, (span) => takeSnapshotUntraced(node, span))

const takeSnapshotUntraced = (
  node: NodeState,
  span: Tracer.Span | undefined
): Effect.Effect<SnapshotMeta, SnapshotError | InvalidOperation> =>
  node.snapshotLock.withPermits(1)(
    Effect.gen(function*() {
      if (node.isShutdown) return yield* new RaftShutdown()
      if (node.latestConfigurationIndex > node.commitIndex) {
        return yield* new InvalidOperation({
          reason: `a configuration change (at ${node.latestConfigurationIndex}) is not yet committed`
        })
      }
      const capture = new Future<Captured, FsmError | NothingNewToSnapshot | RaftShutdown>()
      if (!node.fsmMailbox.unsafeOffer({ _tag: "Capture", deferred: capture })) return yield* new RaftShutdown()
      const captured = yield* capture.await
      const persistStart = node.nowMicros()
      const meta = yield* Stream.run(
        captured.snapshot.data,
        node.snapshots.create({
          index: captured.index,
          term: captured.term,
          configuration: captured.configuration,
          configurationIndex: captured.configurationIndex
        })
      ).pipe(Effect.ensuring(captured.snapshot.release))
      metrics.snapshotPersist.unsafeUpdate(node.nowMicros() - persistStart, node.nodeLabels)
      span?.attribute(INDEX, meta.index)
      span?.attribute(TERM, meta.term)
      metrics.snapshots.unsafeUpdate(1, node.nodeLabels)
      const compacted = new Future<void, never>()
      if (emit(node, { _tag: "Compact", meta, deferred: compacted })) yield* compacted.await
      yield* logEvent(node, `snapshot ${meta.id} taken at index ${meta.index}`, { snapshotIndex: meta.index })
      return meta
    })
  )

/** Checks every snapshotInterval (jittered) whether `snapshotThreshold` entries were applied since the last. */
export const snapshotLoop = (node: NodeState) =>
  Effect.gen(function*() {
    while (true) {
      const interval = node.config.snapshotIntervalMillis
      const wait = yield* Random.nextIntBetween(interval, 2 * interval)
      yield* sleepOrReload(node, wait)
      if (node.appliedIndex - node.lastSnapshotIndex < node.config.snapshotThreshold) continue
      yield* takeSnapshot(node).pipe(
        Effect.catchAll((error) =>
          error._tag === "NothingNewToSnapshot" || error._tag === "RaftShutdown"
            ? Effect.void
            : Effect.logWarning("failed to take a snapshot", error)
        )
      )
    }
  })
