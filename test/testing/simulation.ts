/** Shared helpers of the simulation tests: run seeds, and explain a failure with its seed and trace. */
import { assert } from "@effect/vitest"
import * as Simulator from "../../src/testing/Simulator.js"

/** One event-loop turn: a run of seeds is synchronous, and the test worker must keep answering its runner. */
export const turn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve))

/** Runs `seeds` and fails with the first violation's seed, property and trace (replay: `npm run sim -- --seed S`). */
export const assertSeedsPass = async (
  seeds: ReadonlyArray<number>,
  options: Omit<Simulator.Options, "seed">,
  ignore: ReadonlyArray<Simulator.Violation["property"]> = []
) => {
  let operations = 0
  for (const seed of seeds) {
    await turn()
    const result = Simulator.run({ ...options, seed })
    operations += result.operations.ok
    if (!result.ok && !ignore.includes(result.violation!.property)) {
      assert.fail(
        `seed ${seed} (nodes ${options.nodes}): ${result.violation?.property}: ${result.violation?.detail}\n` +
          result.trace.slice(-20).join("\n")
      )
    }
    if (result.ok) assert.strictEqual(result.linearizability, "Linearizable", `seed ${seed}`)
  }
  return operations
}

/** The first seed in `seeds` whose run breaks a property, with that run. */
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
