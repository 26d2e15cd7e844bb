import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { sync } from "../../../src/internal/simulator/state.js"
import * as SnapshotStore from "../../../src/SnapshotStore.js"

describe("the simulator's sync reads", () => {
  it("an Effect.sync runs in the caller, on no fiber (the checks read stats after every event)", () => {
    assert.isTrue(sync(Effect.sync(() => Option.isNone(Fiber.getCurrentFiber()))))
  })

  it("any other effect still runs to its value on a fiber", () => {
    assert.strictEqual(sync(Effect.map(Effect.succeed(20), (n) => n + 1)), 21)
    assert.strictEqual(sync(Effect.gen(function*() {
      const a = yield* Effect.succeed(1)
      return a + (yield* Effect.sync(() => 2))
    })), 3)
    assert.isTrue(sync(Effect.suspend(() => Effect.sync(() => Option.isSome(Fiber.getCurrentFiber())))))
    assert.deepStrictEqual(sync(SnapshotStore.makeMemory().list), [])
  })
})
