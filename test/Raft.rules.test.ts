import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"
import * as Configuration from "../src/Configuration.js"
import * as Fsm from "../src/Fsm.js"
import { metrics } from "../src/internal/metrics.js"
import * as LogStore from "../src/LogStore.js"
import * as Raft from "../src/Raft.js"
import { StorageError } from "../src/RaftError.js"
import type { RequestVoteRequest } from "../src/Rpc.js"
import * as SnapshotStore from "../src/SnapshotStore.js"
import * as StableStore from "../src/StableStore.js"
import * as MemoryNetwork from "../src/transport/MemoryNetwork.js"
import { applyAll, bytes, makeCluster, seeded, stallRunLoop, stuckDisk } from "./cluster.js"

const voteRequest = (fields: Partial<RequestVoteRequest>): RequestVoteRequest => ({
  _tag: "RequestVoteRequest",
  term: 1,
  candidateId: "intruder",
  candidateAddress: "mem://intruder",
  lastLogIndex: 0,
  lastLogTerm: 0,
  leadershipTransfer: false,
  ...fields
})

describe("Raft: voting rules", () => {
  it.scoped("a vote is stored in the StableStore before it is granted", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 1, bootstrap: false })
      const voter = cluster.nodes[0]!
      const latch = yield* Effect.makeLatch(false)
      const original = voter.stable.set
      const writes: Array<string> = []
      ;(voter.stable as { set: typeof original }).set = (key, value) =>
        latch.await.pipe(Effect.zipRight(original(key, value)), Effect.tap(() => writes.push(key)))
      const intruder = cluster.network.transport("intruder")
      const answer = yield* Effect.fork(intruder.requestVote(voter.id, voter.address, voteRequest({ term: 5 })))
      yield* TestClock.adjust(50)
      assert.isNull(answer.unsafePoll(), "answered before the vote was stored")
      yield* latch.open
      const response = yield* Fiber.join(answer)
      assert.isTrue(response.granted)
      assert.include(writes, "LastVote")
      const stored = yield* original === undefined ? Effect.never : voter.stable.get("LastVote")
      assert.isTrue(Option.isSome(stored))
      assert.strictEqual(yield* voter.stable.getUint64("CurrentTerm"), 5)
    }).pipe(seeded("vote-persist")))

  it.scoped("a vote that cannot be stored is never granted", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 1, bootstrap: false })
      const voter = cluster.nodes[0]!
      ;(voter.stable as { set: StableStore.StableStore["set"] }).set = () =>
        Effect.fail(new StorageError({ operation: "set", reason: "disk full" }))
      const intruder = cluster.network.transport("intruder")
      const answer = yield* Effect.either(intruder.requestVote(voter.id, voter.address, voteRequest({ term: 5 })))
      assert.isTrue(Either.isLeft(answer) || !answer.right.granted)
    }).pipe(seeded("vote-fail")))

  it.scoped("a follower that hears from a live leader refuses other candidates and keeps its term", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      yield* cluster.waitForLeader()
      const follower = (yield* cluster.followers)[0]!
      const term = yield* follower.raft.currentTerm
      const intruder = cluster.network.transport("intruder")
      const response = yield* intruder.requestVote(
        follower.id,
        follower.address,
        voteRequest({ term: term + 5, lastLogIndex: 1000, lastLogTerm: term + 4 })
      )
      assert.isFalse(response.granted)
      assert.strictEqual(yield* follower.raft.currentTerm, term)
    }).pipe(seeded("live-leader")))

  it.scoped("votes go only to a candidate whose log is at least as up to date, and once per term", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      for (let i = 0; i < 5; i++) yield* leader.raft.apply(bytes(`v${i}`))
      yield* cluster.advance(50)
      const voter = (yield* cluster.followers)[0]!
      for (const node of cluster.nodes) if (node.id !== voter.id) yield* cluster.stop(node.id)
      yield* cluster.advance(400) // no leader any more: the voter's contact expires
      const stats = yield* voter.raft.stats
      const intruder = cluster.network.transport("intruder")
      // Candidates must be voters of the configuration: the two stopped members ask.
      const [one, other] = cluster.nodes.filter((node) => node.id !== voter.id).map((node) => node.id)
      const ask = (fields: Partial<RequestVoteRequest>) =>
        intruder.requestVote(voter.id, voter.address, voteRequest({ candidateId: one!, ...fields }))
      let term = stats.term + 10
      assert.isFalse((yield* ask({ term, lastLogIndex: stats.lastLogIndex + 10, lastLogTerm: stats.lastLogTerm - 1 })).granted, "older last term")
      term += 10
      assert.isFalse((yield* ask({ term, lastLogIndex: stats.lastLogIndex - 1, lastLogTerm: stats.lastLogTerm })).granted, "shorter log")
      term += 10
      assert.isTrue((yield* ask({ term, lastLogIndex: stats.lastLogIndex, lastLogTerm: stats.lastLogTerm })).granted, "equal log")
      assert.isFalse(
        (yield* ask({ term, candidateId: other!, lastLogIndex: stats.lastLogIndex + 5, lastLogTerm: stats.lastLogTerm + 1 })).granted,
        "second vote in the same term"
      )
      assert.isTrue((yield* ask({ term, lastLogIndex: stats.lastLogIndex, lastLogTerm: stats.lastLogTerm })).granted, "same candidate again")
      term += 10
      assert.isFalse(
        (yield* ask({ term, candidateId: "outsider", lastLogIndex: stats.lastLogIndex + 5, lastLogTerm: stats.lastLogTerm + 1 })).granted,
        "a candidate outside the configuration"
      )
    }).pipe(seeded("up-to-date")))
})

describe("Raft: replication paths", () => {
  const captureLogs = () => {
    const lines: Array<{ readonly level: string; readonly message: string }> = []
    const logger = Logger.make(({ logLevel, message }) => {
      lines.push({ level: logLevel.label, message: Array.isArray(message) ? message.join(" ") : String(message) })
    })
    return { lines, layer: Logger.add(logger) }
  }

  it.scoped("replication falls back to plain mode on PipelineNotSupported without logging an error", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      for (const node of cluster.nodes) yield* cluster.network.setPipelineSupport(node.id, false)
      const leader = yield* cluster.waitForLeader()
      let last = 0
      for (let i = 0; i < 50; i++) last = (yield* leader.raft.apply(bytes(`n${i}`))).index
      yield* cluster.waitForApplied(last)
      for (const node of cluster.nodes) assert.strictEqual(node.fsm.applied.length, 50)
      assert.strictEqual(cluster.network.counters.pipelinesOpened, 0)
      assert.strictEqual(cluster.network.counters.pipelinedAppendEntries, 0)
      assert.isAbove(cluster.network.counters.appendEntries, 0)
      const loud = logs.lines.filter((line) => line.level === "ERROR" || line.level === "FATAL")
      assert.deepStrictEqual(loud, [])
    }).pipe(Effect.provide(logs.layer), seeded("no-pipeline"))
  })

  it.scoped("a follower in sync is replicated to through a pipeline", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      let last = 0
      for (let i = 0; i < 50; i++) last = (yield* leader.raft.apply(bytes(`q${i}`))).index
      yield* cluster.waitForApplied(last)
      assert.isAbove(cluster.network.counters.pipelinesOpened, 0)
      assert.isAbove(cluster.network.counters.pipelinedAppendEntries, 0)
    }).pipe(seeded("pipeline")))

  it.scoped("LogNotFound while replicating takes the snapshot path, backs off, and neither crashes nor spins", () =>
    Effect.gen(function*() {
      // maxAppendEntries 1: the leader keeps only its latest 16-32 entries in memory, so the stopped follower's
      // entries must come from the store.
      const cluster = yield* makeCluster({ size: 3, stepMillis: 50, config: { maxAppendEntries: 1 } })
      const leader = yield* cluster.waitForLeader()
      const behind = (yield* cluster.followers)[0]!
      yield* cluster.stop(behind.id)
      let last = 0
      for (let i = 0; i < 40; i++) last = (yield* leader.raft.apply(bytes(`l${i}`))).index
      // Compact the leader's log under the stopped follower's feet (no snapshot exists).
      yield* leader.logs.deleteRange(1, last - 5)
      let lookups = 0
      const list = leader.snapshots.list
      ;(leader.snapshots as { list: SnapshotStore.SnapshotStore["list"] }).list = Effect.suspend(() => {
        lookups++
        return list
      })
      yield* cluster.restart(behind.id)
      yield* cluster.advance(3000)
      assert.strictEqual(yield* leader.raft.state, "Leader")
      assert.isAtLeast(lookups, 1, "the snapshot path was never taken")
      // hashicorp's backoff allows about 10 attempts in 3 s (10+10+20+…+1280 ms); a spin would be thousands.
      assert.isAtMost(lookups, 25, `snapshot path taken ${lookups} times in 3 s`)
      const index = (yield* leader.raft.apply(bytes("still serving"))).index
      assert.isAbove(index, last)
    }).pipe(seeded("log-not-found")))

  it.scoped("a leader whose disk is stuck keeps its heartbeats and commits through its followers' copies, and writes its own later", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const storedBefore = yield* leader.logs.lastIndex
      const disk = yield* stuckDisk(leader.logs)
      // The leader writes its own entries while it replicates them (Raft thesis §10.2.1): the two followers'
      // copies are a quorum, so both commit although the leader's disk has written neither.
      const first = yield* Effect.fork(leader.raft.apply(bytes("slow")))
      const second = yield* Effect.fork(leader.raft.apply(bytes("late"), { timeout: "50 millis" }))
      yield* cluster.advance(500)
      const done = yield* Fiber.join(first)
      yield* Fiber.join(second)
      assert.strictEqual(yield* leader.logs.lastIndex, storedBefore, "the leader's store was written through a stuck disk")
      assert.strictEqual(yield* leader.raft.state, "Leader")
      yield* disk.open
      yield* cluster.advance(100)
      yield* cluster.waitForApplied(done.index + 1)
      assert.strictEqual(yield* leader.logs.lastIndex, done.index + 1, "the leader never wrote its own entries")
      for (const node of cluster.nodes) assert.deepStrictEqual(node.fsm.commands(), ["slow", "late"])
    }).pipe(seeded("slow-disk")))

  it.scoped("a leader stepping down while its disk is stuck shows its old term until it is a follower: never two leaders of one term", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const old = yield* cluster.waitForLeader()
      const oldTerm = (yield* old.raft.stats).term
      const disk = yield* stuckDisk(old.logs)
      // A write of its own is pending on the stuck disk when a leader of a later term reaches it: it must await
      // that write before it follows, and meanwhile it still leads, so in its own term only.
      yield* Effect.fork(Effect.either(old.raft.apply(bytes("pending"))))
      // It hands leadership over: the target's RequestVote of the next term reaches it with its write pending.
      const target = cluster.nodes.find((n) => n.id !== old.id)!
      yield* Effect.fork(Effect.either(old.raft.leadershipTransferToServer(target.id, target.address)))
      const next = yield* cluster.waitForLeader({ exclude: [old.id] })
      const nextTerm = (yield* next.raft.stats).term
      assert.isAbove(nextTerm, oldTerm)
      let sawStepDown = false
      for (let waited = 0; waited < 500; waited += 10) {
        yield* cluster.advance(10)
        const stats = yield* old.raft.stats
        if (stats.state === "Leader") {
          assert.strictEqual(stats.term, oldTerm, `${old.id} leads term ${stats.term}, as ${next.id} does`)
          if ((yield* old.logs.lastIndex) < stats.lastLogIndex) sawStepDown = true
        }
      }
      assert.isTrue(sawStepDown, "the old leader was never seen leading with its write pending while the next one led")
      yield* disk.open
      yield* cluster.advance(200)
      assert.strictEqual(yield* old.raft.state, "Follower")
      assert.strictEqual((yield* old.raft.stats).term, nextTerm)
    }).pipe(seeded("step-down-stuck-disk")))

  it.scoped("a leader whose disk is stuck stops appending once 64 × maxAppendEntries entries wait for it, and appends the rest when it recovers", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: { maxAppendEntries: 2 } })
      const leader = yield* cluster.waitForLeader()
      const before = yield* leader.raft.lastIndex
      const disk = yield* stuckDisk(leader.logs)
      const waits = []
      for (let i = 0; i < 300; i++) waits.push(yield* leader.raft.applyFuture(bytes(`p${i}`)))
      yield* cluster.advance(500)
      // 128 entries (and the batch that reached the limit) are appended and committed by the followers; the rest
      // wait in the queue instead of in memory behind the stuck disk.
      const appended = (yield* leader.raft.lastIndex) - before
      assert.isAtLeast(appended, 128)
      assert.isAtMost(appended, 130)
      assert.strictEqual(yield* leader.raft.state, "Leader")
      yield* disk.open
      const all = yield* Effect.fork(Effect.all(waits))
      yield* cluster.advance(1000)
      const last = (yield* Fiber.join(all))[299]!.index
      yield* cluster.waitForApplied(last)
      for (const node of cluster.nodes) assert.strictEqual(node.fsm.commands().length, 300)
    }).pipe(seeded("slow-disk-backpressure")))

  it.scoped("an apply not taken off the queue in time fails with ApplyTimeout and is never appended", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "a", 1)
      const stall = yield* stallRunLoop(leader)
      const late = yield* Effect.fork(Effect.either(leader.raft.apply(bytes("late"), { timeout: "20 millis" })))
      yield* cluster.advance(100)
      const outcome = yield* Fiber.join(late)
      assert.isTrue(Either.isLeft(outcome) && outcome.left._tag === "ApplyTimeout")
      yield* stall.release
      const after = yield* leader.raft.apply(bytes("after"))
      yield* cluster.waitForApplied(after.index)
      for (const node of cluster.nodes) assert.deepStrictEqual(node.fsm.commands(), ["a0", "after"])
    }).pipe(seeded("queue-timeout")))

  it.scoped("an apply whose caller is interrupted before the run loop takes it is never appended", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "a", 1)
      const stall = yield* stallRunLoop(leader)
      const gone = yield* Effect.fork(leader.raft.apply(bytes("gone")))
      // Awaited twice: the entry stays, and the second waiter learns its outcome.
      const twice = yield* leader.raft.applyFuture(bytes("twice"))
      const first = yield* Effect.fork(twice)
      const second = yield* Effect.fork(twice)
      yield* cluster.advance(10)
      yield* Fiber.interrupt(gone)
      yield* Fiber.interrupt(first)
      yield* stall.release
      const kept = yield* Fiber.join(second)
      const after = yield* leader.raft.apply(bytes("after"))
      assert.isAbove(after.index, kept.index)
      yield* cluster.waitForApplied(after.index)
      for (const node of cluster.nodes) assert.deepStrictEqual(node.fsm.commands(), ["a0", "twice", "after"])
    }).pipe(seeded("queue-interrupt")))

  it.scoped("a follower whose answers are lost keeps hearing heartbeats often enough not to campaign", () =>
    Effect.gen(function*() {
      // The leader's heartbeats reach the follower but every answer is lost, so each counts as a failure
      // and backs off. hashicorp's backoff would soon space them wider than the follower's timeout; the
      // heartbeat's backoff is capped at half of it.
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const follower = (yield* cluster.followers)[0]!
      const term = yield* follower.raft.currentTerm
      yield* cluster.network.block(follower.id, leader.id)
      yield* cluster.advance(1500)
      assert.strictEqual(yield* follower.raft.currentTerm, term, "the follower campaigned")
      yield* cluster.network.unblock(follower.id, leader.id)
      yield* cluster.advance(200)
      assert.strictEqual(yield* leader.raft.state, "Leader")
      assert.strictEqual(yield* leader.raft.currentTerm, term)
    }).pipe(seeded("lost-answers")))

  it.scoped("a pipeline that breaks while its window is full falls back to plain mode, and the follower catches up", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, network: { pipelineWindow: 2 } })
      const leader = yield* cluster.waitForLeader()
      const victim = (yield* cluster.followers)[0]!
      yield* cluster.network.setConditions({ minDelayMillis: 2, maxDelayMillis: 4, dropRate: 0, duplicateRate: 0 })
      for (let i = 0; i < 5; i++) {
        const fiber = yield* Effect.fork(leader.raft.apply(bytes(`w${i}`)))
        yield* cluster.advance(20)
        yield* Fiber.join(fiber)
      }
      const waits = []
      for (let i = 0; i < 300; i++) waits.push(yield* leader.raft.applyFuture(bytes(`x${i}`)))
      yield* TestClock.adjust(5)
      // A short one-way cut while the window is full: a pipelined request fails.
      yield* cluster.network.block(leader.id, victim.id)
      yield* TestClock.adjust(20)
      yield* cluster.network.unblock(leader.id, victim.id)
      const all = yield* Effect.fork(Effect.all(waits))
      yield* cluster.advance(3000)
      const last = (yield* Fiber.join(all))[299]!.index
      yield* cluster.network.setConditions(undefined)
      yield* cluster.waitForApplied(last, { nodes: [victim.id], limitMillis: 3000 })
    }).pipe(seeded("pipeline-break")))

  it.scoped("a leader whose log store fails answers StorageError and steps down", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const store = leader.logs.storeLogs
      ;(leader.logs as { storeLogs: LogStore.LogStore["storeLogs"] }).storeLogs = () =>
        Effect.fail(new StorageError({ operation: "storeLogs", reason: "disk full" }))
      // The followers' answers take a while: otherwise both store the entry in the call that sends it (memory
      // stores), it commits on their quorum before the leader's write fails, and the apply succeeds, as it may.
      yield* cluster.network.setConditions({ minDelayMillis: 5, maxDelayMillis: 5, dropRate: 0, duplicateRate: 0 })
      const error = yield* Effect.flip(leader.raft.apply(bytes("x")))
      assert.strictEqual(error._tag, "StorageError")
      assert.notStrictEqual(yield* leader.raft.state, "Leader")
      assert.isTrue(Option.isNone(yield* leader.raft.leader), "a deposed leader must not name itself")
      ;(leader.logs as { storeLogs: LogStore.LogStore["storeLogs"] }).storeLogs = store
      yield* cluster.network.setConditions(undefined)
      const next = yield* cluster.waitForLeader({ limitMillis: 5000 })
      yield* next.raft.apply(bytes("y"))
    }).pipe(seeded("store-fails")))
})

describe("Raft: outcomes always arrive", () => {
  it.scoped("every waiter on an apply that timed out in the queue gets ApplyTimeout", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const stall = yield* stallRunLoop(leader)
      const late = yield* leader.raft.applyFuture(bytes("late"), { timeout: "20 millis" })
      const waiters = yield* Effect.fork(Effect.all([Effect.either(late), Effect.either(late)], { concurrency: 2 }))
      yield* cluster.advance(100)
      const outcomes = yield* Fiber.join(waiters)
      for (const outcome of outcomes) assert.isTrue(Either.isLeft(outcome) && outcome.left._tag === "ApplyTimeout")
      const again = yield* Effect.either(late)
      assert.isTrue(Either.isLeft(again) && again.left._tag === "ApplyTimeout")
      yield* stall.release
    }).pipe(seeded("timeout-twice")))

  it.scoped("an apply whose batch the FSM is applying when the node shuts down fails with RaftShutdown", () =>
    Effect.gen(function*() {
      const slowFsm = Fsm.make({
        apply: () => Effect.as(Effect.sleep("10 seconds"), "late")
      })
      const network = MemoryNetwork.make()
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        Raft.layer({ localId: "a", heartbeatTimeout: "100 millis", electionTimeout: "100 millis", leaderLeaseTimeout: "50 millis" }).pipe(
          Layer.provide([
            Fsm.layer(slowFsm),
            LogStore.layerMemory,
            StableStore.layerMemory,
            SnapshotStore.layerMemory,
            MemoryNetwork.layerTransport("a").pipe(Layer.provide(Layer.succeed(MemoryNetwork.MemoryNetwork, network)))
          ])
        ),
        scope
      )
      const raft = Context.get(context, Raft.Raft)
      yield* raft.bootstrapCluster(Configuration.voters([["a", "mem://a"]]))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* raft.state, "Leader")
      const pending = yield* Effect.fork(Effect.either(raft.apply(bytes("x"))))
      yield* TestClock.adjust("1 second") // committed; the FSM is now inside its 10 s apply
      yield* raft.shutdown
      const outcome = yield* Fiber.join(pending)
      assert.isTrue(Either.isLeft(outcome) && outcome.left._tag === "RaftShutdown")
      yield* Scope.close(scope, Exit.void)
    }).pipe(seeded("fsm-in-hand")))
})

describe("Raft: lifecycle", () => {
  it.scoped("shutdown is idempotent, every call afterwards fails with RaftShutdown, and closing the layers leaves no fiber running", () =>
    Effect.gen(function*() {
      const supervisor = yield* Supervisor.track
      const cluster = yield* makeCluster({ size: 3 }).pipe(Effect.supervised(supervisor))
      const leader = yield* cluster.waitForLeader()
      yield* leader.raft.apply(bytes("a"))
      const live = (yield* supervisor.value).filter((fiber) => fiber.unsafePoll() === null)
      assert.isAbove(live.length, 10, "the supervisor should see the nodes' fibers")

      yield* leader.raft.shutdown
      yield* leader.raft.shutdown
      assert.strictEqual(yield* leader.raft.state, "Shutdown")
      const failures = [
        yield* Effect.flip(leader.raft.apply(bytes("b"))),
        yield* Effect.flip(leader.raft.barrier()),
        yield* Effect.flip(leader.raft.verifyLeader),
        yield* Effect.flip(leader.raft.bootstrapCluster(Configuration.voters([["x", "mem://x"]])))
      ]
      for (const failure of failures) assert.strictEqual(failure._tag, "RaftShutdown")

      for (const node of cluster.nodes) yield* cluster.stop(node.id)
      yield* Effect.yieldNow()
      const left = (yield* supervisor.value).filter((fiber) => fiber.unsafePoll() === null)
      assert.strictEqual(left.length, 0, `fibers still running: ${left.map((f) => f.id().id).join(",")}`)
    }).pipe(seeded("shutdown")))

  it.scoped("observe reports the election: state changes and the new leader", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 1 })
      const node = cluster.nodes[0]!
      const seen = yield* node.raft.observe.pipe(Stream.take(3), Stream.runCollect, Effect.fork)
      yield* Effect.yieldNow()
      yield* cluster.waitForLeader()
      const events = Chunk.toReadonlyArray(yield* Fiber.join(seen))
      assert.deepStrictEqual(events.map((e) => e._tag), ["StateChange", "StateChange", "LeaderChange"])
      assert.deepInclude(events, { _tag: "StateChange", from: "Candidate", to: "Leader", term: 2 })
      assert.deepInclude(events, { _tag: "LeaderChange", leaderId: node.id, term: 2 })
    }).pipe(seeded("observe")))

  it.scoped("metrics count applies and elections per node", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const tags = [MetricLabel.make("node", leader.id)]
      const applies = Metric.taggedWithLabels(metrics.applies, tags)
      const before = (yield* Metric.value(applies)).count
      for (let i = 0; i < 10; i++) yield* leader.raft.apply(bytes(`m${i}`))
      assert.strictEqual((yield* Metric.value(applies)).count - before, 10)
      assert.isAtLeast((yield* Metric.value(Metric.taggedWithLabels(metrics.elections, tags))).count, 1)
    }).pipe(seeded("metrics")))

  it.scoped("bootstrapCluster refuses a node with state and a bad configuration, and starts a fresh cluster", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, bootstrap: false })
      yield* cluster.advance(500)
      assert.strictEqual((yield* cluster.leaders).length, 0, "a node without configuration must not campaign")
      const configuration = Configuration.voters(cluster.nodes.map((n) => [n.id, n.address] as const))
      const duplicate = Configuration.voters([["a", "mem://a"], ["a", "mem://b"]])
      const bad = yield* Effect.flip(cluster.nodes[0]!.raft.bootstrapCluster(duplicate))
      assert.strictEqual(bad._tag, "CantBootstrap")
      for (const node of cluster.nodes) yield* node.raft.bootstrapCluster(configuration)
      const again = yield* Effect.flip(cluster.nodes[0]!.raft.bootstrapCluster(configuration))
      assert.strictEqual(again._tag, "CantBootstrap")
      const leader = yield* cluster.waitForLeader()
      yield* leader.raft.apply(bytes("first"))
      const offline = yield* Effect.flip(
        Raft.bootstrapCluster(configuration).pipe(
          Effect.provideService(LogStore.LogStore, leader.logs),
          Effect.provideService(StableStore.StableStore, leader.stable),
          Effect.provideService(SnapshotStore.SnapshotStore, leader.snapshots)
        )
      )
      assert.strictEqual(offline._tag, "CantBootstrap")
    }).pipe(seeded("bootstrap")))
})
