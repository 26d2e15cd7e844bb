import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Runtime from "effect/Runtime"
import * as KvFsm from "../../src/kv/KvFsm.js"
import * as PutBatch from "../../src/kv/PutBatch.js"

type Outcome = Exit.Exit<{ readonly index: number; readonly response: KvFsm.Response }, string>

/**
 * A batcher over a fake Raft: every command it applies is recorded with a Deferred the test completes, standing for
 * the commit; `maxInFlight` 1 as the service runs it.
 */
const setup = (maxEntryBytes = 1024 * 1024) =>
  Effect.gen(function*() {
    const applied: Array<{ readonly command: KvFsm.Command; readonly commit: Deferred.Deferred<{ readonly index: number; readonly response: KvFsm.Response }, string> }> = []
    const runCallback = Runtime.runCallback(yield* Effect.runtime<never>())
    const put = PutBatch.make<string>({
      apply: (command) =>
        Effect.flatMap(Deferred.make<{ readonly index: number; readonly response: KvFsm.Response }, string>(), (commit) => {
          applied.push({ command, commit })
          return Deferred.await(commit)
        }),
      rejected: (response) => `rejected ${response._tag}`,
      run: (effect, onExit) => void runCallback(effect, { onExit }),
      maxEntryBytes,
      maxInFlight: 1
    })
    const commit = (i: number, outcome: Outcome) => Deferred.done(applied[i]!.commit, outcome)
    return { applied, put, commit }
  })

/** Lets every forked fiber run until it waits. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

const written = (index: number): Outcome => Exit.succeed({ index, response: { _tag: "Written" } })

describe("PutBatch", () => {
  it.effect("a lone PUT is a plain Put entry; PUTs arriving while it commits share the next entry and its index", () =>
    Effect.gen(function*() {
      const { applied, commit, put } = yield* setup()
      const first = yield* Effect.fork(put("a", "1"))
      yield* settle
      const later = yield* Effect.fork(Effect.all([put("b", "2"), put("c", "3"), put("b", "4")], { concurrency: "unbounded" }))
      yield* settle
      assert.deepStrictEqual(applied.map((a) => a.command), [{ _tag: "Put", key: "a", value: "1" }])
      yield* commit(0, written(7))
      assert.deepStrictEqual(yield* Fiber.join(first), { index: 7 })
      yield* settle
      assert.deepStrictEqual(applied.map((a) => a.command)[1], {
        _tag: "PutMany",
        entries: [["b", "2"], ["c", "3"], ["b", "4"]]
      })
      yield* commit(1, written(8))
      assert.deepStrictEqual(yield* Fiber.join(later), [{ index: 8 }, { index: 8 }, { index: 8 }])
    }))

  it.effect("a failed entry fails every PUT in it; an unexpected answer is the service's error", () =>
    Effect.gen(function*() {
      const { commit, put } = yield* setup()
      const first = yield* Effect.fork(put("a", "1"))
      yield* settle
      const later = yield* Effect.fork(Effect.all([Effect.flip(put("b", "2")), Effect.flip(put("c", "3"))], { concurrency: "unbounded" }))
      yield* settle
      yield* commit(0, Exit.succeed({ index: 3, response: { _tag: "Swapped" } }))
      assert.strictEqual(yield* Effect.flip(Fiber.join(first)), "rejected Swapped")
      yield* settle
      yield* commit(1, Exit.fail("leadership lost"))
      assert.deepStrictEqual(yield* Fiber.join(later), ["leadership lost", "leadership lost"])
    }))

  it.effect("a PUT whose caller gave up before its entry was sent is not written", () =>
    Effect.gen(function*() {
      const { applied, commit, put } = yield* setup()
      const first = yield* Effect.fork(put("a", "1"))
      yield* settle
      const gaveUp = yield* Effect.fork(put("b", "2"))
      const kept = yield* Effect.fork(put("c", "3"))
      yield* settle
      yield* Fiber.interrupt(gaveUp)
      yield* commit(0, written(1))
      yield* Fiber.join(first)
      yield* settle
      assert.deepStrictEqual(applied.map((a) => a.command)[1], { _tag: "Put", key: "c", value: "3" })
      yield* commit(1, written(2))
      assert.deepStrictEqual(yield* Fiber.join(kept), { index: 2 })
    }))

  it.effect("an entry stays within maxEntryBytes: a PUT too large to share one goes alone", () =>
    Effect.gen(function*() {
      const { applied, commit, put } = yield* setup(400)
      const first = yield* Effect.fork(put("a", "1"))
      yield* settle
      const later = yield* Effect.fork(
        Effect.all([put("b", "x".repeat(20)), put("c", "y".repeat(20)), put("big", "z".repeat(100)), put("d", "4")], {
          concurrency: "unbounded"
        })
      )
      yield* settle
      for (let i = 0; i < 4; i++) {
        yield* commit(i, written(i + 1))
        yield* settle
      }
      yield* Fiber.join(first)
      yield* Fiber.join(later)
      const commands = applied.map((a) => a.command)
      assert.deepStrictEqual(commands.map((c) => c._tag), ["Put", "PutMany", "Put", "Put"])
      assert.deepStrictEqual(commands[2], { _tag: "Put", key: "big", value: "z".repeat(100) })
      for (const command of commands) {
        const bytes = KvFsm.machine.encodeCommand(command)
        assert.isTrue(bytes._tag === "Right" && bytes.right.length <= 400)
      }
    }))

  it.effect("a lone PUT whose caller gives up while it is in Raft is interrupted there, and the next goes out at once", () =>
    Effect.gen(function*() {
      const { applied, commit, put } = yield* setup()
      const first = yield* Effect.fork(put("a", "1"))
      yield* settle
      yield* Fiber.interrupt(first)
      const next = yield* Effect.fork(put("b", "2"))
      yield* settle
      assert.deepStrictEqual(applied.map((a) => a.command), [
        { _tag: "Put", key: "a", value: "1" },
        { _tag: "Put", key: "b", value: "2" }
      ])
      yield* commit(1, written(2))
      assert.deepStrictEqual(yield* Fiber.join(next), { index: 2 })
    }))
})
