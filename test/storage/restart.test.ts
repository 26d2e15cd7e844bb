import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Configuration from "../../src/Configuration.js"
import * as Fsm from "../../src/Fsm.js"
import * as Raft from "../../src/Raft.js"
import * as SnapshotStore from "../../src/SnapshotStore.js"
import * as LmdbStore from "../../src/storage/LmdbStore.js"
import * as LogCache from "../../src/storage/LogCache.js"
import * as MemoryNetwork from "../../src/transport/MemoryNetwork.js"
import { bytes, decoder, fastTimers } from "../cluster.js"
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

describe("a node on LMDB across a restart", () => {
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
