import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import { bytes, makeCluster } from "./cluster.js"

describe("Raft", () => {
  it.scoped("a single node becomes leader, applies, and returns the FSM's response and a non-zero index", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 1 })
      const leader = yield* cluster.waitForLeader()
      const result = yield* leader.raft.apply(bytes("hello"))
      assert.isAbove(result.index, 0)
      assert.deepStrictEqual(result.response, { count: 1, echo: "hello" })
    }).pipe(Effect.withRandom(Random.make("single"))))

  it.scoped("3 nodes elect exactly one leader and applies reach every FSM", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      assert.strictEqual((yield* cluster.leaders).length, 1)
      let last = 0
      for (let i = 0; i < 10; i++) last = (yield* leader.raft.apply(bytes(`c${i}`))).index
      yield* cluster.waitForApplied(last)
      for (const node of cluster.nodes) {
        assert.deepStrictEqual(node.fsm.commands(), Array.from({ length: 10 }, (_, i) => `c${i}`))
      }
    }).pipe(Effect.withRandom(Random.make("three"))))
})
