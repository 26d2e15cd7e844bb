/**
 * The leader's own log: appending entries and writing them. `appendNow`
 * gives applies their indexes, keeps them in memory for replication
 * (`LeaderState.unstored` and `recent`), hands them to the writer and wakes
 * every replication fiber at once, so the leader's own write overlaps the
 * followers' (Raft thesis §10.2.1). The writer fiber stores them in order,
 * batching what queued while a write was in flight into one `storeLogs`, and
 * counts the leader toward commitment once they are durable.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Tracer from "effect/Tracer"
import * as Log from "../Log.js"
import { LogNotFound, type StorageError } from "../RaftError.js"
import { Future } from "./future.js"
import { type ApplyFuture, DISPATCHED, type LeaderState } from "./leaderState.js"
import { endSpan, FIRST_INDEX, LAST_INDEX, linksTo, startSpan, TERM } from "./tracing.js"
import { markAppended } from "./logAge.js"
import { metrics } from "./metrics.js"
import { emit, type NodeState } from "./state.js"

/**
 * Appends applies (and the leader's no-op) to the log: hands them to the leader's writer and wakes replication
 * at once. The leader counts itself toward commitment when its write has succeeded (`leaderWriter`). Run loop.
 */
export const dispatch = (node: NodeState, futures: ReadonlyArray<ApplyFuture>) =>
  Effect.suspend(() =>
    // Backpressure: a leader whose disk falls behind its followers stops taking entries once
    // `maxUnwritten` wait for its writer, so they cannot pile up in memory without bound.
    node.writesPending >= node.maxUnwritten
      ? Effect.zipRight(awaitLeaderWrites(node), dispatchNow(node, futures))
      : dispatchNow(node, futures)
  )

const dispatchNow = (node: NodeState, futures: ReadonlyArray<ApplyFuture>) =>
  Effect.sync(() => appendNow(node, futures))

/**
 * `dispatch`'s work, synchronous: the caller checked there is room for the writer. Run loop, or a client's fiber
 * while the loop waits (`enqueue`).
 */
export const appendNow = (node: NodeState, futures: ReadonlyArray<ApplyFuture>): void => {
  const ls = node.leader
  if (ls === undefined) return
  if (ls.writeFailure !== undefined) {
    // The leader is stepping down (its WriteFailed event is queued): nothing more is appended.
    for (const future of futures) future.deferred.done(Exit.fail(ls.writeFailure))
    return
  }
  const term = node.currentTerm
  const first = node.lastLogIndex + 1
  const entries = new Array<Log.Log>(futures.length)
  const at = node.nowMicros()
  let traces: Array<Tracer.Span> | undefined
  for (let i = 0; i < futures.length; i++) {
    const future = futures[i]!
    future.status = DISPATCHED
    const entry = Log.make(first + i, term, future.type, future.data)
    entries[i] = entry
    ls.inflight.push({ log: entry, future, at })
    ls.unstored.push(entry)
    ls.recent.push(entry)
    if (future.trace !== undefined) {
      traces ??= []
      traces.push(future.trace.span)
      ls.traced.push({ index: entry.index, span: future.trace.span })
    }
  }
  node.lastLogIndex = first + entries.length - 1
  node.lastLogTerm = term
  if (ls.recent.length > node.recentMax) ls.recent = ls.recent.slice(-node.recentMax / 2)
  node.writesPending += entries.length
  if (traces !== undefined) traceCommit(node, ls, futures, traces, first, node.lastLogIndex)
  node.writes.unsafeOffer({ leader: ls, entries, traces })
  if (node.bugs.leaderCountsUnwritten === true) ls.commitment.match(node.localId, node.lastLogIndex)
  metrics.applies.unsafeUpdate(entries.length, node.nodeLabels)
  for (const replication of ls.replications.values()) {
    if (replication.sendNow === undefined || !replication.sendNow()) replication.trigger.unsafeOpen()
  }
}

/**
 * Opens the batch's commit span, a child of its first traced apply, closed by commit.ts when the batch commits
 * (or by the apply when it ends otherwise); keeps the list of traced entries for replication bounded.
 */
const traceCommit = (
  node: NodeState,
  ls: LeaderState,
  futures: ReadonlyArray<ApplyFuture>,
  traces: ReadonlyArray<Tracer.Span>,
  first: number,
  last: number
) => {
  const tracing = node.tracing
  if (tracing === undefined) return
  const owner = futures.find((future) => future.trace !== undefined)!.trace!
  owner.commit = startSpan(node, tracing, "raft.commit", traces[0], {
    [TERM]: node.currentTerm,
    [FIRST_INDEX]: first,
    [LAST_INDEX]: last,
    "raft.entries": last - first + 1
  }, "internal", linksTo(traces))
  if (ls.traced.length > 1024) ls.traced = ls.traced.slice(-512)
}

/**
 * The leader's writes of its own entries, in order: batches queued while a write is in flight share the next
 * `storeLogs` (one synced commit). Once a write fails, the leader's later entries are never written, so its
 * log keeps no gap; the run loop steps down on the `WriteFailed` event. The writer fiber's body.
 */
export const leaderWriter = (node: NodeState) =>
  Effect.gen(function*() {
    while (true) {
      const [list, done] = yield* node.writes.takeAll
      let i = 0
      while (i < list.length) {
        const ls = list[i]!.leader
        const batch: Array<Log.Log> = []
        let traces: Array<Tracer.Span> | undefined
        for (; i < list.length && list[i]!.leader === ls; i++) {
          for (const entry of list[i]!.entries) batch.push(entry)
          const traced = list[i]!.traces
          if (traced !== undefined) traces = traces === undefined ? [...traced] : traces.concat(traced)
        }
        if (ls.writeFailure === undefined) {
          const span = traces === undefined || node.tracing === undefined ? undefined : startSpan(
            node,
            node.tracing,
            "raft.append",
            traces[0],
            {
              [TERM]: ls.term,
              [FIRST_INDEX]: batch[0]!.index,
              [LAST_INDEX]: batch[batch.length - 1]!.index,
              "raft.entries": batch.length
            },
            "internal",
            linksTo(traces)
          )
          const stored = yield* Effect.either(Effect.uninterruptible(node.logs.storeLogs(batch)))
          if (span !== undefined) endSpan(node, span, stored._tag === "Left" ? Exit.fail(stored.left) : Exit.void)
          if (stored._tag === "Left") {
            ls.writeFailure = stored.left
            emit(node, { _tag: "WriteFailed", leader: ls, error: stored.left })
          } else {
            const last = batch[batch.length - 1]!
            markAppended(node, batch[0]!.index)
            ls.storedIndex = last.index
            ls.storedTerm = last.term
            let k = 0
            while (k < ls.unstored.length && ls.unstored[k]!.index <= last.index) k++
            ls.unstored = k === ls.unstored.length ? [] : ls.unstored.slice(k)
            if (node.leader === ls) ls.commitment.match(node.localId, last.index)
          }
        }
        node.writesPending -= batch.length
      }
      if (node.writesPending === 0 && node.writesDrained !== undefined) {
        const drained = node.writesDrained
        node.writesDrained = undefined
        drained.done(Exit.void)
      }
      if (done) return
    }
  })

/** Waits until every entry handed to the leader's writer is written (or its write failed). Run loop only. */
export const awaitLeaderWrites = (node: NodeState): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (node.writesPending === 0 || node.writerStopped) return Effect.void
    node.writesDrained ??= new Future<void, never>()
    return node.writesDrained.await
  })

/** Entry `index` of the leader's log, from the store or from `unstored`. */
export const readLeaderLog = (
  node: NodeState,
  ls: LeaderState,
  index: number
): Effect.Effect<Log.Log, LogNotFound | StorageError> => {
  if (index <= ls.storedIndex) return node.logs.getLog(index)
  const entry = ls.unstored[index - (ls.unstored[0]?.index ?? 0)]
  return entry?.index === index ? Effect.succeed(entry) : Effect.fail(new LogNotFound({ index }))
}

/** Entries `from..to` of the leader's log: from the store up to what it holds, the rest from `unstored`. */
export const readLeaderLogs = (
  node: NodeState,
  ls: LeaderState,
  from: number,
  to: number
): Effect.Effect<ReadonlyArray<Log.Log>, LogNotFound | StorageError> => {
  const stored = ls.storedIndex
  if (to <= stored) return node.logs.getLogs(from, to)
  // Taken now: the writer moves entries from `unstored` to the store (never the other way).
  const base = ls.unstored[0]?.index ?? stored + 1
  const tail = ls.unstored.slice(Math.max(from, stored + 1) - base, to - base + 1)
  if (from > stored) return Effect.succeed(tail)
  return Effect.map(node.logs.getLogs(from, stored), (head) => head.concat(tail))
}
