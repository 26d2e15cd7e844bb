import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Log from "../src/Log.js"
import * as LogStore from "../src/LogStore.js"
import { LogNotFound } from "../src/RaftError.js"

const entries = (from: number, to: number, term = 1): Array<Log.Log> =>
  Array.from({ length: to - from + 1 }, (_, i) => Log.make(from + i, term, "Command", new Uint8Array([from + i])))

/** A memory store holding entries 1..10. */
const filled = Effect.gen(function*() {
  const store = LogStore.makeMemory()
  yield* store.storeLogs(entries(1, 10))
  return store
})

/** The index a failing lookup names; fails the test unless it fails with LogNotFound. */
const missingIndex = <A, E>(lookup: Effect.Effect<A, E>) =>
  Effect.map(Effect.flip(lookup), (error) => {
    assert.instanceOf(error, LogNotFound)
    return (error as LogNotFound).index
  })

const bounds = (store: LogStore.LogStore) => Effect.all([store.firstIndex, store.lastIndex])

describe("LogStore.makeMemory", () => {
  it.effect("an empty store answers 0 for firstIndex and lastIndex", () =>
    Effect.gen(function*() {
      const store = LogStore.makeMemory()
      assert.deepStrictEqual(yield* bounds(store), [0, 0])
    }))

  it.effect("storeLogs sets firstIndex and lastIndex and the entries read back", () =>
    Effect.gen(function*() {
      const store = yield* filled
      assert.deepStrictEqual(yield* bounds(store), [1, 10])
      assert.deepStrictEqual(yield* store.getLog(4), Log.make(4, 1, "Command", new Uint8Array([4])))
      yield* store.storeLogs(entries(11, 12))
      assert.deepStrictEqual(yield* bounds(store), [1, 12])
    }))

  it.effect("storeLogs replaces entries at the same indices", () =>
    Effect.gen(function*() {
      const store = yield* filled
      yield* store.storeLogs(entries(9, 10, 2))
      assert.strictEqual((yield* store.getLog(9)).term, 2)
      assert.strictEqual((yield* store.getLog(8)).term, 1)
      assert.deepStrictEqual(yield* bounds(store), [1, 10])
    }))

  it.effect("getLog of a missing index fails with LogNotFound carrying the index", () =>
    Effect.gen(function*() {
      const store = yield* filled
      assert.strictEqual(yield* missingIndex(store.getLog(11)), 11)
      assert.strictEqual(yield* missingIndex(store.getLog(0)), 0)
      assert.strictEqual(yield* missingIndex(LogStore.makeMemory().getLog(1)), 1)
    }))

  it.effect("getLogs returns the inclusive range in order", () =>
    Effect.gen(function*() {
      const store = yield* filled
      const logs = yield* store.getLogs(3, 6)
      assert.deepStrictEqual(logs.map((log) => log.index), [3, 4, 5, 6])
      assert.deepStrictEqual(yield* store.getLogs(10, 10), entries(10, 10))
    }))

  it.effect("getLogs fails with LogNotFound naming the first missing index in the range", () =>
    Effect.gen(function*() {
      const store = yield* filled
      yield* store.deleteRange(1, 4)
      assert.strictEqual(yield* missingIndex(store.getLogs(3, 7)), 3)
      assert.strictEqual(yield* missingIndex(store.getLogs(8, 13)), 11)
    }))

  it.effect("deleteRange at the front (compaction) moves firstIndex past it", () =>
    Effect.gen(function*() {
      const store = yield* filled
      yield* store.deleteRange(1, 4)
      assert.deepStrictEqual(yield* bounds(store), [5, 10])
      assert.strictEqual(yield* missingIndex(store.getLog(4)), 4)
      assert.strictEqual((yield* store.getLog(5)).index, 5)
    }))

  it.effect("deleteRange at the back (truncation) moves lastIndex before it, and later stores extend from there", () =>
    Effect.gen(function*() {
      const store = yield* filled
      yield* store.deleteRange(7, 10)
      assert.deepStrictEqual(yield* bounds(store), [1, 6])
      assert.strictEqual(yield* missingIndex(store.getLog(7)), 7)
      yield* store.storeLogs(entries(7, 8, 2))
      assert.deepStrictEqual(yield* bounds(store), [1, 8])
      assert.strictEqual((yield* store.getLog(7)).term, 2)
    }))

  it.effect("deleteRange of everything empties the store (0, 0) and it refills from any index", () =>
    Effect.gen(function*() {
      const store = yield* filled
      yield* store.deleteRange(1, 10)
      assert.deepStrictEqual(yield* bounds(store), [0, 0])
      assert.strictEqual(yield* missingIndex(store.getLog(5)), 5)
      yield* store.storeLogs(entries(20, 21))
      assert.deepStrictEqual(yield* bounds(store), [20, 21])
    }))

  it.effect("layerMemory provides a fresh, empty store per build", () =>
    Effect.gen(function*() {
      const first = yield* Effect.provide(LogStore.LogStore, LogStore.layerMemory)
      yield* first.storeLogs(entries(1, 2))
      const second = yield* Effect.provide(LogStore.LogStore, LogStore.layerMemory)
      assert.deepStrictEqual(yield* bounds(second), [0, 0])
    }))
})

describe("LogStore.makeMemory: ranges outside what is held", () => {
  it.effect("deleteRange of entries already gone leaves the bounds on entries that exist", () =>
    Effect.gen(function*() {
      const store = LogStore.makeMemory()
      yield* store.storeLogs(Array.from({ length: 10 }, (_, i) => Log.make(i + 1, 1, "Command")))
      yield* store.deleteRange(1, 5)
      yield* store.deleteRange(1, 3)
      assert.strictEqual(yield* store.firstIndex, 6)
      yield* store.deleteRange(12, 20)
      assert.strictEqual(yield* store.lastIndex, 10)
      assert.strictEqual((yield* store.getLog(yield* store.firstIndex)).index, 6)
    }))
})
