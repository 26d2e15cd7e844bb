/** Shared helpers of the simulation tests: run seeds, and explain a failure with its seed and trace. */
import { afterAll, assert, beforeAll } from "@effect/vitest"
import * as Simulator from "../../src/testing/Simulator.js"
import { runSeeds, SeedPool, type SeedOptions } from "./seedPool.js"

/** One event-loop turn: a run of seeds is synchronous, and the test worker must keep answering its runner. */
export const turn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve))

/** A seed pool for the tests of the file that calls this at its top level: started before them, closed after. */
export const poolForFile = (): () => SeedPool => {
  let pool: SeedPool | undefined
  beforeAll(() => {
    pool = new SeedPool()
  })
  afterAll(() => pool?.close())
  return () => pool!
}

/** Runs `seeds` and fails with the first violation's seed, property and trace, and the command that replays it. */
export const assertSeedsPass = async (
  pool: SeedPool,
  seeds: ReadonlyArray<number>,
  options: SeedOptions,
  ignore: ReadonlyArray<Simulator.Violation["property"]> = []
) => {
  let operations = 0
  const failed = (result: Simulator.Result) => !result.ok && !ignore.includes(result.violation!.property)
  for (const result of await runSeeds(pool, options, seeds, { stop: failed })) {
    operations += result.operations.ok
    if (failed(result)) {
      assert.fail(
        `seed ${result.seed} (nodes ${options.nodes}): ${result.violation?.property}: ${result.violation?.detail}\n` +
          result.trace.slice(-20).join("\n") +
          `\nreplay (with these options): npm run sim -- --seed ${result.seed} --nodes ${options.nodes}`
      )
    }
    if (result.ok) assert.strictEqual(result.linearizability, "Linearizable", `seed ${result.seed}`)
  }
  return operations
}

/** The first seed in `seeds` whose run (in this thread: any workload) breaks a property, with that run. */
export const firstCaught = async (
  seeds: ReadonlyArray<number>,
  options: Omit<Simulator.Options, "seed">,
  ignore: ReadonlyArray<Simulator.Violation["property"]> = []
) => {
  for (const seed of seeds) {
    await turn()
    const result = Simulator.run({ ...options, seed })
    if (!result.ok && !ignore.includes(result.violation!.property)) return { seed, result }
  }
  return undefined
}

export const range = (from: number, to: number): Array<number> =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i)
