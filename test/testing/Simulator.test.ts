import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "../../src/testing/Simulator.js"
import * as Effect from "effect/Effect"
import type * as Linearizability from "../../src/testing/Linearizability.js"
import { runSeeds } from "./seedPool.js"
import { assertSeedsPass, firstCaught, poolForFile, range } from "./simulation.js"

const pool = poolForFile()

describe("Simulator", () => {
  it("the same seed replays the same run, event for event", async () => {
    const a = Simulator.run({ seed: 42, nodes: 5, durationMillis: 1500 })
    const b = Simulator.run({ seed: 42, nodes: 5, durationMillis: 1500 })
    assert.deepStrictEqual(b, a)
    const c = Simulator.run({ seed: 43, nodes: 5, durationMillis: 1500 })
    assert.notDeepEqual(c.trace, a.trace)
  })

  it("3,000 seeds of 3 nodes under every fault: no safety violation, linearizable histories, a leader commits after healing", async () => {
    const operations = await assertSeedsPass(pool(), range(1, 3000), { nodes: 3, durationMillis: 2000 })
    assert.isAbove(operations, 3000 * 50, "the workload should complete many operations")
  }, 1_200_000)

  it("100 seeds of 3 nodes that snapshot and compact every few dozen entries pass the same checks under every fault", async () => {
    const operations = await assertSeedsPass(pool(), range(201, 300), {
      nodes: 3,
      durationMillis: 2000,
      config: Simulator.frequentSnapshots
    })
    assert.isAbove(operations, 100 * 50, "the workload should complete many operations")
  }, 600_000)

  it("200 seeds of 3 nodes with perfect links between faults pass the same checks (the memory network's direct path, a leader's sends from the appending fiber)", async () => {
    const operations = await assertSeedsPass(pool(), range(1, 200), {
      nodes: 3,
      durationMillis: 2000,
      faults: { ...Simulator.defaultFaults, baseline: undefined }
    })
    assert.isAbove(operations, 200 * 50, "the workload should complete many operations")
  }, 600_000)

  it("a few runs exercise every kind of fault and elect several leaders", async () => {
    const seen: Record<string, number> = {}
    let leaders = 0
    let disturbed = 0
    for (const result of await runSeeds(pool(), { nodes: 5, durationMillis: 3000 }, range(1, 8))) {
      assert.isTrue(result.ok, `seed ${result.seed}: ${result.violation?.detail}`)
      for (const [kind, n] of Object.entries(result.faults)) seen[kind] = (seen[kind] ?? 0) + n
      leaders += result.leadersElected
      disturbed += result.operations.unknown + result.operations.refused
    }
    for (const kind of ["partition", "isolateLeader", "oneWay", "cutLink", "crash", "restart", "reboot", "heal", "lossyLinks"]) {
      assert.isAbove(seen[kind] ?? 0, 0, `no ${kind} fault in 8 runs`)
    }
    assert.isAbove(leaders, 10)
    assert.isAbove(disturbed, 0, "faults should disturb some operations")
  }, 120_000)
})

describe("Simulator with frequent snapshots", () => {
  it("nodes take snapshots, restore them when they restart, and lagging followers install them from the leader", async () => {
    const total = { taken: 0, restoredAtStart: 0, installed: 0 }
    const options = { nodes: 3, durationMillis: 2000, config: Simulator.frequentSnapshots }
    for (const result of await runSeeds(pool(), options, range(201, 205))) {
      assert.isTrue(result.ok, `seed ${result.seed}: ${result.violation?.property}: ${result.violation?.detail}`)
      total.taken += result.snapshots.taken
      total.restoredAtStart += result.snapshots.restoredAtStart
      total.installed += result.snapshots.installed
    }
    assert.isAbove(total.taken, 50)
    assert.isAbove(total.restoredAtStart, 0)
    assert.isAbove(total.installed, 0)
  }, 120_000)
})

describe("Simulator with membership changes", () => {
  it("removing a follower through the leader and adding it back, among the other faults, breaks no check", async () => {
    const faults: Simulator.FaultOptions = {
      ...Simulator.defaultFaults,
      weights: { ...Simulator.defaultFaults.weights, membership: 4 }
    }
    const seen: Record<string, number> = {}
    const options = { nodes: 3, durationMillis: 2000, faults, config: Simulator.frequentSnapshots }
    for (const result of await runSeeds(pool(), options, range(1, 6))) {
      assert.isTrue(
        result.ok,
        `seed ${result.seed}: ${result.violation?.property}: ${result.violation?.detail}\n${result.trace.slice(-20).join("\n")}`
      )
      for (const [kind, n] of Object.entries(result.faults)) seen[kind] = (seen[kind] ?? 0) + n
    }
    assert.isAbove(seen.membership ?? 0, 3)
  }, 120_000)
})

describe("Simulator liveness check", () => {
  it("fails when links are slower than the leader lease, so no leader can hold on", async () => {
    const slow: Simulator.FaultOptions = {
      ...Simulator.defaultFaults,
      weights: { ...Simulator.defaultFaults.weights, heal: 1, lossyLinks: 0 },
      baseline: { minDelayMillis: 60, maxDelayMillis: 100, dropRate: 0, duplicateRate: 0 }
    }
    const result = Simulator.run({ seed: 1, nodes: 3, durationMillis: 500, faults: slow, livenessBoundMillis: 2000 })
    assert.strictEqual(result.violation?.property, "liveness")
  }, 60_000)

  it("fails when a client's operation never returns, instead of waiting for it until the event limit", () => {
    // A client whose next command never comes stands for an operation whose timeout never fires.
    const kv = Simulator.kvWorkload()
    const stuck: typeof kv = {
      ...kv,
      next: (context) => context.client === 2 && context.step === 5 ? Effect.never : kv.next(context)
    }
    const result = Simulator.run({ seed: 1, nodes: 3, durationMillis: 300, workload: stuck, maxEvents: 50_000 })
    assert.strictEqual(result.violation?.property, "liveness", result.violation?.detail)
    assert.include(result.violation?.detail, "did not return")
  })
})

describe("Simulator's cost", () => {
  it("errors made during a run capture no stack trace, and the limit is restored after", () => {
    const kv = Simulator.kvWorkload()
    const limits = new Set<number>()
    const watched: typeof kv = {
      ...kv,
      next: (context) => Effect.suspend(() => {
        limits.add(Error.stackTraceLimit)
        return kv.next(context)
      })
    }
    const before = Error.stackTraceLimit
    const result = Simulator.run({ seed: 1, nodes: 3, durationMillis: 300, workload: watched })
    assert.isTrue(result.ok, result.violation?.detail)
    assert.deepStrictEqual([...limits], [0])
    assert.strictEqual(Error.stackTraceLimit, before)
  })
})

describe("Simulator catches a broken state machine", () => {
  // The engine's mutants are in the catalogue (src/testing/Mutants.ts, test/testing/Mutants.test.ts); this one
  // breaks the user's side: a restore that ignores the snapshot.
  it("a state machine whose restore ignores the snapshot (it keeps its old state), within 10 seeds of frequent snapshots", async () => {
    // The node restores from snapshots at restart and by InstallSnapshot; a restore that keeps whatever state the
    // machine had (empty after a restart) makes that node answer from a wrong state once it leads.
    // 50 keys, so that a lost state is not soon written over entirely.
    const options = { nodes: 3, durationMillis: 2000, config: Simulator.frequentSnapshots, keys: 50 }
    const broken: Simulator.Workload<Linearizability.KvState, Simulator.KvInput, Simulator.KvOutput> = {
      ...Simulator.kvWorkload(50),
      fsm: () => ({ ...Simulator.kvFsm(), restore: () => Effect.void })
    }
    const caught = await firstCaught(range(201, 210), { ...options, workload: broken })
    assert.isDefined(caught, "not caught in 10 seeds")
    assert.strictEqual(caught!.result.violation!.property, "state-machine safety")
    // The same runs with a correct restore pass.
    await assertSeedsPass(pool(), range(201, caught!.seed), options)
  }, 120_000)
})
