/**
 * `raft.reloadConfig` (hashicorp's ReloadConfig): an invalid change is refused
 * whole, and a valid one takes effect at once — a follower's lowered heartbeat
 * timeout, a leader's heartbeat rate, the snapshot interval, threshold and
 * trailing logs — without waiting for a timer armed with the old value.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { RaftConfigError } from "../src/RaftError.js"
import { applyAll, makeCluster, seeded } from "./cluster.js"

/** Timers twenty times hashicorp's fast ones: a follower would wait 2 to 4 s before it campaigns. */
const slow = { heartbeatTimeout: "2 seconds", electionTimeout: "2 seconds", leaderLeaseTimeout: "1 second" } as const

/** The fast timers of the test clusters. */
const fast = { heartbeatTimeout: "100 millis", electionTimeout: "100 millis", leaderLeaseTimeout: "50 millis" } as const

describe("Raft: reloadConfig", () => {
  it.scoped("an invalid reload fails with RaftConfigError naming the field, and changes nothing", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 1 })
      const node = yield* cluster.waitForLeader()
      const before = yield* node.raft.currentConfig
      const tooShort = yield* Effect.flip(node.raft.reloadConfig({ heartbeatTimeout: "1 millis", trailingLogs: 5 }))
      assert.instanceOf(tooShort, RaftConfigError)
      assert.strictEqual(tooShort._tag === "RaftConfigError" ? tooShort.field : "", "heartbeatTimeout")
      // Valid alone, invalid with the election timeout in force (100 ms).
      const inconsistent = yield* Effect.flip(node.raft.reloadConfig({ heartbeatTimeout: "500 millis" }))
      assert.strictEqual(inconsistent._tag === "RaftConfigError" ? inconsistent.field : "", "electionTimeout")
      const drift = yield* Effect.flip(node.raft.reloadConfig({ maxClockDrift: "1 second" }))
      assert.strictEqual(drift._tag === "RaftConfigError" ? drift.field : "", "maxClockDrift")
      assert.deepStrictEqual(yield* node.raft.currentConfig, before)
      yield* node.raft.reloadConfig({ heartbeatTimeout: "500 millis", electionTimeout: "500 millis", trailingLogs: 5 })
      const after = yield* node.raft.currentConfig
      assert.strictEqual(after.heartbeatTimeoutMillis, 500)
      assert.strictEqual(after.electionTimeoutMillis, 500)
      assert.strictEqual(after.trailingLogs, 5)
      assert.strictEqual(after.commitTimeoutMillis, before.commitTimeoutMillis)
    }).pipe(seeded("reload-invalid")))

  it.scoped("a lowered heartbeat timeout starts an election within the new timeout, not the old one", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: slow })
      const leader = yield* cluster.waitForLeader({ limitMillis: 10_000 })
      yield* cluster.waitForApplied(yield* applyAll(leader, "a", 1))
      yield* cluster.stop(leader.id)
      for (const node of cluster.nodes) if (node.id !== leader.id) yield* node.raft.reloadConfig(fast)
      // Under the old timeout no follower would campaign for 2 s.
      const next = yield* cluster.waitForLeader({ limitMillis: 600 })
      assert.notStrictEqual(next.id, leader.id)
    }).pipe(seeded("reload-heartbeat")))

  it.scoped("a leader that lowers its heartbeat timeout heartbeats at the new rate at once", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: slow })
      const leader = yield* cluster.waitForLeader({ limitMillis: 10_000 })
      yield* cluster.waitForApplied(yield* applyAll(leader, "a", 1))
      const term = yield* leader.raft.currentTerm
      // The leader first, then its followers: none of them may go a new heartbeat timeout without a heartbeat.
      yield* leader.raft.reloadConfig(fast)
      yield* cluster.advance(5)
      for (const node of cluster.nodes) if (node.id !== leader.id) yield* node.raft.reloadConfig(fast)
      yield* cluster.advance(1000)
      assert.strictEqual(yield* leader.raft.state, "Leader")
      assert.strictEqual(yield* leader.raft.currentTerm, term, "no follower campaigned")
    }).pipe(seeded("reload-leader")))

  it.scoped("lowered snapshot interval, threshold and trailing logs take a snapshot and compact at once", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const last = yield* applyAll(leader, "a", 20)
      yield* cluster.waitForApplied(last)
      yield* cluster.advance(500)
      assert.strictEqual((yield* leader.raft.stats).lastSnapshotIndex, 0, "the default interval is two minutes")
      yield* leader.raft.reloadConfig({ snapshotInterval: "20 millis", snapshotThreshold: 10, trailingLogs: 4 })
      yield* cluster.advance(100)
      const stats = yield* leader.raft.stats
      assert.isAtLeast(stats.lastSnapshotIndex, last)
      assert.strictEqual(yield* leader.logs.firstIndex, stats.lastLogIndex - 4 + 1, "4 entries kept behind")
    }).pipe(seeded("reload-snapshots")))
})
