/**
 * Storage faults and node identity: a node whose disk fails for a while degrades and recovers instead of
 * stopping; a snapshot its state machine cannot restore is refused and dropped; a node starts only on stores
 * that are whole and its own; and the hashicorp parity points of the same paths (NotVoter, where a user restore
 * lands, the address a transfer uses).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Configuration from "../src/Configuration.js"
import * as Fsm from "../src/Fsm.js"
import * as Log from "../src/Log.js"
import * as LogStore from "../src/LogStore.js"
import * as Raft from "../src/Raft.js"
import { FsmError } from "../src/RaftError.js"
import * as SnapshotStore from "../src/SnapshotStore.js"
import * as StableStore from "../src/StableStore.js"
import * as MemoryNetwork from "../src/transport/MemoryNetwork.js"
import {
  applyAll,
  bytes,
  eventually,
  failNextWrites,
  fastTimers,
  makeCluster,
  recordingFsm,
  type RecordingFsm,
  seeded,
  settle
} from "./cluster.js"

/** A recording FSM whose next `failures` restores fail (as a state machine refusing a snapshot would). */
const refusingFsm = (failures: { count: number }): RecordingFsm => {
  const fsm = recordingFsm()
  return {
    ...fsm,
    restore: (data) =>
      failures.count > 0
        ? Effect.sync(() => failures.count--).pipe(
          Effect.zipRight(Effect.fail(new FsmError({ operation: "restore", reason: "injected: refused" })))
        )
        : fsm.restore(data)
  }
}

/** Starts one node `id` over the given stores on a fresh memory network; the exit of building it. */
/**
 * Three nodes whose node3 restores snapshots with `refusingFsm(failures)`, led by another node, with three entries
 * applied everywhere.
 */
const refusingFollower = (failures: { count: number }) =>
  Effect.gen(function*() {
    const cluster = yield* makeCluster({
      size: 3,
      config: { trailingLogs: 5 },
      fsm: (id) => id === "node3" ? refusingFsm(failures) : recordingFsm()
    })
    let leader = yield* cluster.waitForLeader()
    if (leader.id === "node3") {
      yield* settle(cluster, yield* Effect.fork(leader.raft.leadershipTransferToServer("node1", "mem://node1")))
      leader = yield* cluster.waitForLeader()
    }
    const lagging = cluster.node("node3")
    yield* cluster.waitForApplied(yield* applyAll(leader, "a", 3))
    return { cluster, leader, lagging }
  })

const startOn = (
  id: string,
  stores: { readonly logs: LogStore.LogStore; readonly stable: StableStore.StableStore; readonly snapshots: SnapshotStore.SnapshotStore }
) =>
  Effect.gen(function*() {
    const network = MemoryNetwork.make()
    const layer = Raft.layer({ localId: id, ...fastTimers }).pipe(
      Layer.provide([
        Fsm.layer(recordingFsm()),
        Layer.succeed(LogStore.LogStore, stores.logs),
        Layer.succeed(StableStore.StableStore, stores.stable),
        Layer.succeed(SnapshotStore.SnapshotStore, stores.snapshots),
        MemoryNetwork.layerTransport(id).pipe(Layer.provide(Layer.succeed(MemoryNetwork.MemoryNetwork, network)))
      ])
    )
    return yield* Effect.exit(Effect.scoped(Layer.build(layer)))
  })

const memoryStores = () => ({
  logs: LogStore.makeMemory(),
  stable: StableStore.makeMemory(),
  snapshots: SnapshotStore.makeMemory()
})

describe("Raft: storage faults", () => {
  it.scoped("a follower whose log store fails writes for a while answers failure, stays up, and catches up once writes succeed", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const follower = (yield* cluster.followers)[0]!
      const failing = failNextWrites(follower.logs, ["storeLogs"], 5)
      // The other follower makes the quorum: every apply commits while this one's disk fails.
      const last = yield* applyAll(leader, "a", 20)
      // The leader backs off and sends again until the follower's disk takes the entries.
      assert.isTrue(yield* eventually(cluster, 5_000, Effect.sync(() => failing.remaining() === 0)), "no retries")
      assert.strictEqual(yield* follower.raft.state, "Follower")
      yield* cluster.waitForApplied(last, { limitMillis: 10_000 })
      assert.deepStrictEqual(follower.fsm.commands(), leader.fsm.commands())
      assert.strictEqual(yield* follower.raft.state, "Follower")
    }).pipe(seeded("follower-disk-fails")))

  it.scoped("a node whose term cannot be stored gives up its candidacy, stays up, and wins a later election", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 1 })
      const node = cluster.nodes[0]!
      // The election's new term is the first write; the vote the second.
      const failing = failNextWrites(node.stable, ["setUint64", "set"], 3)
      const leader = yield* cluster.waitForLeader({ limitMillis: 5_000 })
      assert.strictEqual(leader.id, node.id)
      assert.strictEqual(failing.remaining(), 0)
      assert.isAbove((yield* node.raft.apply(bytes("x"))).index, 0)
    }).pipe(seeded("candidate-disk-fails")))

  it.scoped("a snapshot the follower's state machine cannot restore is refused and deleted; the follower keeps its state, stays up, and installs a later one", () =>
    Effect.gen(function*() {
      const failures = { count: 0 }
      const { cluster, leader, lagging } = yield* refusingFollower(failures)
      yield* cluster.network.disconnect(lagging.id)
      yield* applyAll(leader, "b", 30)
      yield* leader.raft.snapshot
      yield* applyAll(leader, "c", 3)
      failures.count = 2
      yield* cluster.network.reconnect(lagging.id)
      // Two snapshots refused: the follower keeps what it had, answers, and holds no refused snapshot.
      for (let waited = 0; waited < 5_000 && failures.count > 0; waited += 10) yield* cluster.advance(10)
      assert.strictEqual(failures.count, 0, "the follower was never sent the snapshot")
      assert.strictEqual(yield* lagging.raft.state, "Follower")
      // Then one it can restore: it ends with the leader's state.
      const last = (yield* leader.raft.apply(bytes("end"))).index
      yield* cluster.waitForApplied(last, { limitMillis: 10_000 })
      assert.deepStrictEqual(lagging.fsm.commands(), leader.fsm.commands())
      assert.strictEqual(lagging.fsm.restores(), 1)
      assert.strictEqual(yield* lagging.raft.state, "Follower")
    }).pipe(seeded("refused-snapshot")))

  it.scoped("a refused snapshot leaves nothing in the follower's store and no index moved", () =>
    Effect.gen(function*() {
      const failures = { count: 1000 }
      const { cluster, leader, lagging } = yield* refusingFollower(failures)
      const before = yield* lagging.raft.stats
      yield* cluster.network.disconnect(lagging.id)
      yield* applyAll(leader, "b", 30)
      yield* leader.raft.snapshot
      yield* cluster.network.reconnect(lagging.id)
      for (let waited = 0; waited < 3_000 && failures.count > 995; waited += 10) yield* cluster.advance(10)
      assert.isAtMost(failures.count, 995, "the follower was not sent the snapshot again and again")
      const after = yield* lagging.raft.stats
      assert.strictEqual(after.state, "Follower")
      assert.strictEqual(after.lastSnapshotIndex, 0)
      assert.strictEqual(after.appliedIndex, before.appliedIndex)
      assert.strictEqual(after.commitIndex, before.commitIndex)
      assert.deepStrictEqual(yield* lagging.snapshots.list, [])
      assert.deepStrictEqual(lagging.fsm.commands(), ["a0", "a1", "a2"])
    }).pipe(seeded("refused-snapshot-state")))
})

describe("Raft: starting on whole stores of one's own", () => {
  it.scoped("a log whose first entries are neither held nor in a snapshot is a StorageError at start, naming the gap", () =>
    Effect.gen(function*() {
      const stores = memoryStores()
      const configuration = Configuration.voters([["a", "mem://a"]])
      yield* stores.stable.setUint64("CurrentTerm", 2)
      const entries = Array.from({ length: 11 }, (_, i) =>
        i === 0
          ? Log.make(10, 2, "Configuration", Configuration.encode(configuration))
          : Log.make(10 + i, 2, "Command", bytes(`c${i}`)))
      yield* stores.logs.storeLogs(entries)
      const exit = yield* startOn("a", stores)
      assert.isTrue(Exit.isFailure(exit), "the node started on a log with a hole")
      const message = Exit.isFailure(exit) ? String(exit.cause) : ""
      assert.include(message, "StorageError")
      assert.include(message, "entries 1..9")
    }))

  it.scoped("a node refuses stores that belong to another node, with IdentityMismatch naming both", () =>
    Effect.gen(function*() {
      const stores = memoryStores()
      yield* Raft.bootstrapCluster(Configuration.voters([["b", "mem://b"]]), { localId: "b" }).pipe(
        Effect.provideService(LogStore.LogStore, stores.logs),
        Effect.provideService(StableStore.StableStore, stores.stable),
        Effect.provideService(SnapshotStore.SnapshotStore, stores.snapshots)
      )
      const exit = yield* startOn("a", stores)
      assert.isTrue(Exit.isFailure(exit), "node a started on b's stores")
      const message = Exit.isFailure(exit) ? String(exit.cause) : ""
      assert.include(message, "IdentityMismatch")
      assert.include(message, `belong to node "b", not "a"`)
      // Its owner starts on them.
      assert.isTrue(Exit.isSuccess(yield* startOn("b", stores)))
    }))

  it.scoped("bootstrapping from a configuration in which the local server is not a voter fails with NotVoter", () =>
    Effect.gen(function*() {
      const stores = memoryStores()
      const configuration = Configuration.applyChange(
        Configuration.voters([["a", "mem://a"]]),
        { _tag: "AddNonvoter", id: "b", address: "mem://b" }
      ) as Configuration.Configuration
      const standalone = yield* Effect.either(
        Raft.bootstrapCluster(configuration, { localId: "b" }).pipe(
          Effect.provideService(LogStore.LogStore, stores.logs),
          Effect.provideService(StableStore.StableStore, stores.stable),
          Effect.provideService(SnapshotStore.SnapshotStore, stores.snapshots)
        )
      )
      assert.strictEqual(standalone._tag === "Left" ? standalone.left._tag : "Right", "NotVoter")
      assert.strictEqual(yield* stores.logs.lastIndex, 0, "a refused bootstrap wrote to the log")

      const cluster = yield* makeCluster({ size: 1, bootstrap: false })
      const node = cluster.nodes[0]!
      const live = yield* Effect.either(
        node.raft.bootstrapCluster(Configuration.voters([["other", "mem://other"]]))
      )
      assert.strictEqual(live._tag === "Left" ? live.left._tag : "Right", "NotVoter")
    }))
})

describe("Raft: hashicorp parity in restore and transfer", () => {
  it.scoped("a user restore of a snapshot whose index is past the log lands after it, so the FSM never sees an index go back", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "s", 5)
      const meta = yield* leader.raft.snapshot
      const backup = yield* leader.snapshots.open(meta.id)
      const lastBefore = yield* leader.raft.lastIndex
      // A snapshot from a cluster further ahead: its index is past this whole log.
      const ahead = { ...backup.meta, index: lastBefore + 100 }
      yield* leader.raft.restore(ahead, backup.data)
      const stats = yield* leader.raft.stats
      assert.strictEqual(stats.lastSnapshotIndex, lastBefore + 101)
      // Past it: the barrier the restore appends to wait for the followers.
      assert.strictEqual(stats.lastLogIndex, lastBefore + 102)
      assert.isAbove((yield* leader.raft.apply(bytes("later"))).index, lastBefore + 102)
    }).pipe(seeded("restore-index")))

  it.scoped("a user restore the leader's state machine cannot take fails with FsmError and changes nothing", () =>
    Effect.gen(function*() {
      const failures = { count: 1 }
      const cluster = yield* makeCluster({ size: 1, fsm: () => refusingFsm(failures) })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "s", 3)
      const meta = yield* leader.raft.snapshot
      const backup = yield* leader.snapshots.open(meta.id)
      yield* applyAll(leader, "t", 2)
      const before = yield* leader.raft.stats
      const outcome = yield* Effect.either(leader.raft.restore(backup.meta, backup.data))
      assert.strictEqual(outcome._tag === "Left" ? outcome.left._tag : "Right", "FsmError")
      const after = yield* leader.raft.stats
      assert.strictEqual(after.state, "Leader")
      assert.strictEqual(after.lastLogIndex, before.lastLogIndex)
      assert.strictEqual(after.lastSnapshotIndex, before.lastSnapshotIndex)
      assert.deepStrictEqual((yield* leader.snapshots.list).map((s) => s.id), [meta.id], "the refused snapshot was kept")
      assert.deepStrictEqual(leader.fsm.commands(), ["s0", "s1", "s2", "t0", "t1"])
      yield* applyAll(leader, "u", 1)
    }).pipe(seeded("restore-refused")))

  it.scoped("leadershipTransferToServer uses the address it is given", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const first = yield* cluster.waitForLeader()
      const target = (yield* cluster.followers)[0]!
      // Nothing listens at this address: the TimeoutNow cannot arrive, and leadership stays.
      const wrong = yield* settle(
        cluster,
        yield* Effect.fork(Effect.either(first.raft.leadershipTransferToServer(target.id, "mem://nowhere")))
      )
      assert.strictEqual(wrong._tag === "Left" ? wrong.left._tag : "Right", "LeadershipTransferFailed")
      assert.strictEqual(yield* first.raft.state, "Leader")
      yield* settle(cluster, yield* Effect.fork(first.raft.leadershipTransferToServer(target.id, target.address)))
      assert.strictEqual(yield* target.raft.state, "Leader")
    }).pipe(seeded("transfer-address")))
})

describe("Raft: cluster identity", () => {
  it.scoped("a request naming another cluster is refused unserved (TransportError identity) and changes nothing", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, clusterId: "blue" })
      const leader = yield* cluster.waitForLeader()
      yield* cluster.waitForApplied(yield* applyAll(leader, "a", 2))
      const follower = (yield* cluster.followers)[0]!
      const before = yield* follower.raft.stats
      const intruder = cluster.network.transport("intruder")
      const forged = {
        _tag: "AppendEntriesRequest" as const,
        term: before.term + 5,
        leaderId: "intruder",
        leaderAddress: "mem://intruder",
        prevLogIndex: before.lastLogIndex,
        prevLogTerm: before.lastLogTerm,
        entries: [Log.make(before.lastLogIndex + 1, before.term + 5, "Command", bytes("forged"))],
        leaderCommitIndex: before.lastLogIndex + 1,
        clusterId: "red"
      }
      const outcome = yield* Effect.either(intruder.appendEntries(follower.id, follower.address, forged))
      assert.strictEqual(outcome._tag === "Left" ? `${outcome.left._tag}/${outcome.left.reason}` : "served", "TransportError/identity")
      const vote = yield* Effect.either(intruder.requestVote(follower.id, follower.address, {
        _tag: "RequestVoteRequest",
        term: before.term + 5,
        candidateId: "intruder",
        candidateAddress: "mem://intruder",
        lastLogIndex: 1000,
        lastLogTerm: 1000,
        leadershipTransfer: false,
        clusterId: "red"
      }))
      assert.strictEqual(vote._tag, "Left")
      const after = yield* follower.raft.stats
      assert.strictEqual(after.term, before.term)
      assert.strictEqual(after.lastLogIndex, before.lastLogIndex)
      assert.notInclude(follower.fsm.commands(), "forged")
    }).pipe(seeded("foreign-cluster")))

  it.scoped("a node without a cluster id grants no vote to a candidate that names one, and takes its leader's id when it joins", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, clusterId: "blue" })
      const leader = yield* cluster.waitForLeader()
      const fresh = yield* cluster.addNode("node4")
      const intruder = cluster.network.transport("intruder")
      const ask = (clusterId: string | undefined) =>
        intruder.requestVote(fresh.id, fresh.address, {
          _tag: "RequestVoteRequest",
          term: 50,
          candidateId: "node1",
          candidateAddress: "mem://node1",
          lastLogIndex: 1000,
          lastLogTerm: 1000,
          leadershipTransfer: false,
          clusterId
        })
      assert.isFalse((yield* ask("blue")).granted, "a node that never heard from its cluster voted")
      assert.isUndefined(Option.getOrUndefined(yield* fresh.stable.get("ClusterId")))
      yield* settle(cluster, yield* Effect.fork(leader.raft.addVoter(fresh.id, fresh.address)), 10_000)
      const stored = Option.getOrUndefined(yield* fresh.stable.get("ClusterId"))
      assert.strictEqual(stored === undefined ? undefined : new TextDecoder().decode(stored), "blue")
    }).pipe(seeded("adopt-cluster")))

  it.scoped("a node configured for one cluster refuses stores of another with IdentityMismatch", () =>
    Effect.gen(function*() {
      const stores = memoryStores()
      yield* Raft.bootstrapCluster(Configuration.voters([["a", "mem://a"]]), { localId: "a", clusterId: "blue" }).pipe(
        Effect.provideService(LogStore.LogStore, stores.logs),
        Effect.provideService(StableStore.StableStore, stores.stable),
        Effect.provideService(SnapshotStore.SnapshotStore, stores.snapshots)
      )
      const network = MemoryNetwork.make()
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(
        Raft.layer({ localId: "a", clusterId: "red", ...fastTimers }).pipe(
          Layer.provide([
            Fsm.layer(recordingFsm()),
            Layer.succeed(LogStore.LogStore, stores.logs),
            Layer.succeed(StableStore.StableStore, stores.stable),
            Layer.succeed(SnapshotStore.SnapshotStore, stores.snapshots),
            MemoryNetwork.layerTransport("a").pipe(Layer.provide(Layer.succeed(MemoryNetwork.MemoryNetwork, network)))
          ])
        )
      )))
      assert.isTrue(Exit.isFailure(exit), "node a started on the stores of another cluster")
      assert.include(Exit.isFailure(exit) ? String(exit.cause) : "", `belong to cluster "blue"`)
    }))
})
