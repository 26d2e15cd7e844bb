import { assert, describe, it } from "@effect/vitest"
import { assertSeedsPass, range } from "./simulation.js"

describe("Simulator, 5 nodes", () => {
  it("200 seeds of 5 nodes under every fault: no safety violation, linearizable histories, a leader commits after healing", async () => {
    const operations = await assertSeedsPass(range(1001, 1200), { nodes: 5, durationMillis: 2000 })
    assert.isAbove(operations, 200 * 50)
  }, 600_000)
})
