/**
 * Commitment's consequences: moving the commit index and handing committed
 * entries to the FSM runner (fsm.ts), in order. On a leader the quorum is
 * seen by `Commitment` (commitment.ts) in the fiber that recorded a match (the
 * leader's writer or a replication decoder); `onCommit` then either hands the
 * entries over itself, when the run loop is idle and nothing else is due, or
 * sends the run loop a `Commit` event (`processCommit`). A follower commits
 * what its leader committed, reading the entries from its store.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Configuration from "../Configuration.js"
import type * as Log from "../Log.js"
import type { StorageError } from "../RaftError.js"
import { handToFsm, waitApplied } from "./fsm.js"
import type { ApplyFuture, LeaderState } from "./leaderState.js"
import { logEvent } from "./logs.js"
import { describe, processMembership } from "./membership.js"
import { metrics } from "./metrics.js"
import { becomeFollower } from "./role.js"
import { COMMIT_INDEX, endSpan } from "./tracing.js"
import { emit, loopWaiting, type NodeState, storageNotFound } from "./state.js"

/** The `Commit` event: hands newly committed entries to the FSM runner, then what a commit may unblock. Run loop. */
export const processCommit = (node: NodeState) =>
  Effect.gen(function*() {
    const ls = node.leader
    if (ls === undefined) return
    ls.commitPending = false
    const newCommit = ls.commitment.commitIndex
    if (newCommit <= node.commitIndex) return
    node.commitIndex = newCommit
    // Entries before this leader's first (committed by its no-op) come from the store.
    if (node.dispatchedToFsm < ls.commitment.startIndex - 1) {
      yield* sendStoredToFsm(node, Math.min(newCommit, ls.commitment.startIndex - 1))
    }
    sendInflightToFsm(node, ls, newCommit)
    const committedBefore = node.committedConfigurationIndex
    noteCommittedConfiguration(node)
    if (node.committedConfigurationIndex !== committedBefore) {
      yield* logEvent(node, `configuration committed: ${describe(node.committedConfiguration)}`, {
        configurationIndex: node.committedConfigurationIndex
      })
    }
    // A leader that is no longer a voter of the committed configuration steps down (hashicorp/raft); removed
    // altogether, it shuts down once the change is applied, when configured to.
    if (
      node.committedConfigurationIndex >= ls.commitment.startIndex &&
      !Configuration.isVoter(node.committedConfiguration, node.localId)
    ) {
      const removed = Configuration.find(node.committedConfiguration, node.localId) === undefined
      yield* logEvent(node, removed ? "removed from the configuration, stepping down" : "no longer a voter, stepping down")
      const appliedAt = node.committedConfigurationIndex
      yield* becomeFollower(node)
      if (removed && node.config.shutdownOnRemove) {
        yield* waitApplied(node, appliedAt).pipe(Effect.andThen(node.shutdown), Effect.forkIn(node.parentScope))
      }
      return
    }
    yield* processMembership(node)
  })

/**
 * The commit of `ls` moved. When the run loop is idle with nothing queued and the commit cannot touch the
 * configuration or a backlog from the store, what `processCommit` does is synchronous and is done here, in the
 * fiber that saw the quorum (the leader's writer or a replication decoder): this saves the hop through the run
 * loop on every commit. Otherwise the run loop is told (one `Commit` event at a time). Called by `Commitment`.
 */
export const onCommit = (node: NodeState, ls: LeaderState, myEpoch: number) => {
  if (node.leader !== ls || ls.commitPending) return
  if (
    loopWaiting(node) &&
    node.dispatchedToFsm >= ls.commitment.startIndex - 1 && node.latestConfigurationIndex <= node.commitIndex &&
    ls.changes.length === 0
  ) {
    const newCommit = ls.commitment.commitIndex
    if (newCommit <= node.commitIndex) return
    node.commitIndex = newCommit
    sendInflightToFsm(node, ls, newCommit)
    return
  }
  ls.commitPending = true
  emit(node, { _tag: "Commit", epoch: myEpoch })
}

/** Hands this leader's entries up to `newCommit` (and their futures) to the FSM runner. */
const sendInflightToFsm = (node: NodeState, ls: LeaderState, newCommit: number) => {
  const batchLogs: Array<Log.Log> = []
  const batchFutures: Array<ApplyFuture | undefined> = []
  let oldest = Infinity
  while (ls.inflightHead < ls.inflight.length && ls.inflight[ls.inflightHead]!.log.index <= newCommit) {
    const item = ls.inflight[ls.inflightHead++]!
    if (item.log.index <= node.dispatchedToFsm) continue
    batchLogs.push(item.log)
    batchFutures.push(item.future)
    if (item.at < oldest) oldest = item.at
    const trace = item.future?.trace
    if (trace?.commit !== undefined) {
      trace.commit.attribute(COMMIT_INDEX, newCommit)
      endSpan(node, trace.commit)
      trace.commit = undefined
    }
  }
  if (ls.traced.length > 0) pruneTraced(ls, newCommit)
  // The records passed hold their futures and, through them, the answers: dropped once they are half the array (a
  // copy of at most as many records as were passed), not after thousands, which at speed outlived V8's young
  // generation and were promoted as garbage (test/Raft.retention.test.ts).
  if (ls.inflightHead >= 64 && ls.inflightHead * 2 >= ls.inflight.length) {
    ls.inflight = ls.inflight.slice(ls.inflightHead)
    ls.inflightHead = 0
  }
  if (batchLogs.length > 0) {
    metrics.commitTime.unsafeUpdate(node.nowMicros() - oldest, node.nodeLabels)
    metrics.commitNumLogs.unsafeUpdate(batchLogs.length, node.nodeLabels)
    node.dispatchedToFsm = batchLogs[batchLogs.length - 1]!.index
    handToFsm(node, batchLogs, batchFutures)
  }
}

/** Forgets traced entries that are committed and sent to every follower. */
const pruneTraced = (ls: LeaderState, newCommit: number) => {
  let sent = newCommit
  for (const replication of ls.replications.values()) sent = Math.min(sent, replication.nextIndex - 1)
  let k = 0
  while (k < ls.traced.length && ls.traced[k]!.index <= sent) k++
  if (k > 0) ls.traced = ls.traced.slice(k)
}

/** The latest configuration is committed once the commit index reaches it. */
export const noteCommittedConfiguration = (node: NodeState) => {
  if (
    node.latestConfigurationIndex <= node.commitIndex &&
    node.committedConfigurationIndex !== node.latestConfigurationIndex
  ) {
    node.committedConfiguration = node.latestConfiguration
    node.committedConfigurationIndex = node.latestConfigurationIndex
  }
}

/** Reads committed entries from the log store and hands them to the FSM (followers, and a new leader's backlog). */
export const sendStoredToFsm = (node: NodeState, upTo: number): Effect.Effect<void, StorageError> => {
  const from = Math.max(node.dispatchedToFsm + 1, node.lastSnapshotIndex + 1)
  if (node.dispatchedToFsm >= upTo || from > upTo || upTo - from >= 1024) return sendStoredToFsmInBatches(node, upTo)
  // The usual case (a follower's commit moved by one AppendEntries): one read, no loop.
  return Effect.map(readCommitted(node, from, upTo), (entries) => toFsm(node, entries, upTo))
}

const readCommitted = (node: NodeState, from: number, to: number) =>
  node.logs.getLogs(from, to).pipe(Effect.catchTag("LogNotFound", storageNotFound("read")))

/** Hands committed entries up to `to` (stored, or kept by recentEntries.ts) to the FSM runner. */
export const toFsm = (node: NodeState, entries: ReadonlyArray<Log.Log>, to: number): void => {
  node.dispatchedToFsm = to
  handToFsm(node, entries, undefined)
}

const sendStoredToFsmInBatches = (node: NodeState, upTo: number) =>
  Effect.gen(function*() {
    while (node.dispatchedToFsm < upTo) {
      const from = Math.max(node.dispatchedToFsm + 1, node.lastSnapshotIndex + 1)
      const to = Math.min(upTo, from + 1023)
      if (from > to) {
        node.dispatchedToFsm = upTo
        break
      }
      toFsm(node, yield* readCommitted(node, from, to), to)
    }
  })
