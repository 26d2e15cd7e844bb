import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import { Fsm, Simulator } from "effect-raft"

type Input = { readonly op: "add"; readonly n: number } | { readonly op: "read" }

export const counter: Simulator.Workload<number, Input, number> = {
  // A fresh state machine per node start.
  fsm: () => {
    let total = 0
    return Fsm.fromFunction((log) => {
      const input = JSON.parse(new TextDecoder().decode(log.data)) as Input
      return input.op === "add" ? (total += input.n) : total
    }, {
      // Snapshots: the whole state as bytes, and back.
      save: () => new TextEncoder().encode(String(total)),
      load: (bytes) => {
        total = Number(new TextDecoder().decode(bytes))
      }
    })
  },
  // What the history is checked against: the same counter, one operation at a time.
  model: {
    init: () => 0,
    step: (state, input, output) => {
      const next = input.op === "add" ? state + input.n : state
      return [output === undefined || output === next, next]
    },
    equal: (a, b) => a === b,
    hash: (state) => state
  },
  next: () => Effect.map(Random.nextBoolean, (add): Input => (add ? { op: "add", n: 1 } : { op: "read" })),
  encode: (input) => new TextEncoder().encode(JSON.stringify(input)),
  output: (response) => response as number
}

export const result = Simulator.run({ seed: 1, nodes: 3, durationMillis: 2000, workload: counter })
// result.ok, result.violation, result.trace, result.operations, result.faults, result.linearizability
