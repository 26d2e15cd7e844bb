import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import { LogView } from "../../../src/internal/simulator/logView.js"
import * as Log from "../../../src/Log.js"
import * as LogStore from "../../../src/LogStore.js"

type Operation =
  | { readonly _tag: "store"; readonly from: number; readonly count: number }
  | { readonly _tag: "delete"; readonly min: number; readonly max: number }

const operation: FastCheck.Arbitrary<Operation> = FastCheck.oneof(
  FastCheck.record({
    _tag: FastCheck.constant("store" as const),
    from: FastCheck.integer({ min: 1, max: 40 }),
    count: FastCheck.integer({ min: 0, max: 8 })
  }),
  FastCheck.record({
    _tag: FastCheck.constant("delete" as const),
    min: FastCheck.integer({ min: 0, max: 45 }),
    max: FastCheck.integer({ min: 0, max: 45 })
  })
)


describe("the simulator's view of a log", () => {
  it("holds what the memory log store holds after any writes and deletions (compaction, truncation, holes)", () => {
    FastCheck.assert(
      FastCheck.property(FastCheck.array(operation, { maxLength: 30 }), (operations) => {
        const store = LogStore.makeMemory()
        const view = new LogView()
        operations.forEach((op, term) => {
          if (op._tag === "store") {
            const logs = Array.from({ length: op.count }, (_, i) => Log.make(op.from + i, term, "Command"))
            Effect.runSync(store.storeLogs(logs))
            view.store(logs)
          } else {
            Effect.runSync(store.deleteRange(op.min, op.max))
            view.delete(op.min, op.max)
          }
          const first = Effect.runSync(store.firstIndex)
          const last = Effect.runSync(store.lastIndex)
          assert.strictEqual(view.first, first)
          assert.strictEqual(view.last, last)
          for (let index = 0; index <= 50; index++) {
            const held = Effect.runSync(Effect.option(store.getLog(index)))
            assert.strictEqual(view.get(index), held._tag === "Some" ? held.value : undefined, `index ${index}`)
          }
        })
      })
    )
  })
})
