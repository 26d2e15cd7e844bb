import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { Raft, TestCluster } from "effect-raft"
import { Counter } from "./counter.js"

describe("Counter", () => {
  // it.scoped runs on TestClock: the cluster moves it while it waits, so no real time passes.
  it.scoped("adds on the leader, goes on without it, and every node agrees", () =>
    Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 3, fsm: Counter })
      const leader = yield* cluster.awaitLeader()
      assert.strictEqual((yield* Raft.makeClient(leader.raft, Counter).apply({ add: 2 })).response, 2)

      yield* cluster.isolate(leader.id) // the other two elect a new leader
      const next = yield* cluster.awaitLeader()
      assert.notStrictEqual(next.id, leader.id)
      const { index, response } = yield* Raft.makeClient(next.raft, Counter).apply({ add: 3 })
      assert.strictEqual(response, 5)

      yield* cluster.heal
      yield* cluster.awaitApplied(index) // the old leader caught up
    }))
})
