/**
 * Snapshots and compaction: the snapshot fiber, user snapshots, restart from a
 * snapshot, InstallSnapshot for a follower the leader compacted past (with and
 * without a conflicting suffix), and a user restore into a running cluster.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import { bytes, type Cluster, decoder, makeCluster, snapshotCommands, storedLog, type TestNode } from "./cluster.js"

const seeded = (seed: string) => Effect.withRandom(Random.make(seed))

const applyAll = (node: TestNode, prefix: string, count: number) =>
  Effect.gen(function*() {
    let last = 0
    for (let i = 0; i < count; i++) last = (yield* node.raft.apply(bytes(`${prefix}${i}`))).index
    return last
  })

const names = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${i}`)

/** The commands of the entries a node applied itself up to `index`. */
const appliedUpTo = (node: TestNode, index: number) =>
  node.fsm.applied.filter((log) => log.index <= index).map((log) => decoder.decode(log.data))

/** A stored log keyed by index. */
const byIndex = (log: ReadonlyArray<string>) => new Map(log.map((entry) => [Number(entry.split("/")[0]), entry]))

/** Advances the clock until `check` holds, up to `limitMillis`. */
const eventually = (cluster: Cluster, limitMillis: number, check: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    for (let waited = 0; waited <= limitMillis; waited += 10) {
      if (yield* check) return true
      yield* cluster.advance(10)
    }
    return false
  })

describe("Raft: snapshots", () => {
  it.scoped("after snapshotThreshold applied entries every node snapshots its FSM and compacts its log keeping trailingLogs entries", () =>
    Effect.gen(function*() {
      const trailingLogs = 5
      const cluster = yield* makeCluster({
        size: 3,
        config: { snapshotThreshold: 20, snapshotInterval: "50 millis", trailingLogs }
      })
      const leader = yield* cluster.waitForLeader()
      // Below the threshold (10 commands + configuration + no-op): no snapshot, however long we wait.
      yield* cluster.waitForApplied(yield* applyAll(leader, "a", 10))
      yield* cluster.advance(300)
      for (const node of cluster.nodes) {
        assert.strictEqual((yield* node.raft.stats).lastSnapshotIndex, 0, `${node.id} snapshotted below the threshold`)
        assert.strictEqual((yield* node.snapshots.list).length, 0)
        assert.strictEqual(yield* node.logs.firstIndex, 1)
      }
      const last = yield* applyAll(leader, "b", 20)
      yield* cluster.waitForApplied(last)
      yield* cluster.advance(300)
      for (const node of cluster.nodes) {
        const stats = yield* node.raft.stats
        const [newest] = yield* node.snapshots.list
        assert.isDefined(newest, `${node.id} took no snapshot`)
        assert.isAtLeast(stats.lastSnapshotIndex, 20, node.id)
        assert.isAtMost(stats.lastSnapshotIndex, stats.appliedIndex, node.id)
        assert.strictEqual(newest!.index, stats.lastSnapshotIndex, node.id)
        assert.strictEqual(newest!.term, stats.lastSnapshotTerm, node.id)
        // The snapshot is the FSM's state as of its index.
        assert.deepStrictEqual(yield* snapshotCommands(node, newest!.id), appliedUpTo(node, newest!.index), node.id)
        assert.strictEqual(newest!.configuration.servers.length, 3)
        // Compaction keeps trailingLogs entries behind the snapshot, and the rest of the log.
        assert.strictEqual(yield* node.logs.firstIndex, Math.max(1, newest!.index - trailingLogs + 1), node.id)
        assert.strictEqual(yield* node.logs.lastIndex, last, node.id)
      }
    }).pipe(seeded("auto-snapshot")))

  it.scoped("a user snapshot captures the applied state and compacts; a second one with nothing new fails with NothingNewToSnapshot", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: { trailingLogs: 2 } })
      const leader = yield* cluster.waitForLeader()
      const last = yield* applyAll(leader, "c", 10)
      const meta = yield* leader.raft.snapshot
      assert.strictEqual(meta.index, last)
      assert.strictEqual(meta.index, yield* leader.raft.appliedIndex)
      assert.strictEqual(meta.term, yield* leader.raft.currentTerm)
      assert.strictEqual(meta.configuration.servers.length, 3)
      const stats = yield* leader.raft.stats
      assert.strictEqual(stats.lastSnapshotIndex, meta.index)
      assert.strictEqual(stats.lastSnapshotTerm, meta.term)
      assert.strictEqual((yield* leader.snapshots.list)[0]?.id, meta.id)
      assert.deepStrictEqual(yield* snapshotCommands(leader, meta.id), names("c", 10))
      assert.strictEqual(yield* leader.logs.firstIndex, meta.index - 1)

      const nothing = yield* Effect.flip(leader.raft.snapshot)
      assert.strictEqual(nothing._tag, "NothingNewToSnapshot")
      assert.strictEqual((yield* leader.snapshots.list)[0]?.id, meta.id)

      const next = yield* leader.raft.apply(bytes("d"))
      const again = yield* leader.raft.snapshot
      assert.strictEqual(again.index, next.index)
      assert.deepStrictEqual(yield* snapshotCommands(leader, again.id), [...names("c", 10), "d"])
    }).pipe(seeded("user-snapshot")))

  it.scoped("a restarted node restores its FSM from the newest snapshot and re-applies only the later entries as they commit", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const old = yield* cluster.waitForLeader()
      yield* applyAll(old, "s", 10)
      const meta = yield* old.raft.snapshot
      yield* cluster.waitForApplied(yield* applyAll(old, "t", 5))
      yield* cluster.stop(old.id)
      const fresh = yield* cluster.waitForLeader({ exclude: [old.id] })
      const final = (yield* fresh.raft.apply(bytes("u"))).index

      yield* cluster.restart(old.id)
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      assert.strictEqual(old.fsm.restores(), 1, "the FSM was not restored from the snapshot")
      assert.strictEqual(yield* old.raft.appliedIndex, meta.index)
      assert.deepStrictEqual(old.fsm.commands(), names("s", 10))

      yield* cluster.waitForApplied(final, { nodes: [old.id] })
      assert.deepStrictEqual(old.fsm.commands(), [...names("s", 10), ...names("t", 5), "u"])
      assert.deepStrictEqual(old.fsm.commands(), fresh.fsm.commands())
      for (const log of old.fsm.applied) assert.isAbove(log.index, meta.index, `entry ${log.index} applied twice`)
    }).pipe(seeded("restart-snapshot")))

  it.scoped("a follower disconnected while the leader compacts past its log catches up by InstallSnapshot, then by entries", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: { trailingLogs: 5 } })
      const leader = yield* cluster.waitForLeader()
      const lagging = (yield* cluster.followers)[0]!
      yield* cluster.network.disconnect(lagging.id)
      yield* applyAll(leader, "o", 40)
      const meta = yield* leader.raft.snapshot
      yield* applyAll(leader, "q", 5)
      assert.isAbove(yield* leader.logs.firstIndex, (yield* lagging.raft.lastIndex) + 1, "the leader still holds what the follower lacks")
      assert.strictEqual(cluster.network.counters.installSnapshot, 0)

      yield* cluster.network.reconnect(lagging.id)
      const current = yield* cluster.waitForLeader()
      const final = yield* applyAll(current, "p", 5)
      yield* cluster.waitForApplied(final, { limitMillis: 10_000 })
      assert.isAbove(cluster.network.counters.installSnapshot, 0)
      assert.strictEqual(lagging.fsm.restores(), 1)
      const expected = [...names("o", 40), ...names("q", 5), ...names("p", 5)]
      assert.deepStrictEqual(current.fsm.commands(), expected)
      assert.deepStrictEqual(lagging.fsm.commands(), expected)
      // Everything after the snapshot came as entries, applied one by one.
      assert.deepStrictEqual(lagging.fsm.applied.map((log) => decoder.decode(log.data)), [...names("q", 5), ...names("p", 5)])
      assert.strictEqual((yield* lagging.raft.stats).lastSnapshotIndex, meta.index)
      const after = (log: Array<string>) => [...byIndex(log)].filter(([index]) => index > meta.index)
      assert.deepStrictEqual(after(yield* storedLog(lagging)), after(yield* storedLog(current)))
    }).pipe(seeded("install-snapshot")))

  it.scoped("an old leader with a conflicting uncommitted suffix installs the new leader's snapshot, drops the suffix, and ends with the leader's log", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: { trailingLogs: 5 } })
      const old = yield* cluster.waitForLeader()
      yield* cluster.waitForApplied(yield* applyAll(old, "b", 3))
      yield* cluster.network.disconnect(old.id)
      // 60 entries of the old leader's term that no one else ever sees: they can never commit.
      const ghosts = []
      for (let i = 0; i < 60; i++) ghosts.push(yield* old.raft.applyFuture(bytes(`ghost${i}`)))
      const ghostOutcomes = yield* Effect.fork(Effect.all(ghosts.map((g) => Effect.either(g))))
      yield* TestClock.adjust(1)
      const oldLast = yield* old.logs.lastIndex
      assert.isAtLeast(oldLast, 60, "the ghost entries were not stored")

      const fresh = yield* cluster.waitForLeader({ exclude: [old.id] })
      yield* applyAll(fresh, "n", 30)
      const meta = yield* fresh.raft.snapshot
      yield* applyAll(fresh, "m", 3)
      assert.isAbove(yield* fresh.logs.firstIndex, 6, "the new leader still holds the conflicting region")
      assert.isAbove(oldLast, meta.index, "the ghost suffix should reach past the snapshot")

      yield* cluster.network.reconnect(old.id)
      const leader = yield* cluster.waitForLeader({ limitMillis: 10_000 })
      const final = (yield* leader.raft.apply(bytes("end"))).index
      yield* cluster.waitForApplied(final, { limitMillis: 10_000 })
      yield* cluster.advance(200)

      for (const outcome of yield* Fiber.join(ghostOutcomes)) assert.isTrue(Either.isLeft(outcome))
      assert.isAbove(cluster.network.counters.installSnapshot, 0)
      const expected = [...names("b", 3), ...names("n", 30), ...names("m", 3), "end"]
      for (const node of cluster.nodes) assert.deepStrictEqual(node.fsm.commands(), expected, node.id)
      const reference = byIndex(yield* storedLog(leader))
      const held = byIndex(yield* storedLog(old))
      assert.deepStrictEqual([...held.values()].filter((entry) => entry.includes("ghost")), [], "the conflicting suffix survived")
      assert.strictEqual(yield* old.logs.lastIndex, yield* leader.logs.lastIndex)
      for (const [index, entry] of held) {
        if (reference.has(index)) assert.strictEqual(entry, reference.get(index), `entry ${index} differs from the leader's`)
      }
      for (let index = meta.index + 1; index <= final; index++) assert.isTrue(held.has(index), `entry ${index} missing`)
    }).pipe(seeded("conflict-snapshot")))

  it.scoped("a user restore on the leader replaces its FSM, moves its log past the snapshot, and followers follow by InstallSnapshot", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "s", 5)
      const meta = yield* leader.raft.snapshot
      const backup = yield* leader.snapshots.open(meta.id)
      yield* cluster.waitForApplied(yield* applyAll(leader, "x", 3))
      const lastBefore = yield* leader.raft.lastIndex
      const installsBefore = cluster.network.counters.installSnapshot

      yield* leader.raft.restore(backup.meta, backup.data)
      assert.deepStrictEqual(leader.fsm.commands(), names("s", 5))
      assert.isAbove(yield* leader.raft.lastIndex, lastBefore)
      assert.isAbove((yield* leader.raft.stats).lastSnapshotIndex, lastBefore)

      const followers = cluster.nodes.filter((n) => n.id !== leader.id)
      const caughtUp = yield* eventually(
        cluster,
        3000,
        Effect.sync(() => followers.every((n) => n.fsm.commands().join() === names("s", 5).join()))
      )
      assert.isTrue(caughtUp, `followers did not take the restored state: ${followers.map((n) => n.fsm.commands().join()).join(" | ")}`)
      assert.isAbove(cluster.network.counters.installSnapshot, installsBefore)

      const later = (yield* leader.raft.apply(bytes("later"))).index
      assert.isAbove(later, lastBefore)
      yield* cluster.waitForApplied(later)
      for (const node of cluster.nodes) assert.deepStrictEqual(node.fsm.commands(), [...names("s", 5), "later"], node.id)
    }).pipe(seeded("user-restore")))
})
