import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "../../src/testing/Simulator.js"
import { everyDimension } from "./corners.js"
import { runSeeds } from "./seedPool.js"
import { poolForFile, range } from "./simulation.js"

const pool = poolForFile()

const everything = everyDimension
const none = { partition: 0, isolateLeader: 0, oneWay: 0, cutLink: 0, crash: 0, restart: 0, reboot: 0, heal: 0, lossyLinks: 0 }
/** Only the fault `kind`, every 100–200 ms of a short run. */
const only = (kind: string): Simulator.FaultOptions => ({
  ...Simulator.defaultFaults,
  intervalMillis: [100, 200],
  weights: { ...none, [kind]: 1 }
})

describe("Simulator's opt-in corners", () => {
  it("randomized deployments with leadership transfers and the Figure 8 schedules break no check, liveness included", async () => {
    const faults: Simulator.FaultOptions = {
      ...Simulator.defaultFaults,
      weights: { ...Simulator.defaultFaults.weights, transfer: 2, appendCrash: 2, staleCandidate: 2 }
    }
    const results = await runSeeds(pool(), { nodes: 3, durationMillis: 2000, randomize: everything, faults }, range(1, 8))
    const seen: Record<string, number> = {}
    for (const result of results) {
      assert.isTrue(result.ok, `seed ${result.seed}: ${result.violation?.property}: ${result.violation?.detail}`)
      assert.isDefined(result.deployment)
      for (const [kind, n] of Object.entries(result.faults)) seen[kind] = (seen[kind] ?? 0) + n
    }
    assert.isAbove(new Set(results.map((result) => result.deployment!.nodes)).size, 1, "every seed drew the same size")
    for (const kind of ["transfer", "appendCrash", "staleCandidate"]) assert.isAbove(seen[kind] ?? 0, 0, `no ${kind}`)
  }, 300_000)

  it("off by default: a run draws no deployment and its nemesis never transfers leadership or runs a schedule", async () => {
    const [result] = await runSeeds(pool(), { nodes: 3, durationMillis: 2000 }, [1])
    assert.isUndefined(result!.deployment)
    for (const kind of ["transfer", "appendCrash", "staleCandidate"]) assert.notProperty(result!.faults, kind)
  }, 120_000)

  it("append-crash: leaders cut off with fewer than a quorum crash before replicating, and come back later", async () => {
    const [result] = await runSeeds(pool(), { nodes: 3, durationMillis: 800, faults: only("appendCrash") }, [1])
    assert.isTrue(result!.ok, `${result!.violation?.property}: ${result!.violation?.detail}`)
    assert.isAbove(result!.trace.filter((line) => line.includes("crashes before replicating")).length, 1)
    assert.isTrue(result!.trace.some((line) => line.includes("append-crash: restart")))
  }, 120_000)

  it("stale candidate: a node cut off while it led comes back while the newer leader is cut off", async () => {
    const [result] = await runSeeds(pool(), { nodes: 3, durationMillis: 800, faults: only("staleCandidate") }, [1])
    assert.isTrue(result!.ok, `${result!.violation?.property}: ${result!.violation?.detail}`)
    assert.isTrue(result!.trace.some((line) => line.includes("the newer leader, off")))
    assert.isTrue(result!.trace.some((line) => line.includes("is back with its longer log of an older term")))
  }, 120_000)

  it("crash mid-write: a leader crashes while a write of its own log is under way, and restarts", async () => {
    const faults: Simulator.FaultOptions = { ...only("heal"), crashLeaderMidWrite: 0.2 }
    const [result] = await runSeeds(pool(), { nodes: 3, durationMillis: 800, faults, diskLatencyMillis: [5, 10] }, [1])
    assert.isTrue(result!.ok, `${result!.violation?.property}: ${result!.violation?.detail}`)
    assert.isAbove(result!.faults.crashLeaderMidWrite ?? 0, 0)
    const crash = result!.trace.findIndex((line) => line.includes("the leader, during a write of its log"))
    assert.isAbove(crash, -1)
    assert.isTrue(result!.trace.slice(crash).some((line) => /restart n\d$/.test(line)))
  }, 120_000)

  it("transfer: the leader hands over to another node, named or not", async () => {
    const [result] = await runSeeds(pool(), { nodes: 3, durationMillis: 800, faults: only("transfer") }, [1])
    assert.isTrue(result!.ok, `${result!.violation?.property}: ${result!.violation?.detail}`)
    // Each transfer that completed, to the node named or to the one the leader chose, deposed that leader.
    const trace = result!.trace
    const done = trace.flatMap((line, at) => {
      const match = /transfer leadership from (n\d)( to n\d)?: done/.exec(line)
      return match === null ? [] : [{ at, from: match[1]!, named: match[2] !== undefined }]
    })
    assert.isTrue(done.some((transfer) => transfer.named) && done.some((transfer) => !transfer.named))
    for (const { at, from } of done) {
      assert.isTrue(trace.slice(at).some((line) => line.includes(`${from} steps down`)), `${from} kept leading`)
    }
  }, 120_000)
})
