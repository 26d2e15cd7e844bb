import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Raft from "../src/Raft.js"
import { applyAll, type Cluster, eventually, fastTimers, makeCluster, seeded, type TestNode } from "./cluster.js"

/** The leader's replication entry for `id`. */
const peer = (leader: TestNode, id: string): Effect.Effect<Raft.PeerReplication> =>
  Effect.map(leader.raft.stats, (stats) => {
    const found = stats.replication.find((p) => p.id === id)
    assert.isDefined(found, `no replication entry for ${id}`)
    return found!
  })

/** Milliseconds since the leader last heard from `id` (Infinity if never this term). */
const sinceContact = (leader: TestNode, id: string) =>
  Effect.gen(function*() {
    const entry = yield* peer(leader, id)
    const now = yield* Clock.currentTimeMillis
    return entry.lastContactMillis === undefined ? Infinity : now - entry.lastContactMillis
  })

/** Every follower is current: holds the leader's last index, answered within a heartbeat timeout, no failures. */
const allCurrent = (cluster: Cluster, leader: TestNode) =>
  Effect.gen(function*() {
    const last = yield* leader.raft.lastIndex
    for (const node of cluster.nodes) {
      if (node.id === leader.id) continue
      const entry = yield* peer(leader, node.id)
      if (entry.matchIndex !== last || entry.failures !== 0) return false
      if ((yield* sinceContact(leader, node.id)) > 100) return false
    }
    return true
  })

describe("Raft: per-peer replication state in stats", () => {
  it.scoped("a partitioned follower's last contact grows and its match index stays behind while the other's stay current; after healing both are current", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const [cut, kept] = cluster.nodes.filter((node) => node.id !== leader.id)
      yield* applyAll(leader, "before", 5)
      assert.isTrue(yield* eventually(cluster, 1000, allCurrent(cluster, leader)), "followers never became current")

      // Every other member is listed, with its suffrage and address, in configuration order.
      const listed = (yield* leader.raft.stats).replication
      assert.deepStrictEqual(
        listed.map((p) => [p.id, p.address, p.suffrage]),
        [cut!, kept!].sort((a, b) => a.id.localeCompare(b.id)).map((n) => [n.id, n.address, "Voter"])
      )
      // A follower has no replication of its own to report.
      assert.deepStrictEqual((yield* cut!.raft.stats).replication, [])

      yield* cluster.network.disconnect(cut!.id)
      const matchAtCut = (yield* peer(leader, cut!.id)).matchIndex
      yield* applyAll(leader, "during", 10)
      yield* cluster.advance(300)
      const early = yield* sinceContact(leader, cut!.id)
      yield* applyAll(leader, "later", 10)
      yield* cluster.advance(300)
      const late = yield* sinceContact(leader, cut!.id)
      const last = yield* leader.raft.lastIndex

      const cutEntry = yield* peer(leader, cut!.id)
      assert.isAtLeast(early, 300, "the cut follower's last contact was refreshed while it was cut off")
      assert.isAtLeast(late - early, 300, "the cut follower's time since contact did not grow with the clock")
      assert.strictEqual(cutEntry.matchIndex, matchAtCut, "the cut follower's match index moved")
      assert.isBelow(cutEntry.matchIndex, last)
      assert.isAbove(cutEntry.failures, 0, "replication to the cut follower does not show as failing")

      const keptEntry = yield* peer(leader, kept!.id)
      assert.strictEqual(keptEntry.matchIndex, last)
      assert.strictEqual(keptEntry.nextIndex, last + 1)
      assert.strictEqual(keptEntry.failures, 0)
      assert.isAtMost(yield* sinceContact(leader, kept!.id), 100, "the connected follower's contact is stale")

      yield* cluster.network.heal
      assert.isTrue(yield* eventually(cluster, 3000, allCurrent(cluster, leader)), "after healing, not every follower is current")
      assert.strictEqual((yield* cluster.leaders)[0]?.id, leader.id)
    }).pipe(seeded("peer-stats")))

  it.scoped("a server that never answered this leader has no last contact, and one it cannot reach shows failures", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: fastTimers })
      yield* cluster.network.disconnect("node3")
      const leader = yield* cluster.waitForLeader()
      yield* cluster.advance(200)
      const entry = yield* peer(leader, "node3")
      assert.isUndefined(entry.lastContactMillis)
      assert.strictEqual(entry.matchIndex, 0)
      assert.isAbove(entry.failures, 0)
    }).pipe(seeded("never-contacted")))
})
