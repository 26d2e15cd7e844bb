/**
 * Leadership transfer, PreVote, and apply/barrier outcomes that never hang:
 * a transfer to a named server and to any voter, applies refused while a
 * transfer runs, a transfer that cannot succeed, a partitioned follower that
 * rejoins with and without PreVote, ApplyTimeout with the quorum gone, and an
 * apply without timeout that can be interrupted.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"
import * as Configuration from "../src/Configuration.js"
import type * as LogStore from "../src/LogStore.js"
import { bytes, type Cluster, leaderOf, makeCluster, type TestNode } from "./cluster.js"

const seeded = (seed: string) => Effect.withRandom(Random.make(seed))

const applyAll = (node: TestNode, prefix: string, count: number) =>
  Effect.gen(function*() {
    let last = 0
    for (let i = 0; i < count; i++) last = (yield* node.raft.apply(bytes(`${prefix}${i}`))).index
    return last
  })

/** Makes a log store's writes wait until the returned latch opens (at the latest when the test ends): a disk that hangs. */
const stuckDisk = (logs: LogStore.LogStore) =>
  Effect.gen(function*() {
    const disk = yield* Effect.makeLatch(false)
    yield* Effect.addFinalizer(() => disk.open)
    const store = logs.storeLogs
    ;(logs as { storeLogs: LogStore.LogStore["storeLogs"] }).storeLogs = (entries) =>
      disk.await.pipe(Effect.zipRight(store(entries)))
    return disk
  })

/** Advances the clock until `fiber` is done (at most `limitMillis`), then joins it. */
const settle = <A, E>(cluster: Cluster, fiber: Fiber.RuntimeFiber<A, E>, limitMillis = 5000) =>
  Effect.gen(function*() {
    for (let waited = 0; waited < limitMillis && fiber.unsafePoll() === null; waited += 10) yield* cluster.advance(10)
    if (fiber.unsafePoll() === null) return assert.fail(`still waiting after ${limitMillis} ms`)
    return yield* Fiber.join(fiber)
  })

/** The error's tag of a failed outcome, or "success". */
const outcomeTag = (outcome: Either.Either<unknown, { readonly _tag: string }>): string =>
  Either.isLeft(outcome) ? outcome.left._tag : "success"

describe("Raft: leadership transfer", () => {
  it.scoped("leadershipTransferToServer makes the named server leader at a higher term, and hands it back", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const first = yield* cluster.waitForLeader()
      yield* applyAll(first, "a", 3)
      const term = yield* first.raft.currentTerm
      const target = (yield* cluster.followers)[1]!
      yield* settle(cluster, yield* Effect.fork(first.raft.leadershipTransferToServer(target.id, target.address)))
      assert.strictEqual(yield* target.raft.state, "Leader")
      assert.isAbove(yield* target.raft.currentTerm, term)
      assert.notStrictEqual(yield* first.raft.state, "Leader")
      assert.isAbove(cluster.network.counters.timeoutNow, 0)
      const last = (yield* target.raft.apply(bytes("b"))).index
      yield* cluster.waitForApplied(last)
      assert.strictEqual((yield* leaderOf(first))?.id, target.id)
      for (const node of cluster.nodes) assert.deepStrictEqual(node.fsm.commands(), ["a0", "a1", "a2", "b"])

      yield* settle(cluster, yield* Effect.fork(target.raft.leadershipTransferToServer(first.id, first.address)))
      assert.strictEqual(yield* first.raft.state, "Leader")
      assert.notStrictEqual(yield* target.raft.state, "Leader")
      yield* first.raft.apply(bytes("c"))
    }).pipe(seeded("transfer-named")))

  it.scoped("leadershipTransfer hands leadership to another voter, never to a non-voter", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const first = yield* cluster.waitForLeader()
      const observer = yield* cluster.addNode("node4")
      yield* settle(cluster, yield* Effect.fork(first.raft.addNonvoter(observer.id, observer.address)))
      yield* cluster.waitForApplied(yield* applyAll(first, "a", 3))
      const term = yield* first.raft.currentTerm
      yield* settle(cluster, yield* Effect.fork(first.raft.leadershipTransfer))
      const [next] = yield* cluster.leaders
      assert.isDefined(next)
      assert.notStrictEqual(next!.id, first.id)
      assert.isTrue(Configuration.isVoter((yield* next!.raft.getConfiguration).configuration, next!.id))
      assert.notStrictEqual(next!.id, observer.id)
      assert.isAbove(yield* next!.raft.currentTerm, term)
      assert.notStrictEqual(yield* first.raft.state, "Leader")
      yield* next!.raft.apply(bytes("after"))
    }).pipe(seeded("transfer-any")))

  it.scoped("during a transfer applies fail with LeadershipTransferInProgress; a transfer to a server that cannot catch up fails with LeadershipTransferFailed and the leader keeps leading", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "a", 2)
      const term = yield* leader.raft.currentTerm
      const target = (yield* cluster.followers)[0]!
      // The target's disk hangs: it never acknowledges the entry below, so the leader waits to bring it up to date.
      const disk = yield* stuckDisk(target.logs)
      yield* applyAll(leader, "b", 1)
      const start = yield* TestClock.currentTimeMillis
      const transfer = yield* Effect.fork(Effect.either(leader.raft.leadershipTransferToServer(target.id, target.address)))
      yield* TestClock.adjust(10)
      assert.isNull(transfer.unsafePoll(), "the transfer ended before the target caught up")
      const during = yield* settle(cluster, yield* Effect.fork(Effect.either(leader.raft.apply(bytes("during")))), 50)
      assert.strictEqual(outcomeTag(during), "LeadershipTransferInProgress")
      const barrier = yield* settle(cluster, yield* Effect.fork(Effect.either(leader.raft.barrier())), 50)
      assert.strictEqual(outcomeTag(barrier), "LeadershipTransferInProgress")

      const outcome = yield* settle(cluster, transfer, 2000)
      assert.strictEqual(outcomeTag(outcome), "LeadershipTransferFailed")
      // About an election timeout (100 ms here), not an unbounded wait.
      assert.isAtMost((yield* TestClock.currentTimeMillis) - start, 500)
      assert.strictEqual(yield* leader.raft.state, "Leader")
      assert.strictEqual(yield* leader.raft.currentTerm, term)
      yield* disk.open
      const after = (yield* leader.raft.apply(bytes("after"))).index
      yield* cluster.waitForApplied(after)
      for (const node of cluster.nodes) assert.deepStrictEqual(node.fsm.commands(), ["a0", "a1", "b0", "after"], node.id)
    }).pipe(seeded("transfer-stuck")))

  it.scoped("a transfer to an unreachable server fails with LeadershipTransferFailed and the leader keeps leading", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const term = yield* leader.raft.currentTerm
      const target = (yield* cluster.followers)[0]!
      yield* cluster.network.disconnect(target.id)
      const start = yield* TestClock.currentTimeMillis
      const outcome = yield* settle(
        cluster,
        yield* Effect.fork(Effect.either(leader.raft.leadershipTransferToServer(target.id, target.address))),
        2000
      )
      assert.strictEqual(outcomeTag(outcome), "LeadershipTransferFailed")
      assert.isAtMost((yield* TestClock.currentTimeMillis) - start, 500)
      assert.strictEqual(yield* leader.raft.state, "Leader")
      assert.strictEqual(yield* leader.raft.currentTerm, term)
      yield* leader.raft.apply(bytes("after"))
    }).pipe(seeded("transfer-unreachable")))
})

describe("Raft: PreVote", () => {
  for (const preVote of [true, false]) {
    it.scoped(
      preVote
        ? "with PreVote a follower partitioned for several election timeouts rejoins without raising the term or deposing the leader"
        : "without PreVote the same rejoining follower raises the cluster's term (what PreVote prevents)",
      () =>
        Effect.gen(function*() {
          const cluster = yield* makeCluster({ size: 3, config: { preVote } })
          const leader = yield* cluster.waitForLeader()
          yield* applyAll(leader, "a", 3)
          const term = yield* leader.raft.currentTerm
          const votesBefore = cluster.network.counters.requestVote
          const preVotesBefore = cluster.network.counters.requestPreVote
          const isolated = (yield* cluster.followers)[0]!
          yield* cluster.network.disconnect(isolated.id)
          yield* cluster.advance(600)
          assert.strictEqual(yield* leader.raft.state, "Leader")
          if (preVote) {
            assert.strictEqual(yield* isolated.raft.currentTerm, term, "the isolated follower raised its own term")
            assert.isAbove(cluster.network.counters.requestPreVote, preVotesBefore, "no pre-vote was asked")
            assert.strictEqual(cluster.network.counters.requestVote, votesBefore, "a real election started without pre-votes")
          } else {
            assert.isAbove(yield* isolated.raft.currentTerm, term)
            assert.strictEqual(cluster.network.counters.requestPreVote, 0)
          }

          yield* cluster.network.reconnect(isolated.id)
          yield* cluster.advance(400)
          const current = yield* cluster.waitForLeader()
          const last = (yield* current.raft.apply(bytes("after"))).index
          yield* cluster.waitForApplied(last)
          if (preVote) {
            assert.strictEqual(current.id, leader.id, "the leader was deposed")
            for (const node of cluster.nodes) assert.strictEqual(yield* node.raft.currentTerm, term, node.id)
          } else {
            assert.isAbove(yield* current.raft.currentTerm, term)
          }
          for (const node of cluster.nodes) assert.deepStrictEqual(node.fsm.commands(), ["a0", "a1", "a2", "after"])
        }).pipe(seeded(`prevote-${preVote}`))
    )
  }
})

describe("Raft: PreVote and a live leader", () => {
  it.scoped("with PreVote a follower cut off from the leader but not from the other follower gets no pre-vote and keeps its term", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const term = yield* leader.raft.currentTerm
      const [cut, other] = yield* cluster.followers
      yield* cluster.network.block(leader.id, cut!.id)
      yield* cluster.network.block(cut!.id, leader.id)
      const preVotesBefore = cluster.network.counters.requestPreVote
      yield* cluster.advance(600)
      // It asked the other follower, which still hears from the leader and so refused.
      assert.isAbove(cluster.network.counters.requestPreVote, preVotesBefore)
      assert.strictEqual(yield* cut!.raft.currentTerm, term, "a pre-vote was granted despite a live leader")
      assert.strictEqual(yield* other!.raft.currentTerm, term)
      assert.strictEqual(yield* leader.raft.state, "Leader")
      yield* cluster.network.heal
      const last = (yield* leader.raft.apply(bytes("after"))).index
      yield* cluster.waitForApplied(last)
      assert.strictEqual(yield* leader.raft.currentTerm, term)
    }).pipe(seeded("prevote-sticky")))
})

describe("Raft: apply outcomes never hang", () => {
  it.scoped("apply and barrier with a timeout shorter than the lease fail with ApplyTimeout once the quorum is gone", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "a", 2)
      for (const follower of yield* cluster.followers) yield* cluster.stop(follower.id)
      const apply = yield* Effect.fork(Effect.either(leader.raft.apply(bytes("lost"), { timeout: "20 millis" })))
      const barrier = yield* Effect.fork(Effect.either(leader.raft.barrier({ timeout: "20 millis" })))
      const applied = yield* settle(cluster, apply, 1000)
      const barriered = yield* settle(cluster, barrier, 1000)
      for (const outcome of [applied, barriered] as Array<Either.Either<unknown, { readonly _tag: string }>>) {
        assert.strictEqual(outcomeTag(outcome), "ApplyTimeout")
        if (Either.isLeft(outcome)) assert.strictEqual((outcome.left as { readonly timeoutMillis?: number }).timeoutMillis, 20)
      }
      assert.deepStrictEqual(leader.fsm.commands(), ["a0", "a1"])
    }).pipe(seeded("apply-timeout")))

  it.scoped("an apply without a timeout can be interrupted while it waits, and the node then shuts down leaving no fiber behind", () =>
    Effect.gen(function*() {
      const supervisor = yield* Supervisor.track
      const cluster = yield* makeCluster({ size: 3 }).pipe(Effect.supervised(supervisor))
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "a", 2)
      for (const follower of yield* cluster.followers) yield* cluster.stop(follower.id)
      const pending = yield* Effect.fork(leader.raft.apply(bytes("waiting")))
      yield* TestClock.adjust(20)
      assert.isNull(pending.unsafePoll(), "the apply ended without a quorum")
      assert.strictEqual(yield* leader.raft.state, "Leader")
      // No clock advance: the interruption alone must end the wait.
      const interrupter = yield* Effect.fork(Fiber.interrupt(pending))
      for (let i = 0; i < 20 && interrupter.unsafePoll() === null; i++) yield* Effect.yieldNow()
      assert.isNotNull(interrupter.unsafePoll(), "interrupting the apply did not return")
      assert.isTrue(Exit.isInterrupted(yield* Fiber.join(interrupter)))

      for (const node of cluster.nodes) yield* cluster.stop(node.id)
      yield* Effect.yieldNow()
      const left = (yield* supervisor.value).filter((fiber) => fiber.unsafePoll() === null)
      assert.strictEqual(left.length, 0, `fibers still running: ${left.map((f) => f.id().id).join(",")}`)
    }).pipe(seeded("apply-interrupt")))
})
