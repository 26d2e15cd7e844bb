import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as Configuration from "../src/Configuration.js"
import { SnapshotNotFound, StorageError } from "../src/RaftError.js"
import * as SnapshotStore from "../src/SnapshotStore.js"

const configuration = Configuration.voters([["a", "mem://a"], ["b", "mem://b"], ["c", "mem://c"]])
const meta = (index: number, term = 1) => ({ index, term, configuration, configurationIndex: 1 })
const chunks = (...parts: ReadonlyArray<ReadonlyArray<number>>) => parts.map((part) => new Uint8Array(part))

/** Writes a snapshot made of `parts`, one stream chunk per part, and returns its metadata. */
const write = (store: SnapshotStore.SnapshotStore, index: number, parts: ReadonlyArray<Uint8Array>, term = 1) =>
  Stream.run(Stream.fromIterable(parts).pipe(Stream.rechunk(1)), store.create(meta(index, term)))

/** The bytes of a snapshot, concatenated. */
const read = (store: SnapshotStore.SnapshotStore, id: string) =>
  Effect.gen(function*() {
    const { data } = yield* store.open(id)
    const all = Chunk.toReadonlyArray(yield* Stream.runCollect(data))
    return Array.from(all.flatMap((chunk) => Array.from(chunk)))
  })

describe("SnapshotStore.makeMemory", () => {
  it.effect("create stores the bytes of every stream chunk; list shows its metadata and open returns the same bytes", () =>
    Effect.gen(function*() {
      const store = SnapshotStore.makeMemory()
      assert.deepStrictEqual(yield* store.list, [])
      const created = yield* write(store, 7, chunks([1, 2, 3], [4], [5, 6]), 2)
      assert.strictEqual(created.index, 7)
      assert.strictEqual(created.term, 2)
      assert.strictEqual(created.size, 6)
      assert.deepStrictEqual(created.configuration, configuration)
      assert.strictEqual(created.configurationIndex, 1)
      assert.deepStrictEqual(yield* store.list, [created])
      const opened = yield* store.open(created.id)
      assert.deepStrictEqual(opened.meta, created)
      assert.deepStrictEqual(yield* read(store, created.id), [1, 2, 3, 4, 5, 6])
    }))

  it.effect("an empty stream makes a snapshot of size 0", () =>
    Effect.gen(function*() {
      const store = SnapshotStore.makeMemory()
      const created = yield* write(store, 1, [])
      assert.strictEqual(created.size, 0)
      assert.deepStrictEqual(yield* read(store, created.id), [])
    }))

  it.effect("list is newest first", () =>
    Effect.gen(function*() {
      const store = SnapshotStore.makeMemory(3)
      const first = yield* write(store, 10, chunks([1]))
      const second = yield* write(store, 20, chunks([2]))
      const third = yield* write(store, 30, chunks([3]))
      assert.deepStrictEqual((yield* store.list).map((m) => m.id), [third.id, second.id, first.id])
    }))

  it.effect("ids are unique and a later snapshot has a greater id, also across terms 9 → 10", () =>
    Effect.gen(function*() {
      const store = SnapshotStore.makeMemory(10)
      const created = [
        yield* write(store, 99, chunks([1]), 9),
        yield* write(store, 100, chunks([2]), 10),
        yield* write(store, 100, chunks([3]), 10), // same term and index again
        yield* write(store, 1000, chunks([4]), 11)
      ]
      const ids = created.map((m) => m.id)
      assert.strictEqual(new Set(ids).size, ids.length)
      for (let i = 1; i < ids.length; i++) assert.isTrue(ids[i]! > ids[i - 1]!, `${ids[i]} > ${ids[i - 1]}`)
    }))

  it.effect("a failed stream leaves nothing visible", () =>
    Effect.gen(function*() {
      const store = SnapshotStore.makeMemory()
      const failing = Stream.concat(
        Stream.fromIterable(chunks([1, 2])),
        Stream.fail(new StorageError({ operation: "snapshot", reason: "disk full" }))
      )
      const exit = yield* Effect.exit(Stream.run(failing, store.create(meta(5))))
      assert.isTrue(Exit.isFailure(exit))
      assert.deepStrictEqual(yield* store.list, [])
    }))

  it.effect("an interrupted stream leaves nothing visible", () =>
    Effect.gen(function*() {
      const store = SnapshotStore.makeMemory()
      const endless = Stream.concat(Stream.fromIterable(chunks([1, 2])), Stream.never)
      const fiber = yield* Effect.fork(Stream.run(endless, store.create(meta(5))))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(yield* store.list, [])
      // An earlier snapshot is untouched by the interrupted one.
      const kept = yield* write(store, 3, chunks([9]))
      const second = yield* Effect.fork(Stream.run(endless, store.create(meta(6))))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(second)
      assert.deepStrictEqual(yield* store.list, [kept])
    }))

  it.effect("retain keeps the newest N and the dropped ones cannot be opened", () =>
    Effect.gen(function*() {
      const store = SnapshotStore.makeMemory(2)
      const first = yield* write(store, 10, chunks([1]))
      const second = yield* write(store, 20, chunks([2]))
      const third = yield* write(store, 30, chunks([3]))
      assert.deepStrictEqual((yield* store.list).map((m) => m.index), [30, 20])
      assert.deepStrictEqual(yield* read(store, second.id), [2])
      assert.deepStrictEqual(yield* read(store, third.id), [3])
      const error = yield* Effect.flip(store.open(first.id))
      assert.instanceOf(error, SnapshotNotFound)
    }))

  it.effect("open of an unknown id fails with SnapshotNotFound", () =>
    Effect.gen(function*() {
      const store = SnapshotStore.makeMemory()
      yield* write(store, 1, chunks([1]))
      const error = yield* Effect.flip(store.open("no-such-id"))
      assert.instanceOf(error, SnapshotNotFound)
    }))
})
