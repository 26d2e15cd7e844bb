/**
 * A follower's usual AppendEntries, into a log store that writes synchronously (the memory store), is stored and
 * answered by whoever received it while the run loop waits (src/internal/follower.ts `appendNow`): the transport's
 * callback gets its answer before `submitAppendEntries` returns. These tests play the leader by hand, against one
 * follower whose transport hands them its request handler.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as Configuration from "../src/Configuration.js"
import * as Fsm from "../src/Fsm.js"
import * as Log from "../src/Log.js"
import * as LogStore from "../src/LogStore.js"
import * as Raft from "../src/Raft.js"
import type { AppendEntriesRequest, AppendEntriesResponse } from "../src/Rpc.js"
import * as SnapshotStore from "../src/SnapshotStore.js"
import * as StableStore from "../src/StableStore.js"
import { type RpcHandler, Transport } from "../src/Transport.js"
import * as MemoryNetwork from "../src/transport/MemoryNetwork.js"
import { bytes, decoder, failNextWrites, recordingFsm, seeded } from "./cluster.js"

/** Follower "f" of a two-voter cluster whose leader "L" is the test; `logs` is f's log store. */
const follower = (logs: LogStore.LogStore) =>
  Effect.gen(function*() {
    const network = MemoryNetwork.make()
    const plain = network.transport("f")
    let handler: RpcHandler | undefined
    const transport: Transport = {
      ...plain,
      serve: (h) => Effect.suspend(() => (handler = h, plain.serve(h)))
    }
    const stable = StableStore.makeMemory()
    const snapshots = SnapshotStore.makeMemory()
    const configuration = Configuration.voters([["L", "mem://L"], ["f", plain.localAddress]])
    yield* Raft.bootstrapCluster(configuration).pipe(
      Effect.provideService(LogStore.LogStore, logs),
      Effect.provideService(StableStore.StableStore, stable),
      Effect.provideService(SnapshotStore.SnapshotStore, snapshots)
    )
    const fsm = recordingFsm()
    const context = yield* Layer.build(
      // Under the TestClock, which the test never moves: f never campaigns.
      Raft.layer({ localId: "f" }).pipe(Layer.provide([
        Fsm.layer(fsm),
        Layer.succeed(LogStore.LogStore, logs),
        Layer.succeed(StableStore.StableStore, stable),
        Layer.succeed(SnapshotStore.SnapshotStore, snapshots),
        Layer.succeed(Transport, transport)
      ]))
    )
    const raft = context.unsafeMap.get(Raft.Raft.key) as Raft.Raft
    const serving = handler
    if (serving === undefined) return yield* Effect.dieMessage("the node did not serve its transport")
    const stats = yield* raft.stats
    const term = stats.term + 1
    let last = stats.lastLogIndex
    /** L's next request: `count` commands after what f holds, and L's commit index. */
    const request = (count: number, leaderCommitIndex: number): AppendEntriesRequest => {
      const prevLogIndex = last
      const prevLogTerm = prevLogIndex === stats.lastLogIndex ? stats.lastLogTerm : term
      const entries = Array.from({ length: count }, (_, i) => {
        const index = prevLogIndex + 1 + i
        return Log.make(index, term, "Command", bytes(`c${index}`))
      })
      last += count
      return {
        _tag: "AppendEntriesRequest",
        term,
        leaderId: "L",
        leaderAddress: "mem://L",
        prevLogIndex,
        prevLogTerm,
        entries,
        leaderCommitIndex
      }
    }
    // The first request from L goes through the run loop (f learns of its leader there).
    const first = yield* serving.appendEntries(request(100, 0))
    assert.isTrue(first.success)
    /** Submits `req` as a transport's callback does: the answer, if it came within the call. */
    const submit = (req: AppendEntriesRequest) => {
      let answer: Exit.Exit<AppendEntriesResponse, unknown> | undefined
      serving.submitAppendEntries!(req, (exit) => (answer = exit))
      return { inCall: answer, later: () => answer }
    }
    const applied = () => fsm.applied.map((log) => decoder.decode(log.data))
    return { request, submit, applied, first: stats.lastLogIndex + 1 }
  })

/** Lets the node's fibers run until `done` holds (the clock does not move). */
const until = (done: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000 && !done(); i++) yield* TestClock.adjust(0)
    assert.isTrue(done(), what)
  })

describe("a follower's AppendEntries stored by whoever received it", () => {
  it.scoped("into the memory store, stored and answered within submitAppendEntries", () =>
    Effect.gen(function*() {
      const logs = LogStore.makeMemory()
      const f = yield* follower(logs)
      const submitted = f.submit(f.request(1, 0))
      assert.isDefined(submitted.inCall, "answered before submitAppendEntries returned")
      const answer = submitted.inCall?._tag === "Success" ? submitted.inCall.value : undefined
      assert.strictEqual(answer?.success, true)
      // The 100 entries of the first request, and this one's, in the store and in the answer.
      assert.strictEqual(answer?.lastLog, f.first + 100)
      assert.strictEqual(yield* logs.lastIndex, f.first + 100)
      assert.strictEqual(decoder.decode((yield* logs.getLog(f.first + 100)).data), `c${f.first + 100}`)
    }).pipe(seeded("append now")))

  it.scoped("into a copy of the store (no synchronous writes registered), answered later by the run loop", () =>
    Effect.gen(function*() {
      const f = yield* follower({ ...LogStore.makeMemory() })
      const submitted = f.submit(f.request(1, 0))
      assert.isUndefined(submitted.inCall)
      yield* until(() => submitted.later() !== undefined, "answered by the run loop")
      const answer = submitted.later()
      assert.deepStrictEqual(answer?._tag === "Success" ? answer.value.success : undefined, true)
    }).pipe(seeded("append later")))

  it.scoped("into a store whose storeLogs was replaced in place (a failing disk), answered by the run loop", () =>
    Effect.gen(function*() {
      const logs = LogStore.makeMemory()
      failNextWrites(logs, ["storeLogs"], 0)
      const f = yield* follower(logs)
      const submitted = f.submit(f.request(1, 0))
      assert.isUndefined(submitted.inCall)
      yield* until(() => submitted.later() !== undefined, "answered by the run loop")
    }).pipe(seeded("append replaced")))

  it.scoped("what a commit covers beyond the entries kept since they were stored still reaches the FSM", () =>
    Effect.gen(function*() {
      const f = yield* follower(LogStore.makeMemory())
      // The first 100 came through the run loop's full path, which keeps no recent entries; this request, taken at
      // once, commits them: they are read from the store by the run loop.
      const submitted = f.submit(f.request(1, f.first + 99))
      assert.isDefined(submitted.inCall)
      const expected = Array.from({ length: 100 }, (_, i) => `c${f.first + i}`)
      yield* until(() => f.applied().length >= 100, "the 100 committed commands applied")
      assert.deepStrictEqual(f.applied(), expected)
      // The next commit is of the entry kept from the request above.
      f.submit(f.request(0, f.first + 100))
      yield* until(() => f.applied().length >= 101, "the 101st applied")
      assert.deepStrictEqual(f.applied().at(-1), `c${f.first + 100}`)
    }).pipe(seeded("append behind")))
})
