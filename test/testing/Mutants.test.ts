import { assert, describe, it } from "@effect/vitest"
import * as Mutants from "../../src/testing/Mutants.js"
import type * as Simulator from "../../src/testing/Simulator.js"
import { runSeeds } from "./seedPool.js"
import { poolForFile, range } from "./simulation.js"

// Each mutant of the catalogue breaks one rule of Raft; the simulator must catch it within its budget of seeds
// (the runs are deterministic: the budgets leave room for small changes in timing). The seed that catches it must
// pass without the bug, so that the catch is the bug's doing and not the scenario's.
const pool = poolForFile()

describe("the simulator catches every mutant of the catalogue", () => {
  // Mutants marked `escapes` are not caught yet: `npm run sim:mutants` reports them; nothing here pretends otherwise.
  const budgets = Mutants.catalogue.filter((mutant) => mutant.escapes === undefined)
    .flatMap((mutant) => Mutants.budgetsOf(mutant).map((budget) => ({ mutant, ...budget })))
  for (const { by, mutant, nodes, seeds } of budgets) {
    const checks = by === undefined ? "" : ` by ${by.join(" or ")}`
    it(`${mutant.name}: ${mutant.description}; caught${checks} within ${seeds} seeds of ${nodes} nodes`, async () => {
      const catches = (result: Simulator.Result) =>
        Mutants.catches(mutant, result) && (by === undefined || by.includes(result.violation!.property))
      const results = await runSeeds(pool(), Mutants.huntOptions(mutant, nodes), range(1, seeds), { stop: catches })
      const caught = results.find(catches)
      assert.isDefined(caught, `${mutant.name} escaped ${seeds} seeds of ${nodes} nodes${checks} (it breaks: ${mutant.rule})`)
      const [control] = await runSeeds(pool(), Mutants.huntOptions(mutant, nodes, false), [caught!.seed])
      assert.isFalse(
        Mutants.catches(mutant, control!),
        `seed ${caught!.seed} fails without the bug too: ${control!.violation?.property}: ${control!.violation?.detail}`
      )
    }, 300_000)
  }
})
