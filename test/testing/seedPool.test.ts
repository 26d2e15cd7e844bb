import { assert, describe, it } from "@effect/vitest"
import { existsSync } from "node:fs"
import * as Simulator from "../../src/testing/Simulator.js"
import { SeedPool } from "./seedPool.js"

describe("the seed pool", () => {
  it("a worker runs a seed from its bundle to the same result as this thread, and close removes the bundle", async () => {
    const pool = new SeedPool(2)
    const options = { nodes: 3, durationMillis: 300 }
    try {
      assert.isDefined(pool.bundleDir)
      assert.isTrue(existsSync(pool.bundleDir!))
      // The first seeds go to the worker (two in its backlog), the third to this thread.
      const results = await Promise.all([1, 2, 3].map((seed) => pool.run(options, seed)))
      assert.deepStrictEqual(results[0], Simulator.run({ ...options, seed: 1 }))
      assert.deepStrictEqual(results.map((result) => result?.seed), [1, 2, 3])
    } finally {
      await pool.close()
    }
    assert.isFalse(existsSync(pool.bundleDir!))
  })

  it("close drops the seeds a worker is running: their runs end with no result instead of failing", async () => {
    const pool = new SeedPool(2)
    // The worker takes the first seed; close stops it before it answers.
    const running = pool.run({ nodes: 3, durationMillis: 2000 }, 1)
    await pool.close()
    assert.isUndefined(await running)
  })

  it("a pool of one runs in this thread and builds no bundle", async () => {
    const pool = new SeedPool(1)
    assert.isUndefined(pool.bundleDir)
    const result = await pool.run({ nodes: 3, durationMillis: 300 }, 4)
    await pool.close()
    assert.strictEqual(result?.seed, 4)
  })
})
