import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"
import * as Clock from "effect/Clock"
import { backoffMillis, failureBackoff, retrying } from "../../src/internal/backoff.js"

/** hashicorp/raft util.go `backoff(base, round, limit)`, written out independently of the module. */
const hashicorpBackoff = (base: number, round: number, limit: number): number => {
  let power = Math.min(round, limit)
  let wait = base
  while (power > 2) {
    wait *= 2
    power--
  }
  return wait
}

const failures = Array.from({ length: 15 }, (_, i) => i + 1)
/** hashicorp's delay after each of failures 1..15: backoff(10ms, n, 12). */
const expected = failures.map((n) => hashicorpBackoff(10, n, 12))

describe("backoff", () => {
  it("the reference table is 10, 10, 20, 40, …, 10240, then stays at 10240", () => {
    assert.deepStrictEqual(expected, [10, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 10240, 10240, 10240])
  })

  it("backoffMillis(n) equals hashicorp's backoff(10ms, n, 12) for failures 1..15", () => {
    assert.deepStrictEqual(failures.map((n) => backoffMillis(n)), expected)
  })

  it.effect("failureBackoff's n-th delay equals hashicorp's backoff(10ms, n, 12) for failures 1..15 (Schedule.run)", () =>
    Effect.gen(function*() {
      const delays = yield* Schedule.run(Schedule.delays(failureBackoff), 0, failures)
      assert.deepStrictEqual(Chunk.toReadonlyArray(delays).map(Duration.toMillis), expected)
    }))

  it.effect("failureBackoff's delays match through a Schedule.driver, and it never gives up", () =>
    Effect.gen(function*() {
      const driver = yield* Schedule.driver(Schedule.delays(failureBackoff))
      const delays: Array<number> = []
      for (const n of failures) {
        // `next` chooses the delay (`last`) and then sleeps for it on the TestClock.
        const step = yield* Effect.fork(driver.next(n))
        yield* Effect.yieldNow()
        const delay = yield* Effect.orDie(driver.last)
        delays.push(Duration.toMillis(delay))
        yield* TestClock.adjust(delay)
        yield* Fiber.join(step)
      }
      assert.deepStrictEqual(delays, expected)
    }))

  /** Runs `retrying` over an effect that fails `failing` times, driving the TestClock; the attempts' times. */
  const attemptsOf = (failing: number, schedule: Schedule.Schedule<unknown, unknown>) =>
    Effect.gen(function*() {
      const times: Array<number> = []
      const start = yield* Clock.currentTimeMillis
      const attempt = Effect.flatMap(Clock.currentTimeMillis, (now) => {
        times.push(now - start)
        return times.length <= failing ? Effect.fail(`failure ${times.length}`) : Effect.succeed("done")
      })
      const fiber = yield* Effect.fork(Effect.either(retrying(attempt, schedule)))
      for (let i = 0; i < 40 && fiber.unsafePoll() === null; i++) yield* TestClock.adjust("10 millis")
      return { times, result: yield* Fiber.join(fiber) }
    })

  it.effect("retrying waits the schedule's delays between attempts, as Effect.retry does", () =>
    Effect.gen(function*() {
      const { result, times } = yield* attemptsOf(4, failureBackoff)
      assert.deepStrictEqual(result, Either.right("done"))
      // Failures 1..4 wait 10, 10, 20, 40 ms.
      assert.deepStrictEqual(times, [0, 10, 20, 40, 80])
    }))

  it.effect("retrying fails with the last error once the schedule ends, and runs a success once", () =>
    Effect.gen(function*() {
      const ended = yield* attemptsOf(5, Schedule.recurs(2))
      assert.deepStrictEqual(ended.result, Either.left("failure 3"))
      assert.deepStrictEqual(ended.times, [0, 0, 0])
      const first = yield* attemptsOf(0, failureBackoff)
      assert.deepStrictEqual(first, { times: [0], result: Either.right("done") })
    }))
})
