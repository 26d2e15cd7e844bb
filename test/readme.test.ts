/** The README's example, run as written (with TestClock standing in for a second of waiting). */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import { Configuration, Fsm, LogStore, MemoryNetwork, Raft, Simulator, SnapshotStore, StableStore } from "../src/index.js"

describe("README", () => {
  it.effect("the usage example elects a single node and applies a command", () =>
    Effect.gen(function*() {
      let counter = 0
      const fsm = Fsm.fromFunction((log) => (counter += log.data.length))
      const node = (id: string) =>
        Raft.layer({ localId: id, heartbeatTimeout: "1 second" }).pipe(
          Layer.provide([
            Fsm.layer(fsm),
            LogStore.layerMemory,
            StableStore.layerMemory,
            SnapshotStore.layerMemory,
            MemoryNetwork.layerTransport(id)
          ])
        )
      const program = Effect.gen(function*() {
        const raft = yield* Raft.Raft
        yield* raft.bootstrapCluster(Configuration.voters([["a", "mem://a"]]))
        while ((yield* raft.state) !== "Leader") yield* Effect.sleep("50 millis")
        const { index, response } = yield* raft.apply(new TextEncoder().encode("hello"), { timeout: "5 seconds" })
        return { index, response }
      })
      const fiber = yield* Effect.fork(program.pipe(Effect.provide(node("a").pipe(Layer.provide(MemoryNetwork.layer())))))
      yield* TestClock.adjust("3 seconds")
      const result = yield* Fiber.join(fiber)
      assert.strictEqual(result.response, 5)
      assert.strictEqual(result.index, 3) // configuration, the leader's no-op, then the command
    }))

  it("the simulator example runs a counter workload to a clean result", () => {
    type Input = { readonly op: "add"; readonly n: number } | { readonly op: "read" }
    const counter: Simulator.Workload<number, Input, number> = {
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
    const result = Simulator.run({ seed: 1, nodes: 3, durationMillis: 2000, workload: counter })
    assert.isTrue(result.ok, result.violation?.detail)
    assert.strictEqual(result.linearizability, "Linearizable")
    const compacting = Simulator.run({ seed: 1, nodes: 3, durationMillis: 2000, workload: counter, config: Simulator.frequentSnapshots })
    assert.isTrue(compacting.ok, compacting.violation?.detail)
  }, 60_000)
})
