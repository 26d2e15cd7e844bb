import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { Gate } from "../../src/internal/gate.js"

/** Yields until forked waiters have parked on the gate (a few turns of the scheduler). */
const settle = Effect.repeatN(Effect.yieldNow(), 10)

describe("Gate", () => {
  it.effect("an open gate is passed at once, and stays open until closed", () =>
    Effect.gen(function*() {
      const gate = new Gate(true)
      yield* gate.await
      yield* gate.await
      gate.unsafeClose()
      const waiter = yield* Effect.fork(gate.await)
      yield* settle
      assert.isNull(waiter.unsafePoll())
      gate.unsafeOpen()
      yield* Fiber.join(waiter)
    }))

  it.effect("opening lets every waiter through", () =>
    Effect.gen(function*() {
      const gate = new Gate(false)
      const waiters = yield* Effect.forEach([1, 2, 3], () => Effect.fork(gate.await))
      yield* settle
      for (const waiter of waiters) assert.isNull(waiter.unsafePoll())
      gate.unsafeOpen()
      yield* Fiber.joinAll(waiters)
      // Open now: the next wait passes without an opening.
      yield* gate.await
    }))

  it.effect("an interrupted waiter is answered once: the next opening still lets the others through", () =>
    Effect.gen(function*() {
      const gate = new Gate(false)
      const interrupted = yield* Effect.fork(gate.await)
      const other = yield* Effect.fork(gate.await)
      yield* settle
      yield* Fiber.interrupt(interrupted)
      gate.unsafeOpen()
      yield* Fiber.join(other)
      gate.unsafeClose()
      // The stale entry went with the opening: a new waiter waits for the next one.
      const later = yield* Effect.fork(gate.await)
      yield* settle
      assert.isNull(later.unsafePoll())
      gate.unsafeOpen()
      yield* Fiber.join(later)
    }))
})
