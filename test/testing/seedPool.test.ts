import { assert, describe, it } from "@effect/vitest"
import { existsSync } from "node:fs"
import * as Simulator from "../../src/testing/Simulator.js"
import { SeedPool } from "./seedPool.js"

describe("the seed pool", () => {
  it("a worker runs a seed from its bundle to the same result as this thread, and close removes the bundle", async () => {
    const pool = new SeedPool(2)
    const options = { nodes: 3, durationMillis: 300 }
    try {
      assert.isTrue(existsSync(pool.bundleDir))
      // The first two seeds go to the first worker (its backlog), the third to the second.
      const results = await Promise.all([1, 2, 3].map((seed) => pool.run(options, seed)))
      assert.deepStrictEqual(results[0], Simulator.run({ ...options, seed: 1 }))
      assert.deepStrictEqual(results.map((result) => result?.seed), [1, 2, 3])
    } finally {
      await pool.close()
    }
    assert.isFalse(existsSync(pool.bundleDir))
  })

  it("close drops the seeds a worker is running: their runs end with no result instead of failing", async () => {
    const pool = new SeedPool(2)
    // The worker takes the first seed; close stops it before it answers.
    const running = pool.run({ nodes: 3, durationMillis: 2000 }, 1)
    await pool.close()
    assert.isUndefined(await running)
  })

  it("a pool of one runs its seeds on one worker, in order", async () => {
    const pool = new SeedPool(1)
    const options = { nodes: 3, durationMillis: 300 }
    try {
      const results = await Promise.all([4, 5, 6].map((seed) => pool.run(options, seed)))
      assert.deepStrictEqual(results.map((result) => result?.seed), [4, 5, 6])
      assert.deepStrictEqual(results[2], Simulator.run({ ...options, seed: 6 }))
    } finally {
      await pool.close()
    }
  })
})
