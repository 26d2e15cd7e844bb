import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "../../src/testing/Simulator.js"
import { assertSeedsPass, poolForFile, range } from "./simulation.js"

const pool = poolForFile()

describe("Simulator, 5 nodes", () => {
  it("150 seeds of 5 nodes under every fault: no safety violation, linearizable histories, a leader commits after healing", async () => {
    const operations = await assertSeedsPass(pool(), range(1001, 1150), { nodes: 5, durationMillis: 2000 })
    assert.isAbove(operations, 150 * 50)
  }, 600_000)

  it("50 seeds of 5 nodes that snapshot and compact every few dozen entries pass the same checks under every fault", async () => {
    const operations = await assertSeedsPass(pool(), range(1151, 1200), {
      nodes: 5,
      durationMillis: 2000,
      config: Simulator.frequentSnapshots
    })
    assert.isAbove(operations, 50 * 50)
  }, 600_000)
})
