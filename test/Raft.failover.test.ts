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

  // Links that take 50 ms each way make the two followers' campaigns overlap often enough to split the vote: each
  // grants the other's pre-vote, then votes for itself. The seeds are runs of this scenario; some split (the test
  // checks that one does), and every split must be settled before a candidate's own timer could have fired.
  it.scoped("a split vote after a failover is settled sooner than a candidate's election timer", () =>
    Effect.gen(function*() {
      let splits = 0
      for (let seed = 0; seed < 6; seed++) {
        const outcome = yield* Effect.scoped(Effect.gen(function*() {
          const { cluster, leader } = yield* steadyCluster
          const term = yield* leader.raft.currentTerm
          yield* cluster.network.setConditions({ minDelayMillis: 50, maxDelayMillis: 50, dropRate: 0, duplicateRate: 0 })
          const stopped = yield* Clock.currentTimeMillis
          yield* cluster.stop(leader.id)
          const next = yield* cluster.waitForLeader({ exclude: [leader.id], limitMillis: 10_000 })
          const took = (yield* Clock.currentTimeMillis) - stopped
          return { took, terms: (yield* next.raft.currentTerm) - term }
        }).pipe(seeded(`split-vote-${seed}`)))
        if (outcome.terms === 1) continue
        splits++
        // The first campaigns start at least a lease (500 ms) after the stop; a candidate's own timer waits another
        // 1,000 to 2,000 ms, and a round of pre-votes and one of votes take 100 ms each: at least 1,700 ms. Those of
        // a lost election (election.ts `campaignAgainSoon`) start within 250 ms, then 500 ms.
        assert.isBelow(outcome.took, 1_700, `seed ${seed}: ${JSON.stringify(outcome)}`)
      }
      assert.isAbove(splits, 0, "no seed split the vote: the scenario tests nothing")
    }))

  // The quick new election is for a split vote, where voters refused: a candidate that no voter answered (cut off
  // from all of them) keeps the full timer of one to two election timeouts between its elections.
  it.scoped("a candidate cut off from every voter campaigns no more often than once an election timeout", () =>
    Effect.gen(function*() {
      // Timers a tenth of the defaults (cluster.ts): an election timeout of 100 ms.
      const cluster = yield* makeCluster({ size: 3, config: { preVote: false } })
      const leader = yield* cluster.waitForLeader()
      const cut = cluster.nodes.find((node) => node.id !== leader.id)!
      yield* cluster.network.disconnect(cut.id)
      let term = yield* cut.raft.currentTerm
      const changes: Array<number> = []
      for (let waited = 0; waited < 1_500; waited += 10) {
        yield* cluster.advance(10)
        const now = yield* cut.raft.currentTerm
        if (now !== term) changes.push(yield* Clock.currentTimeMillis)
        term = now
      }
      assert.isAtLeast(changes.length, 5, `the cut-off node campaigned ${changes.length} times`)
      const gaps = changes.slice(1).map((at, i) => at - changes[i]!)
      // Each at least an election timeout (100 ms), less the 10 ms step of the clock here.
      assert.isAtLeast(Math.min(...gaps), 90, `gaps between its elections: ${gaps.join(", ")} ms`)
    }).pipe(seeded("cut-off-candidate")))
})
