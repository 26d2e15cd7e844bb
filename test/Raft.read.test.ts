/**
 * Linearizable reads in the core (`raft.readIndex`): on the leader, a read
 * waits for a heartbeat round started after it arrived, and reads that arrive
 * together share one; on a follower, reads share one ReadIndex request to
 * the leader and wait until the follower's own FSM has applied the index; a
 * lease read skips the round only while acknowledgements are recent enough,
 * never after a leadership transfer began, and lasts `leaderLeaseTimeout`; a
 * voter that restarts refuses votes for a heartbeat timeout, which the lease
 * counts on.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import * as Fsm from "../src/Fsm.js"
import { directReadOf } from "../src/internal/directRead.js"
import type * as RaftConfig from "../src/RaftConfig.js"
import {
  applyAll,
  bytes,
  makeCluster,
  type RecordingFsm,
  recordingFsm,
  seeded,
  settle
} from "./cluster.js"

/** A recording FSM whose applies wait while `gate` is closed: a follower whose state machine lags. */
const gatedFsm = (gate: Effect.Latch): RecordingFsm => {
  const inner = recordingFsm()
  return {
    ...inner,
    ...Fsm.make({
      apply: inner.apply,
      applyBatch: (logs) => Effect.zipRight(gate.await, inner.applyBatch(logs)),
      snapshot: inner.snapshot,
      restore: inner.restore
    })
  }
}

/** A 3-node cluster whose FSMs wait while their gates (open at first) are closed, and its leader. */
const gatedCluster = Effect.gen(function*() {
  const gates = new Map<string, Effect.Latch>()
  for (const id of ["node1", "node2", "node3"]) gates.set(id, yield* Effect.makeLatch(true))
  const cluster = yield* makeCluster({ size: 3, fsm: (id) => gatedFsm(gates.get(id)!) })
  const leader = yield* cluster.waitForLeader()
  return { cluster, gates, leader }
})

/** A gated cluster whose first follower has applied `n` writes ("a0", …) and whose FSM is then held (gate closed). */
const heldFollower = (n: number) =>
  Effect.gen(function*() {
    const { cluster, gates, leader } = yield* gatedCluster
    const follower = cluster.nodes.find((node) => node.id !== leader.id)!
    yield* cluster.waitForApplied(yield* applyAll(leader, "a", n))
    yield* gates.get(follower.id)!.close
    return { cluster, gates, follower, leader }
  })

/** Link conditions with a fixed delay each way: a round trip takes `2 × millis`. */
const delayed = (millis: number) => ({ minDelayMillis: millis, maxDelayMillis: millis, dropRate: 0, duplicateRate: 0 })

/** Heartbeats every 100–200 ms: a heartbeat fiber is rarely busy when a test starts a round. */
const slowHeartbeats = { heartbeatTimeout: "1 second", electionTimeout: "1 second", leaderLeaseTimeout: "500 millis" } as const

/** A lease of 200 ms: heartbeat timeout 300 ms, less a drift margin of 100 ms. */
const leaseTimers = {
  heartbeatTimeout: "300 millis",
  electionTimeout: "300 millis",
  leaderLeaseTimeout: "300 millis",
  maxClockDrift: "100 millis",
  readMode: "lease"
} as const

/** A cluster whose leader applied one write, then links delayed by `delay` ms each way for `settle` ms. */
const delayedCluster = (config: Omit<RaftConfig.Input, "localId">, delay: number, settleMillis: number) =>
  Effect.gen(function*() {
    const cluster = yield* makeCluster({ size: 3, config })
    const leader = yield* cluster.waitForLeader()
    yield* cluster.waitForApplied(yield* applyAll(leader, "a", 1))
    yield* cluster.network.setConditions(delayed(delay))
    yield* cluster.advance(settleMillis)
    return { cluster, leader }
  })

/** Whether `fiber` finished, after every fiber that can run without the clock has run. */
const finished = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.map(Effect.zipRight(TestClock.adjust(0), Effect.yieldNow()), () => fiber.unsafePoll() !== null)

/** Asserts that `read`, just forked, is still waiting a millisecond before `millis` and failed with ReadTimeout at it. */
const timesOutAt = <E>(read: Fiber.RuntimeFiber<{ readonly _tag: string }, E>, millis: number) =>
  Effect.gen(function*() {
    assert.isFalse(yield* finished(read))
    yield* TestClock.adjust(millis - 1)
    assert.isFalse(yield* finished(read), "not a millisecond before its deadline")
    yield* TestClock.adjust(1)
    assert.isTrue(yield* finished(read), "at its deadline")
    assert.strictEqual((yield* Fiber.join(read))._tag, "ReadTimeout")
  })

describe("Raft: readIndex", () => {
  it.scoped("a read on the leader returns an index covering every write acknowledged before it, once applied", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const last = yield* applyAll(leader, "w", 5)
      const index = yield* settle(cluster, yield* Effect.fork(leader.raft.readIndex()))
      assert.isAtLeast(index, last)
      assert.isAtLeast(yield* leader.raft.appliedIndex, index)
      assert.deepStrictEqual(leader.fsm.commands(), ["w0", "w1", "w2", "w3", "w4"])
    }).pipe(seeded("read-leader")))

  it.scoped("a read on a follower waits until its own FSM has applied the leader's read index", () =>
    Effect.gen(function*() {
      const { cluster, gates, follower, leader } = yield* heldFollower(2)
      const last = yield* applyAll(leader, "b", 3)
      const fiber = yield* Effect.fork(follower.raft.readIndex())
      yield* cluster.advance(200)
      assert.isNull(fiber.unsafePoll(), "the follower's FSM has not applied the writes yet")
      yield* gates.get(follower.id)!.open
      const index = yield* settle(cluster, fiber)
      assert.isAtLeast(index, last)
      assert.deepStrictEqual(follower.fsm.commands(), ["a0", "a1", "b0", "b1", "b2"])
      assert.strictEqual(yield* follower.raft.state, "Follower")
      assert.isAbove(cluster.network.counters.readIndex, 0, "the follower asked the leader")
    }).pipe(seeded("read-follower-waits")))

  it.scoped("a follower's read right after a write learns the commit index at once, not at the next commit tick", () =>
    Effect.gen(function*() {
      // Followers learn the commit index every one to two commit timeouts when nothing else is sent: 1 to 2 s here.
      const cluster = yield* makeCluster({ size: 3, config: { commitTimeout: "1 second" } })
      const leader = yield* cluster.waitForLeader()
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      const written = (yield* leader.raft.apply(bytes("w"))).index
      const read = yield* Effect.fork(follower.raft.readIndex())
      yield* cluster.advance(50)
      assert.isNotNull(read.unsafePoll(), "answered within 50 ms")
      assert.isAtLeast(yield* Fiber.join(read), written)
      assert.deepStrictEqual(follower.fsm.commands(), ["w"])
    }).pipe(seeded("read-follower-commit")))

  it.scoped("a read arriving while the leader's heartbeat round is in flight waits for the next round", () =>
    Effect.gen(function*() {
      const { cluster, leader } = yield* delayedCluster(slowHeartbeats, 10, 50)
      // Reads arriving together share the round they start: one round trip (20 ms) answers them all.
      const first = yield* Effect.forEach([1, 2, 3], () => Effect.fork(leader.raft.readIndex()))
      yield* TestClock.adjust(5)
      const late = yield* Effect.fork(leader.raft.readIndex())
      yield* TestClock.adjust(16)
      for (const fiber of first) assert.isTrue(yield* finished(fiber), "confirmed by the first round")
      assert.isFalse(yield* finished(late), "the first round's heartbeats left before this read arrived")
      yield* settle(cluster, late)
    }).pipe(seeded("read-next-round")))

  it.scoped("a heartbeat round asks only the voters its quorum needs, and the next round goes out when it settles", () =>
    Effect.gen(function*() {
      const { cluster, leader } = yield* delayedCluster(slowHeartbeats, 10, 50)
      const before = cluster.network.counters.appendEntries
      const first = yield* Effect.fork(leader.raft.readIndex())
      yield* TestClock.adjust(5)
      const second = yield* Effect.fork(leader.raft.readIndex())
      yield* TestClock.adjust(16)
      assert.isTrue(yield* finished(first))
      assert.isFalse(yield* finished(second), "its round waits for the first one's")
      yield* settle(cluster, second)
      // Three voters: the leader and one follower's answer make a quorum; before, each round went to both followers.
      assert.strictEqual(cluster.network.counters.appendEntries - before, 2, "one heartbeat per round")
    }).pipe(seeded("read-round-quorum")))

  it.scoped("a round whose follower does not answer is taken by another follower's next heartbeat", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: slowHeartbeats })
      const leader = yield* cluster.waitForLeader()
      yield* cluster.waitForApplied(yield* applyAll(leader, "a", 1))
      // Each follower in turn is the one cut off: the round goes to one of them first, whichever it is.
      for (const cut of cluster.nodes.filter((node) => node.id !== leader.id)) {
        yield* cluster.network.disconnect(cut.id)
        const read = yield* Effect.fork(leader.raft.readIndex())
        // Within the other follower's next heartbeat (every 100 to 200 ms) and its answer.
        yield* cluster.advance(250)
        assert.isTrue(yield* finished(read), `answered with ${cut.id} cut off`)
        yield* cluster.network.heal
        yield* cluster.advance(300)
      }
    }).pipe(seeded("read-round-fallback")))

  it.scoped("reads on a follower share one ReadIndex request to the leader at a time", () =>
    Effect.gen(function*() {
      const { cluster, leader } = yield* delayedCluster(slowHeartbeats, 10, 50)
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      const before = cluster.network.counters.readIndex
      const first = yield* Effect.fork(follower.raft.readIndex())
      yield* TestClock.adjust(5)
      const others = yield* Effect.forEach(Array.from({ length: 10 }), () => Effect.fork(follower.raft.readIndex()))
      for (const fiber of [first, ...others]) yield* settle(cluster, fiber)
      assert.strictEqual(cluster.network.counters.readIndex - before, 2, "one request, then one for all that waited")
    }).pipe(seeded("read-follower-batch")))

  it.scoped("a read on a node that knows no leader fails with NotLeader", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      yield* cluster.network.disconnect(follower.id)
      yield* cluster.advance(400)
      const error = yield* Effect.flip(follower.raft.readIndex())
      assert.strictEqual(error._tag, "NotLeader")
    }).pipe(seeded("read-no-leader")))

  it.scoped("a read that cannot be confirmed in time fails with ReadTimeout", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      for (const node of cluster.nodes) if (node.id !== leader.id) yield* cluster.stop(node.id)
      const error = yield* settle(cluster, yield* Effect.fork(Effect.flip(leader.raft.readIndex({ timeout: "30 millis" }))))
      assert.strictEqual(error._tag, "ReadTimeout", "no quorum answers the round within 30 ms")
    }).pipe(seeded("read-timeout")))

  it.scoped("a read on the leader fails with ReadTimeout at its deadline, in the wait for its heartbeat round", () =>
    Effect.gen(function*() {
      // A lease of 500 ms: the leader does not step down before the read's deadline.
      const cluster = yield* makeCluster({ size: 3, config: slowHeartbeats })
      const leader = yield* cluster.waitForLeader()
      for (const node of cluster.nodes) if (node.id !== leader.id) yield* cluster.stop(node.id)
      const read = yield* Effect.fork(Effect.flip(leader.raft.readIndex({ timeout: "100 millis" })))
      yield* timesOutAt(read, 100)
    }).pipe(seeded("read-timeout-round")))

  it.scoped("a read on a follower fails with ReadTimeout at its deadline, in the wait for its own FSM", () =>
    Effect.gen(function*() {
      const { cluster, gates, leader } = yield* gatedCluster
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      yield* gates.get(follower.id)!.close
      yield* applyAll(leader, "b", 2)
      const read = yield* Effect.fork(Effect.flip(follower.raft.readIndex({ timeout: "100 millis" })))
      yield* timesOutAt(read, 100)
      assert.isAbove(cluster.network.counters.readIndex, 0, "the leader answered the follower's request")
      yield* gates.get(follower.id)!.open
      yield* settle(cluster, yield* Effect.fork(follower.raft.readIndex()))
    }).pipe(seeded("read-timeout-fsm")))

  it.scoped("a read on a follower fails with ReadTimeout at its deadline, in the wait for the leader's answer", () =>
    Effect.gen(function*() {
      const { cluster, leader } = yield* delayedCluster(slowHeartbeats, 100, 300)
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      const read = yield* Effect.fork(Effect.flip(follower.raft.readIndex({ timeout: "50 millis" })))
      yield* timesOutAt(read, 50)
    }).pipe(seeded("read-timeout-rpc")))
})

/** Starts a direct read on `node`; the exits its callback got so far. */
const directRead = (raft: object, mode?: "readIndex" | "lease") => {
  const direct = directReadOf(raft)
  assert.isDefined(direct, "Raft.make attaches the direct reads")
  const exits: Array<Exit.Exit<number, unknown>> = []
  const drop = direct!.read(mode, (exit) => exits.push(exit))
  return { exits, drop }
}

describe("Raft: reads without a fiber (the key-value front's path)", () => {

  it.scoped("answer after a heartbeat round with an index covering every acknowledged write; a follower declines", () =>
    Effect.gen(function*() {
      const { cluster, leader } = yield* delayedCluster(slowHeartbeats, 10, 50)
      const last = yield* leader.raft.commitIndex
      const read = directRead(leader.raft)
      assert.isDefined(read.drop)
      yield* TestClock.adjust(5)
      assert.strictEqual(read.exits.length, 0, "no answer before the round's heartbeats come back")
      yield* cluster.advance(50)
      assert.strictEqual(read.exits.length, 1)
      const exit = read.exits[0]!
      assert.isTrue(Exit.isSuccess(exit))
      if (Exit.isSuccess(exit)) assert.isAtLeast(exit.value, last)
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      assert.isUndefined(directRead(follower.raft).drop, "a follower with no request in flight leaves the read to readIndex")
    }).pipe(seeded("direct-read-round")))

  it.scoped("wait until the leader's own FSM has applied the read index", () =>
    Effect.gen(function*() {
      const { cluster, gates, leader } = yield* gatedCluster
      yield* cluster.waitForApplied(yield* applyAll(leader, "a", 1))
      yield* gates.get(leader.id)!.close
      // Committed, not applied: the apply's own answer waits for the FSM, so it runs in a fiber.
      yield* Effect.fork(leader.raft.apply(bytes("b")))
      yield* cluster.advance(100)
      const read = directRead(leader.raft)
      yield* cluster.advance(200)
      assert.strictEqual(read.exits.length, 0, "the leader's FSM has not applied the write yet")
      yield* gates.get(leader.id)!.open
      yield* cluster.advance(50)
      assert.strictEqual(read.exits.length, 1)
      assert.deepStrictEqual(leader.fsm.commands(), ["a0", "b"])
    }).pipe(seeded("direct-read-applied")))

  it.scoped("fail when the leader loses its quorum, and a dropped read is never answered", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      for (const node of cluster.nodes) if (node.id !== leader.id) yield* cluster.stop(node.id)
      const read = directRead(leader.raft)
      const dropped = directRead(leader.raft)
      dropped.drop!()
      yield* cluster.advance(2000)
      assert.strictEqual(read.exits.length, 1)
      assert.isTrue(Exit.isFailure(read.exits[0]!), "no quorum confirms the round")
      assert.strictEqual(dropped.exits.length, 0)
    }).pipe(seeded("direct-read-lost")))
})

describe("Raft: a follower's reads without a fiber", () => {
  it.scoped("join the ReadIndex request in flight and answer its index, the one readIndex answers", () =>
    Effect.gen(function*() {
      const { cluster, leader } = yield* delayedCluster(slowHeartbeats, 10, 50)
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      // The first read of a burst takes readIndex: its fiber starts the sender, whose request is then in flight.
      const first = yield* Effect.fork(follower.raft.readIndex({ mode: "readIndex" }))
      yield* TestClock.adjust(1)
      const { drop, exits } = directRead(follower.raft, "readIndex")
      assert.isDefined(drop, "a follower with a request in flight takes the read")
      yield* TestClock.adjust(5)
      assert.strictEqual(exits.length, 0, "no answer before the leader's")
      const last = yield* leader.raft.commitIndex
      yield* settle(cluster, first)
      const index = yield* Fiber.join(first)
      yield* cluster.advance(50)
      assert.strictEqual(exits.length, 1)
      const exit = exits[0]!
      assert.isTrue(Exit.isSuccess(exit))
      // It joined the request after the first one's: the next request, answered with at least its index.
      if (Exit.isSuccess(exit)) assert.isAtLeast(exit.value, Math.max(index, last))
    }).pipe(seeded("follower-direct-read")))

  it.scoped("wait until the follower's own FSM has applied the read index", () =>
    Effect.gen(function*() {
      const { cluster, gates, follower, leader } = yield* heldFollower(1)
      yield* applyAll(leader, "b", 2)
      // A request to the leader takes 20 ms there and back: the second read finds the first one's in flight.
      yield* cluster.network.setConditions(delayed(10))
      const first = yield* Effect.fork(follower.raft.readIndex({ mode: "readIndex" }))
      yield* TestClock.adjust(1)
      const { drop, exits } = directRead(follower.raft, "readIndex")
      assert.isDefined(drop)
      yield* cluster.advance(500)
      assert.strictEqual(exits.length, 0, "the follower's FSM has not applied the writes yet")
      yield* gates.get(follower.id)!.open
      yield* settle(cluster, first)
      yield* cluster.advance(50)
      assert.strictEqual(exits.length, 1)
      assert.isTrue(Exit.isSuccess(exits[0]!))
      assert.deepStrictEqual(follower.fsm.commands(), ["a0", "b0", "b1"])
    }).pipe(seeded("follower-direct-read-applied")))
})

describe("Raft: lease reads", () => {
  it.scoped("a lease read on the leader takes no heartbeat round while acknowledgements are recent", () =>
    Effect.gen(function*() {
      const { cluster, leader } = yield* delayedCluster(leaseTimers, 10, 100)
      const lease = yield* Effect.fork(leader.raft.readIndex())
      assert.isTrue(yield* finished(lease), "answered at once, from the lease")
      const round = yield* Effect.fork(leader.raft.readIndex({ mode: "readIndex" }))
      assert.isFalse(yield* finished(round), "a ReadIndex read waits for its round")
      yield* settle(cluster, round)
    }).pipe(seeded("lease-holds")))

  it.scoped("a lease read takes a round when acknowledgements come back later than the lease allows", () =>
    Effect.gen(function*() {
      // An answer to a request sent 250 ms earlier extends no lease of 200 ms (it would one of 300 ms, without the
      // drift margin).
      const { cluster, leader } = yield* delayedCluster(leaseTimers, 125, 600)
      assert.strictEqual(yield* leader.raft.state, "Leader")
      // Right after a round was answered: the freshest acknowledgement is one round trip old.
      yield* settle(cluster, yield* Effect.fork(leader.raft.readIndex({ mode: "readIndex" })))
      const read = yield* Effect.fork(leader.raft.readIndex())
      assert.isFalse(yield* finished(read), "no lease: a round trip first")
      yield* settle(cluster, read)
    }).pipe(seeded("lease-expired")))

  it.scoped("a lease lasts leaderLeaseTimeout (less the drift), not a heartbeat timeout", () =>
    Effect.gen(function*() {
      // Lease 150 ms less 30 of drift; heartbeat timeout 300 ms. Answers to requests sent 150 ms earlier keep the
      // leader leading but extend no lease of 120 ms (they would one counted from the heartbeat timeout, 270 ms): a
      // follower told that the leader's connection closed votes for others after a lease (leaderLost.ts).
      const shortLease = { ...leaseTimers, leaderLeaseTimeout: "150 millis", maxClockDrift: "30 millis" } as const
      const { cluster, leader } = yield* delayedCluster(shortLease, 75, 600)
      assert.strictEqual(yield* leader.raft.state, "Leader")
      yield* settle(cluster, yield* Effect.fork(leader.raft.readIndex({ mode: "readIndex" })))
      const read = yield* Effect.fork(leader.raft.readIndex())
      assert.isFalse(yield* finished(read), "no lease: a round trip first")
      yield* settle(cluster, read)
    }).pipe(seeded("lease-is-the-lease-timeout")))

  it.scoped("no lease read is served once a leadership transfer began in the term, even after it failed", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: leaseTimers })
      const leader = yield* cluster.waitForLeader()
      yield* cluster.waitForApplied(yield* applyAll(leader, "a", 1))
      const target = cluster.nodes.find((node) => node.id !== leader.id)!
      // The target cannot be reached: the transfer fails after an election timeout, and the leader stays.
      yield* cluster.network.disconnect(target.id)
      const transfer = yield* Effect.fork(leader.raft.leadershipTransferToServer(target.id, target.address))
      const outcome = yield* settle(cluster, yield* Effect.fork(Effect.either(Fiber.join(transfer))))
      assert.strictEqual(outcome._tag, "Left")
      assert.strictEqual(yield* leader.raft.state, "Leader")
      yield* cluster.network.setConditions(delayed(10))
      yield* cluster.advance(100)
      const read = yield* Effect.fork(leader.raft.readIndex())
      assert.isFalse(yield* finished(read), "a heartbeat round, not the lease")
      yield* settle(cluster, read)
    }).pipe(seeded("lease-transfer")))

  it.scoped("a voter that restarts refuses to pre-vote for a heartbeat timeout, as if it had just heard a leader", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      yield* cluster.waitForApplied(yield* applyAll(leader, "a", 1))
      const [voter, candidate] = cluster.nodes.filter((node) => node.id !== leader.id)
      yield* cluster.stop(leader.id)
      yield* cluster.stop(voter!.id)
      yield* cluster.restart(voter!.id)
      const ask = cluster.network.transport("probe").requestPreVote(voter!.id, voter!.address, {
        _tag: "RequestPreVoteRequest",
        term: (yield* candidate!.raft.currentTerm) + 1,
        candidateId: candidate!.id,
        candidateAddress: candidate!.address,
        lastLogIndex: yield* candidate!.raft.lastIndex,
        lastLogTerm: (yield* candidate!.raft.stats).lastLogTerm
      })
      assert.isFalse((yield* ask).granted, "refused right after the restart")
      yield* TestClock.adjust(100)
      assert.isTrue((yield* ask).granted, "granted once a heartbeat timeout passed without a leader")
    }).pipe(seeded("restart-quiet")))
})

describe("Raft: readIndex and verifyLeader share rounds", () => {
  it.scoped("verifyLeader joins the round that reads started", () =>
    Effect.gen(function*() {
      const { leader } = yield* delayedCluster(slowHeartbeats, 10, 50)
      const read = yield* Effect.fork(leader.raft.readIndex())
      const verify = yield* Effect.fork(leader.raft.verifyLeader)
      yield* TestClock.adjust(21)
      assert.isTrue(yield* finished(read))
      assert.isTrue(yield* finished(verify), "one round answered both")
      yield* Fiber.join(verify)
    }).pipe(seeded("verify-shares")))
})
