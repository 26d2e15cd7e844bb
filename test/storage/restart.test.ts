import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as path from "node:path"
import * as Configuration from "../../src/Configuration.js"
import * as Fsm from "../../src/Fsm.js"
import * as Raft from "../../src/Raft.js"
import * as SnapshotStore from "../../src/SnapshotStore.js"
import * as FileSnapshotStore from "../../src/storage/FileSnapshotStore.js"
import * as LmdbStore from "../../src/storage/LmdbStore.js"
import * as LogCache from "../../src/storage/LogCache.js"
import * as MemoryNetwork from "../../src/transport/MemoryNetwork.js"
import { LogStore } from "../../src/LogStore.js"
import { bytes, decoder, fastTimers, type RecordingFsm, recordingFsm } from "../cluster.js"
import { tempDir } from "./temp.js"

/** A single node on the LMDB directory `dir` (behind a LogCache), recording the commands its FSM applies. */
const node = (dir: string, applied: Array<string>) =>
  Raft.layer({ localId: "solo", ...fastTimers }).pipe(
    Layer.provide(LogCache.layer(64)),
    Layer.provide([
      LmdbStore.layer({ path: dir }),
      Fsm.layer(Fsm.fromFunction((log) => applied.push(decoder.decode(log.data)))),
      SnapshotStore.layerMemory,
      MemoryNetwork.layerTransport("solo").pipe(Layer.provide(MemoryNetwork.layer()))
    ])
  )

const awaitLeader = (raft: Raft.Raft) =>
  Effect.gen(function*() {
    while ((yield* raft.state) !== "Leader") yield* Effect.sleep("10 millis")
  }).pipe(Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("no leader within 20 s") }))

/**
 * A single node on LMDB and file snapshots under `dir`, snapshotting every 10 applied entries and keeping 5 behind
 * a snapshot, so its log is compacted as it goes. Its log store is in the layer's output, to watch compaction.
 */
const compactingNode = (dir: string, fsm: RecordingFsm) =>
  Raft.layer({ localId: "solo", ...fastTimers, snapshotThreshold: 10, trailingLogs: 5, snapshotInterval: "5 millis" })
    .pipe(
      Layer.provideMerge(LogCache.layer(64)),
      Layer.provideMerge(LmdbStore.layer({ path: path.join(dir, "raft") })),
      Layer.provide([
        Fsm.layer(fsm),
        FileSnapshotStore.layer(path.join(dir, "snapshots")),
        MemoryNetwork.layerTransport("solo").pipe(Layer.provide(MemoryNetwork.layer()))
      ])
    )

describe("a node on LMDB across a restart", () => {
  // One node, not three: after the restart its state can come only from its own directories, where in a cluster
  // the leader would bring a node whose restore failed back up to date by InstallSnapshot and hide the fault.
  it.scopedLive("a node restarted on LMDB and file snapshots after compaction keeps term and vote, rebuilds its FSM from the snapshot plus the log suffix, and applies again", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const first = recordingFsm()
      const before = yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(compactingNode(dir, first))
        const raft = Context.get(context, Raft.Raft)
        const logs = Context.get(context, LogStore)
        yield* raft.bootstrapCluster(Configuration.voters([["solo", "mem://solo"]]))
        yield* awaitLeader(raft)
        for (let i = 0; i < 60; i++) yield* raft.apply(bytes(`command ${i}`), { timeout: "5 seconds" })
        // The snapshot loop catches up (every 5-10 ms): wait until it has compacted the log.
        while ((yield* logs.firstIndex) <= 1) yield* Effect.sleep("10 millis")
        // A snapshot at the end now (unless the loop just took it), then 3 entries more, fewer than the threshold, so
        // no snapshot holds them: the restart must replay them from the log.
        yield* raft.snapshot.pipe(Effect.catchTag("NothingNewToSnapshot", () => Effect.void))
        while ((yield* raft.stats).lastSnapshotIndex < (yield* raft.lastIndex)) yield* Effect.sleep("10 millis")
        const snapshotIndex = (yield* raft.stats).lastSnapshotIndex
        for (let i = 60; i < 63; i++) yield* raft.apply(bytes(`command ${i}`), { timeout: "5 seconds" })
        return { term: yield* raft.currentTerm, lastIndex: yield* raft.lastIndex, snapshotIndex }
      }).pipe(Effect.timeout("30 seconds")))
      const state = first.commands()
      assert.deepStrictEqual(state, Array.from({ length: 63 }, (_, i) => `command ${i}`))

      // What is on disk, read with the stores alone: term and vote, a compacted log, a snapshot behind its end.
      const disk = yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* LmdbStore.make({ path: path.join(dir, "raft") })
        assert.strictEqual(yield* store.stable.getUint64("CurrentTerm"), before.term)
        const vote = Option.getOrThrow(yield* store.stable.get("LastVote"))
        assert.deepStrictEqual(JSON.parse(decoder.decode(vote)), { term: before.term, candidate: "solo" })
        assert.strictEqual(yield* store.logs.lastIndex, before.lastIndex)
        const firstIndex = yield* store.logs.firstIndex
        assert.isAbove(firstIndex, 1, "the log was never compacted")
        const snapshots = yield* Effect.provide(
          Effect.flatMap(SnapshotStore.SnapshotStore, (store) => store.list),
          FileSnapshotStore.layer(path.join(dir, "snapshots"))
        )
        const newest = snapshots[0]!
        // The snapshot loop may add one more: a tick that passed its threshold check while our snapshot held the
        // lock takes its own once that is done, of whatever was applied by then (one of the 3 entries, when the
        // store commits them fast). Either way the newest snapshot leaves a log suffix to replay.
        assert.isAtLeast(newest.index, before.snapshotIndex)
        assert.isBelow(newest.index, before.lastIndex, "no log suffix after the newest snapshot")
        assert.isAtMost(firstIndex, newest.index + 1, "the log does not reach back to the snapshot")
        return { snapshotIndex: newest.index }
      }))

      const second = recordingFsm()
      yield* Effect.scoped(Effect.gen(function*() {
        const raft = Context.get(yield* Layer.build(compactingNode(dir, second)), Raft.Raft)
        // The snapshot is restored as the node starts, before anything is replayed: it holds every command up to
        // its index (all entries but the configuration at 1 and the first leader's no-op at 2).
        assert.strictEqual(second.restores(), 1)
        const restored = second.commands()
        assert.deepStrictEqual(restored, state.slice(0, disk.snapshotIndex - 2))
        yield* awaitLeader(raft)
        assert.isAbove(yield* raft.currentTerm, before.term)
        yield* raft.barrier({ timeout: "5 seconds" })
        assert.deepStrictEqual(second.commands(), state, "the FSM after the restart differs from before")
        // The rest came from the log suffix, each entry once and none the snapshot covers.
        assert.isTrue(second.applied.every((log) => log.index > disk.snapshotIndex))
        assert.deepStrictEqual(
          second.applied.filter((log) => log.type === "Command").map((log) => decoder.decode(log.data)),
          state.slice(restored.length)
        )
        const after = yield* raft.apply(bytes("after restart"), { timeout: "5 seconds" })
        assert.isAbove(after.index, before.lastIndex)
        assert.deepStrictEqual(after.response, { count: 64, echo: "after restart" })
        assert.deepStrictEqual(second.commands(), [...state, "after restart"])
      }))
    }), 60_000)


  it.scopedLive("a node restarted on its LMDB directory keeps its term, its vote and its log, and replays the log to a fresh FSM", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const first: Array<string> = []
      const before = yield* Effect.scoped(Effect.gen(function*() {
        const raft = Context.get(yield* Layer.build(node(dir, first)), Raft.Raft)
        yield* raft.bootstrapCluster(Configuration.voters([["solo", "mem://solo"]]))
        yield* awaitLeader(raft)
        for (let i = 0; i < 20; i++) yield* raft.apply(bytes(`command ${i}`), { timeout: "5 seconds" })
        return { term: yield* raft.currentTerm, lastIndex: yield* raft.lastIndex }
      }))
      assert.strictEqual(first.length, 20)

      // What is on disk, read with the store alone.
      yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* LmdbStore.make({ path: dir })
        assert.strictEqual(yield* store.stable.getUint64("CurrentTerm"), before.term)
        const vote = yield* store.stable.get("LastVote")
        assert.isTrue(Option.isSome(vote), "the vote was not stored")
        assert.deepStrictEqual(JSON.parse(decoder.decode(Option.getOrThrow(vote))), { term: before.term, candidate: "solo" })
        assert.strictEqual(yield* store.logs.lastIndex, before.lastIndex)
        const commands = (yield* store.logs.getLogs(1, before.lastIndex))
          .filter((log) => log.type === "Command")
          .map((log) => decoder.decode(log.data))
        assert.deepStrictEqual(commands, Array.from({ length: 20 }, (_, i) => `command ${i}`))
      }))

      // The restarted node has state: bootstrap is refused, it campaigns from the stored term, and its FSM gets the log.
      const second: Array<string> = []
      yield* Effect.scoped(Effect.gen(function*() {
        const raft = Context.get(yield* Layer.build(node(dir, second)), Raft.Raft)
        const bootstrap = yield* Effect.exit(raft.bootstrapCluster(Configuration.voters([["solo", "mem://solo"]])))
        assert.isTrue(Exit.isFailure(bootstrap), "bootstrap of a node with state succeeded")
        yield* awaitLeader(raft)
        assert.isAbove(yield* raft.currentTerm, before.term)
        yield* raft.apply(bytes("after restart"), { timeout: "5 seconds" })
        assert.isAbove(yield* raft.lastIndex, before.lastIndex)
        assert.deepStrictEqual(second, [...first, "after restart"])
      }))
    }), 60_000)
})
