import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Scheduler from "effect/Scheduler"
import { Inbox } from "../../src/internal/inbox.js"

/** Runs tasks in microtasks, as the node's scheduler does, counting them: the fiber hand-offs. */
class CountingScheduler implements Scheduler.Scheduler {
  tasks = 0
  shouldYield(): number | false {
    return false
  }
  scheduleTask(task: Scheduler.Task): void {
    this.tasks++
    queueMicrotask(task)
  }
}

/** Yields until the forked taker has parked on the inbox (a few turns of the scheduler). */
const settle = Effect.repeatN(Effect.yieldNow(), 10)

describe("Inbox", () => {
  it.effect("an offer wakes a waiting taker in one scheduler task, with everything offered before it runs", () => {
    const scheduler = new CountingScheduler()
    return Effect.gen(function*() {
      const inbox = new Inbox<number>()
      const taker = yield* Effect.fork(
        Effect.flatMap(inbox.takeAll, (taken) => Effect.sync(() => ({ taken, tasks: scheduler.tasks })))
      )
      yield* settle
      scheduler.tasks = 0
      assert.isTrue(inbox.unsafeOffer(1))
      assert.isTrue(inbox.unsafeOffer(2))
      assert.isTrue(inbox.unsafeOffer(3))
      const { taken, tasks } = yield* Fiber.join(taker)
      // Effect's Mailbox takes two here: a task that releases the taker, then the taker's fiber.
      assert.strictEqual(tasks, 1)
      assert.deepStrictEqual(taken, [[1, 2, 3], false])
      assert.strictEqual(inbox.size, 0)
    }).pipe(Effect.withScheduler(scheduler))
  })

  it.effect("takeAll returns at once what is queued, and waits when nothing is", () =>
    Effect.gen(function*() {
      const inbox = new Inbox<string>()
      inbox.unsafeOffer("a")
      assert.deepStrictEqual(yield* inbox.takeAll, [["a"], false])
      const taker = yield* Effect.fork(inbox.takeAll)
      yield* settle
      assert.isNull(taker.unsafePoll())
      inbox.unsafeOffer("b")
      assert.deepStrictEqual(yield* Fiber.join(taker), [["b"], false])
    }))

  it.effect("after its end: offers are refused, the taker gets what was queued with done, then done alone", () =>
    Effect.gen(function*() {
      const inbox = new Inbox<number>()
      inbox.unsafeOffer(1)
      inbox.unsafeEnd()
      assert.isFalse(inbox.unsafeOffer(2))
      assert.deepStrictEqual(yield* inbox.takeAll, [[1], true])
      assert.deepStrictEqual(yield* inbox.takeAll, [[], true])
    }))

  it.effect("a waiting taker is woken by the end", () =>
    Effect.gen(function*() {
      const inbox = new Inbox<number>()
      const taker = yield* Effect.fork(inbox.takeAll)
      yield* settle
      inbox.unsafeEnd()
      assert.deepStrictEqual(yield* Fiber.join(taker), [[], true])
    }))

  it.effect("an interrupted taker is forgotten: the next offer waits for the next taker", () =>
    Effect.gen(function*() {
      const inbox = new Inbox<number>()
      const first = yield* Effect.fork(inbox.takeAll)
      yield* settle
      yield* Fiber.interrupt(first)
      inbox.unsafeOffer(7)
      assert.strictEqual(inbox.size, 1)
      assert.deepStrictEqual(yield* inbox.takeAll, [[7], false])
    }))

  it.effect("after an interrupted taker, a new waiting taker is the one the next offer wakes", () =>
    Effect.gen(function*() {
      const inbox = new Inbox<number>()
      const first = yield* Effect.fork(inbox.takeAll)
      yield* settle
      yield* Fiber.interrupt(first)
      const second = yield* Effect.fork(inbox.takeAll)
      yield* settle
      inbox.unsafeOffer(8)
      assert.deepStrictEqual(yield* Fiber.join(second), [[8], false])
    }))

  it("unsafeClear empties the queue and returns it", () => {
    const inbox = new Inbox<number>()
    inbox.unsafeOffer(1)
    inbox.unsafeOffer(2)
    assert.deepStrictEqual(inbox.unsafeClear(), [1, 2])
    assert.strictEqual(inbox.size, 0)
  })
})
