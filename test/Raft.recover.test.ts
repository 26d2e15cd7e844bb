/**
 * `Raft.recoverCluster` (hashicorp's RecoverCluster): the stores of a
 * stopped node are rewritten so that it starts as a member of a configuration
 * of the operator's choosing — here, the survivor of a three-node cluster that
 * lost two nodes for good comes back alone, with every committed write, and
 * grows back to three.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Configuration from "../src/Configuration.js"
import * as Fsm from "../src/Fsm.js"
import * as LogStore from "../src/LogStore.js"
import * as Raft from "../src/Raft.js"
import * as SnapshotStore from "../src/SnapshotStore.js"
import * as StableStore from "../src/StableStore.js"
import { applyAll, bytes, makeCluster, type RecordingFsm, recordingFsm, seeded, settle, type TestNode } from "./cluster.js"

/** Runs `recoverCluster` on `node`'s stores with `fsm`. */
const recover = (node: TestNode, configuration: Configuration.Configuration, fsm: RecordingFsm = recordingFsm()) =>
  Raft.recoverCluster(configuration).pipe(
    Effect.provideService(Fsm.Fsm, fsm),
    Effect.provideService(LogStore.LogStore, node.logs),
    Effect.provideService(StableStore.StableStore, node.stable),
    Effect.provideService(SnapshotStore.SnapshotStore, node.snapshots)
  )

describe("Raft: recoverCluster", () => {
  it.scoped("a cluster that lost two of three nodes for good comes back as the survivor alone, keeps every committed write, and grows back to three", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const survivor = cluster.nodes.find((node) => node.id !== leader.id)!
      yield* cluster.waitForApplied(yield* applyAll(leader, "a", 5))
      // The survivor holds a snapshot and entries after it: both must come back.
      yield* survivor.raft.snapshot
      yield* cluster.waitForApplied(yield* applyAll(leader, "b", 3))
      const written = leader.fsm.commands()
      for (const node of cluster.nodes) yield* cluster.stop(node.id)

      // Alone, without recovery, it cannot elect itself: its configuration still names three voters.
      yield* cluster.restart(survivor.id)
      yield* cluster.advance(1000)
      assert.notStrictEqual(yield* survivor.raft.state, "Leader")
      yield* cluster.stop(survivor.id)

      const meta = yield* recover(survivor, Configuration.voters([[survivor.id, survivor.address]]))
      assert.deepStrictEqual(meta.configuration.servers.map((server) => server.id), [survivor.id])
      assert.strictEqual(yield* survivor.logs.lastIndex, 0, "the log is gone: the snapshot holds it all")
      yield* cluster.restart(survivor.id)
      const recovered = yield* cluster.waitForLeader()
      assert.strictEqual(recovered.id, survivor.id)
      assert.deepStrictEqual(survivor.fsm.commands(), written)
      yield* survivor.raft.apply(bytes("c"))

      for (const id of ["node4", "node5"]) {
        const fresh = yield* cluster.addNode(id)
        yield* settle(cluster, yield* Effect.fork(survivor.raft.addVoter(fresh.id, fresh.address)), 10_000)
      }
      const last = (yield* survivor.raft.apply(bytes("d"))).index
      yield* cluster.waitForApplied(last)
      const { configuration } = yield* survivor.raft.getConfiguration
      assert.deepStrictEqual(Configuration.votersOf(configuration).map((server) => server.id).sort(), [
        survivor.id,
        "node4",
        "node5"
      ])
      for (const id of ["node4", "node5"]) {
        assert.deepStrictEqual(cluster.node(id).fsm.commands(), [...written, "c", "d"])
      }
    }).pipe(seeded("recover-survivor")))

  it.scoped("recoverCluster refuses stores without state and an unusable configuration, and leaves them as they were", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, bootstrap: false })
      const node = cluster.nodes[0]!
      yield* cluster.stop(node.id)
      const empty = yield* Effect.flip(recover(node, Configuration.voters([[node.id, node.address]])))
      assert.strictEqual(empty._tag, "CantRecover")

      const running = yield* makeCluster({ size: 3 })
      const leader = yield* running.waitForLeader()
      yield* running.waitForApplied(yield* applyAll(leader, "a", 2))
      yield* running.stop(leader.id)
      const before = yield* leader.logs.lastIndex
      const duplicate = yield* Effect.flip(recover(leader, {
        servers: [
          { id: leader.id, address: leader.address, suffrage: "Voter" },
          { id: leader.id, address: "mem://elsewhere", suffrage: "Voter" }
        ]
      }))
      assert.strictEqual(duplicate._tag, "CantRecover")
      const noVoter = yield* Effect.flip(recover(leader, {
        servers: [{ id: leader.id, address: leader.address, suffrage: "Nonvoter" }]
      }))
      assert.strictEqual(noVoter._tag, "CantRecover")
      assert.strictEqual(yield* leader.logs.lastIndex, before)
      assert.strictEqual((yield* leader.snapshots.list).length, 0)
    }).pipe(seeded("recover-refuses")))
})
