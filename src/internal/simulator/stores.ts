/**
 * The simulated servers' disks: memory stores whose writes take virtual time and are lost when the server
 * crashes before they finish (an unsynced write lost to a power cut), and a log store that reports every entry
 * written to the log-matching check. The stores outlive a server's incarnations.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type * as Log from "../../Log.js"
import * as LogStore from "../../LogStore.js"
import { StorageError } from "../../RaftError.js"
import * as SnapshotStore from "../../SnapshotStore.js"
import * as StableStore from "../../StableStore.js"
import { registerSyncLog, syncWriteOf } from "../syncForms.js"
import { SkewedClock } from "./clock.js"
import type { Invariants } from "./invariants.js"
import { LogView, termBefore } from "./logView.js"
import { startNode, stopNode } from "./nodes.js"
import { type SimCore, type SimNode, sync } from "./state.js"

/** A write to node `id`'s disk: it takes virtual time, and is lost (fails) if the node crashes meanwhile. */
const durable = (
  sim: SimCore,
  id: string,
  operation: string,
  write: Effect.Effect<void, StorageError>
): Effect.Effect<void, StorageError> => {
  const [diskMin, diskMax] = sim.diskLatency
  if (diskMax <= 0) return write
  // Chained without a generator: one runs per write of a run.
  return Effect.suspend(() => {
    const crashesBefore = sim.crashes.get(id) ?? 0
    const synced = Effect.suspend(() =>
      (sim.crashes.get(id) ?? 0) !== crashesBefore
        ? Effect.fail(new StorageError({ operation, reason: "the node crashed before the write was synced" }))
        : write
    )
    return Effect.flatMap(Random.nextIntBetween(diskMin, diskMax + 1), (delay) => Effect.zipRight(Effect.sleep(delay), synced))
  })
}

const slowStableStore = (sim: SimCore, id: string): StableStore.StableStore => {
  const inner = StableStore.makeMemory()
  return {
    ...inner,
    set: (key, value) => durable(sim, id, "set", inner.set(key, value)),
    setUint64: (key, value) => durable(sim, id, "setUint64", inner.setUint64(key, value))
  }
}

const trackedLogStore = (
  sim: SimCore,
  invariants: Invariants,
  id: string,
  snapshots: SnapshotStore.SnapshotStore,
  view: LogView
): LogStore.LogStore => {
  const inner = LogStore.makeMemory()
  const check = (logs: ReadonlyArray<Log.Log>) => {
    if (logs.length === 0) return
    let prevTerm = termBefore(view, snapshots, logs[0]!.index)
    for (const entry of logs) {
      invariants.noteEntry(id, entry, prevTerm)
      prevTerm = entry.term
    }
    // An entry kept after the batch now follows the batch's last entry.
    const last = logs[logs.length - 1]!
    const next = view.get(last.index + 1)
    if (next !== undefined) invariants.noteEntry(id, next, last.term)
  }
  const crashMidWrite = sim.faultOptions.crashLeaderMidWrite ?? 0
  // What the checks see of a write: before it, and once it is done (both ways of writing below).
  const writing = (logs: ReadonlyArray<Log.Log>) => invariants.noteWrite(id, view, logs)
  const written = (logs: ReadonlyArray<Log.Log>) => {
    view.store(logs)
    check(logs)
  }
  const store = (logs: ReadonlyArray<Log.Log>) =>
    durable(
      sim,
      id,
      "storeLogs",
      Effect.suspend(() => {
        writing(logs)
        return Effect.map(inner.storeLogs(logs), () => written(logs))
      })
    )
  const tracked: LogStore.LogStore = {
    ...inner,
    storeLogs: crashMidWrite > 0
      ? (logs) => Effect.zipRight(maybeCrashMidWrite(sim, invariants, id, crashMidWrite), store(logs))
      : store,
    deleteRange: (min, max) =>
      Effect.sync(() => invariants.noteDeletion(id, view, snapshots, min, max)).pipe(
        Effect.zipRight(inner.deleteRange(min, max)),
        Effect.zipRight(Effect.sync(() => view.delete(min, max)))
      )
  }
  // An instant disk (no latency drawn) writes in the call, as the memory store does: then the followers' fast
  // path that stores without the run loop (follower.ts `appendNow`) runs under the simulator too, checked alike.
  const innerWrite = syncWriteOf(inner)
  if (sim.diskLatency[1] > 0 || crashMidWrite > 0 || innerWrite === undefined) return tracked
  return registerSyncLog(tracked, (logs) => {
    writing(logs)
    innerWrite(logs)
    written(logs)
  })
}

/**
 * The targeted crash of `FaultOptions.crashLeaderMidWrite`: when node `id` leads and starts a write of its log,
 * with probability `p`, crash it within the disk's latency (so, mostly, before the write is durable), and restart
 * it a little later.
 */
const maybeCrashMidWrite = (sim: SimCore, invariants: Invariants, id: string, p: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    const node = sim.nodes.find((n) => n.id === id)
    const raft = node?.raft
    if (sim.chaosOver || node === undefined || raft === undefined || sync(raft.state) !== "Leader") return
    if ((yield* Random.next) >= p) return
    sim.faults.crashLeaderMidWrite = (sim.faults.crashLeaderMidWrite ?? 0) + 1
    const [, diskMax] = sim.diskLatency
    yield* Effect.gen(function*() {
      yield* Effect.sleep(yield* Random.nextIntBetween(0, diskMax + 1))
      if (node.raft !== raft) return
      yield* stopNode(sim, node)
      sim.note(`crash ${id}, the leader, during a write of its log`)
      yield* Effect.sleep(yield* Random.nextIntBetween(20, 201))
      if (node.raft === undefined && !sim.chaosOver) {
        yield* startNode(sim, invariants, node)
        sim.note(`restart ${id}`)
      }
    }).pipe(Effect.forkIn(sim.rootScope))
  })

/** Server `n<i + 1>` with empty stores, not running. */
export const makeNode = (sim: SimCore, invariants: Invariants, i: number): SimNode => {
  const id = `n${i + 1}`
  const snapshots = SnapshotStore.makeMemory()
  const view = new LogView()
  return {
    id,
    address: `mem://${id}`,
    logs: trackedLogStore(sim, invariants, id, snapshots, view),
    view,
    stable: slowStableStore(sim, id),
    snapshots,
    raft: undefined,
    fsm: undefined,
    clock: new SkewedClock(sim.clock),
    scope: undefined,
    incarnation: 0,
    appliedThrough: 0,
    capture: Effect.succeed(undefined),
    starting: false,
    lastCommit: 0,
    lastApplied: 0,
    checkedCommit: 0,
    lastState: "Follower"
  }
}
