import { assert, describe, it } from "@effect/vitest"
import * as Mutants from "../../src/testing/Mutants.js"
import { runSeeds } from "./seedPool.js"
import { poolForFile, range } from "./simulation.js"

// Each mutant of the catalogue breaks one rule of Raft; the simulator must catch it within its budget of seeds
// (the runs are deterministic: the budgets leave room for small changes in timing). The seed that catches it must
// pass without the bug, so that the catch is the bug's doing and not the scenario's.
const pool = poolForFile()

describe("the simulator catches every mutant of the catalogue", () => {
  // Mutants marked `escapes` are not caught yet: `npm run sim:mutants` reports them; nothing here pretends otherwise.
  for (const mutant of Mutants.catalogue.filter((mutant) => mutant.escapes === undefined)) {
    const { nodes, seeds } = mutant.budget
    it(`${mutant.name}: ${mutant.description}; caught within ${seeds} seeds of ${nodes} nodes`, async () => {
      const results = await runSeeds(pool(), Mutants.huntOptions(mutant, nodes), range(1, seeds), {
        stop: (result) => Mutants.catches(mutant, result)
      })
      const caught = results.find((result) => Mutants.catches(mutant, result))
      assert.isDefined(caught, `${mutant.name} escaped ${seeds} seeds of ${nodes} nodes (it breaks: ${mutant.rule})`)
      const [control] = await runSeeds(pool(), Mutants.huntOptions(mutant, nodes, false), [caught!.seed])
      assert.isFalse(
        Mutants.catches(mutant, control!),
        `seed ${caught!.seed} fails without the bug too: ${control!.violation?.property}: ${control!.violation?.detail}`
      )
    }, 300_000)
  }
})

describe("the checks the targeted schedules rely on", () => {
  // An AppendEntries of an older term that a candidate or leader accepts sends its term back (Raft Figure 2: the
  // current term only grows); at 5 nodes the late copies of a cut-off leader's requests reach the next leader.
  it("acceptStaleAppend at seed 3 of 5 nodes: a node's term goes back (monotonic term)", async () => {
    const mutant = Mutants.catalogue.find((m) => m.name === "acceptStaleAppend")!
    const [result] = await runSeeds(pool(), Mutants.huntOptions(mutant, 5), [3])
    assert.strictEqual(result!.violation?.property, "monotonic term", result!.violation?.detail)
  }, 120_000)
})
