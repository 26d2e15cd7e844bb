/**
 * The node's deadline keeper (src/internal/deadlines.ts) on a TestClock: an entry expires exactly at its deadline,
 * an earlier deadline wakes a keeper sleeping towards a later one, a cancelled entry never expires, many entries
 * expire in deadline order, and the keeper ends with its scope. Then `Future.awaitUntil`, the wait built on it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { Deadlines } from "../../src/internal/deadlines.js"
import { Future } from "../../src/internal/future.js"

/** A keeper on the test's clock, its fiber in a scope the test may close; `fired` records what expired, and when. */
const makeKeeper = Effect.gen(function*() {
  const clock = yield* Effect.clock
  const keeper = new Deadlines(clock)
  const scope = yield* Scope.make()
  yield* Effect.forkIn(keeper.run, scope)
  const fired: Array<{ readonly name: string; readonly at: number }> = []
  const add = (name: string, inMillis: number) =>
    keeper.add(clock.unsafeCurrentTimeMillis() + inMillis, () => {
      fired.push({ name, at: clock.unsafeCurrentTimeMillis() })
    })
  return { keeper, scope, fired, add }
})

describe("Deadlines", () => {
  it.effect("an entry expires exactly at its deadline, not a millisecond before", () =>
    Effect.gen(function*() {
      const { add, fired } = yield* makeKeeper
      add("a", 250)
      yield* TestClock.adjust(249)
      assert.deepStrictEqual(fired, [])
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(fired, [{ name: "a", at: 250 }])
    }))

  it.effect("an entry added earlier than the deadline the keeper sleeps towards wakes it", () =>
    Effect.gen(function*() {
      const { add, fired } = yield* makeKeeper
      add("long", 1000)
      yield* TestClock.adjust(10)
      add("short", 100)
      yield* TestClock.adjust(100)
      assert.deepStrictEqual(fired, [{ name: "short", at: 110 }])
      yield* TestClock.adjust(900)
      assert.deepStrictEqual(fired, [{ name: "short", at: 110 }, { name: "long", at: 1000 }])
    }))

  it.effect("a cancelled entry never expires, and the others still do", () =>
    Effect.gen(function*() {
      const { add, fired, keeper } = yield* makeKeeper
      const first = add("first", 100)
      add("second", 200)
      yield* TestClock.adjust(50)
      first.cancel()
      assert.strictEqual(keeper.pending, 1)
      yield* TestClock.adjust(500)
      assert.deepStrictEqual(fired, [{ name: "second", at: 200 }])
      assert.strictEqual(keeper.pending, 0)
    }))

  it.effect("entries of random deadlines, most of them cancelled, expire in deadline order at their deadlines", () =>
    Effect.gen(function*() {
      const { add, fired } = yield* makeKeeper
      const expected: Array<{ readonly name: string; readonly at: number }> = []
      for (let i = 0; i < 300; i++) {
        const inMillis = yield* Random.nextIntBetween(1, 1000)
        const entry = add(`e${i}`, inMillis)
        // Three in four cancelled: the heap is rebuilt without them on the way.
        if (i % 4 !== 0) entry.cancel()
        else expected.push({ name: `e${i}`, at: inMillis })
      }
      expected.sort((a, b) => a.at - b.at || Number(a.name.slice(1)) - Number(b.name.slice(1)))
      yield* TestClock.adjust(1000)
      assert.deepStrictEqual(fired, expected)
    }).pipe(Effect.withRandom(Random.make("deadlines-order"))))

  it.effect("the keeper ends with its scope: nothing expires after", () =>
    Effect.gen(function*() {
      const { add, fired, keeper, scope } = yield* makeKeeper
      add("a", 100)
      yield* TestClock.adjust(10)
      yield* Scope.close(scope, Exit.void)
      assert.isTrue(keeper.isStopped)
      add("b", 10)
      yield* TestClock.adjust(200)
      assert.deepStrictEqual(fired, [])
    }))
})

/**
 * A clock that reads a thousandth slow but sleeps on the test clock: after a sleep it reads a hair before the
 * deadline it slept until, as the simulator's skewed clocks may from rounding. It stops waking after ten sleeps, so
 * a keeper that keeps sleeping for the hair cannot spin.
 */
class LaggingClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  sleeps = 0
  constructor(private readonly inner: Clock.Clock) {}
  unsafeCurrentTimeMillis(): number {
    return this.inner.unsafeCurrentTimeMillis() * 0.999
  }
  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.unsafeCurrentTimeMillis() * 1_000_000))
  }
  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.unsafeCurrentTimeMillis())
  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    this.sleeps++
    return this.sleeps > 10 ? Effect.never : this.inner.sleep(duration)
  }
}

describe("Deadlines on a clock that reads behind its sleeps", () => {
  it.effect("an entry expires when the sleep until its deadline ends, even if the clock then reads a hair before", () =>
    Effect.gen(function*() {
      const clock = new LaggingClock(yield* Effect.clock)
      const keeper = new Deadlines(clock)
      yield* Effect.forkScoped(keeper.run)
      let fired = 0
      keeper.add(100, () => fired++)
      yield* TestClock.adjust(200)
      assert.strictEqual(fired, 1)
      assert.strictEqual(clock.sleeps, 1)
    }).pipe(Effect.scoped))
})

describe("Future.awaitUntil", () => {
  it.effect("fails with the timeout error at the deadline, drops the waiter and runs onAbandon", () =>
    Effect.gen(function*() {
      const { keeper } = yield* makeKeeper
      const future = new Future<string, never>()
      let abandoned = 0
      const waiter = yield* Effect.fork(
        Effect.either(future.awaitUntil(keeper, 100, () => abandoned++, () => "timed out"))
      )
      yield* TestClock.adjust(100)
      assert.deepStrictEqual(yield* Fiber.join(waiter), Either.left("timed out"))
      assert.strictEqual(abandoned, 1)
    }))

  it.effect("a result before the deadline cancels it: neither onAbandon nor the timeout runs later", () =>
    Effect.gen(function*() {
      const { keeper } = yield* makeKeeper
      const future = new Future<string, never>()
      let abandoned = 0
      let timedOut = 0
      const waiter = yield* Effect.fork(future.awaitUntil(keeper, 100, () => abandoned++, () => timedOut++))
      yield* TestClock.adjust(50)
      future.done(Exit.succeed("answer"))
      assert.strictEqual(yield* Fiber.join(waiter), "answer")
      assert.strictEqual(keeper.pending, 0)
      yield* TestClock.adjust(100)
      assert.strictEqual(abandoned, 0)
      assert.strictEqual(timedOut, 0)
    }))

  it.effect("an interrupted waiter cancels its deadline and runs onAbandon once", () =>
    Effect.gen(function*() {
      const { keeper } = yield* makeKeeper
      const future = new Future<string, never>()
      let abandoned = 0
      const waiter = yield* Effect.fork(future.awaitUntil(keeper, 100, () => abandoned++, () => "timed out"))
      yield* TestClock.adjust(10)
      yield* Fiber.interrupt(waiter)
      assert.strictEqual(keeper.pending, 0)
      yield* TestClock.adjust(100)
      assert.strictEqual(abandoned, 1)
    }))
})
