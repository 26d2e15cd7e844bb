import { assert, describe, it } from "@effect/vitest"
import * as Mutants from "../../src/testing/Mutants.js"
import * as Simulator from "../../src/testing/Simulator.js"
import { runSeeds, type SeedOptions } from "./seedPool.js"
import { poolForFile, range } from "./simulation.js"

const pool = poolForFile()

/** Runs `seeds`; fails on a violation other than those `ignore` names; returns the totals of the runs. */
const assertReadsPass = async (
  seeds: ReadonlyArray<number>,
  options: SeedOptions,
  ignore: ReadonlyArray<Simulator.Violation["property"]> = []
) => {
  const reads = { leader: 0, follower: 0, lease: 0, readIndex: 0, failed: 0 }
  const faults: Record<string, number> = {}
  for (const result of await runSeeds(pool(), options, seeds)) {
    if (!result.ok && !ignore.includes(result.violation!.property)) {
      assert.fail(
        `seed ${result.seed}: ${result.violation?.property}: ${result.violation?.detail}\n` +
          result.trace.slice(-20).join("\n")
      )
    }
    if (result.ok) assert.strictEqual(result.linearizability, "Linearizable", `seed ${result.seed}`)
    for (const key of Object.keys(reads) as Array<keyof typeof reads>) reads[key] += result.reads?.[key] ?? 0
    for (const [kind, n] of Object.entries(result.faults)) faults[kind] = (faults[kind] ?? 0) + n
  }
  return { reads, faults }
}

const threeNodes = { nodes: 3, durationMillis: 2000 } as const

describe("Simulator with reads through readIndex", () => {
  it("a seed with reads and skewed clocks replays the same run, event for event", () => {
    const options = { ...threeNodes, ...Mutants.skewedLeases, seed: 7 }
    const a = Simulator.run(options)
    assert.deepStrictEqual(Simulator.run(options), a)
    assert.isAbove(a.faults.clockSkew ?? 0, 0)
    assert.isAbove(a.reads!.lease, 0)
  })

  it("30 seeds of 3 nodes under every fault: reads on leaders and followers, in both modes, are linearizable", async () => {
    const { reads } = await assertReadsPass(range(1, 30), { ...threeNodes, ...Mutants.readsEverywhere })
    // Every path is exercised: the leader's and a follower's, a heartbeat round's and a lease's.
    assert.isAbove(reads.leader, 30 * 20)
    assert.isAbove(reads.follower, 30 * 40)
    assert.isAbove(reads.lease, 30 * 30)
    assert.isAbove(reads.readIndex, 30 * 30)
  }, 300_000)

  it("15 seeds with a clock skewed within the default drift bound among every fault: lease reads stay linearizable", async () => {
    const faults = { ...Simulator.defaultFaults, weights: { ...Simulator.defaultFaults.weights, clockSkew: 5 } }
    const { faults: seen, reads } = await assertReadsPass(range(1, 15), {
      ...threeNodes,
      ...Mutants.readsEverywhere,
      faults
    })
    assert.isAtLeast(seen.clockSkew ?? 0, 15, "a clock skew per seed at least, on average")
    assert.isAbove(reads.lease, 15 * 30)
  }, 300_000)

  it("15 seeds of leaders slowed and cut off, clocks skewed up to a wide drift bound: lease reads stay linearizable", async () => {
    const { faults: seen, reads } = await assertReadsPass(range(1, 15), { ...threeNodes, ...Mutants.skewedLeases })
    assert.isAbove(seen.clockSkew ?? 0, 15)
    assert.isAbove(reads.lease, 15 * 30)
  }, 300_000)

  it("a clock skewed beyond the drift bound: the checker catches a stale lease read, which the same seed within the bound does not make", async () => {
    // The bound the lease assumes is the default (maxClockDrift a tenth of the lease, here as long as the heartbeat
    // timeout); the clocks drift eight times as far.
    const within: SeedOptions = {
      ...threeNodes,
      ...Mutants.skewedLeases,
      config: { leaderLeaseTimeout: "100 millis" }
    }
    const beyond: SeedOptions = { ...within, faults: { ...within.faults!, clockSkewBound: 0.8 } }
    const stale = (result: Simulator.Result) => result.violation?.property === "linearizability"
    const results = await runSeeds(pool(), beyond, range(1, 40), { stop: stale })
    const caught = results.find(stale)
    assert.isDefined(caught, "no stale read within 40 seeds of clocks skewed beyond the bound")
    const [control] = await runSeeds(pool(), within, [caught!.seed])
    assert.isTrue(control!.ok || control!.violation?.property === "liveness", control!.violation?.detail)
  }, 120_000)
})
