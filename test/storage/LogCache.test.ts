import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Log from "../../src/Log.js"
import * as LogStore from "../../src/LogStore.js"
import * as LogCache from "../../src/storage/LogCache.js"

/** A memory log store that counts the reads that reach it. */
const counted = () => {
  const store = LogStore.makeMemory()
  const reads = { count: 0 }
  const wrapped: LogStore.LogStore = {
    ...store,
    getLog: (index) => Effect.suspend(() => {
      reads.count++
      return store.getLog(index)
    })
  }
  return { store: wrapped, reads }
}

const entries = (from: number, to: number, bytes: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => Log.make(from + i, 1, "Command", new Uint8Array(bytes)))

/** The indexes in `indexes` that `cache` answered without reading the store below. */
const servedFromCache = (cache: LogStore.LogStore, reads: { count: number }, indexes: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const hits: Array<number> = []
    for (const index of indexes) {
      const before = reads.count
      assert.strictEqual((yield* cache.getLog(index)).index, index)
      if (reads.count === before) hits.push(index)
    }
    return hits
  })

describe("LogCache", () => {
  it.effect("holds at most maxBytes of entry data: the oldest entries leave first, to the store below", () =>
    Effect.gen(function*() {
      const { reads, store } = counted()
      const cache = LogCache.make(store, 16, 1000)
      yield* cache.storeLogs(entries(1, 10, 300))
      // 300-byte entries in 1,000 bytes: the newest three stay, though the ring has room for sixteen.
      assert.deepStrictEqual(yield* servedFromCache(cache, reads, [1, 6, 7, 8, 9, 10]), [8, 9, 10])
      yield* cache.storeLogs(entries(11, 12, 100))
      assert.deepStrictEqual(yield* servedFromCache(cache, reads, [8, 9, 10, 11, 12]), [9, 10, 11, 12])
    }))

  it.effect("keeps the newest entry even when it alone is over maxBytes, and the count bound still holds", () =>
    Effect.gen(function*() {
      const { reads, store } = counted()
      const cache = LogCache.make(store, 4, 100)
      yield* cache.storeLogs(entries(1, 2, 10))
      yield* cache.storeLogs(entries(3, 3, 500))
      assert.deepStrictEqual(yield* servedFromCache(cache, reads, [1, 2, 3]), [3])
      const below = counted()
      const small = LogCache.make(below.store, 4)
      yield* small.storeLogs(entries(1, 6, 10_000))
      assert.deepStrictEqual(yield* servedFromCache(small, below.reads, [1, 2, 3, 4, 5, 6]), [3, 4, 5, 6])
    }))
})
