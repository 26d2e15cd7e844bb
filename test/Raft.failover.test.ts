/**
 * Failover after a crash: a follower whose leader's connection closes (the
 * transport's `peerLost`; the memory network reports a node that stops
 * serving) campaigns once the leader has been silent for a lease, not a
 * heartbeat timeout. A cut link closes nothing: then the followers wait a
 * heartbeat timeout, as before. Virtual time (TestClock).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { applyAll, makeCluster, seeded } from "./cluster.js"

// hashicorp's defaults: heartbeat timeout 1 s, lease 500 ms.
const timers = { heartbeatTimeout: "1 second", electionTimeout: "1 second", leaderLeaseTimeout: "500 millis" } as const

/** A 3-node cluster with a leader that applied a write; the clock then runs on a little, past a heartbeat. */
const steadyCluster = Effect.gen(function*() {
  const cluster = yield* makeCluster({ size: 3, config: timers })
  const leader = yield* cluster.waitForLeader()
  yield* cluster.waitForApplied(yield* applyAll(leader, "a", 1))
  yield* cluster.advance(300)
  return { cluster, leader }
})

describe("Raft: failover", () => {
  it.scoped("a leader that stops is replaced within a lease and a fifth of one, before any heartbeat timeout", () =>
    Effect.gen(function*() {
      const { cluster, leader } = yield* steadyCluster
      const stopped = yield* Clock.currentTimeMillis
      yield* cluster.stop(leader.id)
      const next = yield* cluster.waitForLeader({ exclude: [leader.id] })
      const took = (yield* Clock.currentTimeMillis) - stopped
      assert.notStrictEqual(next.id, leader.id)
      // The followers heard from the leader at most a heartbeat interval (200 ms) before it stopped: without the
      // hint none campaigns before 1,000 ms of silence, 800 ms after the stop at the earliest.
      assert.isBelow(took, 650, `new leader ${took} ms after the stop`)
      assert.strictEqual(yield* next.raft.state, "Leader")
      yield* cluster.waitForApplied(yield* applyAll(next, "b", 1), { nodes: [next.id] })
    }).pipe(seeded("failover-stop")))

  it.scoped("a leader cut off by the network (no connection closes) is replaced only after a heartbeat timeout", () =>
    Effect.gen(function*() {
      const { cluster, leader } = yield* steadyCluster
      const cut = yield* Clock.currentTimeMillis
      yield* cluster.network.disconnect(leader.id)
      const next = yield* cluster.waitForLeader({ exclude: [leader.id] })
      const took = (yield* Clock.currentTimeMillis) - cut
      assert.notStrictEqual(next.id, leader.id)
      assert.isAtLeast(took, 800, `new leader ${took} ms after the cut`)
    }).pipe(seeded("failover-cut")))
})
