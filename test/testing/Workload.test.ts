/** The simulator with a state machine of the user's own: a counter and its sequential model. */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Fsm from "../../src/Fsm.js"
import type * as Linearizability from "../../src/testing/Linearizability.js"
import * as Simulator from "../../src/testing/Simulator.js"
import { range, turn } from "./simulation.js"

type Input = { readonly op: "add"; readonly n: number } | { readonly op: "read" }
type Output = number

const counterModel: Linearizability.Model<number, Input, Output> = {
  init: () => 0,
  step: (state, input, output) => {
    const next = input.op === "add" ? state + input.n : state
    return [output === undefined || output === next, next]
  },
  equal: (a, b) => a === b,
  hash: (state) => state
}

/** `staleReads` makes reads answer the total before the latest add: a bug the model must catch. */
const counterWorkload = (staleReads = false): Simulator.Workload<number, Input, Output> => ({
  fsm: () => {
    let total = 0
    let previous = 0
    return Fsm.fromFunction((log) => {
      const input = JSON.parse(new TextDecoder().decode(log.data)) as Input
      if (input.op === "read") return staleReads ? previous : total
      previous = total
      total += input.n
      return total
    }, {
      save: () => new TextEncoder().encode(JSON.stringify([total, previous])),
      load: (bytes) => {
        ;[total, previous] = JSON.parse(new TextDecoder().decode(bytes)) as [number, number]
      }
    })
  },
  model: counterModel,
  next: () =>
    Effect.gen(function*() {
      return (yield* Random.nextBoolean)
        ? { op: "add", n: yield* Random.nextIntBetween(1, 10) } as const
        : { op: "read" } as const
    }),
  encode: (input) => new TextEncoder().encode(JSON.stringify(input)),
  output: (response) => response as number
})

describe("Simulator with a user's state machine", () => {
  it("a counter FSM passes the same checks under faults", async () => {
    for (const seed of range(1, 20)) {
      await turn()
      const result = Simulator.run({ seed, nodes: 3, durationMillis: 1500, workload: counterWorkload() })
      assert.isTrue(result.ok, `seed ${seed}: ${result.violation?.property}: ${result.violation?.detail}`)
      assert.strictEqual(result.linearizability, "Linearizable")
      assert.isAbove(result.operations.ok, 50)
    }
  }, 120_000)

  it("a counter FSM passes the same checks when nodes snapshot, compact and restore every few dozen entries", async () => {
    for (const seed of range(21, 25)) {
      await turn()
      const result = Simulator.run({
        seed,
        nodes: 3,
        durationMillis: 1500,
        workload: counterWorkload(),
        config: Simulator.frequentSnapshots
      })
      assert.isTrue(result.ok, `seed ${seed}: ${result.violation?.property}: ${result.violation?.detail}`)
      assert.strictEqual(result.linearizability, "Linearizable")
    }
  }, 120_000)

  it("a counter FSM whose reads are stale is caught as not linearizable", async () => {
    const result = Simulator.run({ seed: 1, nodes: 3, durationMillis: 1500, workload: counterWorkload(true) })
    assert.isFalse(result.ok)
    assert.strictEqual(result.violation?.property, "linearizability")
  }, 60_000)
})
