/**
 * The timeouts of `apply` and `readIndex`, kept by the node's deadline keeper: a call fails at exactly its
 * deadline on the node's clock, a call of a shorter timeout made later fails first, and a leader that shuts down
 * answers its waiters as it did before the keeper (the keeper ends with the node and expires nothing then). The timed applies wait in the queue of a stalled run loop,
 * so only their timeouts can end them.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import { bytes, makeCluster, outcomeTag, seeded, stallRunLoop } from "./cluster.js"

/** Lets every fiber that can run without the clock run: the forked calls have registered their deadlines. */
const quiesce = Effect.zipRight(TestClock.adjust(0), Effect.yieldNow())

/** The outcome's tag once `fiber` ended, or "pending". */
const tagOf = <A>(fiber: Fiber.RuntimeFiber<Either.Either<A, { readonly _tag: string }>>) => {
  const exit = fiber.unsafePoll()
  if (exit === null) return "pending"
  return exit._tag === "Success" ? outcomeTag(exit.value) : "died"
}

describe("Raft: timeouts", () => {
  it.scoped("an apply with a timeout fails with ApplyTimeout exactly at its deadline, not before", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const stall = yield* stallRunLoop(leader)
      const late = yield* Effect.fork(Effect.either(leader.raft.apply(bytes("late"), { timeout: "100 millis" })))
      yield* quiesce
      yield* TestClock.adjust(99)
      assert.strictEqual(tagOf(late), "pending")
      yield* TestClock.adjust(1)
      yield* quiesce
      assert.strictEqual(tagOf(late), "ApplyTimeout")
      yield* stall.release
    }).pipe(seeded("timeout-exact")))

  it.scoped("an apply of 100 ms made while one of 300 ms waits fails at 100 ms, and the first at 300 ms", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const stall = yield* stallRunLoop(leader)
      const long = yield* Effect.fork(Effect.either(leader.raft.apply(bytes("long"), { timeout: "300 millis" })))
      yield* quiesce
      yield* TestClock.adjust(10)
      const short = yield* Effect.fork(Effect.either(leader.raft.apply(bytes("short"), { timeout: "100 millis" })))
      yield* quiesce
      yield* TestClock.adjust(100)
      yield* quiesce
      assert.strictEqual(tagOf(short), "ApplyTimeout", "the later, shorter timeout woke the keeper")
      assert.strictEqual(tagOf(long), "pending")
      yield* TestClock.adjust(189)
      assert.strictEqual(tagOf(long), "pending")
      yield* TestClock.adjust(1)
      yield* quiesce
      assert.strictEqual(tagOf(long), "ApplyTimeout")
      yield* stall.release
    }).pipe(seeded("timeout-earlier-wakes")))

  it.scoped("a leader that shuts down answers its waiting apply and read LeadershipLost, not their timeouts", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      // No quorum: the apply and the read wait (shorter than the lease, so the leader does not step down first).
      for (const node of cluster.nodes) if (node.id !== leader.id) yield* cluster.stop(node.id)
      const apply = yield* Effect.fork(Effect.either(leader.raft.apply(bytes("x"), { timeout: "1 second" })))
      yield* quiesce
      const read = yield* Effect.fork(Effect.either(leader.raft.readIndex({ timeout: "1 second" })))
      yield* quiesce
      yield* TestClock.adjust(10)
      assert.strictEqual(tagOf(apply), "pending")
      assert.strictEqual(tagOf(read), "pending")
      yield* cluster.stop(leader.id)
      yield* quiesce
      const answers = { apply: tagOf(apply), read: tagOf(read) }
      assert.deepStrictEqual(answers, { apply: "LeadershipLost", read: "LeadershipLost" })
      yield* TestClock.adjust(2000)
      assert.deepStrictEqual({ apply: tagOf(apply), read: tagOf(read) }, answers)
    }).pipe(seeded("timeout-shutdown")))
})
