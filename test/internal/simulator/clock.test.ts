import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { VirtualClock } from "../../../src/internal/simulator/clock.js"

/** Yields until forked fibers have run as far as they can (a few turns of the scheduler). */
const settle = Effect.repeatN(Effect.yieldNow(), 10)

/** Fires the next timer as the simulator's driver does: the clock moves to it, then it resumes its sleeper. */
const fire = (clock: VirtualClock) => {
  const timer = clock.next()
  assert.isDefined(timer)
  clock.now = timer!.at
  timer!.resume()
  return timer!.at
}

describe("VirtualClock", () => {
  it.effect("timers fire in the order of their deadlines, equal deadlines in the order they were filed", () =>
    Effect.gen(function*() {
      const clock = new VirtualClock()
      const woken: Array<string> = []
      const sleeper = (name: string, millis: number) =>
        Effect.fork(Effect.withClock(Effect.zipRight(Effect.sleep(millis), Effect.sync(() => woken.push(name))), clock))
      const fibers = [yield* sleeper("c", 30), yield* sleeper("a", 10), yield* sleeper("b", 30), yield* sleeper("d", 20)]
      yield* settle
      const times: Array<number> = []
      for (let i = 0; i < 4; i++) {
        times.push(fire(clock))
        yield* settle
      }
      yield* Fiber.joinAll(fibers)
      assert.deepStrictEqual(times, [10, 20, 30, 30])
      assert.deepStrictEqual(woken, ["a", "d", "c", "b"])
      assert.isUndefined(clock.next())
    }))

  it.effect("an interrupted sleeper's timer still fires, and resumes nothing", () =>
    Effect.gen(function*() {
      const clock = new VirtualClock()
      const woken: Array<string> = []
      const interrupted = yield* Effect.fork(
        Effect.withClock(Effect.zipRight(Effect.sleep(10), Effect.sync(() => woken.push("interrupted"))), clock)
      )
      yield* settle
      yield* Fiber.interrupt(interrupted)
      const later = yield* Effect.fork(
        Effect.withClock(Effect.zipRight(Effect.sleep(20), Effect.sync(() => woken.push("later"))), clock)
      )
      yield* settle
      assert.strictEqual(fire(clock), 10)
      yield* settle
      assert.deepStrictEqual(woken, [])
      assert.strictEqual(fire(clock), 20)
      yield* Fiber.join(later)
      assert.deepStrictEqual(woken, ["later"])
    }))
})
