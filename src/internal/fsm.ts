/**
 * The FSM runner (hashicorp's runFSM): one fiber that applies committed
 * entries to the user's state machine in log order, in batches, and answers
 * each entry's future with the FSM's response. Between two batches it also
 * captures the state for a snapshot (`Capture`) and replaces it with one
 * (`Restore`). It writes the `applied*` fields of the node; so does
 * `handToFsm`, which applies a batch itself when the state machine's apply is
 * synchronous and the runner waits with nothing queued (the rule of the
 * engine's fast paths, state.ts): one batch at a time, in log order, either
 * way.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { constVoid } from "effect/Function"
import type * as Tracer from "effect/Tracer"
import * as Configuration from "../Configuration.js"
import type * as Log from "../Log.js"
import { NothingNewToSnapshot } from "../RaftError.js"
import { Future } from "./future.js"
import type { ApplyFuture } from "./leaderState.js"
import { metrics } from "./metrics.js"
import type { NodeState } from "./state.js"
import { syncApplyOf } from "./syncForms.js"
import { endSpan, FIRST_INDEX, LAST_INDEX, linksTo, startSpan } from "./tracing.js"

/**
 * Waits until the FSM has applied `index` (a waiter that gives up leaves the list); `wait` waits on the waiter's
 * future, e.g. until a read's deadline (read.ts). Any fiber.
 */
export const waitApplied = <E = never>(
  node: NodeState,
  index: number,
  wait: (future: Future<void, never>, drop: () => void) => Effect.Effect<void, E> = (future, drop) =>
    future.awaitOr(drop)
): Effect.Effect<void, E> =>
  Effect.suspend(() => {
    if (node.appliedIndex >= index) return Effect.void
    const waiter = addWaiter(node, index)
    return wait(waiter.future, waiter.drop)
  })

/**
 * Calls `callback` once the FSM has applied `index` (at once if it has, or when the node shuts down); the function
 * returned takes the waiter off the list. For a caller outside any fiber (`read.ts`, `leaderReadListen`).
 */
export const onApplied = (node: NodeState, index: number, callback: () => void): () => void => {
  if (node.appliedIndex >= index) {
    callback()
    return constVoid
  }
  const waiter = addWaiter(node, index)
  waiter.future.listen(callback)
  return waiter.drop
}

/** A waiter for `index` on the node's list, and what takes it off the list. */
const addWaiter = (node: NodeState, index: number) => {
  const waiter = { index, future: new Future<void, never>() }
  node.appliedWaiters.push(waiter)
  const drop = () => {
    const at = node.appliedWaiters.indexOf(waiter)
    if (at >= 0) node.appliedWaiters.splice(at, 1)
  }
  return { future: waiter.future, drop }
}

/** Wakes the waiters whose index the FSM has now applied (after a batch, or a snapshot restored). */
const notifyApplied = (node: NodeState): void => {
  if (node.appliedWaiters.length === 0) return
  const waiting = node.appliedWaiters
  node.appliedWaiters = []
  for (const waiter of waiting) {
    if (waiter.index <= node.appliedIndex) waiter.future.done(Exit.void)
    else node.appliedWaiters.push(waiter)
  }
}

/**
 * Hands committed entries (and, on the leader, their futures) to the FSM runner; or, when the state machine's apply
 * is synchronous (syncForms.ts), the runner waits with nothing queued and the node is not traced (the runner makes
 * the spans), applies them here and now, as the runner would. Whoever committed them calls this, in log order.
 */
export const handToFsm = (
  node: NodeState,
  logs: ReadonlyArray<Log.Log>,
  futures: ReadonlyArray<ApplyFuture | undefined> | undefined
): void => {
  if (logs.length === 0) return
  node.fsmPending += logs.length
  const apply = node.fsmMailbox.waiting && node.tracing === undefined && !node.isShutdown
    ? syncApplyOf(node.fsm)
    : undefined
  if (apply === undefined) {
    node.fsmMailbox.unsafeOffer({ _tag: "Batch", logs, futures })
    return
  }
  let onlyCommands = true
  for (const entry of logs) {
    if (entry.type === "Command") continue
    onlyCommands = false
    if (entry.type === "Configuration" && node.bugs.fsmNowSkipsConfiguration !== true) noteConfiguration(node, entry)
  }
  const commands = onlyCommands ? logs : logs.filter((entry) => entry.type === "Command")
  let responses = noResponses
  if (commands.length > 0) {
    node.fsmInHand = futures ?? []
    const started = node.nowMicros()
    try {
      responses = apply(commands)
    } catch (cause) {
      // As a defect of the runner's own apply: the runner dies of it and the node shuts down, failing the batch's
      // futures (`fsmInHand`); what is committed after it queues behind, and is never applied.
      node.fsmMailbox.unsafeOffer({ _tag: "Failed", cause })
      return
    }
    timed(node, started, commands.length)
  }
  answerApplied(node, logs, futures, responses)
}

const noResponses: ReadonlyArray<unknown> = []

/** The metrics of a batch of `count` commands applied since `started` (µs). */
const timed = (node: NodeState, started: number, count: number): void => {
  metrics.fsmApply.unsafeUpdate(node.nowMicros() - started, node.nodeLabels)
  metrics.fsmApplyNumLogs.unsafeUpdate(count, node.nodeLabels)
}

/** A configuration entry reached the FSM: it is the applied configuration from now on. */
const noteConfiguration = (node: NodeState, entry: Log.Log): void => {
  const decoded = Configuration.decode(entry.data)
  if (decoded !== undefined) {
    node.appliedConfiguration = decoded
    node.appliedConfigurationIndex = entry.index
  }
}

/** Answers the futures of an applied batch with the responses of its commands and moves `appliedIndex`. */
const answerApplied = (
  node: NodeState,
  logs: ReadonlyArray<Log.Log>,
  futures: ReadonlyArray<ApplyFuture | undefined> | undefined,
  responses: ReadonlyArray<unknown>
): void => {
  node.fsmInHand = []
  let k = 0
  for (let i = 0; i < logs.length; i++) {
    const entry = logs[i]!
    const response = entry.type === "Command" ? responses[k++] : undefined
    const future = futures?.[i]
    if (future !== undefined) future.deferred.done(Exit.succeed({ index: entry.index, response }))
  }
  const last = logs[logs.length - 1]!
  node.appliedIndex = last.index
  node.appliedTerm = last.term
  node.fsmPending -= logs.length
  notifyApplied(node)
}

/** The FSM runner's fiber body, built once per node. */
export const fsmRunner = (node: NodeState) => {
  // The batch being gathered.
  let all: Array<Log.Log> = []
  let futures: Array<ApplyFuture | undefined> = []
  let commands: Array<Log.Log> = []
  let started = 0
  // The spans of the traced applies in the batch, and the batch's own span (tracing.ts).
  let traces: Array<Tracer.Span> | undefined
  let span: Tracer.Span | undefined
  const applyPending: Effect.Effect<void> = Effect.suspend(() => {
    if (all.length === 0) return Effect.void
    node.fsmInHand = futures
    if (traces !== undefined && node.tracing !== undefined) {
      span = startSpan(node, node.tracing, "raft.fsm.apply", traces[0], {
        [FIRST_INDEX]: all[0]!.index,
        [LAST_INDEX]: all[all.length - 1]!.index,
        "raft.entries": all.length
      }, "internal", linksTo(traces))
      traces = undefined
    }
    if (commands.length === 0) return Effect.sync(() => applied(noResponses))
    started = node.nowMicros()
    return Effect.map(node.fsm.applyBatch(commands), timedApplied)
  })
  const timedApplied = (responses: ReadonlyArray<unknown>): void => {
    timed(node, started, commands.length)
    applied(responses)
  }
  /** Answers the applied batch's futures and moves `appliedIndex`. */
  const applied = (responses: ReadonlyArray<unknown>): void => {
    if (span !== undefined) {
      endSpan(node, span)
      span = undefined
    }
    const batch = all
    const batchFutures = futures
    all = []
    futures = []
    commands = []
    answerApplied(node, batch, batchFutures, responses)
  }

  return Effect.gen(function*() {
    while (true) {
      const [items, done] = yield* node.fsmMailbox.takeAll
      for (const item of items) {
        if (item._tag === "Failed") return yield* Effect.die(item.cause)
        if (item._tag === "Batch") {
          for (let i = 0; i < item.logs.length; i++) {
            const entry = item.logs[i]!
            all.push(entry)
            const future = item.futures === undefined ? undefined : item.futures[i]
            futures.push(future)
            if (future?.trace !== undefined) (traces ??= []).push(future.trace.span)
            if (entry.type === "Command") commands.push(entry)
            else if (entry.type === "Configuration") noteConfiguration(node, entry)
          }
          continue
        }
        yield* applyPending
        if (item._tag === "Capture") {
          // Taken between two batches, so it is exactly the state at `appliedIndex`.
          if (node.appliedIndex <= node.lastSnapshotIndex) {
            item.deferred.done(Exit.fail(new NothingNewToSnapshot()))
            continue
          }
          const captured = yield* Effect.either(node.fsm.snapshot)
          item.deferred.done(
            captured._tag === "Left" ? Exit.fail(captured.left) : Exit.succeed({
              snapshot: captured.right,
              index: node.appliedIndex,
              term: node.appliedTerm,
              configuration: node.appliedConfiguration,
              configurationIndex: node.appliedConfigurationIndex
            })
          )
        } else {
          // A snapshot that cannot be restored (its data corrupt, or refused by the FSM) leaves the FSM as it was,
          // as `Fsm.restore` promises: whoever asked decides what follows (snapshot.ts refuses it).
          const restoreStart = node.nowMicros()
          const restored = yield* Effect.either(
            Effect.flatMap(node.snapshots.open(item.meta.id), (opened) => node.fsm.restore(opened.data))
          )
          metrics.fsmRestore.unsafeUpdate(node.nowMicros() - restoreStart, node.nodeLabels)
          if (restored._tag === "Left") {
            item.deferred.done(Exit.fail(restored.left))
            continue
          }
          node.appliedIndex = item.meta.index
          node.appliedTerm = item.meta.term
          node.appliedConfiguration = item.meta.configuration
          node.appliedConfigurationIndex = item.meta.configurationIndex
          notifyApplied(node)
          item.deferred.done(Exit.void)
        }
      }
      yield* applyPending
      if (done) return
    }
  })
}
