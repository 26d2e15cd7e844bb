import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { Fsm, Log, Raft, TestCluster } from "effect-raft"

/** A counter whose commands add or read, typed end to end. */
const Counter = Fsm.typed({
  command: Schema.Union(
    Schema.TaggedStruct("Add", { n: Schema.Int.pipe(Schema.positive()) }),
    Schema.TaggedStruct("Read", {})
  ),
  response: Schema.Number,
  state: Schema.Number,
  initial: 0,
  apply: (total, command) => {
    const next = command._tag === "Add" ? total + command.n : total
    return [next, next]
  }
})

const clientOn = (node: TestCluster.TestNode) => Raft.makeClient(node.raft, Counter)

describe("TestCluster", () => {
  it.scoped("under TestClock: a leader, typed applies, a partition and its heal", () =>
    Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 3, fsm: Counter })
      const first = yield* cluster.awaitLeader()
      const { index, response } = yield* clientOn(first).apply({ _tag: "Add", n: 2 })
      assert.strictEqual(response, 2)
      yield* cluster.awaitApplied(index)

      // The leader alone on one side: the other two elect one of themselves, in a later term.
      const others = cluster.nodes.filter((node) => node.id !== first.id).map((node) => node.id)
      yield* cluster.partition([first.id], others)
      const second = yield* cluster.awaitLeader()
      assert.notStrictEqual(second.id, first.id)
      assert.isAbove(yield* second.raft.currentTerm, yield* first.raft.currentTerm)
      assert.strictEqual((yield* clientOn(second).apply({ _tag: "Add", n: 3 })).response, 5)

      // Healed, the old leader follows and catches up.
      yield* cluster.heal
      const read = yield* clientOn(second).apply({ _tag: "Read" })
      assert.strictEqual(read.response, 5)
      yield* cluster.awaitApplied(read.index)
      assert.strictEqual(yield* first.raft.state, "Follower")
      assert.strictEqual((yield* cluster.leaders).length, 1)
      assert.strictEqual((yield* cluster.followers).length, 2)
    }))

  it.scopedLive("on the live clock, with a state machine given as a function", () =>
    Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 3, fsm: () => Counter.make().fsm })
      const leader = yield* cluster.awaitLeader()
      const result = yield* clientOn(leader).apply({ _tag: "Add", n: 7 })
      assert.strictEqual(result.response, 7)
      yield* cluster.awaitApplied(result.index)
    }))

  it.scoped("awaitLeader fails with NoLeader when no quorum can form, after the timeout of the clock in use", () =>
    Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 3, fsm: Counter })
      yield* cluster.partition(["node1"], ["node2"], ["node3"])
      const error = yield* Effect.flip(cluster.awaitLeader({ timeout: "2 seconds" }))
      assert.strictEqual(error._tag, "NoLeader")
      assert.strictEqual(error.waitedMillis, 2000)
    }))

  it.scoped("raft.awaitLeader answers once the node knows a leader, with the clock moved meanwhile", () =>
    Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 3, fsm: Counter })
      const node3 = yield* cluster.node("node3")
      const waiting = yield* Effect.fork(node3.raft.awaitLeader)
      yield* cluster.advance("1 second")
      const known = yield* Fiber.join(waiting)
      const leader = yield* cluster.awaitLeader()
      assert.strictEqual(known.id, leader.id)
      assert.strictEqual(known.address, leader.address)
    }))

  it.scoped("raft.awaitLeader fails with RaftShutdown on a node that is shut down", () =>
    Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 1, fsm: Counter })
      const node = yield* cluster.node("node1")
      yield* node.raft.shutdown
      const error = yield* Effect.flip(node.raft.awaitLeader)
      assert.strictEqual(error._tag, "RaftShutdown")
    }))
})

describe("Fsm.typed and Raft.client", () => {
  it.scoped("bytes that are not a command are answered with CommandRejected and change nothing", () =>
    Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 1, fsm: Counter })
      const leader = yield* cluster.awaitLeader()
      const client = clientOn(leader)
      yield* client.apply({ _tag: "Add", n: 1 })
      const raw = yield* leader.raft.apply(new TextEncoder().encode(`{"_tag":"Add","n":"many"}`))
      const error = yield* Effect.flip(Counter.readResponse(raw.response))
      assert.strictEqual(error._tag, "CommandRejected")
      assert.strictEqual((yield* client.apply({ _tag: "Read" })).response, 1)
    }))

  it.scoped("a command that does not encode fails with ParseError and is never appended", () =>
    Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 1, fsm: Counter })
      const leader = yield* cluster.awaitLeader()
      const before = yield* leader.raft.lastIndex
      const error = yield* Effect.flip(clientOn(leader).apply({ _tag: "Add", n: -1 }))
      assert.strictEqual(error._tag, "ParseError")
      assert.strictEqual(yield* leader.raft.lastIndex, before)
    }))

  it.effect("applyFuture keeps typed commands in flight, in order", () =>
    Effect.gen(function*() {
      const run = Effect.gen(function*() {
        const cluster = yield* TestCluster.make({ nodes: 3, fsm: Counter })
        const client = clientOn(yield* cluster.awaitLeader())
        const outcomes = yield* Effect.forEach([1, 2, 3], (n) => client.applyFuture({ _tag: "Add", n }))
        return yield* Effect.forEach(outcomes, (outcome) => Effect.map(outcome, (result) => result.response))
      }).pipe(Effect.scoped)
      const fiber = yield* Effect.fork(run)
      yield* TestClock.adjust("5 seconds")
      assert.deepStrictEqual(yield* Fiber.join(fiber), [1, 3, 6])
    }))

  it.effect("a response from another state machine is a defect, not a value of the wrong type", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Counter.readResponse("not a number"))
      assert.isTrue(exit._tag === "Failure" && exit.cause._tag === "Die")
    }))

  it.effect("with a state Schema, a snapshot restores the same state in another instance", () =>
    Effect.gen(function*() {
      const a = Counter.make()
      const entry = (index: number, n: number) =>
        Log.make(index, 1, "Command", Either.getOrThrow(Counter.encodeCommand({ _tag: "Add", n })))
      yield* a.fsm.applyBatch([entry(1, 4), entry(2, 5)])
      const captured = yield* a.fsm.snapshot
      yield* a.fsm.apply(entry(3, 100))
      const b = Counter.make()
      yield* b.fsm.restore(Stream.fromEffect(Fsm.collect(captured.data).pipe(Effect.orDie)))
      assert.strictEqual(b.state(), 9)
      assert.strictEqual(a.state(), 109)
    }))
})
