import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import type * as Log from "../src/Log.js"
import { bytes, type Cluster, makeCluster, seeded } from "./cluster.js"

/** Every stored entry of a node, as comparable text. */
const logOf = (cluster: Cluster, id: string) =>
  Effect.gen(function*() {
    const node = cluster.node(id)
    const last = yield* node.logs.lastIndex
    const first = yield* node.logs.firstIndex
    const entries: Array<Log.Log> = last === 0 ? [] : [...yield* node.logs.getLogs(first, last)]
    return entries.map((e) => `${e.index}/${e.term}/${e.type}/${new TextDecoder().decode(e.data)}`)
  }).pipe(Effect.orDie)

describe("Raft: election and apply", () => {
  it.scoped("a single node becomes leader, applies, and returns the FSM's response and a non-zero index", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 1 })
      const leader = yield* cluster.waitForLeader()
      const result = yield* leader.raft.apply(bytes("hello"))
      assert.isAbove(result.index, 0)
      assert.deepStrictEqual(result.response, { count: 1, echo: "hello" })
    }).pipe(seeded("single")))

  for (const size of [3, 5]) {
    it.scoped(`${size} nodes elect exactly one leader and applies reach every FSM identically`, () =>
      Effect.gen(function*() {
        const cluster = yield* makeCluster({ size })
        const leader = yield* cluster.waitForLeader()
        // Let several heartbeat rounds pass: still exactly one leader, and every follower knows it.
        yield* cluster.advance(500)
        assert.strictEqual((yield* cluster.leaders).length, 1)
        assert.strictEqual((yield* cluster.leaders)[0]!.id, leader.id)
        for (const node of cluster.nodes) {
          assert.strictEqual(Option.getOrUndefined(yield* node.raft.leader)?.id, leader.id)
        }
        let last = 0
        for (let i = 0; i < 20; i++) last = (yield* leader.raft.apply(bytes(`c${i}`))).index
        yield* cluster.waitForApplied(last)
        const expected = Array.from({ length: 20 }, (_, i) => `c${i}`)
        for (const node of cluster.nodes) assert.deepStrictEqual(node.fsm.commands(), expected)
      }).pipe(seeded(`elect-${size}`)))
  }

  it.scoped("a command over maxEntryBytes fails with EntryTooLarge (size and limit) before anything is appended; one at the limit commits", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 1, config: { maxEntryBytes: 100 } })
      const leader = yield* cluster.waitForLeader()
      const before = yield* leader.raft.lastIndex
      const refused = yield* Effect.flip(leader.raft.apply(new Uint8Array(101)))
      assert.strictEqual(refused._tag, "EntryTooLarge")
      assert.deepInclude(refused, { size: 101, limit: 100 })
      const future = yield* leader.raft.applyFuture(new Uint8Array(101))
      assert.strictEqual((yield* Effect.flip(future))._tag, "EntryTooLarge")
      assert.strictEqual(yield* leader.raft.lastIndex, before, "an oversized command was appended")
      const accepted = yield* leader.raft.apply(new Uint8Array(100))
      assert.strictEqual(accepted.index, before + 1)
    }).pipe(seeded("entry-too-large")))

  it.scoped("a new leader appends a no-op of its own term", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const term = yield* leader.raft.currentTerm
      const entries = yield* leader.logs.getLogs(1, yield* leader.logs.lastIndex)
      const ofTerm = entries.filter((e) => e.term === term)
      assert.strictEqual(ofTerm[0]?.type, "Noop")
    }).pipe(seeded("noop")))

  it.scoped("apply on a follower fails with NotLeader carrying the leader's id and address", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      yield* leader.raft.apply(bytes("x"))
      const follower = (yield* cluster.followers)[0]!
      const error = yield* Effect.flip(follower.raft.apply(bytes("y")))
      assert.strictEqual(error._tag, "NotLeader")
      if (error._tag !== "NotLeader") return
      assert.strictEqual(error.leaderId, leader.id)
      assert.strictEqual(error.leaderAddress, leader.address)
    }).pipe(seeded("notleader")))

  it.scoped("100 concurrent applies all succeed and every FSM ends identical", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const results = yield* Effect.forEach(
        Array.from({ length: 100 }, (_, i) => i),
        (i) => leader.raft.apply(bytes(`p${i}`)),
        { concurrency: "unbounded" }
      )
      const indexes = results.map((r) => r.index)
      assert.strictEqual(new Set(indexes).size, 100)
      yield* cluster.waitForApplied(Math.max(...indexes))
      const reference = cluster.nodes[0]!.fsm.commands()
      assert.strictEqual(reference.length, 100)
      assert.sameMembers(reference, Array.from({ length: 100 }, (_, i) => `p${i}`))
      for (const node of cluster.nodes) assert.deepStrictEqual(node.fsm.commands(), reference)
      // Each response is the FSM's answer for that very entry.
      for (const result of results) {
        const response = result.response as { readonly echo: string }
        assert.strictEqual(reference[(result.response as { count: number }).count - 1], response.echo)
      }
    }).pipe(seeded("concurrent")))

  it.scoped("applies are batched: a burst of 64 goes to the leader's log store in a few writes", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, config: { maxAppendEntries: 16 } })
      const leader = yield* cluster.waitForLeader()
      const writes: Array<number> = []
      const store = leader.logs
      const original = store.storeLogs
      ;(store as { storeLogs: typeof original }).storeLogs = (logs) => {
        writes.push(logs.length)
        return original(logs)
      }
      yield* Effect.forEach(Array.from({ length: 64 }, (_, i) => i), (i) => leader.raft.apply(bytes(`b${i}`)), {
        concurrency: "unbounded"
      })
      assert.strictEqual(writes.reduce((n, w) => n + w, 0), 64)
      assert.isAtMost(writes.length, 8, `64 applies took ${writes.length} writes: ${writes.join(",")}`)
    }).pipe(seeded("batch")))

  it.scoped("a follower hands what its leader committed to its FSM without reading its log store back", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const reads: Record<string, number> = {}
      for (const node of cluster.nodes) {
        if (node.id === leader.id) continue
        const store = node.logs
        const original = store.getLogs
        ;(store as { getLogs: typeof original }).getLogs = (from, to) => {
          reads[node.id] = (reads[node.id] ?? 0) + 1
          return original(from, to)
        }
      }
      let last = 0
      for (let i = 0; i < 40; i++) last = (yield* leader.raft.apply(bytes(`r${i}`))).index
      yield* cluster.waitForApplied(last)
      for (const node of cluster.nodes) {
        assert.deepStrictEqual(node.fsm.commands().slice(-40), Array.from({ length: 40 }, (_, i) => `r${i}`))
      }
      // Each commit covers entries the follower stored from earlier requests and still holds in memory, but for
      // the leader's no-op: it came in the first request of the term, which a follower checks in full (and which
      // starts the recent entries over), so at most one read each; 41 each when every commit reads the store.
      for (const [id, n] of Object.entries(reads)) assert.isAtMost(n, 1, `${id} read its store ${n} times`)
    }).pipe(seeded("recent-entries")))

  // A follower keeps the entries it stored last to hand them to its FSM on commit (src/internal/recentEntries.ts).
  // Here it holds entries of a deposed leader that a new leader overwrites: its FSM must get the new leader's.
  it.scoped("a follower's state machine gets the entries that replaced its stale ones, never the stale ones", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 5 })
      const old = yield* cluster.waitForLeader()
      let last = 0
      for (let i = 0; i < 3; i++) last = (yield* old.raft.apply(bytes(`before${i}`))).index
      yield* cluster.waitForApplied(last)
      const [follower, ...others] = cluster.nodes.filter((node) => node.id !== old.id)
      // The old leader reaches one follower, which stores its entries but cannot answer; nobody else.
      yield* cluster.network.block(follower!.id, old.id)
      for (const other of others) {
        yield* cluster.network.block(old.id, other.id)
        yield* cluster.network.block(other.id, old.id)
      }
      for (let i = 0; i < 3; i++) yield* Effect.fork(Effect.either(old.raft.apply(bytes(`stale${i}`))))
      yield* cluster.advance(20)
      assert.isAtLeast(yield* follower!.logs.lastIndex, last + 3, "the follower stored the stale entries")
      // The other three elect a leader, which overwrites them on the follower.
      const fresh = yield* cluster.waitForLeader({ exclude: [old.id], limitMillis: 10_000 })
      for (let i = 0; i < 5; i++) last = (yield* fresh.raft.apply(bytes(`after${i}`))).index
      yield* cluster.waitForApplied(last, { nodes: [fresh.id, follower!.id, ...others.map((node) => node.id)] })
      const commands = fresh.fsm.commands()
      assert.includeMembers(commands, ["before2", "after4"])
      for (const command of commands) assert.notInclude(command, "stale")
      assert.deepStrictEqual(follower!.fsm.commands(), commands)
    }).pipe(seeded("overwritten")))

  it.scoped("a barrier after 100 un-awaited applies sees all of them applied", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const futures = []
      for (let i = 0; i < 100; i++) futures.push(yield* leader.raft.applyFuture(bytes(`u${i}`)))
      const index = yield* leader.raft.barrier()
      assert.strictEqual(leader.fsm.applied.length, 100)
      assert.deepStrictEqual(leader.fsm.commands(), Array.from({ length: 100 }, (_, i) => `u${i}`))
      assert.isAtLeast(yield* leader.raft.appliedIndex, index)
      const results = yield* Effect.all(futures)
      assert.isBelow(results[99]!.index, index)
    }).pipe(seeded("barrier")))
})

describe("Raft: leader failure", () => {
  it.scoped("a disconnected leader is replaced at a higher term, its pending applies fail, and after healing all logs and FSMs converge", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const old = yield* cluster.waitForLeader()
      const oldTerm = yield* old.raft.currentTerm
      for (let i = 0; i < 5; i++) yield* old.raft.apply(bytes(`before${i}`))
      yield* cluster.network.disconnect(old.id)
      const pending = yield* Effect.fork(Effect.either(old.raft.apply(bytes("lost"))))
      const fresh = yield* cluster.waitForLeader({ exclude: [old.id] })
      assert.isAbove(yield* fresh.raft.currentTerm, oldTerm)
      yield* cluster.advance(200)
      const outcome = yield* Fiber.join(pending)
      assert.isTrue(Either.isLeft(outcome))
      if (Either.isLeft(outcome)) assert.oneOf(outcome.left._tag, ["LeadershipLost", "NotLeader"])
      assert.notStrictEqual(yield* old.raft.state, "Leader")

      let last = 0
      for (let i = 0; i < 5; i++) last = (yield* fresh.raft.apply(bytes(`after${i}`))).index
      yield* cluster.network.heal
      // The healed node may disrupt with a higher term; whoever leads must bring everyone together.
      const leader = yield* cluster.waitForLeader({ limitMillis: 10_000 })
      last = Math.max(last, (yield* leader.raft.apply(bytes("final"))).index)
      yield* cluster.waitForApplied(last, { limitMillis: 10_000 })
      const reference = yield* logOf(cluster, leader.id)
      for (const node of cluster.nodes) assert.deepStrictEqual(yield* logOf(cluster, node.id), reference)
      const commands = cluster.nodes[0]!.fsm.commands()
      assert.notInclude(commands, "lost")
      assert.includeMembers(commands, ["before0", "before4", "after0", "after4", "final"])
      for (const node of cluster.nodes) assert.deepStrictEqual(node.fsm.commands(), commands)
    }).pipe(seeded("failover")))

  it.scoped("a follower that missed 150 entries catches up after it reconnects", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const lagging = (yield* cluster.followers)[0]!
      yield* cluster.network.disconnect(lagging.id)
      let last = 0
      for (let i = 0; i < 150; i++) last = (yield* leader.raft.apply(bytes(`m${i}`))).index
      yield* cluster.advance(300)
      assert.isBelow(yield* lagging.raft.appliedIndex, last)
      yield* cluster.network.reconnect(lagging.id)
      const current = yield* cluster.waitForLeader({ limitMillis: 10_000 })
      const final = (yield* current.raft.apply(bytes("end"))).index
      yield* cluster.waitForApplied(Math.max(last, final), { limitMillis: 20_000 })
      assert.deepStrictEqual(lagging.fsm.commands(), current.fsm.commands())
      assert.strictEqual(lagging.fsm.commands().length, 151)
    }).pipe(seeded("catchup")))

  it.scoped("a leader cut off from its quorum steps down within 2 × leaderLeaseTimeout", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, stepMillis: 5 })
      const leader = yield* cluster.waitForLeader()
      yield* cluster.advance(100)
      assert.strictEqual(yield* leader.raft.state, "Leader")
      const lease = 50
      const start = yield* TestClock.currentTimeMillis
      yield* cluster.network.disconnect(leader.id)
      while ((yield* leader.raft.state) === "Leader") {
        assert.isAtMost((yield* TestClock.currentTimeMillis) - start, 2 * lease, "still leader after 2 leases")
        yield* TestClock.adjust(5)
      }
      assert.isAtMost((yield* TestClock.currentTimeMillis) - start, 2 * lease)
    }).pipe(seeded("lease")))

  it.scoped("verifyLeader succeeds on a healthy leader and with one of two followers down, and fails on a deposed leader", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const healthy = yield* Effect.fork(leader.raft.verifyLeader)
      yield* cluster.advance(50)
      assert.isTrue(Exit_isSuccess(yield* Fiber.await(healthy)))

      const [down] = yield* cluster.followers
      yield* cluster.stop(down!.id)
      const oneDown = yield* Effect.fork(leader.raft.verifyLeader)
      yield* cluster.advance(50)
      assert.isTrue(Exit_isSuccess(yield* Fiber.await(oneDown)))
      yield* cluster.restart(down!.id)
      yield* cluster.advance(100)

      const current = yield* cluster.waitForLeader()
      yield* cluster.network.disconnect(current.id)
      const deposed = yield* Effect.fork(Effect.either(current.raft.verifyLeader))
      yield* cluster.waitForLeader({ exclude: [current.id] })
      yield* cluster.advance(200)
      const outcome = yield* Fiber.join(deposed)
      assert.isTrue(Either.isLeft(outcome))
      // Once deposed, it answers NotLeader at once.
      const again = yield* Effect.either(current.raft.verifyLeader)
      assert.isTrue(Either.isLeft(again) && again.left._tag === "NotLeader")
    }).pipe(seeded("verify")))
})

const Exit_isSuccess = (exit: { readonly _tag: string }) => exit._tag === "Success"
