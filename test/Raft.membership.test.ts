/**
 * Membership changes, one server at a time: joining a fresh node (directly,
 * or as a non-voter promoted once caught up), removing a follower or the
 * leader itself, changes that cannot commit, no-op changes, the prevIndex
 * guard, serialisation of changes, and what a non-voter may never do.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Configuration from "../src/Configuration.js"
import type * as Log from "../src/Log.js"
import type * as Raft from "../src/Raft.js"
import { applyAll, bytes, makeCluster, outcomeTag, seeded, settle, type TestNode, eventually } from "./cluster.js"

const suffrageOf = (node: TestNode, id: string) =>
  Effect.map(node.raft.getConfiguration, ({ configuration }) => Configuration.find(configuration, id)?.suffrage)

/** The configurations a node's log holds, in order, with their indices. */
const configurationsInLog = (node: TestNode) =>
  Effect.gen(function*() {
    const first = yield* node.logs.firstIndex
    const last = yield* node.logs.lastIndex
    const entries: ReadonlyArray<Log.Log> = last === 0 ? [] : yield* node.logs.getLogs(first, last)
    return entries.filter((e) => e.type === "Configuration").map((e) => ({
      index: e.index,
      configuration: Configuration.decode(e.data)!
    }))
  }).pipe(Effect.orDie)

const ids = (configuration: Configuration.Configuration) => configuration.servers.map((s) => s.id).sort()

describe("Raft: joining", () => {
  it.scoped("addVoter of a fresh node: it catches up, becomes a voter, and the call returns the committed configuration's index", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "j", 10)
      const joiner = yield* cluster.addNode("node4")
      const index = yield* settle(cluster, yield* Effect.fork(leader.raft.addVoter(joiner.id, joiner.address)))
      const latest = yield* leader.raft.getConfiguration
      assert.strictEqual(index, latest.index)
      assert.isAtLeast(yield* leader.raft.commitIndex, index)
      assert.strictEqual(latest.configuration.servers.length, 4)
      assert.deepInclude(latest.configuration.servers, { id: "node4", address: "mem://node4", suffrage: "Voter" })

      const last = yield* applyAll(leader, "k", 3)
      yield* cluster.waitForApplied(last)
      assert.deepStrictEqual(joiner.fsm.commands(), leader.fsm.commands())
      assert.strictEqual(joiner.fsm.commands().length, 13)
      assert.strictEqual(yield* suffrageOf(joiner, joiner.id), "Voter")

      // Four voters need three: with the new voter and one old follower down, nothing commits.
      const original = cluster.nodes.find((n) => n.id !== leader.id && n.id !== joiner.id)!
      yield* cluster.stop(joiner.id)
      yield* cluster.stop(original.id)
      const stuck = yield* Effect.fork(Effect.either(leader.raft.apply(bytes("minority"), { timeout: "30 millis" })))
      const outcome = yield* settle(cluster, stuck)
      assert.isTrue(Either.isLeft(outcome), "committed with two of four voters")
    }).pipe(seeded("join")))

  it.scoped("addVoter promotes a non-voter that keeps pace with a steady stream of writes, though it never comes within maxAppendEntries of the leader's last index", () =>
    Effect.gen(function*() {
      // An election timeout of a second: the joiner's rounds (a few hundred ms: it follows the leader by a few dozen
      // entries) end within it.
      const cluster = yield* makeCluster({ size: 3, config: { maxAppendEntries: 1, electionTimeout: "1 second" } })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "s", 20)
      const joiner = yield* cluster.addNode("node4")
      // Every message takes 4 ms, and four clients write without a pause: the leader's log grows by a few entries
      // per round trip, one entry per request, so whoever follows it trails it by more than one entry.
      yield* cluster.network.setConditions({ minDelayMillis: 4, maxDelayMillis: 4, dropRate: 0, duplicateRate: 0 })
      const writers = yield* Effect.forEach([1, 2, 3, 4], (w) =>
        Effect.fork(Effect.forever(Effect.ignore(leader.raft.apply(bytes(`w${w}`))))))
      const add = yield* Effect.fork(leader.raft.addVoter(joiner.id, joiner.address))
      let trailed = Infinity
      for (let waited = 0; waited < 3000 && add.unsafePoll() === null; waited += 10) {
        yield* cluster.advance(10)
        const behind = (yield* leader.raft.stats).lastLogIndex - (yield* joiner.raft.stats).lastLogIndex
        trailed = Math.min(trailed, behind)
      }
      assert.isAbove(trailed, 1, "the joiner came within maxAppendEntries of the leader: the test shows nothing")
      const index = yield* settle(cluster, add, 10)
      assert.strictEqual(yield* suffrageOf(leader, joiner.id), "Voter")
      assert.isAtLeast(index, 20)
      yield* Effect.forEach(writers, Fiber.interrupt)
    }).pipe(seeded("promote under load")))

  it.scoped("addVoter of a node far behind adds it as a non-voter, promotes it once caught up, and completes when the promotion commits", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: { maxAppendEntries: 16 } })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "f", 40)
      const joiner = yield* cluster.addNode("node4")
      yield* cluster.network.block(leader.id, joiner.id) // it cannot catch up for now
      const add = yield* Effect.fork(leader.raft.addVoter(joiner.id, joiner.address))
      yield* cluster.advance(300)
      assert.isNull(add.unsafePoll(), "addVoter completed before the server caught up")
      assert.strictEqual(yield* suffrageOf(leader, joiner.id), "Nonvoter")
      // The lagging non-voter does not hold up the cluster.
      yield* leader.raft.apply(bytes("meanwhile"))

      yield* cluster.network.unblock(leader.id, joiner.id)
      const index = yield* settle(cluster, add)
      const latest = yield* leader.raft.getConfiguration
      assert.strictEqual(latest.index, index)
      assert.strictEqual(yield* suffrageOf(leader, joiner.id), "Voter")
      assert.isAtLeast(yield* leader.raft.commitIndex, index)
      const history = (yield* configurationsInLog(leader)).filter((c) => Configuration.find(c.configuration, joiner.id))
      assert.deepStrictEqual(
        history.map((c) => Configuration.find(c.configuration, joiner.id)!.suffrage),
        ["Nonvoter", "Voter"]
      )
      assert.strictEqual(history[1]!.index, index)
      yield* cluster.waitForApplied(index)
      assert.deepStrictEqual(joiner.fsm.commands(), leader.fsm.commands())
    }).pipe(seeded("promote")))
})

describe("Raft: removing", () => {
  it.scoped("removeServer of a follower: it leaves the configuration, does not disrupt the cluster, and the remaining voters alone make the quorum", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 4 })
      const leader = yield* cluster.waitForLeader()
      const term = yield* leader.raft.currentTerm
      const [removed, other, last] = yield* cluster.followers
      const index = yield* settle(cluster, yield* Effect.fork(leader.raft.removeServer(removed!.id)))
      const latest = yield* leader.raft.getConfiguration
      assert.strictEqual(latest.index, index)
      assert.isAtLeast(yield* leader.raft.commitIndex, index)
      assert.deepStrictEqual(ids(latest.configuration), [leader.id, other!.id, last!.id].sort())

      // The removed server keeps running; it must not unsettle the leader.
      yield* cluster.advance(600)
      assert.strictEqual(yield* leader.raft.state, "Leader")
      assert.strictEqual(yield* leader.raft.currentTerm, term)

      // Three voters need two: with the removed server and one more follower down, the leader still commits.
      yield* cluster.stop(removed!.id)
      yield* cluster.stop(other!.id)
      const done = yield* settle(cluster, yield* Effect.fork(Effect.either(leader.raft.apply(bytes("after")))), 1000)
      assert.isTrue(Either.isRight(done), "the removed server is still counted")
      yield* cluster.waitForApplied(Either.isRight(done) ? done.right.index : 0, { nodes: [last!.id] })
    }).pipe(seeded("remove-follower")))

  it.scoped("a leader that removes itself steps down once the change commits, shuts down, and the rest elect a new leader", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const old = yield* cluster.waitForLeader()
      yield* applyAll(old, "r", 3)
      const index = yield* settle(cluster, yield* Effect.fork(old.raft.removeServer(old.id)))
      assert.isTrue(yield* eventually(cluster, 1000, Effect.map(old.raft.state, (s) => s === "Shutdown")))
      const fresh = yield* cluster.waitForLeader({ exclude: [old.id] })
      const latest = yield* fresh.raft.getConfiguration
      assert.isAtLeast(latest.index, index)
      assert.strictEqual(Configuration.find(latest.configuration, old.id), undefined)
      assert.strictEqual(latest.configuration.servers.length, 2)
      const rest = cluster.nodes.filter((n) => n.id !== old.id).map((n) => n.id)
      const last = (yield* fresh.raft.apply(bytes("after"))).index
      yield* cluster.waitForApplied(last, { nodes: rest })
      for (const id of rest) assert.deepStrictEqual(cluster.node(id).fsm.commands(), ["r0", "r1", "r2", "after"])
    }).pipe(seeded("remove-leader")))

  it.scoped("with shutdownOnRemove false, a leader that removes itself steps down and stays up as a follower", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: { shutdownOnRemove: false } })
      const old = yield* cluster.waitForLeader()
      yield* settle(cluster, yield* Effect.fork(old.raft.removeServer(old.id)))
      const fresh = yield* cluster.waitForLeader({ exclude: [old.id], limitMillis: 3000 })
      yield* cluster.advance(300)
      assert.strictEqual(yield* old.raft.state, "Follower")
      assert.strictEqual(yield* fresh.raft.state, "Leader")
      assert.strictEqual(Configuration.find((yield* fresh.raft.getConfiguration).configuration, old.id), undefined)
    }).pipe(seeded("remove-leader-stay")))

  it.scoped("removing a follower with only a minority reachable fails with ApplyTimeout and is not committed on the majority", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 5 })
      const leader = yield* cluster.waitForLeader()
      const [buddy, target, ...others] = yield* cluster.followers
      const before = yield* leader.raft.getConfiguration
      yield* cluster.network.partition([[leader.id, buddy!.id], [target!.id, ...others.map((n) => n.id)]])
      const attempt = yield* Effect.fork(
        Effect.either(leader.raft.removeServer(target!.id, { timeout: "30 millis" }))
      )
      const outcome = yield* settle(cluster, attempt, 1000)
      assert.strictEqual(outcomeTag(outcome), "ApplyTimeout")
      const majority = yield* cluster.waitForLeader({ exclude: [leader.id, buddy!.id] })
      assert.notStrictEqual(majority.id, leader.id)
      for (const node of [target!, ...others]) {
        assert.strictEqual((yield* node.raft.getConfiguration).configuration.servers.length, 5, node.id)
      }
      yield* cluster.network.heal
      const final = yield* cluster.waitForLeader({ limitMillis: 10_000 })
      const last = (yield* final.raft.apply(bytes("healed"))).index
      yield* cluster.waitForApplied(last, { limitMillis: 10_000 })
      for (const node of cluster.nodes) {
        const { configuration } = yield* node.raft.getConfiguration
        assert.deepStrictEqual(ids(configuration), ids(before.configuration), `${node.id}: configuration after healing (the removal never committed)`)
      }
    }).pipe(seeded("remove-minority")))

  it.scoped("removing a follower from a leader cut off from every follower fails with LeadershipLost once the lease expires", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const [target, other] = yield* cluster.followers
      yield* cluster.network.disconnect(leader.id)
      const outcome = yield* settle(cluster, yield* Effect.fork(Effect.either(leader.raft.removeServer(target!.id))), 1000)
      assert.strictEqual(outcomeTag(outcome), "LeadershipLost")
      assert.notStrictEqual(yield* leader.raft.state, "Leader")
      const fresh = yield* cluster.waitForLeader({ exclude: [leader.id] })
      assert.oneOf(fresh.id, [target!.id, other!.id])
      assert.strictEqual((yield* fresh.raft.getConfiguration).configuration.servers.length, 3)
    }).pipe(seeded("remove-lease")))
})

describe("Raft: membership rules", () => {
  it.scoped("adding an existing voter with its address and removing an unknown server append nothing and return the current configuration index", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "e", 2)
      const before = yield* leader.raft.getConfiguration
      const lastBefore = yield* leader.raft.lastIndex
      const follower = (yield* cluster.followers)[0]!
      assert.strictEqual(yield* leader.raft.addVoter(follower.id, follower.address), before.index)
      assert.strictEqual(yield* leader.raft.addVoter(leader.id, leader.address), before.index)
      assert.strictEqual(yield* leader.raft.removeServer("nobody"), before.index)
      assert.strictEqual(yield* leader.raft.lastIndex, lastBefore)
      assert.deepStrictEqual(yield* leader.raft.getConfiguration, before)
    }).pipe(seeded("no-op-changes")))

  it.scoped("a change whose prevIndex is not the latest configuration's index fails with ConfigurationChanged and changes nothing", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const first = yield* leader.raft.getConfiguration
      const added = yield* settle(
        cluster,
        yield* Effect.fork(leader.raft.addNonvoter("spare", "mem://spare", { prevIndex: first.index }))
      )
      assert.isAbove(added, first.index)
      const stale = yield* Effect.flip(leader.raft.removeServer("spare", { prevIndex: first.index }))
      assert.strictEqual(stale._tag, "ConfigurationChanged")
      if (stale._tag === "ConfigurationChanged") {
        assert.strictEqual(stale.prevIndex, first.index)
        assert.strictEqual(stale.latestIndex, added)
      }
      const ahead = yield* Effect.flip(leader.raft.removeServer("spare", { prevIndex: added + 5 }))
      assert.strictEqual(ahead._tag, "ConfigurationChanged")
      const latest = yield* leader.raft.getConfiguration
      assert.strictEqual(latest.index, added)
      assert.strictEqual(Configuration.find(latest.configuration, "spare")?.suffrage, "Nonvoter")
      // With the right prevIndex it goes through.
      const removed = yield* settle(cluster, yield* Effect.fork(leader.raft.removeServer("spare", { prevIndex: added })))
      assert.isAbove(removed, added)
      assert.strictEqual(Configuration.find((yield* leader.raft.getConfiguration).configuration, "spare"), undefined)
    }).pipe(seeded("prev-index")))

  it.scoped("a second change requested while the first is uncommitted is appended only after the first commits", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      yield* applyAll(leader, "w", 2)
      // Each message takes 5 ms: a change needs a round trip to commit.
      yield* cluster.network.setConditions({ minDelayMillis: 5, maxDelayMillis: 5, dropRate: 0, duplicateRate: 0 })
      const stored: Array<{ readonly servers: Array<string>; readonly commitIndex: number }> = []
      const original = leader.logs.storeLogs
      ;(leader.logs as { storeLogs: typeof original }).storeLogs = (entries) =>
        Effect.flatMap(leader.raft.commitIndex, (commitIndex) => {
          for (const entry of entries) {
            if (entry.type === "Configuration") stored.push({ servers: ids(Configuration.decode(entry.data)!), commitIndex })
          }
          return original(entries)
        })
      const first = yield* Effect.fork(leader.raft.addNonvoter("x", "mem://x"))
      const second = yield* Effect.fork(leader.raft.addNonvoter("y", "mem://y"))
      yield* TestClock.adjust(1)
      const [a, b] = yield* Effect.all([settle(cluster, first), settle(cluster, second)])
      assert.isAbove(b, a)
      assert.strictEqual(stored.length, 2)
      assert.include(stored[0]!.servers, "x")
      assert.notInclude(stored[0]!.servers, "y")
      assert.includeMembers(stored[1]!.servers, ["x", "y"])
      assert.isAtLeast(stored[1]!.commitIndex, a, "the second change was appended before the first committed")
      const latest = yield* leader.raft.getConfiguration
      assert.strictEqual(latest.index, b)
      assert.includeMembers(ids(latest.configuration), ["x", "y"])
    }).pipe(seeded("one-at-a-time")))

  it.scoped("demoteVoter makes a voter a non-voter that still receives the log", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const demoted = (yield* cluster.followers)[0]!
      const index = yield* settle(cluster, yield* Effect.fork(leader.raft.demoteVoter(demoted.id)))
      assert.strictEqual((yield* leader.raft.getConfiguration).index, index)
      assert.strictEqual(yield* suffrageOf(leader, demoted.id), "Nonvoter")
      const last = (yield* leader.raft.apply(bytes("still"))).index
      yield* cluster.waitForApplied(last)
      assert.deepStrictEqual(demoted.fsm.commands(), ["still"])
      assert.strictEqual(yield* suffrageOf(demoted, demoted.id), "Nonvoter")
    }).pipe(seeded("demote")))

  it.scoped("a non-voter receives the log but never campaigns and never counts toward commitment, the lease, verifyLeader or an election", () =>
    Effect.gen(function*() {
      // Two voters need both: a non-voter counted as a third voter would make the leader's quorum.
      const cluster = yield* makeCluster({ size: 2 })
      const leader = yield* cluster.waitForLeader()
      const observer = yield* cluster.addNode("node4")
      const seen: Array<Raft.Observation> = []
      yield* observer.raft.observe.pipe(
        Stream.runForEach((o) => Effect.sync(() => seen.push(o))),
        Effect.forkScoped
      )
      yield* Effect.yieldNow()
      yield* settle(cluster, yield* Effect.fork(leader.raft.addNonvoter(observer.id, observer.address)))
      const last = yield* applyAll(leader, "v", 5)
      yield* cluster.waitForApplied(last)
      assert.deepStrictEqual(observer.fsm.commands(), leader.fsm.commands())

      // Only the leader and the non-voter are left: one voter of two.
      for (const follower of cluster.nodes) {
        if (follower.id !== leader.id && follower.id !== observer.id) yield* cluster.stop(follower.id)
      }
      const verify = yield* Effect.fork(Effect.either(leader.raft.verifyLeader))
      const apply = yield* Effect.fork(Effect.either(leader.raft.apply(bytes("never"), { timeout: "30 millis" })))
      const applied = yield* settle(cluster, apply, 1000)
      assert.isTrue(Either.isLeft(applied), "committed with the non-voter's help")
      assert.isTrue(Either.isLeft(yield* settle(cluster, verify, 1000)), "verifyLeader counted the non-voter")
      assert.isTrue(
        yield* eventually(cluster, 200, Effect.map(leader.raft.state, (s) => s !== "Leader")),
        "the lease counted the non-voter"
      )
      // Many election timeouts: the old leader campaigns in vain, the non-voter never does.
      for (let t = 0; t < 800; t += 50) {
        yield* cluster.advance(50)
        assert.strictEqual((yield* cluster.leaders).length, 0, "a leader was elected with a non-voter's vote")
      }
      assert.strictEqual(yield* observer.raft.state, "Follower")
      const campaigned = seen.filter((o) => o._tag === "StateChange" && o.to !== "Follower")
      assert.deepStrictEqual(campaigned, [], "the non-voter campaigned")
      assert.notInclude(observer.fsm.commands(), "never")
    }).pipe(seeded("nonvoter")))
})
